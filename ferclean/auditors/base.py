"""The auditor base class and the registry of auditors by issue name.

An auditor is configured in ``__init__`` (keyword-only parameters stored unchanged, so
scikit-learn's ``get_params``/``set_params``/``clone``/``repr`` work), does its work in
:meth:`Auditor.audit`, keeps what it learned in trailing-underscore attributes, and returns
a findings table (see :mod:`ferclean.findings`). Subclasses write only ``_audit``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from sklearn.base import BaseEstimator

from ferclean._validation import check_dataset
from ferclean.dataset import FaceDataset
from ferclean.findings import ISSUE_TYPES, validate_findings

#: Auditor classes by issue name, in the order ``ferclean audit`` runs them.
REGISTRY: dict[str, type[Auditor]] = {}


class Auditor(BaseEstimator):
    """Base class: validates input, shares work through an :class:`AuditContext`.

    Subclasses set ``issue_name`` and implement ``_audit(dataset, context)``.
    """

    issue_name: ClassVar[str] = ""

    def audit(self, dataset: FaceDataset, context: Any = None) -> pd.DataFrame:
        """Audit ``dataset`` and return its findings table.

        Parameters
        ----------
        dataset : FaceDataset
        context : AuditContext, default=None
            Shared intermediate results (hashes, duplicate groups). The runner passes one
            context to every auditor so that work is done once; ``None`` makes a new one.

        Returns
        -------
        DataFrame
            Columns ``row``, ``image_id``, ``split``, ``label``, ``issue``, ``group``,
            ``score``, ``detail`` (see :mod:`ferclean.findings`).
        """
        from ferclean.auditors.context import AuditContext

        check_dataset(dataset)
        if context is None:
            context = AuditContext(dataset)
        elif context.dataset is not dataset:
            raise ValueError("context was built for another dataset")
        return validate_findings(self._audit(dataset, context))

    def _audit(self, dataset: FaceDataset, context: Any) -> pd.DataFrame:
        raise NotImplementedError

    def summary_extra(self) -> dict[str, Any]:
        """Extra fields for this issue's entry in ``summary.json`` (after ``audit``)."""
        return {}


def register(cls: type[Auditor]) -> type[Auditor]:
    """Class decorator: add an auditor to :data:`REGISTRY` under its ``issue_name``.

    Examples
    --------
    >>> sorted(REGISTRY)[:2]
    ['class_imbalance', 'cross_split_leak']
    """
    name = getattr(cls, "issue_name", "")
    if name not in ISSUE_TYPES:
        raise ValueError(f"{cls.__name__}.issue_name must be one of {ISSUE_TYPES}; got {name!r}")
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"an auditor for {name!r} is already registered: {REGISTRY[name]}")
    REGISTRY[name] = cls
    return cls


def get_auditor(name: str, **params: Any) -> Auditor:
    """Make a registered auditor by issue name.

    Examples
    --------
    >>> get_auditor("exact_duplicate")
    ExactDuplicateAuditor()
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown auditor {name!r}; available: {', '.join(REGISTRY)}")
    return REGISTRY[name](**params)
