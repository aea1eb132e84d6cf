"""Applying a cleaning plan to an audit's findings: what goes, the cleaned data, the manifest.

:func:`clean` takes findings (an audit's result, in memory or read back with
:func:`~ferclean.findings.read_findings`), so cleaning never audits again behind the
user's back; :func:`audit_and_clean` is the convenience that audits first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._validation import check_dataset
from ferclean.cleaning.manifest import _REMOVED_COLUMNS, Manifest, _ranges, pixel_sha256
from ferclean.cleaning.plan import CleaningPlan
from ferclean.dataset import FaceDataset
from ferclean.findings import AuditResult, empty_findings, validate_findings

__all__ = ["CleanResult", "audit_and_clean", "clean", "select_removals"]


def select_removals(dataset: FaceDataset, plan: CleaningPlan,
                    findings: pd.DataFrame) -> pd.DataFrame:
    """Which images a plan removes, and why: one row per (image, rule) that removes it.

    Returns
    -------
    DataFrame
        ``position`` (index into ``dataset``), ``issue``, ``group``, ``reason``.

    Examples
    --------
    >>> from ferclean.auditors import audit
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> found = audit(ds, only=["exact_duplicate"]).findings
    >>> removed = select_removals(ds, CleaningPlan.preset("dedup"), found)
    >>> len(removed) == len(found) - found.group.nunique()
    True
    """
    position_of = _position_lookup(dataset)
    parts = []
    for rule in plan.rules:
        selected = findings["issue"] == rule.issue
        if rule.kinds is not None:
            selected &= findings["kind"].isin(rule.kinds)
        flagged = findings[selected]
        if flagged.empty:
            continue
        flagged = flagged.assign(position=position_of(flagged["row"].to_numpy()))
        if rule.action == "keep_one":
            priority = np.zeros(len(flagged), np.int64)
            is_test = flagged["split"].ne("Training").to_numpy()
            if rule.keep == "prefer_test":
                priority = np.where(is_test, 0, 1)
            elif rule.keep == "prefer_training":
                priority = np.where(is_test, 1, 0)
            ordered = flagged.assign(_p=priority).sort_values(["group", "_p", "row"])
            chosen = ordered[ordered.duplicated("group", keep="first")]
        elif rule.action == "drop_above":
            chosen = flagged[flagged["score"] >= float(rule.threshold)]
        else:
            chosen = flagged
        if rule.splits is not None:
            chosen = chosen[chosen["split"].isin(rule.splits)]
        parts.append(pd.DataFrame({
            "position": chosen["position"].to_numpy(np.int64),
            "issue": rule.issue,
            "group": chosen["group"].to_numpy(np.int64),
            "reason": rule.describe(),
        }))
    if not parts:
        return pd.DataFrame({"position": pd.Series(dtype="int64"), "issue": pd.Series(
            dtype=object), "group": pd.Series(dtype="int64"), "reason": pd.Series(dtype=object)})
    return pd.concat(parts, ignore_index=True).drop_duplicates(["position", "issue"])


def _position_lookup(dataset: FaceDataset):
    index = pd.Index(dataset.rows)
    if not index.is_unique:
        raise ValueError("dataset rows are not unique (a resampled dataset?); clean the "
                         "dataset as loaded, before resampling")

    def lookup(rows: np.ndarray) -> np.ndarray:
        pos = index.get_indexer(rows)
        if np.any(pos < 0):
            raise ValueError("findings name rows that are not in this dataset; audit this "
                             "dataset, not another")
        return pos

    return lookup


def _check_findings(dataset: FaceDataset, plan: CleaningPlan,
                    findings: AuditResult | pd.DataFrame) -> pd.DataFrame:
    """The findings table, checked against the dataset and against what the plan needs."""
    if isinstance(findings, AuditResult):
        missing = [i for i in plan.issues if i not in findings.issues]
        if missing:
            raise ValueError(
                f"plan {plan.name!r} acts on {', '.join(missing)}, which the findings did not "
                f"examine (audited: {', '.join(findings.issues) or 'nothing'}); audit with "
                f"those auditors")
        _check_settings(plan, findings.summary.get("settings"))
        table = findings.findings
    elif isinstance(findings, pd.DataFrame):
        table = findings
    else:
        raise TypeError(f"findings must be an AuditResult or a findings DataFrame; got "
                        f"{type(findings).__name__}")
    table = validate_findings(table)
    if len(table):
        pos = _position_lookup(dataset)(table["row"].to_numpy())
        wrong = dataset.ids[pos].astype(str) != table["image_id"].to_numpy(str)
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise ValueError(
                f"findings do not belong to this dataset: row {table['row'].iloc[first]} is "
                f"{table['image_id'].iloc[first]!r} in the findings but "
                f"{dataset.ids[pos[first]]!r} here; audit this dataset")
    return table


def _check_settings(plan: CleaningPlan, settings: Mapping[str, Any] | None) -> None:
    """Refuse findings audited with other settings than the plan's promise depends on."""
    if settings is None:  # a version-1 findings file: its settings were not recorded
        return
    wrong = [f"{issue}.{key}={value!r} (the audit used "
             f"{settings.get(issue, {}).get(key, 'no such audit')!r})"
             for issue, params in plan.requires.items() for key, value in params.items()
             if settings.get(issue, {}).get(key) != value]
    if wrong:
        raise ValueError(f"plan {plan.name!r} needs findings audited with "
                         f"{'; '.join(wrong)}: audit with those settings (or use "
                         f"audit_and_clean / ferclean clean without --findings)")


