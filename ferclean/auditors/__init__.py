"""Auditors, one module per issue type, registered by issue name.

=================== =================================== ==============================
issue               auditor                             finds
=================== =================================== ==============================
exact_duplicate     :class:`ExactDuplicateAuditor`      pixel-identical images
near_duplicate      :class:`NearDuplicateAuditor`       edited copies (re-encoded, shifted, ...)
label_conflict      :class:`LabelConflictAuditor`       duplicates under different labels
cross_split_leak    :class:`CrossSplitLeakAuditor`      duplicates across splits
outlier             :class:`OutlierAuditor`             non-faces; mean-pixel outliers
class_imbalance     :class:`ClassImbalanceAuditor`      under-represented classes
=================== =================================== ==============================
"""

from ferclean.auditors.base import REGISTRY, Auditor, get_auditor, register
from ferclean.auditors.context import AuditContext
from ferclean.auditors.duplicates import (
    CrossSplitLeakAuditor,
    ExactDuplicateAuditor,
    LabelConflictAuditor,
)
from ferclean.auditors.imbalance import ClassImbalanceAuditor
from ferclean.auditors.near import NearDuplicateAuditor

try:  # written in parallel; optional until it lands
    from ferclean.auditors.outliers import OutlierAuditor
except ImportError:  # pragma: no cover
    OutlierAuditor = None  # type: ignore[assignment,misc]

from ferclean.auditors.runner import Audit, AuditResult, audit, write_audit  # noqa: E402

__all__ = [
    "Audit",
    "AuditResult",
    "audit",
    "write_audit",
    "REGISTRY",
    "AuditContext",
    "Auditor",
    "ClassImbalanceAuditor",
    "CrossSplitLeakAuditor",
    "ExactDuplicateAuditor",
    "LabelConflictAuditor",
    "NearDuplicateAuditor",
    "OutlierAuditor",
    "get_auditor",
    "register",
]
