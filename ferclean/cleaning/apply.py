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
from ferclean.cleaning.manifest import (
    _RELABELED_COLUMNS,
    _REMOVED_COLUMNS,
    Manifest,
    _ranges,
    pixel_sha256,
)
from ferclean.cleaning.plan import CleaningPlan, Rule
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, FaceDataset
from ferclean.findings import AuditResult, empty_findings, validate_findings

__all__ = ["RELABEL_OUTCOMES", "CleanResult", "CleaningSelection", "audit_and_clean", "clean",
           "manifest_info", "metadata_only", "select_cleaning", "select_relabels",
           "select_removals"]

#: What became of an image a relabel rule considered (``select_relabels``' ``outcome``):
#: relabeled; kept its label because no finding suggested one, or because the suggestion
#: is its label already; or removed by a removal rule, which wins over relabeling.
RELABEL_OUTCOMES: tuple[str, ...] = ("relabeled", "no_suggestion", "same_label", "removed")
#: Which of one rule's findings decides an image's label, strongest evidence first: the
#: FER+ annotators' majority, the copies' vote, the model (then the higher score).
_SIGNAL_PRIORITY = {"ferplus": 0, "copies": 1, "model": 2, "": 3}


def select_removals(dataset: FaceDataset, plan: CleaningPlan,
                    findings: pd.DataFrame) -> pd.DataFrame:
    """Which images a plan removes, and why: one row per (image, rule) that removes it.

    Only the removing rules count (``relabel`` rules keep their images: see
    :func:`select_relabels`).

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
    for rule in plan.removal_rules:
        flagged = _flagged(rule, findings)
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


def _flagged(rule: Rule, findings: pd.DataFrame) -> pd.DataFrame:
    """The findings a rule acts on: its issue, narrowed by ``kinds`` and ``signals``."""
    selected = findings["issue"] == rule.issue
    if rule.kinds is not None:
        selected &= findings["kind"].isin(rule.kinds)
    if rule.signals is not None:
        selected &= findings["signal"].isin(rule.signals)
    return findings[selected]


def select_relabels(dataset: FaceDataset, plan: CleaningPlan,
                    findings: pd.DataFrame) -> pd.DataFrame:
    """What a plan's ``relabel`` rules do: one row per image they consider.

    A relabel rule considers the findings of its issue (narrowed by ``kinds``,
    ``signals`` and ``threshold``) on images of its splits (``Training`` unless it names
    others). An image's new label is decided by

    1. removal first: an image any removing rule of the plan removes is not relabeled
       (outcome ``removed``; the manifest keeps its label with the removed images);
    2. then the first relabel rule in the plan that suggests a label for it (findings
       with ``suggested_label == -1`` suggest nothing);
    3. within that rule, the finding with the strongest signal (``ferplus``, then
       ``copies``, then ``model``), then the highest score, then the lowest group and
       suggested label, so the choice never depends on the findings' order.

    Images whose findings suggest nothing keep their label (``no_suggestion``), as do
    those whose suggestion is their label already (``same_label``).

    Returns
    -------
    DataFrame
        ``position`` (index into ``dataset``), ``row``, ``image_id``, ``split``,
        ``old_label``, ``new_label`` (``-1`` without a suggestion), ``issue``, ``signal``
        and ``score`` of the deciding finding, ``outcome`` (one of
        :data:`RELABEL_OUTCOMES`), ``disputed`` (the considered findings suggested more
        than one label) and ``reason``; sorted by position.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.findings import make_findings
    >>> ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0, 0, 3],
    ...                  splits=["Training", "Training", "PublicTest"])
    >>> found = make_findings(ds, [0, 1, 2], "label_conflict", group=0, kind="exact",
    ...                       suggested=[3, -1, 0], signal="copies")
    >>> plan = CleaningPlan("fix", (Rule("label_conflict", "relabel"),))
    >>> select_relabels(ds, plan, found)[["row", "new_label", "outcome"]].values.tolist()
    [[0, 3, 'relabeled'], [1, -1, 'no_suggestion']]
    """
    position_of = _position_lookup(dataset)
    removed = select_removals(dataset, plan, findings)["position"].to_numpy(np.int64)
    return _relabels(dataset, plan, findings, position_of, removed)


def _relabels(dataset: FaceDataset, plan: CleaningPlan, findings: pd.DataFrame,
              position_of, removed: np.ndarray) -> pd.DataFrame:
    rules = plan.relabel_rules
    parts = []
    for order, rule in enumerate(rules):
        flagged = _flagged(rule, findings)
        flagged = flagged[flagged["split"].isin(rule.scope)]
        if rule.threshold is not None:
            flagged = flagged[flagged["score"] >= float(rule.threshold)]
        if len(flagged):
            parts.append(flagged.assign(_rule=order))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _RELABEL_DTYPES.items()})
    found = pd.concat(parts, ignore_index=True)
    suggested = found["suggested_label"].to_numpy(np.int64)
    bad = (suggested < -1) | (suggested >= len(EMOTIONS))
    if bad.any():
        first = found.iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(f"findings: row {first['row']} ({first['issue']}) suggests label "
                         f"{first['suggested_label']}; a suggested label is -1 (none) or "
                         f"0..{len(EMOTIONS) - 1}")
    found = found.assign(position=position_of(found["row"].to_numpy()), _none=suggested < 0,
                         _signal=found["signal"].map(_SIGNAL_PRIORITY).to_numpy(np.int64))
    decided = (found.sort_values(["position", "_none", "_rule", "_signal", "score", "group",
                                  "suggested_label"],
                                 ascending=[True, True, True, True, False, True, True],
                                 kind="stable")
               .drop_duplicates("position", keep="first"))
    position = decided["position"].to_numpy(np.int64)
    labels_suggested = found[~found["_none"]].groupby("position")["suggested_label"].nunique()
    old = dataset.labels[position].astype(np.int64)
    new = decided["suggested_label"].to_numpy(np.int64)
    outcome = np.select([np.isin(position, removed), new < 0, new == old],
                        ["removed", "no_suggestion", "same_label"], "relabeled")
    signal = decided["signal"].to_numpy(object)
    reason = [rules[r].describe() + (f" ({s} signal)" if s else "")
              for r, s in zip(decided["_rule"].tolist(), signal, strict=True)]
    return pd.DataFrame({
        "position": position,
        "row": dataset.rows[position],
        "image_id": dataset.ids[position].astype(object),
        "split": dataset.split_names[position],
        "old_label": old,
        "new_label": new,
        "issue": decided["issue"].to_numpy(object),
        "signal": signal,
        "score": decided["score"].to_numpy(np.float64),
        "outcome": outcome.astype(object),
        "disputed": decided["position"].map(labels_suggested).fillna(0).to_numpy() > 1,
        "reason": np.asarray(reason, dtype=object),
    }).astype(_RELABEL_DTYPES).reset_index(drop=True)


_RELABEL_DTYPES = {"position": "int64", "row": "int64", "image_id": object, "split": object,
                   "old_label": "int64", "new_label": "int64", "issue": object,
                   "signal": object, "score": "float64", "outcome": object, "disputed": bool,
                   "reason": object}


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
    :func:`~ferclean.cleaning.restore_from` reads back. ``cleaned`` carries the new
    labels of the relabeled images, which :attr:`relabeled` lists.

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

    @property
    def relabeled(self) -> pd.DataFrame:
        """The relabeled images, one row each (the manifest's table): ``position``,
        ``row``, ``image_id``, ``split``, ``old_label``, ``new_label``, ``issue``,
        ``signal``, ``score``, ``reason``."""
        return self.manifest.relabeled

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
        ``cleaned`` (the kept images, in their original order, with the new labels of
        those the plan relabels), ``manifest``, ``removed`` and ``relabeled``; unpacks
        as ``cleaned, manifest``.

    Notes
    -----
    An image that one rule removes and another relabels is removed (with its original
    label); of two relabel rules suggesting different labels the first in the plan wins
    (see :func:`select_relabels`).

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
    selection = select_cleaning(dataset, plan, findings)
    cleaned = _relabeled(dataset, selection.relabeled).subset(selection.keep)
    positions = selection.removed["position"].to_numpy(np.int64)
    removed = dataset.subset(positions) if len(positions) else dataset.subset(slice(0, 0))
    table = selection.removed.assign(pixel_sha256=pixel_sha256(removed.pixels))
    info = manifest_info(dataset, selection, checksum_before=dataset.checksum(),
                         checksum_after=cleaned.checksum())
    return CleanResult(cleaned, Manifest(table, info, selection.relabeled), removed, dataset)


@dataclass
class CleaningSelection:
    """What a plan does to a dataset, decided from its findings and metadata alone.

    Every engine cleans with this one decision (:func:`select_cleaning`): the in-memory
    :func:`clean` and the Dask engine, which applies it shard by shard.

    Attributes
    ----------
    plan : CleaningPlan
        The plan, resolved and validated.
    keep : ndarray of bool, shape (n_images,)
        Which images stay, by position.
    labels : ndarray of int8, shape (n_images,)
        Every image's label after relabeling (the removed keep their own).
    removed : DataFrame
        The manifest's removed table (see :class:`~ferclean.cleaning.Manifest`), in
        position order, with ``pixel_sha256`` still empty (``""``): the engine that holds
        the pixels fills it.
    relabeled : DataFrame
        The manifest's relabeled table.
    relabel_counts : dict
        What became of the images relabel rules considered (the manifest's
        ``relabel_counts``).

    Examples
    --------
    >>> from ferclean.auditors import audit
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> chosen = select_cleaning(ds, "dedup", audit(ds, only=["exact_duplicate"]))
    >>> int((~chosen.keep).sum()) == len(chosen.removed)
    True
    """

    plan: CleaningPlan
    keep: np.ndarray
    labels: np.ndarray
    removed: pd.DataFrame
    relabeled: pd.DataFrame
    relabel_counts: dict[str, int]


def select_cleaning(
    dataset: FaceDataset,
    plan: CleaningPlan | str | os.PathLike,
    findings: AuditResult | pd.DataFrame,
) -> CleaningSelection:
    """Decide what ``plan`` removes and relabels, from the findings and the metadata only.

    Reads the dataset's ``rows``, ``ids``, ``labels``, ``splits`` and ``synthetic`` flags,
    never its pixels: an engine whose pixels live elsewhere passes
    :func:`metadata_only` of its metadata. The checks are :func:`clean`'s (findings of
    this dataset, audited as the plan requires; no resampled data).

    Examples
    --------
    >>> from ferclean.auditors import audit
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> found = audit(ds, only=["exact_duplicate"])
    >>> meta = metadata_only(ds.labels, ds.splits, ds.ids, ds.rows, source=ds.source)
    >>> select_cleaning(meta, "dedup", found).removed.equals(
    ...     select_cleaning(ds, "dedup", found).removed)
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
    considered = _relabels(dataset, plan, found, _position_lookup(dataset),
                           removals["position"].to_numpy(np.int64))
    relabels = considered[considered["outcome"] == "relabeled"]
    labels = dataset.labels.copy()
    labels[relabels["position"].to_numpy(np.int64)] = relabels["new_label"].to_numpy()

    by_pos = removals.sort_values(["position", "issue"]).groupby("position", sort=True)
    positions = np.asarray(list(by_pos.groups), dtype=np.int64)
    table = pd.DataFrame({
        "position": positions,
        "row": dataset.rows[positions],
        "image_id": dataset.ids[positions].astype(object),
        "split": dataset.split_names[positions],
        "label": dataset.labels[positions].astype(np.int64),
        "issues": by_pos["issue"].agg(";".join).to_numpy(object) if len(positions) else [],
        "groups": by_pos.apply(lambda p: ";".join(
            f"{i}:{g}" for i, g in zip(p.issue, p.group, strict=True) if g >= 0),
            include_groups=False).to_numpy(object) if len(positions) else [],
        "pixel_sha256": np.full(len(positions), "", dtype=object),
        "reason": by_pos["reason"].agg(" | ".join).to_numpy(object) if len(positions) else [],
    }, columns=_REMOVED_COLUMNS)
    relabeled = relabels.loc[:, _RELABELED_COLUMNS].reset_index(drop=True)
    counts = {**{outcome: int((considered["outcome"] == outcome).sum())
                 for outcome in RELABEL_OUTCOMES},
              "disputed": int(considered["disputed"].sum())}
    return CleaningSelection(plan, keep, labels, table, relabeled, counts)


