"""The auditor base class and the open registry of auditors by issue name.

An auditor is configured in ``__init__`` (keyword-only parameters stored unchanged, so
scikit-learn's ``get_params``/``set_params``/``clone``/``repr`` work), does its work in
:meth:`Auditor.audit`, keeps what it learned in trailing-underscore attributes, and returns
a findings table (see :mod:`ferclean.findings`). Subclasses write only ``_audit``.

Each auditor class owns everything about its issue type, as cleanlab's issue managers do:
its name, title and description, whether its findings come in groups, how its summary is
counted, how the HTML report shows it, which cleaning actions apply to it, and which
other auditors' results it needs (:meth:`Auditor.requires`). The lists other parts of
ferclean use (:func:`issue_types`, the report's galleries, plan validation) are derived
from :data:`REGISTRY`, so a user's own auditor, registered with :func:`register`, shows
up everywhere without editing ferclean.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import pandas as pd
from sklearn.base import BaseEstimator

from ferclean._validation import check_dataset
from ferclean.auditors._registry import REGISTRY
from ferclean.auditors.context import AuditContext
from ferclean.dataset import FaceDataset
from ferclean.findings import group_counts

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Auditor(BaseEstimator):
    """Base class of every auditor.

    Class attributes (what a subclass declares about its issue type):

    - ``issue_name``: the issue type, e.g. ``"near_duplicate"`` (lower case, ``_``);
    - ``title`` and ``description``: what the report and docs call it and say about it;
    - ``grouped``: whether findings come in groups of copies (``group >= 0``), which
      makes the cleaning action ``keep_one`` available;
    - ``gallery``: how the HTML report shows the findings: ``"groups"``, ``"items"``
      (worst first) or ``None`` (no gallery; a summary card only);
    - ``order``: where the issue comes in audits, summaries and the report (lower first;
      ferclean's own use 10-60, a user's auditor comes after them by default).

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.findings import make_findings
    >>> class Dark(Auditor):
    ...     issue_name = "dark_image"
    ...     title = "Dark images"
    ...     def __init__(self, *, level=20):
    ...         self.level = level
    ...     def _audit(self, dataset, context):
    ...         mean = context.mean_pixel
    ...         index = np.flatnonzero(mean < self.level)
    ...         return make_findings(dataset, index, self.issue_name, detail="dark")
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8))
    >>> Dark().audit(ds).issue.tolist()
    ['dark_image', 'dark_image']
    """

    issue_name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    grouped: ClassVar[bool] = False
    gallery: ClassVar[str | None] = "items"
    order: ClassVar[int] = 100

    def audit(self, dataset: FaceDataset, context: AuditContext | None = None) -> pd.DataFrame:
        """Audit ``dataset`` and return its findings table.

        Parameters
        ----------
        dataset : FaceDataset
        context : AuditContext, default=None
            Shared intermediate results (hashes, duplicate groups, the results of the
            auditors this one :meth:`requires`, computed with the settings the context
            holds). The runner passes one context to every auditor so that work is done
            once; ``None`` makes a new one, in which a required auditor runs with its
            defaults.

        Returns
        -------
        DataFrame
            Columns ``row``, ``image_id``, ``split``, ``label``, ``issue``, ``group``,
            ``kind``, ``related_row``, ``score``, ``detail`` (see :mod:`ferclean.findings`).
        """
        check_dataset(dataset)
        if context is None:
            context = AuditContext(dataset)
        elif context.dataset is not dataset:
            raise ValueError("context was built for another dataset")
        return context.run(self)

    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        raise NotImplementedError

    def requires(self) -> tuple[str, ...]:
        """Issue names of the auditors whose results this one reads, with these settings.

        The context computes each of them once, with the settings the user gave that
        auditor (not its defaults), and hands the fitted auditor out through
        :meth:`AuditContext.dependency`.

        Examples
        --------
        >>> Auditor().requires()
        ()
        """
        return ()

    def summarize(self, findings: pd.DataFrame) -> dict[str, Any]:
        """This issue's entry in ``summary.json``, from its own findings (after ``audit``).

        Grouped issues count ``groups``, ``images`` and ``removable`` (images beyond the
        first of their group); others count ``images``. :meth:`summary_extra` adds what
        the auditor learned.

        Examples
        --------
        >>> from ferclean.findings import empty_findings
        >>> Auditor().summarize(empty_findings())
        {'groups': 0, 'images': 0}
        """
        if self.grouped:
            entry: dict[str, Any] = group_counts(findings)
        else:
            entry = {"groups": 0, "images": int(findings["row"].nunique())}
        entry.update(self.summary_extra())
        return entry

    def summary_extra(self) -> dict[str, Any]:
        """Extra fields for this issue's entry in ``summary.json`` (after ``audit``)."""
        return {}


def register(cls: type[Auditor]) -> type[Auditor]:
    """Class decorator: add an auditor to :data:`REGISTRY` under its ``issue_name``.

    Registering a class of another name under a taken issue name raises; registering a
    class of the same module and name again (a notebook cell run twice) replaces it.

    Examples
    --------
    >>> sorted(REGISTRY)[:2]
    ['class_imbalance', 'cross_split_leak']
    """
    name = getattr(cls, "issue_name", "")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{cls.__name__}.issue_name must be a lower-case identifier such as "
                         f"'dark_image'; got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Auditor)):
        raise TypeError(f"{cls!r} is not an Auditor subclass")
    if cls.gallery not in ("groups", "items", None):
        raise ValueError(f"{cls.__name__}.gallery must be 'groups', 'items' or None; "
                         f"got {cls.gallery!r}")
    old = REGISTRY.get(name)
    if old is not None and old is not cls and (
            old.__module__, old.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ValueError(f"an auditor for {name!r} is already registered: {old.__name__}")
    REGISTRY[name] = cls
    ordered = sorted(REGISTRY.items(), key=lambda item: item[1].order)  # stable for ties
    REGISTRY.clear()
    REGISTRY.update(ordered)
    return cls


def unregister(name: str) -> type[Auditor]:
    """Remove the auditor registered under ``name``; return its class.

    Examples
    --------
    >>> cls = unregister("class_imbalance"); _ = register(cls)
    >>> "class_imbalance" in REGISTRY
    True
    """
    if name not in REGISTRY:
        raise ValueError(f"no auditor is registered as {name!r}; registered: "
                         f"{', '.join(REGISTRY)}")
    return REGISTRY.pop(name)


def issue_types() -> tuple[str, ...]:
    """The registered issue names, in audit order.

    Examples
    --------
    >>> issue_types()[:3]
    ('exact_duplicate', 'near_duplicate', 'label_conflict')
    """
    return tuple(REGISTRY)


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
