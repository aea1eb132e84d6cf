"""Auditors, one module per issue type, registered by issue name.

=================== =================================== ==============================
issue               auditor                             finds
=================== =================================== ==============================
exact_duplicate     :class:`ExactDuplicateAuditor`      pixel-identical images
near_duplicate      :class:`NearDuplicateAuditor`       edited copies (re-encoded, shifted, ...)
label_conflict      :class:`LabelConflictAuditor`       duplicates under different labels
label_issue         :class:`LabelIssueAuditor`          wrong labels (model, copies, FER+)
cross_split_leak    :class:`CrossSplitLeakAuditor`      duplicates across splits
outlier             :class:`OutlierAuditor`             non-faces; mean-pixel outliers
class_imbalance     :class:`ClassImbalanceAuditor`      under-represented classes
=================== =================================== ==============================

The registry is open: a class decorated with :func:`register` joins ``ferclean.audit``,
``findings.csv``, ``summary.json``, the HTML report and cleaning plans.
"""

from ferclean.auditors.base import (
    REGISTRY,
    Auditor,
    get_auditor,
    issue_types,
    register,
    unregister,
)
from ferclean.auditors.context import AuditContext
from ferclean.auditors.duplicates import (
    CrossSplitLeakAuditor,
    ExactDuplicateAuditor,
    LabelConflictAuditor,
)
from ferclean.auditors.imbalance import ClassImbalanceAuditor
from ferclean.auditors.labels import LabelIssueAuditor
from ferclean.auditors.near import NearDuplicateAuditor
from ferclean.auditors.outliers import OutlierAuditor
from ferclean.auditors.runner import Audit, audit, resolve_auditors
from ferclean.findings import AuditResult, read_findings

__all__ = [
    "REGISTRY",
    "Audit",
    "AuditContext",
    "AuditResult",
    "Auditor",
    "ClassImbalanceAuditor",
    "CrossSplitLeakAuditor",
    "ExactDuplicateAuditor",
    "LabelConflictAuditor",
    "LabelIssueAuditor",
    "NearDuplicateAuditor",
    "OutlierAuditor",
    "audit",
    "get_auditor",
    "issue_types",
    "read_findings",
    "register",
    "resolve_auditors",
    "unregister",
]