def metadata_only(labels: Any, splits: Any, ids: Any, rows: Any, *,
                  source: str | None = None, synthetic: Any = None) -> FaceDataset:
    """A :class:`FaceDataset` of metadata whose pixels are a placeholder costing no memory.

    For :func:`select_cleaning` and :func:`manifest_info` where the pixels live elsewhere
    (Parquet shards on Dask workers). Its ``pixels`` are one read-only black image
    repeated, so never save, hash or index its pixels.

    Examples
    --------
    >>> meta = metadata_only([3, 0], [0, 2], ["a", "b"], [0, 1])
    >>> int(meta.counts().loc["PrivateTest", "angry"]), meta.pixels.strides[0]
    (1, 0)
    """
    n = len(np.asarray(rows))
    pixels = np.broadcast_to(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
                             (n, IMAGE_SIZE, IMAGE_SIZE))
    return FaceDataset(pixels, labels=labels, splits=splits, ids=ids, rows=rows,
                       source=source, synthetic=synthetic)


def manifest_info(dataset: FaceDataset, selection: CleaningSelection, *,
                  checksum_before: str, checksum_after: str) -> dict[str, Any]:
    """The manifest's ``info`` for ``selection`` of ``dataset`` (metadata is enough).

    The checksums (:meth:`FaceDataset.checksum` of the data before and after cleaning)
    are the caller's, who holds the pixels.

    Examples
    --------
    >>> from ferclean.auditors import audit
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> chosen = select_cleaning(ds, "dedup", audit(ds, only=["exact_duplicate"]))
    >>> info = manifest_info(ds, chosen, checksum_before="b", checksum_after="a")
    >>> info["n_before"] - info["n_after"] == len(chosen.removed)
    True
    """
    keep = selection.keep
    kept = metadata_only(selection.labels[keep], dataset.splits[keep], dataset.ids[keep],
                         dataset.rows[keep])
    ids_are_rows = bool(np.array_equal(dataset.ids, dataset.rows.astype(str)))
    from ferclean._version import __version__

    return {
        "plan": selection.plan.to_dict(),
        "source": dataset.source,
        "ferclean_version": __version__,
        "n_before": len(dataset),
        "n_after": len(kept),
        "checksum_before": checksum_before,
        "checksum_after": checksum_after,
        "ids_are_rows": ids_are_rows,
        "kept_rows": _ranges(kept.rows),
        "kept_ids": None if ids_are_rows else kept.ids.tolist(),
        "counts_before": dataset.counts().to_dict(orient="index"),
        "counts_after": kept.counts().to_dict(orient="index"),
        # what became of the images relabel rules considered (relabeled ones are listed)
        "relabel_counts": dict(selection.relabel_counts),
    }


