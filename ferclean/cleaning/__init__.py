"""Cleaning: plans (data), applying them to findings, the manifest, restore, outputs, publish."""

from ferclean.cleaning._clean import (
    ACTIONS,
    KEEP_RULES,
    PRESETS,
    CleaningPlan,
    Manifest,
    Rule,
    clean,
    pixel_sha256,
    restore,
    select_removals,
)
from ferclean.cleaning._publish import clean_to, publish, restore_from

__all__ = [
    "ACTIONS",
    "KEEP_RULES",
    "PRESETS",
    "CleaningPlan",
    "Manifest",
    "Rule",
    "clean",
    "clean_to",
    "pixel_sha256",
    "publish",
    "restore",
    "restore_from",
    "select_removals",
]
