"""Work shared between auditors: computed once, with the user's settings, then reused.

The runner builds one :class:`AuditContext` per dataset, holding the auditor settings the
user chose (for every issue type, whether it is reported or not), and hands it to every
auditor. Shared intermediates are cached by what they depend on:

- parameter-free ones (content hashes, exact groups, mean grey levels) as properties;
- an auditor's whole result by its issue name and parameters (:meth:`AuditContext.run`):
  an auditor that needs another's result declares it (:meth:`Auditor.requires`) and gets
  it from :meth:`AuditContext.dependency`, computed with the settings the user gave that
  auditor, and only once however many auditors read it;
- anything else through :meth:`AuditContext.cached`, by an explicit key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from ferclean.auditors._registry import REGISTRY
from ferclean.dataset import IMAGE_SIZE, FaceDataset
from ferclean.findings import validate_findings
from ferclean.similarity.exact import DuplicateGroups, content_hash, exact_groups

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.auditors.base import Auditor


def plain_param(value: Any) -> Any:
    """A parameter as plain, short data: arrays and objects (probabilities, FER+ votes)
    by a description, so ``summary.json`` records settings without copying data.

    Examples
    --------
    >>> plain_param(np.zeros((3, 7)))
    'array of shape (3, 7), sha256 e3c2af35d1df'
    >>> plain_param(0.97)
    0.97
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, np.ndarray):
        digest = hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()[:12]
        return f"array of shape {value.shape}, sha256 {digest}"
    describe = getattr(value, "describe", None)
    if callable(describe):
        return describe()
    return f"{type(value).__name__} object"


def _params_key(auditor: Auditor) -> tuple[str, str]:
    params = auditor.get_params(deep=False)
    # plain_param: a long array's repr is cut with "...", so two arrays could share it;
    # other objects are told apart by identity
    def key(value: Any) -> Any:
        plain = plain_param(value)
        return plain if isinstance(value, (type(None), bool, int, float, str, list, tuple,
                                           np.ndarray)) else (plain, id(value))

    return auditor.issue_name, repr(sorted((k, key(v)) for k, v in params.items()))


class AuditContext:
    """Lazily computed, shared intermediate results for one dataset.

    Parameters
    ----------
    dataset : FaceDataset
    settings : mapping of issue name to Auditor, default=None
        The auditor (with its parameters) to use for each issue type when another
        auditor depends on it; issue types not named here use their defaults.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.auditors import NearDuplicateAuditor
    >>> ctx = AuditContext(FaceDataset(np.zeros((2, 48, 48), np.uint8)),
    ...                    {"near_duplicate": NearDuplicateAuditor(similarity=0.99)})
    >>> ctx.exact_groups.n_groups
    1
    >>> ctx.dependency("near_duplicate").similarity
    0.99
    """

    def __init__(self, dataset: FaceDataset,
                 settings: Mapping[str, Auditor] | None = None) -> None:
        self.dataset = dataset
        self.settings: dict[str, Auditor] = dict(settings or {})
        for name, auditor in self.settings.items():
            if getattr(auditor, "issue_name", None) != name or not hasattr(auditor, "_audit"):
                raise ValueError(f"settings[{name!r}] must be an auditor for {name!r}; "
                                 f"got {auditor!r}")
        self._results: dict[tuple[str, str], tuple[Auditor, pd.DataFrame]] = {}
        self._running: list[tuple[str, str]] = []
        self._cache: dict[tuple, Any] = {}

    @cached_property
    def content_hashes(self) -> np.ndarray:
        """64-bit exact-content hash of every image."""
        return content_hash(self.dataset.pixels)

    @cached_property
    def exact_groups(self) -> DuplicateGroups:
        """Groups of pixel-identical images."""
        return exact_groups(self.dataset.pixels, self.content_hashes)

    @cached_property
    def mean_pixel(self) -> np.ndarray:
        """Mean grey level of every image (float64)."""
        n = len(self.dataset)
        flat = self.dataset.pixels.reshape(n, IMAGE_SIZE * IMAGE_SIZE)
        return flat.mean(axis=1, dtype=np.float64)

    def cached(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key``; the key must name every input it depends on.

        Examples
        --------
        >>> import numpy as np
        >>> ctx = AuditContext(FaceDataset(np.zeros((1, 48, 48), np.uint8)))
        >>> ctx.cached(("answer", 42), lambda: 6 * 7), ctx.cached(("answer", 42), lambda: 0)
        (42, 42)
        """
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def run(self, auditor: Auditor) -> pd.DataFrame:
        """Audit with ``auditor`` once per (issue, parameters); return a copy of its findings.

        A second auditor with the same parameters gets the first one's learned
        (trailing-underscore) attributes instead of repeating the work.
        """
        key = _params_key(auditor)
        if key not in self._results:
            if key in self._running:
                chain = " -> ".join(name for name, _ in [*self._running, key])
                raise ValueError(f"auditors depend on each other in a cycle: {chain}")
            self._running.append(key)
            try:
                found = validate_findings(auditor._audit(self.dataset, self))
            finally:
                self._running.pop()
            wrong = set(found["issue"]) - {auditor.issue_name}
            if wrong:
                raise ValueError(f"{type(auditor).__name__} returned findings of issue(s) "
                                 f"{sorted(wrong)}; it may only report "
                                 f"{auditor.issue_name!r}")
            self._results[key] = (auditor, found)
        fitted, found = self._results[key]
        if fitted is not auditor:
            auditor.__dict__.update({k: v for k, v in vars(fitted).items()
                                     if k.endswith("_") and not k.startswith("_")})
        return found.copy()

    def dependency(self, name: str) -> Auditor:
        """The fitted auditor for issue ``name``, run with this context's settings for it.

        Examples
        --------
        >>> from ferclean.demo import demo_dataset
        >>> ctx = AuditContext(demo_dataset(n_faces=300))
        >>> ctx.dependency("exact_duplicate").groups_.n_groups > 0
        True
        """
        if name not in REGISTRY:
            raise ValueError(f"unknown auditor {name!r}; available: {', '.join(REGISTRY)}")
        configured = self.settings.get(name)
        auditor = clone(configured) if configured is not None else REGISTRY[name]()
        key = _params_key(auditor)
        if key not in self._results:
            self.run(auditor)
        return self._results[key][0]

    def dependency_findings(self, name: str) -> pd.DataFrame:
        """The findings of :meth:`dependency` ``name`` (a copy).

        Examples
        --------
        >>> from ferclean.demo import demo_dataset
        >>> ctx = AuditContext(demo_dataset(n_faces=300))
        >>> set(ctx.dependency_findings("exact_duplicate").issue)
        {'exact_duplicate'}
        """
        fitted = self.dependency(name)
        return self._results[_params_key(fitted)][1].copy()
