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

Auditors build their findings from intermediates (groups, pairs, scores) and the
metadata of the images involved, which the in-memory :class:`AuditContext` computes from
the pixels and an engine can supply instead (:class:`SuppliedContext`: the Dask engine,
``ferclean.audit(path, engine="dask")``), so both engines share every finding's code.
"""

from ferclean.auditors.base import (
    REGISTRY,
    Auditor,
    get_auditor,
    issue_types,
    register,
    unregister,
)
from ferclean.auditors.context import (
    AuditContext,
    ImageMetadata,
    SuppliedContext,
    intermediate_key,
)
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
    "ImageMetadata",
    "LabelConflictAuditor",
    "LabelIssueAuditor",
    "NearDuplicateAuditor",
    "OutlierAuditor",
    "SuppliedContext",
    "audit",
    "get_auditor",
    "intermediate_key",
    "issue_types",
    "read_findings",
    "register",
    "resolve_auditors",
    "unregister",
]
