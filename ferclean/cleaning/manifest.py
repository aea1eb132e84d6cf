"""The manifest that makes cleaning lossless, and :func:`restore`, which undoes it exactly.

Version :data:`MANIFEST_VERSION` (2) lists the removed images and the relabeled ones
(old and new label, and why); version 1 manifests (removals only) still read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._json import to_plain
from ferclean.dataset import IMAGE_SIZE, SPLITS, FaceDataset

__all__ = ["MANIFEST_VERSION", "Manifest", "pixel_sha256", "restore"]

#: Version of the manifest :meth:`Manifest.to_dict` writes; 1 (no relabels) still reads.
MANIFEST_VERSION = 2
_READABLE_VERSIONS = (1, 2)


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
        A removed image keeps its original label, even if a relabel rule also flagged it.
    info : dict
        ``n_before``, ``n_after``, ``checksum_before``, ``checksum_after``, ``plan``,
        ``source``, ``ferclean_version``, ``kept_rows`` (run-length ranges of the kept
        images' input rows), the counts per split and label before and after, and
        ``relabel_counts`` (what became of the images relabel rules considered:
        ``relabeled``, ``no_suggestion``, ``same_label``, ``removed``, ``disputed``).
    relabeled : DataFrame
        One row per relabeled (kept) image, in original order: ``position``, ``row``,
        ``image_id``, ``split``, ``old_label``, ``new_label``, ``issue``, ``signal`` and
        ``score`` of the finding that decided it, ``reason`` (the rule and the signal).
        Empty for a plan without relabel rules and for version 1 manifests.

    Examples
    --------
    >>> from ferclean.cleaning import audit_and_clean
    >>> from ferclean.demo import demo_dataset
    >>> _, manifest = audit_and_clean(demo_dataset(n_faces=300), "dedup")
    >>> Manifest.from_dict(manifest.to_dict()).removed.equals(manifest.removed)
    True
    """

    removed: pd.DataFrame
    info: dict[str, Any]
    relabeled: pd.DataFrame = field(default_factory=lambda: _empty(_RELABELED_DTYPES))

    def to_dict(self) -> dict[str, Any]:
        return {"format": "ferclean-manifest", "version": MANIFEST_VERSION, **self.info,
                "removed": self.removed.to_dict(orient="records"),
                "relabeled": self.relabeled.to_dict(orient="records")}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=to_plain) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != "ferclean-manifest":
            raise ValueError("not a ferclean manifest")
        version = data.get("version", 1)
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"manifest version {version!r} is not one this ferclean reads "
                             f"(1 to {MANIFEST_VERSION}); upgrade ferclean")
        info = {k: v for k, v in data.items()
                if k not in ("format", "version", "removed", "relabeled")}
        removed = pd.DataFrame(data["removed"], columns=_REMOVED_COLUMNS)
        relabeled = pd.DataFrame(data.get("relabeled") or [], columns=_RELABELED_COLUMNS)
        return cls(removed.astype({"position": "int64", "row": "int64", "label": "int64"}),
                   info, relabeled.astype(_RELABELED_DTYPES))

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

    def relabel_summary(self) -> pd.DataFrame:
        """Relabeled images per issue, signal and split.

        Examples
        --------
        >>> Manifest(pd.DataFrame(columns=_REMOVED_COLUMNS), {}).relabel_summary().columns.tolist()
        ['issue', 'signal', 'split', 'images']
        """
        if self.relabeled.empty:
            return pd.DataFrame(columns=["issue", "signal", "split", "images"])
        return (self.relabeled.groupby(["issue", "signal", "split"]).size()
                .rename("images").reset_index())


_REMOVED_COLUMNS = ["position", "row", "image_id", "split", "label", "issues", "groups",
                    "pixel_sha256", "reason"]
_RELABELED_DTYPES = {"position": "int64", "row": "int64", "image_id": object,
                     "split": object, "old_label": "int64", "new_label": "int64",
                     "issue": object, "signal": object, "score": "float64", "reason": object}
_RELABELED_COLUMNS = list(_RELABELED_DTYPES)


def _empty(dtypes: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


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


def restore(cleaned: FaceDataset, manifest: Manifest, removed: FaceDataset) -> FaceDataset:
    """Rebuild the original dataset from the cleaned one, the manifest and the removed images.

    The result is identical to the original in pixels, labels, splits and order (checked
    against the manifest's ``checksum_before``), with its original ids and rows: the
    relabeled images get their original labels back (each must still carry the new label
    the manifest gave it).

    Examples
    --------
    >>> from ferclean.cleaning import audit_and_clean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> cleaned, manifest = audit_and_clean(ds, "dedup")
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
    _undo_relabels(labels, manifest.relabeled, keep)
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


def _undo_relabels(labels: np.ndarray, relabeled: pd.DataFrame, kept: np.ndarray) -> None:
    """Give the relabeled images (positions in the original) their old labels, in place."""
    if relabeled.empty:
        return
    where = relabeled["position"].to_numpy(np.int64)
    if where.min() < 0 or where.max() >= len(labels) or not kept[where].all():
        raise ValueError("the manifest relabels images that are not among the kept ones; "
                         "it does not belong to this cleaned data")
    changed = labels[where] != relabeled["new_label"].to_numpy()
    if changed.any():
        first = relabeled.iloc[int(np.flatnonzero(changed)[0])]
        raise ValueError(f"cleaned image {first['image_id']!r} (row {first['row']}) has label "
                         f"{int(labels[first['position']])}, not the {first['new_label']} the "
                         f"manifest relabeled it to: the cleaned data was changed")
    labels[where] = relabeled["old_label"].to_numpy()