@dataclass
class CleanResult:
    """What :func:`clean` returns: the cleaned data, the manifest, the removed images.

    Unpacks as ``cleaned, manifest = clean(...)``. :meth:`save` writes the clean output
    folder (cleaned data, ``removed.npz``, ``manifest.json``) that
    :func:`~ferclean.cleaning.restore_from` reads back.

    Examples
    --------
    >>> from ferclean.auditors import audit
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> result = clean(ds, "dedup", audit(ds, only=["exact_duplicate"]))
    >>> cleaned, manifest = result
    >>> len(cleaned) + len(result.removed) == len(ds)
    True
    """

    cleaned: FaceDataset
    manifest: Manifest
    removed: FaceDataset
    original: FaceDataset

    def __iter__(self) -> Iterator[Any]:
        return iter((self.cleaned, self.manifest))

    def save(self, out: str | os.PathLike, *, format: str | None = None,
             overwrite: bool = False) -> Path:
        """Write the clean output folder ``out`` (see :func:`~ferclean.cleaning.save_clean`)."""
        from ferclean.cleaning.outputs import save_clean

        return save_clean(self, out, format=format, overwrite=overwrite)


def clean(
    dataset: FaceDataset,
    plan: CleaningPlan | str | os.PathLike,
    findings: AuditResult | pd.DataFrame,
) -> CleanResult:
    """Apply a cleaning plan to ``dataset``'s findings.

    Parameters
    ----------
    dataset : FaceDataset
        The data as loaded (not resampled), the same the findings were made from.
    plan : CleaningPlan, preset name or plan file
    findings : AuditResult or DataFrame
        An audit of ``dataset`` (in memory, or read back with
        :func:`~ferclean.findings.read_findings`). With an ``AuditResult``, every issue
        the plan acts on must have been audited.

    Returns
    -------
    CleanResult
        ``cleaned`` (the kept images, in their original order), ``manifest`` and
        ``removed``; unpacks as ``cleaned, manifest``.

    Examples
    --------
    >>> from ferclean.auditors import audit
    >>> from ferclean.cleaning import restore
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> cleaned, manifest = clean(demo.dataset, "no-conflicts", audit(demo.dataset))
    >>> set(manifest.removed.row) == set().union(*demo.truth.conflict_groups())
    True
    >>> restore(cleaned, manifest, demo.dataset[manifest.removed.position.to_numpy()]).equals(
    ...     demo.dataset)
    True
    """
    check_dataset(dataset)
    if dataset.resampled or dataset.synthetic.any():
        raise ValueError("clean the dataset as loaded: this one was resampled or holds "
                         "synthetic images")
    plan = CleaningPlan.resolve(plan)
    found = _check_findings(dataset, plan, findings)
    removals = select_removals(dataset, plan, found)
    keep = np.ones(len(dataset), bool)
    keep[removals["position"].to_numpy()] = False
    cleaned = dataset.subset(keep)

    by_pos = removals.sort_values(["position", "issue"]).groupby("position", sort=True)
    positions = np.asarray(list(by_pos.groups), dtype=np.int64)
    removed = dataset.subset(positions) if len(positions) else dataset.subset(slice(0, 0))
    table = pd.DataFrame({
        "position": positions,
        "row": removed.rows,
        "image_id": removed.ids.astype(object),
        "split": removed.split_names,
        "label": removed.labels.astype(np.int64),
        "issues": by_pos["issue"].agg(";".join).to_numpy(object) if len(positions) else [],
        "groups": by_pos.apply(lambda p: ";".join(
            f"{i}:{g}" for i, g in zip(p.issue, p.group, strict=True) if g >= 0),
            include_groups=False).to_numpy(object) if len(positions) else [],
        "pixel_sha256": pixel_sha256(removed.pixels),
        "reason": by_pos["reason"].agg(" | ".join).to_numpy(object) if len(positions) else [],
    }, columns=_REMOVED_COLUMNS)
    from ferclean._version import __version__

    info = {
        "plan": plan.to_dict(),
        "source": dataset.source,
        "ferclean_version": __version__,
        "n_before": len(dataset),
        "n_after": len(cleaned),
        "checksum_before": dataset.checksum(),
        "checksum_after": cleaned.checksum(),
        "ids_are_rows": bool(np.array_equal(dataset.ids, dataset.rows.astype(str))),
        "kept_rows": _ranges(cleaned.rows),
        "kept_ids": None if np.array_equal(dataset.ids, dataset.rows.astype(str))
        else cleaned.ids.tolist(),
        "counts_before": dataset.counts().to_dict(orient="index"),
        "counts_after": cleaned.counts().to_dict(orient="index"),
    }
    return CleanResult(cleaned, Manifest(table, info), removed, dataset)


def audit_and_clean(
    dataset: FaceDataset,
    plan: CleaningPlan | str | os.PathLike,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> CleanResult:
    """Audit ``dataset`` with the auditors ``plan`` needs, then clean.

    The audit uses the settings the plan ``requires`` and those in ``params`` (by issue
    name; a setting that contradicts the plan's makes :func:`clean` refuse).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> strict = audit_and_clean(ds, "strict")
    >>> loose = audit_and_clean(ds, "strict", params={"near_duplicate": {"similarity": 0.999}})
    >>> len(strict.manifest.removed) >= len(loose.manifest.removed)
    True
    """
    from ferclean.auditors import audit

    plan = CleaningPlan.resolve(plan)
    if plan.issues:
        params = {name: {**plan.requires.get(name, {}), **dict((params or {}).get(name, {}))}
                  for name in {*plan.requires, *(params or {})}}
        result = audit(dataset, only=plan.issues, params=params)
    else:  # nothing to remove: no audit needed
        result = AuditResult(empty_findings(), {"issues": {}})
    return clean(dataset, plan, result)
