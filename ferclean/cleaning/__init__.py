"""Cleaning: plans (data), applying them to findings, the manifest, restore, outputs, publish.

The flow: ``findings = audit(ds)`` (or ``read_findings(dir)``) → ``result = clean(ds, plan,
findings)`` → ``result.save(out)`` or ``publish(result, out)`` → ``restore_from(out)``.
"""

from ferclean.cleaning.apply import CleanResult, audit_and_clean, clean, select_removals
from ferclean.cleaning.manifest import Manifest, pixel_sha256, restore
from ferclean.cleaning.outputs import restore_from, save_clean
from ferclean.cleaning.plan import ACTIONS, KEEP_RULES, PRESETS, CleaningPlan, Rule
from ferclean.cleaning.publish import publish

__all__ = [
    "ACTIONS",
    "KEEP_RULES",
    "PRESETS",
    "CleanResult",
    "CleaningPlan",
    "Manifest",
    "Rule",
    "audit_and_clean",
    "clean",
    "pixel_sha256",
    "publish",
    "restore",
    "restore_from",
    "save_clean",
    "select_removals",
]
