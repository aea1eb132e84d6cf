"""Cleaning: plans (data), applying them to findings, the manifest, restore, outputs, publish.

The flow: ``findings = audit(ds)`` (or ``read_findings(dir)``) → ``result = clean(ds, plan,
findings)`` → ``result.save(out)`` or ``publish(result, out)`` → ``restore_from(out)``.
A plan removes images (``drop``, ``keep_one``, ``drop_above``) and can relabel them to the
label their findings suggest (``relabel``, Training only unless it says otherwise); the
manifest records both, and ``restore`` undoes both.
"""

from ferclean.cleaning.apply import (
    RELABEL_OUTCOMES,
    CleaningSelection,
    CleanResult,
    audit_and_clean,
    clean,
    select_cleaning,
    select_relabels,
    select_removals,
)
from ferclean.cleaning.manifest import Manifest, pixel_sha256, restore
from ferclean.cleaning.outputs import restore_from, save_clean
from ferclean.cleaning.plan import ACTIONS, KEEP_RULES, PRESETS, CleaningPlan, Rule
from ferclean.cleaning.publish import publish

__all__ = [
    "ACTIONS",
    "KEEP_RULES",
    "PRESETS",
    "RELABEL_OUTCOMES",
    "CleanResult",
    "CleaningPlan",
    "CleaningSelection",
    "Manifest",
    "Rule",
    "audit_and_clean",
    "clean",
    "pixel_sha256",
    "publish",
    "restore",
    "restore_from",
    "save_clean",
    "select_cleaning",
    "select_relabels",
    "select_removals",
]
