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

Pixel-derived intermediates an auditor needs (the near-duplicate pairs, the face model's
scores) go through :meth:`AuditContext.intermediate`, keyed by :func:`intermediate_key`:
the in-memory context computes them from the pixels; a :class:`SuppliedContext` holds
them as an engine computed them elsewhere (the Dask engine, partition by partition), over
an :class:`ImageMetadata` of the images involved. The auditors build their findings from
these intermediates alone, so both engines share one implementation of every finding.
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
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset, empty_dropped, split_code
from ferclean.findings import dataset_summary, validate_findings
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


def intermediate_key(name: str, auditor: Auditor) -> tuple[str, str, str]:
    """The key of an auditor's pixel-derived intermediate ``name`` under its parameters.

    An auditor asks :meth:`AuditContext.intermediate` with this key; an engine supplying
    the intermediate computes the same key for the same auditor settings.

    Examples
    --------
    >>> from ferclean.auditors import NearDuplicateAuditor
    >>> intermediate_key("near_pairs", NearDuplicateAuditor())[:2]
    ('near_pairs', 'near_duplicate')
    """
    return (name, *_params_key(auditor))


def class_counts(splits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Images per split and label: shape ``(len(SPLITS), len(EMOTIONS) + 1)``, the last
    column counting unlabelled images (label ``-1``).

    Examples
    --------
    >>> class_counts(np.array([0, 0, 2]), np.array([3, -1, 3]))[[0, 2]][:, [3, 7]].tolist()
    [[1, 1], [1, 0]]
    """
    width = len(EMOTIONS) + 1
    labels = np.asarray(labels, np.int64)
    cell = np.asarray(splits, np.int64) * width + np.where(labels >= 0, labels, width - 1)
    return np.bincount(cell, minlength=len(SPLITS) * width).reshape(len(SPLITS), width)


class ImageMetadata:
    """The metadata of some images of a dataset, without their pixels.

    What findings are built from: each image's input row, id, split and label, and its
    position in the whole dataset. A :class:`SuppliedContext` holds one for the images an
    engine's intermediates involve (duplicates, flagged images), in dataset order; it
    offers the metadata side of :class:`~ferclean.dataset.FaceDataset`, and reading
    ``pixels`` raises, so no auditor can quietly compute on images it was not given.

    Parameters
    ----------
    rows, ids, splits, labels : array-like, shape (n,)
        As on :class:`~ferclean.dataset.FaceDataset` (``splits`` as codes).
    positions : array-like of int, shape (n,), default=None
        Each image's position in the whole dataset (increasing); ``None``: ``0..n-1``.
    source : str, default=None

    Examples
    --------
    >>> meta = ImageMetadata([4, 9], ["a", "b"], [0, 1], [3, -1], positions=[4, 9])
    >>> len(meta), meta.split_counts(), meta.split_names.tolist()
    (2, {'Training': 1, 'PublicTest': 1}, ['Training', 'PublicTest'])
    """

    def __init__(self, rows: Any, ids: Any, splits: Any, labels: Any, *,
                 positions: Any = None, source: str | None = None) -> None:
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = len(self.rows)
        self.ids = np.asarray(ids, dtype=object).astype(str).reshape(-1)
        self.splits = np.asarray(splits, dtype=np.int8).reshape(-1)
        self.labels = np.asarray(labels, dtype=np.int8).reshape(-1)
        self.positions = (np.arange(n, dtype=np.int64) if positions is None
                          else np.asarray(positions, dtype=np.int64).reshape(-1))
        for name in ("ids", "splits", "labels", "positions"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"ImageMetadata: {len(getattr(self, name))} {name} for "
                                 f"{n} rows")
        if n and np.any(np.diff(self.positions) <= 0):
            raise ValueError("ImageMetadata: positions must increase (dataset order)")
        self.source = source
        self.dropped = empty_dropped()

    @classmethod
    def from_dataset(cls, dataset: FaceDataset) -> ImageMetadata:
        """The metadata of every image of ``dataset``.

        Examples
        --------
        >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[1, 2])
        >>> ImageMetadata.from_dataset(ds).labels.tolist()
        [1, 2]
        """
        return cls(dataset.rows, dataset.ids, dataset.splits, dataset.labels,
                   source=dataset.source)

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"ImageMetadata(n_images={len(self)}, source={self.source!r})"

    @property
    def pixels(self) -> np.ndarray:
        raise ValueError("this dataset holds images' metadata only, no pixels: an engine "
                         "supplies what is computed from pixels (see SuppliedContext)")

    @property
    def split_names(self) -> np.ndarray:
        """Split name of every image."""
        return np.asarray(SPLITS, dtype=object)[self.splits]

    def split_mask(self, name: str) -> np.ndarray:
        """Boolean mask of the images in split ``name``."""
        return self.splits == split_code(name)

    def split_counts(self) -> dict[str, int]:
        """Images per split among these images, for the splits present."""
        counts = np.bincount(self.splits, minlength=len(SPLITS))
        return {SPLITS[i]: int(c) for i, c in enumerate(counts) if c}


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

    @cached_property
    def class_counts(self) -> np.ndarray:
        """Images per split and label over the whole dataset (see :func:`class_counts`)."""
        return class_counts(self.dataset.splits, self.dataset.labels)

    @property
    def source(self) -> str | None:
        """Where the audited data came from (``summary.json``'s ``source``)."""
        return self.dataset.source

    def dataset_summary(self) -> dict[str, Any]:
        """The dataset part of ``summary.json`` (see :func:`ferclean.findings.dataset_summary`).

        Examples
        --------
        >>> ctx = AuditContext(FaceDataset(np.zeros((2, 48, 48), np.uint8)))
        >>> ctx.dataset_summary()["splits"]
        {'Training': 2}
        """
        return dataset_summary(self.dataset)

    def engine_summary(self) -> dict[str, Any]:
        """What ``summary.json`` records about the engine: nothing for the in-memory one."""
        return {}

    def intermediate(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """A pixel-derived intermediate, keyed by :func:`intermediate_key`: computed here
        (once per key) from the pixels; a :class:`SuppliedContext` holds it instead.

        Examples
        --------
        >>> ctx = AuditContext(FaceDataset(np.zeros((1, 48, 48), np.uint8)))
        >>> ctx.intermediate(("brightness", "x", "[]"), lambda: 0.0)
        0.0
        """
        return self.cached(key, compute)

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


class SuppliedContext(AuditContext):
    """A context whose pixel-derived intermediates an engine computed elsewhere.

    The Dask engine hashes, searches and scores the images partition by partition, then
    hands the auditors what they need here: the metadata of the images involved (an
    :class:`ImageMetadata`, in dataset order), the exact groups among them, the class
    counts of the whole dataset and the intermediates keyed by :func:`intermediate_key`
    (near-duplicate pairs, face-model scores), all in positions of that metadata. The
    auditors then build their findings exactly as in memory. Asking for an intermediate
    the engine did not supply raises; nothing is computed from pixels here.

    Parameters
    ----------
    dataset : ImageMetadata
    settings : mapping of issue name to Auditor
    exact_groups : DuplicateGroups
        Over the images of ``dataset``.
    class_counts : ndarray, shape (len(SPLITS), len(EMOTIONS) + 1)
        Over the whole dataset (see :func:`class_counts`).
    intermediates : dict
        By :func:`intermediate_key`.
    dataset_summary : dict
        The dataset part of ``summary.json``, for the whole dataset.
    engine : dict, default=None
        What ``summary.json`` records under ``engine``.

    Examples
    --------
    >>> from ferclean.similarity.exact import DuplicateGroups
    >>> meta = ImageMetadata([3, 8], ["3", "8"], [0, 1], [2, 2], positions=[3, 8])
    >>> counts = class_counts(np.zeros(10, np.int8), np.full(10, 2))
    >>> ctx = SuppliedContext(meta, {}, exact_groups=DuplicateGroups(np.array([0, 0]), "exact"),
    ...                       class_counts=counts, intermediates={},
    ...                       dataset_summary={"n_images": 10})
    >>> from ferclean.auditors import ExactDuplicateAuditor
    >>> ctx.run(ExactDuplicateAuditor()).row.tolist()
    [3, 8]
    """

    def __init__(self, dataset: ImageMetadata, settings: Mapping[str, Auditor] | None, *,
                 exact_groups: DuplicateGroups, class_counts: np.ndarray,
                 intermediates: Mapping[tuple, Any], dataset_summary: dict[str, Any],
                 engine: dict[str, Any] | None = None) -> None:
        super().__init__(dataset, settings)  # type: ignore[arg-type]
        if len(exact_groups.group_of) != len(dataset):
            raise ValueError(f"exact groups over {len(exact_groups.group_of)} images for "
                             f"metadata of {len(dataset)}")
        # the cached properties' own slots: read as if computed here
        self.__dict__["exact_groups"] = exact_groups
        self.__dict__["class_counts"] = np.asarray(class_counts, np.int64)
        self._supplied = dict(intermediates)
        self._dataset_summary = dict(dataset_summary)
        self._engine = dict(engine or {})

    @property
    def content_hashes(self) -> np.ndarray:  # type: ignore[override]
        raise ValueError("content hashes are not supplied: the engine groups exact copies "
                         "itself (exact_groups)")

    @property
    def mean_pixel(self) -> np.ndarray:  # type: ignore[override]
        raise ValueError("mean grey levels are not supplied by this engine")

    def dataset_summary(self) -> dict[str, Any]:
        return dict(self._dataset_summary)

    def engine_summary(self) -> dict[str, Any]:
        return {"engine": dict(self._engine)} if self._engine else {}

    def intermediate(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """The supplied intermediate for ``key``; raises if the engine did not supply it."""
        if key not in self._supplied:
            raise ValueError(f"the engine did not supply the intermediate {key[0]!r} for "
                             f"{key[1]} with these settings: {key[2]}")
        return self._supplied[key]
