"""Cleaning plans, applying them, and the manifest that makes cleaning lossless.

A :class:`CleaningPlan` is data: a list of :class:`Rule` s, each saying what to do with the
images one issue type flags (drop them all, keep one per group, or drop those scoring
above a threshold), optionally only in some splits. Plans load and save as JSON (and YAML
when PyYAML is installed), so users can read and edit them. :func:`clean` applies a plan
and returns the cleaned dataset and a :class:`Manifest` listing every removed image with
its original position, id, split, label, issues, group, pixel hash and reason;
:func:`restore` puts the original back together, checked by the whole-dataset checksum.

Presets mirror the study's variations (``raw``, ``dedup``, ``no-conflicts``,
``no-outliers``, ``seed-final``) plus ferclean's ``strict``, which never touches the test
splits: it removes from Training the duplicates, conflicting copies, outliers and every
copy of a test image, so results on the official test splits stay comparable.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._json import to_plain
from ferclean._validation import check_dataset
from ferclean.dataset import IMAGE_SIZE, SPLITS, FaceDataset
from ferclean.findings import GROUPED_ISSUES, ISSUE_TYPES

ACTIONS: tuple[str, ...] = ("drop_all", "keep_one", "drop_above")
KEEP_RULES: tuple[str, ...] = ("first", "prefer_test", "prefer_training")
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Rule:
    """What to do with the images that one issue type flags.

    Parameters
    ----------
    issue : str
        An issue name (``exact_duplicate``, ``label_conflict``, ``outlier``, ...).
    action : {"drop_all", "keep_one", "drop_above"}
        ``drop_all`` removes every flagged image; ``keep_one`` keeps one image per group
        (grouped issues only) and removes the rest; ``drop_above`` removes images whose
        score is at least ``threshold``.
    keep : {"first", "prefer_test", "prefer_training"}, default="first"
        For ``keep_one``: which image a group keeps: the first in input order, or the
        first in a test split (PublicTest/PrivateTest), or in Training, if any.
    threshold : float, default=None
        For ``drop_above``.
    splits : tuple of str, default=None
        Remove images only from these splits (``None``: any split).

    Examples
    --------
    >>> Rule("outlier", "drop_above", threshold=0.9, splits=("Training",)).to_dict()
    {'issue': 'outlier', 'action': 'drop_above', 'threshold': 0.9, 'splits': ['Training']}
    """

    issue: str
    action: str
    keep: str = "first"
    threshold: float | None = None
    splits: tuple[str, ...] | None = None

    def validate(self) -> Rule:
        """Raise ``ValueError`` naming the bad field; return self."""
        if self.issue not in ISSUE_TYPES:
            raise ValueError(f"rule issue {self.issue!r} is not one of {', '.join(ISSUE_TYPES)}")
        if self.action not in ACTIONS:
            raise ValueError(f"rule action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.action == "keep_one" and self.issue not in GROUPED_ISSUES:
            raise ValueError(f"keep_one needs a grouped issue ({', '.join(GROUPED_ISSUES)}); "
                             f"got {self.issue!r}")
        if self.keep not in KEEP_RULES:
            raise ValueError(f"rule keep {self.keep!r} is not one of {', '.join(KEEP_RULES)}")
        if self.action == "drop_above" and self.threshold is None:
            raise ValueError("drop_above needs a threshold in [0, 1]")
        if self.threshold is not None and not 0 <= float(self.threshold) <= 1:
            raise ValueError(f"threshold must be in [0, 1]; got {self.threshold!r}")
        for split in self.splits or ():
            if split not in SPLITS:
                raise ValueError(f"rule split {split!r} is not one of {', '.join(SPLITS)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; defaults left out."""
        out: dict[str, Any] = {"issue": self.issue, "action": self.action}
        if self.action == "keep_one":
            out["keep"] = self.keep
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
        if self.splits is not None:
            out["splits"] = list(self.splits)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        """Build a rule from plain data, rejecting unknown keys."""
        known = {"issue", "action", "keep", "threshold", "splits"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown rule field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        splits = data.get("splits")
        return cls(
            issue=data["issue"], action=data["action"], keep=data.get("keep", "first"),
            threshold=data.get("threshold"),
            splits=tuple(splits) if splits is not None else None,
        ).validate()

    def describe(self) -> str:
        """One line saying what the rule does."""
        where = f" from {'/'.join(self.splits)}" if self.splits else ""
        if self.action == "drop_all":
            return f"{self.issue}: drop every flagged image{where}"
        if self.action == "keep_one":
            return f"{self.issue}: keep one per group ({self.keep}), drop the rest{where}"
        return f"{self.issue}: drop images scoring >= {self.threshold}{where}"


@dataclass(frozen=True)
class CleaningPlan:
    """A named list of rules, plus the auditor parameters its findings come from.

    Examples
    --------
    >>> plan = CleaningPlan.preset("seed-final")
    >>> [r.issue for r in plan.rules]
    ['label_conflict', 'outlier']
    >>> CleaningPlan.from_dict(plan.to_dict()) == plan
    True
    """

    name: str
    rules: tuple[Rule, ...] = ()
    description: str = ""
    auditors: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.rules:
            rule.validate()

    @property
    def issues(self) -> list[str]:
        """Issue types the plan needs findings for, in audit order."""
        wanted = {r.issue for r in self.rules}
        return [i for i in ISSUE_TYPES if i in wanted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "rules": [r.to_dict() for r in self.rules],
            "auditors": {k: dict(v) for k, v in sorted(self.auditors.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleaningPlan:
        known = {"name", "description", "rules", "auditors"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown plan field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(
            name=str(data.get("name", "custom")),
            rules=tuple(Rule.from_dict(r) for r in data.get("rules", [])),
            description=str(data.get("description", "")),
            auditors={k: dict(v) for k, v in (data.get("auditors") or {}).items()},
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan as JSON (or YAML for ``.yaml``/``.yml``), atomically."""
        from ferclean._atomic import atomic_file

        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = _yaml()
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        with atomic_file(path) as tmp:
            tmp.write_text(text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CleaningPlan:
        """Read a plan saved by :meth:`save` (JSON, or YAML with PyYAML installed)."""
        path = Path(path)
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                data = _yaml().safe_load(text)
            else:
                data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid plan file: {exc}") from exc
        try:
            return cls.from_dict(data)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def preset(cls, name: str) -> CleaningPlan:
        """One of :data:`PRESETS`."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
        return PRESETS[name]

    @classmethod
    def resolve(cls, plan: CleaningPlan | str | os.PathLike) -> CleaningPlan:
        """A plan object, a preset name, or a path to a plan file.

        Examples
        --------
        >>> CleaningPlan.resolve("dedup").name
        'dedup'
        """
        if isinstance(plan, CleaningPlan):
            return plan
        if isinstance(plan, str) and plan in PRESETS:
            return PRESETS[plan]
        if Path(plan).is_file():
            return cls.load(plan)
        raise ValueError(
            f"plan {plan!r} is neither a preset ({', '.join(PRESETS)}) nor a plan file"
        )

    def restricted_to(self, splits: Iterable[str]) -> CleaningPlan:
        """The same plan, removing images only from ``splits`` (e.g. Training only)."""
        splits = tuple(splits)
        rules = tuple(
            Rule(r.issue, r.action, r.keep, r.threshold,
                 tuple(s for s in (r.splits or SPLITS) if s in splits))
            for r in self.rules
        )
        return CleaningPlan(f"{self.name}[{'+'.join(splits)}]", rules, self.description,
                            dict(self.auditors))


def _yaml():
    try:
        import yaml
    except ImportError:  # pragma: no cover - optional
        raise ValueError("YAML plans need PyYAML (pip install pyyaml); use JSON") from None
    return yaml


_TRAIN = ("Training",)
PRESETS: dict[str, CleaningPlan] = {
    "raw": CleaningPlan("raw", (), "nothing removed (the study's variation A)"),
    "dedup": CleaningPlan(
        "dedup", (Rule("exact_duplicate", "keep_one"),),
        "keep the first image of every exact-duplicate group (variation B)"),
    "no-conflicts": CleaningPlan(
        "no-conflicts", (Rule("label_conflict", "drop_all"),),
        "drop every member of a duplicate group with conflicting labels (variation C)"),
    "no-outliers": CleaningPlan(
        "no-outliers", (Rule("outlier", "drop_all"),),
        "drop every image the outlier auditor flags (variation D)"),
    "seed-final": CleaningPlan(
        "seed-final", (Rule("label_conflict", "drop_all"), Rule("outlier", "drop_all")),
        "no-conflicts + no-outliers (variation C+D, the study's final dataset)"),
    "strict": CleaningPlan(
        "strict",
        (
            Rule("exact_duplicate", "keep_one", keep="prefer_test", splits=_TRAIN),
            Rule("label_conflict", "drop_all", splits=_TRAIN),
            Rule("outlier", "drop_all", splits=_TRAIN),
            Rule("cross_split_leak", "drop_all", splits=_TRAIN),
        ),
        "dedup + no-conflicts + no-outliers + no cross-split leaks, all removed from "
        "Training only: copies of test images leave Training; the test splits stay "
        "untouched so results remain comparable"),
}


# --------------------------------------------------------------------------- apply
def select_removals(dataset: FaceDataset, plan: CleaningPlan,
                    findings: pd.DataFrame) -> pd.DataFrame:
    """Which images a plan removes, and why: one row per (image, rule) that removes it.

    Returns
    -------
    DataFrame
        ``position`` (index into ``dataset``), ``issue``, ``group``, ``reason``.

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> found = ferclean.audit(ds, only=["exact_duplicate"]).findings
    >>> removed = select_removals(ds, CleaningPlan.preset("dedup"), found)
    >>> len(removed) == len(found) - found.group.nunique()
    True
    """
    position_of = _position_lookup(dataset)
    parts = []
    for rule in plan.rules:
        flagged = findings[findings["issue"] == rule.issue]
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


def pixel_sha256(pixels: np.ndarray) -> list[str]:
    """SHA-256 of each image's 2,304 bytes (a per-image loop: hashlib has no batch API).

    Examples
    --------
    >>> import numpy as np
    >>> pixel_sha256(np.zeros((1, 48, 48), np.uint8))[0][:12]
    'cfc335996cfa'
    """
    flat = np.ascontiguousarray(pixels).reshape(len(pixels), IMAGE_SIZE * IMAGE_SIZE)
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]


@dataclass
class Manifest:
    """Everything needed to say what cleaning removed, and to undo it.

    Attributes
    ----------
    removed : DataFrame
        One row per removed image, in original order: ``position`` (0-based index in the
        original dataset), ``row``, ``image_id``, ``split``, ``label``, ``issues``
        (``;``-joined), ``groups`` (``issue:group`` pairs), ``pixel_sha256``, ``reason``.
    info : dict
        ``n_before``, ``n_after``, ``checksum_before``, ``checksum_after``, ``plan``,
        ``source``, ``ferclean_version``, ``kept_rows`` (run-length ranges of the kept
        images' input rows) and the audit summary counts.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> _, manifest = clean(demo_dataset(n_faces=300), "dedup")
    >>> Manifest.from_dict(manifest.to_dict()).removed.equals(manifest.removed)
    True
    """

    removed: pd.DataFrame
    info: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format": "ferclean-manifest", "version": MANIFEST_VERSION, **self.info,
                "removed": self.removed.to_dict(orient="records")}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=to_plain) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != "ferclean-manifest":
            raise ValueError("not a ferclean manifest")
        info = {k: v for k, v in data.items() if k not in ("format", "version", "removed")}
        removed = pd.DataFrame(data["removed"], columns=_REMOVED_COLUMNS)
        return cls(removed.astype({"position": "int64", "row": "int64", "label": "int64"}),
                   info)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (ValueError, KeyError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    def summary(self) -> pd.DataFrame:
        """Removed images per reason and split."""
        if self.removed.empty:
            return pd.DataFrame(columns=["reason", "split", "images"])
        return (self.removed.groupby(["reason", "split"]).size()
                .rename("images").reset_index())


_REMOVED_COLUMNS = ["position", "row", "image_id", "split", "label", "issues", "groups",
                    "pixel_sha256", "reason"]


def _ranges(values: np.ndarray) -> list[list[int]]:
    """Run-length encode sorted-or-not integers as [start, stop) ranges of step 1."""
    if len(values) == 0:
        return []
    breaks = np.flatnonzero(np.diff(values) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(values)]])
    return [[int(values[a]), int(values[b - 1]) + 1] for a, b in zip(starts, stops, strict=True)]


def _unranges(ranges: list[list[int]]) -> np.ndarray:
    if not ranges:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ranges])


