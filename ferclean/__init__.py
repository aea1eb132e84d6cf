"""ferclean: data-centric auditing of face-expression datasets, FER-2013 first.

The flow, one verb per step::

    ds = ferclean.load("fer2013.csv")              # a FaceDataset
    result = ferclean.audit(ds)                    # findings + summary
    result.save("audit/")                          # findings.csv, summary.json
    result = ferclean.read_findings("audit/")      # ... read back later
    cleaned = ferclean.clean(ds, "strict", result) # cleaned data + manifest
    cleaned.save("clean/")                         # or ferclean.publish(cleaned, "release/")
    original = ferclean.restore_from("clean/")
"""

from ferclean._version import __version__
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError, FercleanError, LeakageError
from ferclean.io import convert, load, save

# The auditors, cleaning, protocol and the report pull in scipy, scikit-learn and
# matplotlib: import them when first used (PEP 562), so ``import ferclean`` stays fast,
# and hand out the real objects, with their own signatures and docstrings.
_LAZY = {
    "audit": "ferclean.auditors",
    "Audit": "ferclean.auditors",
    "Auditor": "ferclean.auditors",
    "register": "ferclean.auditors",
    "read_findings": "ferclean.findings",
    "AuditResult": "ferclean.findings",
    "CleaningPlan": "ferclean.cleaning",
    "Rule": "ferclean.cleaning",
    "clean": "ferclean.cleaning",
    "audit_and_clean": "ferclean.cleaning",
    "restore": "ferclean.cleaning",
    "restore_from": "ferclean.cleaning",
    "publish": "ferclean.cleaning",
    "check_leakage": "ferclean.protocol",
    "assert_no_leakage": "ferclean.protocol",
    "resample": "ferclean.protocol",
    "RandomOverSampler": "ferclean.protocol",
    "SMOTE": "ferclean.protocol",
    "random_split": "ferclean.protocol",
    "honest_splits": "ferclean.protocol",
    "class_weights": "ferclean.protocol",
    "report": "ferclean.reporting",
    "demo_dataset": "ferclean.demo",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferclean' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Audit",
    "AuditResult",
    "Auditor",
    "BadInputError",
    "CleaningPlan",
    "EMOTIONS",
    "FaceDataset",
    "FercleanError",
    "IMAGE_SIZE",
    "LeakageError",
    "RandomOverSampler",
    "Rule",
    "SMOTE",
    "SPLITS",
    "UNLABELED",
    "__version__",
    "assert_no_leakage",
    "audit",
    "audit_and_clean",
    "check_leakage",
    "class_weights",
    "clean",
    "convert",
    "demo_dataset",
    "honest_splits",
    "load",
    "publish",
    "random_split",
    "read_findings",
    "register",
    "report",
    "resample",
    "restore",
    "restore_from",
    "save",
]