def _relabeled(dataset: FaceDataset, relabels: pd.DataFrame) -> FaceDataset:
    """``dataset`` with the new labels of ``relabels`` (itself when there are none)."""
    if relabels.empty:
        return dataset
    labels = dataset.labels.copy()
    labels[relabels["position"].to_numpy(np.int64)] = relabels["new_label"].to_numpy()
    return FaceDataset(dataset.pixels, labels=labels, splits=dataset.splits, ids=dataset.ids,
                       rows=dataset.rows, source=dataset.source, dropped=dataset.dropped,
                       synthetic=dataset.synthetic, resampled=dataset.resampled)


def audit_and_clean(
    dataset: FaceDataset,
    plan: CleaningPlan | str | os.PathLike,
    *,
    params: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = False,
) -> CleanResult:
    """Audit ``dataset`` with the auditors ``plan`` needs, then clean.

    The audit uses the settings the plan ``requires`` and those in ``params`` (by issue
    name; a setting that contradicts the plan's makes :func:`clean` refuse).
    ``progress=True`` shows the audit's progress bar on stderr.

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
        result = audit(dataset, only=plan.issues, params=params, progress=progress)
    else:  # nothing to remove: no audit needed
        result = AuditResult(empty_findings(), {"issues": {}})
    return clean(dataset, plan, result)
