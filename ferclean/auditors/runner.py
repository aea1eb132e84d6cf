"""Run several auditors over one dataset, sharing their intermediate work.

``ferclean.audit(ds)`` runs every registered auditor; :class:`Audit` is the configurable
object behind it. Settings are resolved for every issue type *before* ``only``/``skip``
choose what is reported, so an auditor that depends on another (label conflicts over
near-duplicate groups) always gets it computed with the user's settings.

Engines: ``engine="memory"`` (the default) audits a :class:`~ferclean.dataset.FaceDataset`
here; ``engine="dask"`` audits Parquet shards on a Dask cluster
(:mod:`ferclean.engines.dask`). An engine only prepares the shared context (the
intermediates computed from the pixels); the auditors, the findings and the summary are
this module's, the same for both. Engines are found by name in :data:`ENGINES` and
imported only when used, so the core install never imports Dask.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from typing import Any

from sklearn.base import clone

from ferclean._progress import Progress
from ferclean._validation import check_dataset
from ferclean.auditors.base import REGISTRY, Auditor, get_auditor
from ferclean.auditors.context import AuditContext, plain_param
from ferclean.dataset import FaceDataset
from ferclean.findings import AuditResult, concat_findings

AuditorSpec = Auditor | str | Mapping[str, Mapping[str, Any]]

#: Audit engines by name: ``None`` runs here; otherwise the module whose
#: ``audit_context(data, settings, auditors, *, client, outlier_sample, partition_size,
#: progress)``
#: returns the :class:`~ferclean.auditors.context.SuppliedContext` the auditors read.
#: A module path, not an import: the engines layer sits above this one, and its
#: dependencies (Dask) are optional.
ENGINES: dict[str, str | None] = {"memory": None, "dask": "ferclean.engines.dask"}


def _engine_module(name: Any) -> Any:
    if not isinstance(name, str) or name not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(map(repr, ENGINES))}; "
                         f"got {name!r}")
    return importlib.import_module(ENGINES[name]) if ENGINES[name] else None


def _specs_to_auditors(auditors: AuditorSpec | Iterable[AuditorSpec]) -> list[Auditor]:
    if isinstance(auditors, (Auditor, str, Mapping)):
        auditors = [auditors]
    chosen: list[Auditor] = []
    for spec in auditors:
        if isinstance(spec, Auditor):
            chosen.append(clone(spec))
        elif isinstance(spec, str):
            chosen.append(get_auditor(spec))
        elif isinstance(spec, Mapping):
            chosen.extend(get_auditor(k, **dict(v or {})) for k, v in spec.items())
        else:
            raise TypeError(f"cannot make an auditor from {spec!r}")
    return chosen


def _check_names(names: Iterable[str] | None, what: str) -> set[str]:
    names = set(names or ())
    unknown = sorted(names - set(REGISTRY))
    if unknown:
        noun = "auditor" if len(unknown) == 1 else "auditors"
        raise ValueError(f"unknown {noun} {', '.join(map(repr, unknown))} in {what}; "
                         f"available: {', '.join(REGISTRY)}")
    return names


def resolve_auditors(
    auditors: AuditorSpec | Iterable[AuditorSpec] | None = None,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Auditor], list[Auditor]]:
    """The settings for every issue type, and the auditors to run, in registry order.

    ``auditors`` chooses what runs (``None``: every registered auditor) and may carry
    parameters; ``params`` gives parameters by issue name whether or not that auditor is
    reported; ``only``/``skip`` then filter what runs. The settings (one auditor per
    registered issue) keep every parameter given, so dependencies use them.

    Examples
    --------
    >>> settings, chosen = resolve_auditors(
    ...     only=["label_conflict"], params={"near_duplicate": {"similarity": 0.99}})
    >>> [a.issue_name for a in chosen], settings["near_duplicate"].similarity
    (['label_conflict'], 0.99)
    """
    params = dict(params or {})
    _check_names(params, "params")
    only_names, skip_names = _check_names(only, "only="), _check_names(skip, "skip=")
    given = _specs_to_auditors(auditors) if auditors is not None else []
    settings: dict[str, Auditor] = {}
    for name, cls in REGISTRY.items():
        mine = [a for a in given if a.issue_name == name]
        settings[name] = mine[-1] if mine else cls()
        if name in params:
            settings[name] = clone(settings[name]).set_params(**dict(params[name]))
    if auditors is None:
        chosen = list(settings.values())
    else:
        names = {a.issue_name for a in given}
        chosen = [settings[name] for name in REGISTRY if name in names]
    if only_names:
        chosen = [a for a in chosen if a.issue_name in only_names]
    chosen = [a for a in chosen if a.issue_name not in skip_names]
    return settings, chosen


class Audit:
    """A set of auditors run together over one dataset.

    Parameters
    ----------
    auditors : list of Auditor, str or {name: params}, default=None
        Which auditors to run; ``None`` runs every registered one.
    only, skip : list of str, default=None
        Issue names to keep or drop (as ``--only``/``--skip`` on the CLI).
    params : {name: params}, default=None
        Parameters by issue name, used whether that auditor is reported or only needed
        by another (``{"near_duplicate": {"similarity": 0.99}}`` changes the near groups
        that label conflicts and leaks examine, too).
    engine : {"memory", "dask"}, default="memory"
        ``"memory"`` audits a FaceDataset in this process; ``"dask"`` audits Parquet
        data (a ``.parquet`` file or a folder of shards) on a Dask cluster, partition by
        partition, with the same findings (:mod:`ferclean.engines.dask`; needs
        ``pip install 'ferclean[dask]'``).
    client : distributed.Client or str, default=None
        ``engine="dask"`` only: the cluster to use, a scheduler address, or ``"local"``;
        ``None`` uses the current Dask client, or starts a local cluster for the audit.
    outlier_sample : int, default=None
        ``engine="dask"`` only: images the outliers' face model is fitted on (a seeded
        sample; ``None``: 20,000). With at least as many as the dataset holds, the
        outlier findings equal the in-memory ones; with fewer, they are those of a model
        fitted on the sample.
    partition_size : int, default=None
        ``engine="dask"`` only: images per partition at most (``None``: one partition
        per Parquet row group); memory per worker follows it, the findings do not.

    Attributes
    ----------
    settings_ : dict of str to Auditor
        The settings of every issue type.
    auditors_ : list of Auditor
        The fitted auditors whose findings were reported. With ``engine="dask"`` their
        per-image attributes cover the images of the context's metadata only.
    context_ : AuditContext
        The shared intermediate results (hashes, duplicate groups, dependencies); with
        ``engine="dask"`` a :class:`~ferclean.auditors.context.SuppliedContext`.
    result_ : AuditResult

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> result = Audit(["exact_duplicate", {"class_imbalance": {"threshold": 0.3}}]).run(
    ...     demo_dataset(n_faces=300))
    >>> sorted(result.summary["issues"])
    ['class_imbalance', 'exact_duplicate']
    """

    def __init__(
        self,
        auditors: AuditorSpec | Iterable[AuditorSpec] | None = None,
        *,
        only: Iterable[str] | None = None,
        skip: Iterable[str] | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
        engine: str = "memory",
        client: Any = None,
        outlier_sample: int | None = None,
        partition_size: int | None = None,
    ) -> None:
        self.auditors = auditors
        self.only = only
        self.skip = skip
        self.params = params
        self.engine = engine
        self.client = client
        self.outlier_sample = outlier_sample
        self.partition_size = partition_size

    def run(self, dataset: Any, *, progress: bool = False) -> AuditResult:
        """Audit ``dataset``; returns an :class:`~ferclean.findings.AuditResult`.

        ``dataset`` is a FaceDataset (``engine="memory"``) or the path of Parquet data
        (``engine="dask"``). ``progress=True`` shows a bar on stderr, one step per
        auditor (and per Dask stage).
        """
        engine = _engine_module(self.engine)
        self.settings_, self.auditors_ = resolve_auditors(
            self.auditors, only=self.only, skip=self.skip, params=self.params)
        if engine is None:
            check_dataset(dataset)
            given = [name for name in ("client", "outlier_sample", "partition_size")
                     if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: options of engine='dask' (the "
                                 f"in-memory engine has no cluster or partitions, and fits "
                                 f"the outliers' model on every image)")
            self.context_ = AuditContext(dataset, self.settings_)
        else:
            self.context_ = engine.audit_context(
                dataset, self.settings_, self.auditors_, client=self.client,
                outlier_sample=self.outlier_sample, partition_size=self.partition_size,
                progress=progress)
        tables, issues = [], {}
        # ticking: one auditor (near duplicates on FER-2013) can take ten seconds
        with Progress(len(self.auditors_), "audit", enabled=progress, tick=0.5) as bar:
            for auditor in self.auditors_:
                bar.set_description(f"audit {auditor.issue_name}")
                found = self.context_.run(auditor)
                tables.append(found)
                issues[auditor.issue_name] = auditor.summarize(found)
                bar.update()
            bar.set_description("audit")
        findings = concat_findings(tables, order=list(REGISTRY))
        summary = {
            **self.context_.dataset_summary(),
            "source": self.context_.source,
            "issues": issues,
            "settings": self._settings_used(),
            **self.context_.engine_summary(),
        }
        self.result_ = AuditResult(findings, summary, self.auditors_)
        return self.result_

    def _settings_used(self) -> dict[str, dict[str, Any]]:
        """Parameters of the reported auditors and of every auditor they required."""
        used: dict[str, dict[str, Any]] = {}
        todo = [a.issue_name for a in self.auditors_]
        while todo:
            name = todo.pop()
            if name not in used:
                used[name] = {k: plain_param(v) for k, v in
                              self.settings_[name].get_params(deep=False).items()}
                todo.extend(self.settings_[name].requires())
        return {name: used[name] for name in REGISTRY if name in used}


def audit(
    dataset: FaceDataset | str | os.PathLike,
    auditors: AuditorSpec | Iterable[AuditorSpec] | None = None,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
    engine: str = "memory",
    client: Any = None,
    outlier_sample: int | None = None,
    partition_size: int | None = None,
) -> AuditResult:
    """Run auditors over ``dataset`` (all registered ones by default).

    Parameters are those of :class:`Audit`; ``progress=True`` shows a bar on stderr.
    With ``engine="dask"``, ``dataset`` is the path of Parquet data (a ``.parquet`` file
    or a folder of shards) and the audit runs on Dask with the same findings (see
    :mod:`ferclean.engines.dask`: ``ferclean.audit("shards/", engine="dask")``).

    Returns
    -------
    AuditResult
        ``findings`` (DataFrame with ``row``, ``image_id``, ``split``, ``label``,
        ``issue``, ``group``, ``kind``, ``related_row``, ``score``, ``detail``),
        ``summary`` (dict, as in ``summary.json``) and the fitted ``auditors``;
        ``result.save(out)`` writes ``findings.csv`` and ``summary.json``.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> result = audit(demo.dataset, only=["exact_duplicate", "cross_split_leak"])
    >>> result.summary["issues"]["exact_duplicate"]["groups"] == len(demo.truth.exact_groups())
    True
    """
    return Audit(auditors, only=only, skip=skip, params=params, engine=engine, client=client,
                 outlier_sample=outlier_sample, partition_size=partition_size).run(
        dataset, progress=progress)