def clean(
    dataset: FaceDataset,
    plan: CleaningPlan | str | os.PathLike = "strict",
    *,
    findings: pd.DataFrame | None = None,
) -> tuple[FaceDataset, Manifest]:
    """Apply a cleaning plan; return the cleaned dataset and its manifest.

    Parameters
    ----------
    dataset : FaceDataset
        The data as loaded (not resampled).
    plan : CleaningPlan, preset name or plan file, default="strict"
    findings : DataFrame, default=None
        Findings of ``dataset`` to act on; ``None`` runs the auditors the plan needs
        (with the plan's ``auditors`` parameters).

    Returns
    -------
    cleaned : FaceDataset
        The kept images, in their original order (a view where possible).
    manifest : Manifest

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> cleaned, manifest = clean(demo.dataset, "no-conflicts")
    >>> removed = set(manifest.removed.row)
    >>> removed == set().union(*demo.truth.conflict_groups())
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
    if findings is None:
        from ferclean.auditors.runner import audit

        specs = [{name: plan.auditors.get(name, {})} for name in plan.issues]
        findings = audit(dataset, specs).findings if specs else None
    removals = (select_removals(dataset, plan, findings) if findings is not None
                else select_removals(dataset, plan, _no_findings()))
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
    from ferclean import __version__

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
    return cleaned, Manifest(table, info)


def _no_findings() -> pd.DataFrame:
    from ferclean.findings import empty_findings

    return empty_findings()


def restore(cleaned: FaceDataset, manifest: Manifest, removed: FaceDataset) -> FaceDataset:
    """Rebuild the original dataset from the cleaned one, the manifest and the removed images.

    The result is identical to the original in pixels, labels, splits and order (checked
    against the manifest's ``checksum_before``), with its original ids and rows.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> cleaned, manifest = clean(ds, "dedup")
    >>> back = restore(cleaned, manifest, ds[manifest.removed.position.to_numpy()])
    >>> back.checksum() == ds.checksum()
    True
    """
    info = manifest.info
    n = int(info["n_before"])
    table = manifest.removed
    if len(cleaned) != info["n_after"]:
        raise ValueError(f"cleaned data has {len(cleaned)} images; the manifest expects "
                         f"{info['n_after']}")
    if len(removed) != len(table):
        raise ValueError(f"removed data has {len(removed)} images; the manifest lists "
                         f"{len(table)}")
    hashes = pixel_sha256(removed.pixels)
    bad = [i for i, (a, b) in enumerate(zip(hashes, table["pixel_sha256"], strict=True))
           if a != b]
    if bad:
        raise ValueError(f"{len(bad)} removed image(s) do not match the manifest's pixel "
                         f"hashes (first: {table['image_id'].iloc[bad[0]]})")
    positions = table["position"].to_numpy(np.int64)
    keep = np.ones(n, bool)
    keep[positions] = False
    kept_pos = np.flatnonzero(keep)
    pixels = np.empty((n, *cleaned.pixels.shape[1:]), np.uint8)
    labels = np.empty(n, np.int8)
    splits = np.empty(n, np.int8)
    rows = np.empty(n, np.int64)
    pixels[kept_pos], pixels[positions] = cleaned.pixels, removed.pixels
    labels[kept_pos], labels[positions] = cleaned.labels, table["label"].to_numpy()
    splits[kept_pos] = cleaned.splits
    splits[positions] = [SPLITS.index(s) for s in table["split"]]
    rows[kept_pos] = _unranges(info["kept_rows"])
    rows[positions] = table["row"].to_numpy(np.int64)
    if info.get("ids_are_rows"):
        ids = rows.astype(str)
    else:
        ids = np.empty(n, dtype=object)
        ids[kept_pos] = info["kept_ids"] if info.get("kept_ids") is not None else cleaned.ids
        ids[positions] = table["image_id"].to_numpy(object)
    out = FaceDataset(pixels, labels=labels, splits=splits, ids=ids.astype(str), rows=rows,
                      source=info.get("source"))
    if out.checksum() != info["checksum_before"]:
        raise ValueError("restored data does not match the manifest's checksum_before")
    return out


__all__ = [
    "ACTIONS", "KEEP_RULES", "PRESETS", "CleaningPlan", "Manifest", "Rule", "clean",
    "pixel_sha256", "restore", "select_removals",
]
