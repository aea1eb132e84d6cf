"""Run several auditors over one dataset, sharing their intermediate work.

``ferclean.audit(ds)`` runs every registered auditor; ``Audit`` is the configurable
object behind it. Both return plain tables: the findings (see :mod:`ferclean.findings`)
and the summary that ``summary.json`` holds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import clone

from ferclean._atomic import atomic_file, refuse_input_overwrite
from ferclean._json import to_plain
from ferclean._validation import check_dataset
from ferclean.auditors.base import REGISTRY, Auditor, get_auditor
from ferclean.auditors.context import AuditContext
from ferclean.dataset import FaceDataset
from ferclean.findings import ISSUE_TYPES, concat_findings, summarize, summary_table

AuditorSpec = Auditor | str | Mapping[str, Mapping[str, Any]]


@dataclass
class AuditResult:
    """What an audit returns: the findings table, the summary, the fitted auditors.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> result = audit(demo_dataset(n_faces=300), only=["exact_duplicate"])
    >>> list(result.table().columns)
    ['issue', 'groups', 'images', 'removable']
    >>> set(result.of("exact_duplicate")["issue"])
    {'exact_duplicate'}
    """

    findings: pd.DataFrame
    summary: dict[str, Any]
    auditors: list[Auditor] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """The short summary table: issue, groups, images, removable."""
        return summary_table(self.summary)

    def of(self, issue: str) -> pd.DataFrame:
        """The findings of one issue type."""
        return self.findings[self.findings["issue"] == issue].reset_index(drop=True)


def _resolve(
    auditors: AuditorSpec | Iterable[AuditorSpec] | None,
    only: Iterable[str] | None,
    skip: Iterable[str] | None,
) -> list[Auditor]:
    if auditors is None:
        chosen: list[Auditor] = [REGISTRY[name]() for name in ISSUE_TYPES if name in REGISTRY]
    else:
        if isinstance(auditors, (Auditor, str, Mapping)):
            auditors = [auditors]
        chosen = []
        for spec in auditors:
            if isinstance(spec, Auditor):
                chosen.append(clone(spec))
            elif isinstance(spec, str):
                chosen.append(get_auditor(spec))
            elif isinstance(spec, Mapping):
                chosen.extend(get_auditor(k, **dict(v or {})) for k, v in spec.items())
            else:
                raise TypeError(f"cannot make an auditor from {spec!r}")
    for names, what in ((only, "only"), (skip, "skip")):
        for name in names or ():
            if name not in REGISTRY:
                raise ValueError(
                    f"unknown auditor {name!r} in {what}=; available: {', '.join(REGISTRY)}"
                )
    if only:
        chosen = [a for a in chosen if a.issue_name in set(only)]
    if skip:
        chosen = [a for a in chosen if a.issue_name not in set(skip)]
    return chosen


class Audit:
    """A set of auditors run together over one dataset.

    Parameters
    ----------
    auditors : list of Auditor, str or {name: params}, default=None
        Which auditors to run; ``None`` runs every registered one with its defaults.
    only, skip : list of str, default=None
        Issue names to keep or drop (as ``--only``/``--skip`` on the CLI).

    Attributes
    ----------
    auditors_ : list of Auditor
        The fitted auditors.
    context_ : AuditContext
        The shared intermediate results (hashes, duplicate groups, ...).
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
    ) -> None:
        self.auditors = auditors
        self.only = only
        self.skip = skip

    def run(self, dataset: FaceDataset) -> AuditResult:
        """Audit ``dataset``; returns an :class:`AuditResult`."""
        check_dataset(dataset)
        self.auditors_ = _resolve(self.auditors, self.only, self.skip)
        self.context_ = AuditContext(dataset)
        tables, extra = [], {}
        for auditor in self.auditors_:
            tables.append(auditor.audit(dataset, self.context_))
            extra[auditor.issue_name] = auditor.summary_extra()
        findings = concat_findings(tables)
        self.result_ = AuditResult(findings, summarize(findings, dataset, extra),
                                   self.auditors_)
        return self.result_


def audit(
    dataset: FaceDataset,
    auditors: AuditorSpec | Iterable[AuditorSpec] | None = None,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
) -> AuditResult:
    """Run auditors over ``dataset`` (all registered ones by default).

    Returns
    -------
    AuditResult
        ``findings`` (DataFrame with ``row``, ``image_id``, ``split``, ``label``,
        ``issue``, ``group``, ``score``, ``detail``), ``summary`` (dict, as in
        ``summary.json``) and the fitted ``auditors``.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> result = audit(demo.dataset, only=["exact_duplicate", "cross_split_leak"])
    >>> result.summary["issues"]["exact_duplicate"]["groups"] == len(demo.truth.exact_groups())
    True
    """
    return Audit(auditors, only=only, skip=skip).run(dataset)


def write_audit(result: AuditResult, out: str | os.PathLike) -> Path:
    """Write ``findings.csv`` and ``summary.json`` into folder ``out``, each atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> out = write_audit(audit(demo_dataset(n_faces=300)), pathlib.Path(tempfile.mkdtemp()))
    >>> sorted(p.name for p in out.iterdir())
    ['findings.csv', 'summary.json']
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_file(out / "findings.csv") as tmp:
        result.findings.to_csv(tmp, index=False)
    with atomic_file(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(result.summary, indent=2, default=to_plain) + "\n")
    return out


def audit_and_write(
    dataset: FaceDataset,
    out: str | os.PathLike,
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    inputs: Iterable[str | os.PathLike | None] = (),
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], str, AuditResult]:
    """What ``ferclean audit`` does: audit, write; return the summary, its table, the result.

    ``inputs`` are refused as output locations so an audit never writes over its data;
    ``params`` gives auditors non-default parameters by issue name.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "audit"
    >>> summary, table, result = audit_and_write(demo_dataset(n_faces=300), out,
    ...                                          only=["exact_duplicate"])
    >>> sorted(p.name for p in out.iterdir()), "exact_duplicate" in table
    (['findings.csv', 'summary.json'], True)
    """
    refuse_input_overwrite(out, *inputs)
    specs = None
    if params:
        specs = [{name: dict(params.get(name, {}))} for name in ISSUE_TYPES if name in REGISTRY]
    result = audit(dataset, specs, only=only, skip=skip)
    write_audit(result, out)
    summary = json.loads(json.dumps(result.summary, default=to_plain))
    return summary, result.table().to_string(index=False), result
