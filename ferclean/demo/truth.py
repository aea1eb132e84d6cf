"""The ground truth of a demo: every planted duplicate group and non-face, by row.

:class:`DemoTruth` holds two tables and answers questions about them (which rows form
exact groups, near groups of one edit kind, label conflicts, split leaks, non-faces);
:func:`_group_table` builds its group table from the planted groups, and
:func:`_verify_exact_truth` checks that the exact groups are exactly the sets of
pixel-identical images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ferclean.dataset import SPLITS
from ferclean.demo.edits import NEAR_EDITS
from ferclean.demo.nonfaces import NON_FACE_KINDS

__all__ = ["DemoTruth"]

_GROUP_COLUMNS = ["group", "kind", "rows", "edits", "labels", "splits", "conflict", "cross_split"]


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no boolean ==, nor a hash
class DemoTruth:
    """Ground truth of the problems planted in a demo dataset.

    Parameters
    ----------
    groups : DataFrame
        One row per planted duplicate group, with columns ``group`` (int id), ``kind``
        (``'exact'`` or ``'near'``), ``rows`` (sorted tuple of dataset rows), ``edits``
        (tuple aligned with ``rows``: ``'original'`` for the source image, ``'exact'``
        for a pixel-identical copy, else the :data:`NEAR_EDITS` kind of the copy),
        ``labels`` (tuple of label ids aligned with ``rows``), ``splits`` (tuple of split
        names aligned with ``rows``), ``conflict`` (labels differ) and ``cross_split``
        (splits differ).
    non_faces : DataFrame
        One row per planted non-face image, with columns ``row`` and ``kind`` (one of
        :data:`NON_FACE_KINDS`), sorted by row.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> truth = make_demo(n_faces=300).truth
    >>> sorted(truth.groups.kind.unique())
    ['exact', 'near']
    >>> all(len(g) >= 2 for g in truth.exact_groups())
    True
    """

    groups: pd.DataFrame
    non_faces: pd.DataFrame

    def exact_groups(self) -> list[frozenset[int]]:
        """Rows of each planted group of pixel-identical images.

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> groups = make_demo(n_faces=300).truth.exact_groups()
        >>> len(groups) >= 12 and all(isinstance(r, int) for g in groups for r in g)
        True
        """
        return self._select(self.groups.kind == "exact")

    def near_groups(self, edit: str | None = None) -> list[frozenset[int]]:
        """Rows of each planted near-duplicate group (original plus edited copy).

        Parameters
        ----------
        edit : str, default=None
            Only groups whose copy was made with this :data:`NEAR_EDITS` kind.

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.near_groups("flip")) >= 5
        True
        >>> sum(len(truth.near_groups(e)) for e in NEAR_EDITS) == len(truth.near_groups())
        True
        """
        mask = self.groups.kind == "near"
        if edit is not None:
            if edit not in NEAR_EDITS:
                raise ValueError(f"unknown edit {edit!r}; expected one of {', '.join(NEAR_EDITS)}")
            mask &= self.groups.edits.map(lambda edits: edit in edits)
        return self._select(mask)

    def conflict_groups(self, kind: str = "exact") -> list[frozenset[int]]:
        """Planted groups whose images carry more than one label.

        Parameters
        ----------
        kind : {'exact', 'near', 'all'}, default='exact'

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.conflict_groups()) >= 4 and len(truth.conflict_groups("near")) > 0
        True
        """
        return self._select(self._kind_mask(kind) & self.groups.conflict)

    def leak_groups(self, kind: str = "exact") -> list[frozenset[int]]:
        """Planted groups whose images lie in more than one split.

        Parameters
        ----------
        kind : {'exact', 'near', 'all'}, default='exact'

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.leak_groups()) >= 4 and len(truth.leak_groups("near")) > 0
        True
        """
        return self._select(self._kind_mask(kind) & self.groups.cross_split)

    def non_face_rows(self, kind: str | None = None) -> frozenset[int]:
        """Rows of the planted non-face images, optionally of one kind only.

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.non_face_rows("chart")) >= 6
        True
        """
        table = self.non_faces
        if kind is not None:
            if kind not in NON_FACE_KINDS:
                raise ValueError(
                    f"unknown non-face kind {kind!r}; expected one of {', '.join(NON_FACE_KINDS)}"
                )
            table = table[table.kind == kind]
        return frozenset(int(r) for r in table.row)

    def to_json(self) -> str:
        """The truth as JSON text: ``{"groups": [...], "non_faces": [...]}``, one object
        per table row (tuples become lists). :meth:`from_json` reads it back.

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> truth = make_demo(n_faces=300).truth
        >>> again = DemoTruth.from_json(truth.to_json())
        >>> again.exact_groups() == truth.exact_groups()
        True
        """
        payload = {
            "groups": [
                {
                    "group": int(g.group),
                    "kind": str(g.kind),
                    "rows": [int(r) for r in g.rows],
                    "edits": list(g.edits),
                    "labels": [int(v) for v in g.labels],
                    "splits": list(g.splits),
                    "conflict": bool(g.conflict),
                    "cross_split": bool(g.cross_split),
                }
                for g in self.groups.itertuples(index=False)
            ],
            "non_faces": [
                {"row": int(r), "kind": str(k)}
                for r, k in zip(self.non_faces.row, self.non_faces.kind, strict=True)
            ],
        }
        return json.dumps(payload, indent=1)

    @classmethod
    def from_json(cls, text: str) -> DemoTruth:
        """Read the truth written by :meth:`to_json`.

        Examples
        --------
        >>> truth = DemoTruth.from_json('{"groups": [], "non_faces": [{"row": 3, "kind": "text"}]}')
        >>> truth.non_face_rows(), list(truth.groups.columns)[:3]
        (frozenset({3}), ['group', 'kind', 'rows'])
        """
        payload = json.loads(text)
        groups = pd.DataFrame.from_records(payload["groups"], columns=_GROUP_COLUMNS)
        for column in ("rows", "edits", "labels", "splits"):
            groups[column] = groups[column].map(tuple)
        groups = groups.astype({"group": np.int64, "conflict": bool, "cross_split": bool})
        non_faces = pd.DataFrame.from_records(payload["non_faces"], columns=["row", "kind"])
        return cls(groups=groups, non_faces=non_faces.astype({"row": np.int64}))

    # ------------------------------------------------------------------ helpers
    def _kind_mask(self, kind: str) -> pd.Series:
        if kind == "all":
            return pd.Series(True, index=self.groups.index)
        if kind not in ("exact", "near"):
            raise ValueError(f"unknown group kind {kind!r}; expected 'exact', 'near' or 'all'")
        return self.groups.kind == kind

    def _select(self, mask: pd.Series) -> list[frozenset[int]]:
        return [frozenset(int(r) for r in rows) for rows in self.groups.rows[mask]]


def _group_table(
    groups: list[dict], row_of: np.ndarray, labels: np.ndarray, splits: np.ndarray
) -> pd.DataFrame:
    """Truth table of the planted groups, members sorted by final row."""
    records = []
    for g in groups:
        pairs = sorted(zip((int(row_of[m]) for m in g["members"]), g["edits"], strict=True))
        rows = tuple(r for r, _ in pairs)
        group_labels = tuple(int(labels[r]) for r in rows)
        group_splits = tuple(SPLITS[int(splits[r])] for r in rows)
        records.append(
            {
                "kind": g["kind"],
                "rows": rows,
                "edits": tuple(e for _, e in pairs),
                "labels": group_labels,
                "splits": group_splits,
                "conflict": len(set(group_labels)) > 1,
                "cross_split": len(set(group_splits)) > 1,
            }
        )
    table = pd.DataFrame.from_records(records, columns=_GROUP_COLUMNS[1:])
    # Exact groups first, then near groups; each by first row, so ids read in row order.
    table["_order"] = (table.kind != "exact").astype(int)
    table["_first"] = table.rows.map(lambda r: r[0])
    table = table.sort_values(["_order", "_first"], ignore_index=True)
    table.insert(0, "group", np.arange(len(table), dtype=np.int64))
    return table[_GROUP_COLUMNS]


def _verify_exact_truth(pixels: np.ndarray, truth: DemoTruth) -> None:
    """Fail loudly unless the pixel-identical sets are exactly the planted exact groups."""
    by_bytes: dict[bytes, list[int]] = {}
    for row, image in enumerate(pixels):
        by_bytes.setdefault(image.tobytes(), []).append(row)
    found = {frozenset(rows) for rows in by_bytes.values() if len(rows) > 1}
    planted = set(truth.exact_groups())
    if found != planted:  # not `assert`: must also hold under python -O
        raise RuntimeError(
            f"demo truth is inexact: {len(found - planted)} unplanted identical sets, "
            f"{len(planted - found)} planted groups not identical"
        )
