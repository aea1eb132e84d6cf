"""The findings table: the stable contract every auditor returns and ``findings.csv`` holds.

Long form, one row per (image, issue):

========== ======= ==================================================================
column     dtype   meaning
========== ======= ==================================================================
row        int64   0-based position of the image in its input (``FaceDataset.rows``)
image_id   str     the image's stable id (``FaceDataset.ids``)
split      str     ``Training``, ``PublicTest`` or ``PrivateTest``
label      int64   emotion id 0..6, ``-1`` if unlabeled
issue      str     one of :data:`ISSUE_TYPES`
group      int64   duplicate/conflict/leak group id within the issue; ``-1`` if none
score      float64 severity in [0, 1]: **higher is worse** (1 = certain, e.g. an exact
                   copy); rank findings by it, descending
detail     str     a human-readable reason
========== ======= ==================================================================

Group ids are numbered 0.. in order of each group's first row, so they are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset

ISSUE_TYPES: tuple[str, ...] = (
    "exact_duplicate",
    "near_duplicate",
    "label_conflict",
    "cross_split_leak",
    "outlier",
    "class_imbalance",
)
COLUMNS: tuple[str, ...] = (
    "row", "image_id", "split", "label", "issue", "group", "score", "detail",
)
_DTYPES = {
    "row": "int64", "image_id": object, "split": object, "label": "int64", "issue": object,
    "group": "int64", "score": "float64", "detail": object,
}
#: Issue types whose findings come in groups of copies.
GROUPED_ISSUES: tuple[str, ...] = (
    "exact_duplicate", "near_duplicate", "label_conflict", "cross_split_leak",
)


def make_findings(
    dataset: FaceDataset,
    index: Any,
    issue: str,
    *,
    score: Any = 1.0,
    group: Any = -1,
    detail: Any = "",
) -> pd.DataFrame:
    """Build a findings table for images ``index`` of ``dataset`` (positions, not rows).

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0, 1, 2])
    >>> make_findings(ds, [0, 2], "outlier", score=[0.9, 0.7], detail="flat").label.tolist()
    [0, 2]
    """
    if issue not in ISSUE_TYPES:
        raise ValueError(f"unknown issue {issue!r}; expected one of {', '.join(ISSUE_TYPES)}")
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    n = len(index)
    frame = pd.DataFrame(
        {
            "row": dataset.rows[index],
            "image_id": dataset.ids[index].astype(object),
            "split": np.asarray(SPLITS, dtype=object)[dataset.splits[index]],
            "label": dataset.labels[index].astype(np.int64),
            "issue": np.full(n, issue, dtype=object),
            "group": np.broadcast_to(np.asarray(group, dtype=np.int64), (n,)),
            "score": np.broadcast_to(np.asarray(score, dtype=np.float64), (n,)),
            "detail": np.broadcast_to(np.asarray(detail, dtype=object), (n,)),
        }
    )
    return validate_findings(frame)


def empty_findings() -> pd.DataFrame:
    """An empty findings table with the contract's columns and dtypes.

    Examples
    --------
    >>> list(empty_findings().columns) == list(COLUMNS)
    True
    """
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in COLUMNS})


def validate_findings(frame: pd.DataFrame) -> pd.DataFrame:
    """Check columns, dtypes, issue names and score range; return the table in order.

    Examples
    --------
    >>> validate_findings(empty_findings()).shape
    (0, 8)
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"findings table is missing column(s): {', '.join(missing)}")
    frame = frame.loc[:, list(COLUMNS)].astype(_DTYPES)
    if len(frame):
        bad = ~frame["issue"].isin(ISSUE_TYPES)
        if bad.any():
            raise ValueError(f"unknown issue type(s): {sorted(set(frame['issue'][bad]))}")
        score = frame["score"].to_numpy()
        if np.any(~np.isfinite(score)) or score.min() < 0 or score.max() > 1:
            raise ValueError("finding scores must lie in [0, 1]")
    return frame.reset_index(drop=True)


def concat_findings(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack auditor outputs into one report (sorted by issue order, then row).

    Examples
    --------
    >>> concat_findings([empty_findings(), empty_findings()]).shape
    (0, 8)
    """
    tables = [t for t in tables if len(t)]
    if not tables:
        return empty_findings()
    frame = pd.concat(tables, ignore_index=True)
    order = {name: i for i, name in enumerate(ISSUE_TYPES)}
    frame = frame.assign(_issue=frame["issue"].map(order))
    frame = frame.sort_values(["_issue", "group", "row"], kind="stable").drop(columns="_issue")
    return validate_findings(frame)


def summarize(findings: pd.DataFrame, dataset: FaceDataset, extra: dict | None = None) -> dict:
    """What ``summary.json`` holds.

    ``{"n_images": N, "splits": {...}, "labels": {...}, "issues": {ISSUE: {"groups": G,
    "images": I, ...}}}``. For grouped issues ``images`` counts every image in a flagged
    group and ``removable`` those beyond the first of their group. For label conflicts
    and cross-split leaks, ``groups``, ``images`` and ``removable`` count exact groups
    only, and ``near_groups``, ``near_images`` and ``near_removable`` the near-duplicate
    groups (``detail`` starting ``"near duplicate group"``), when any were examined.
    ``extra`` adds per-issue fields (e.g. leak counts by split pair).

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 0])
    >>> f = make_findings(ds, [0, 1], "exact_duplicate", group=0)
    >>> summarize(f, ds)["issues"]["exact_duplicate"]
    {'groups': 1, 'images': 2, 'removable': 1}
    """
    issues: dict[str, dict[str, Any]] = {}
    for issue in ISSUE_TYPES:
        part = findings[findings["issue"] == issue]
        if issue not in (extra or {}) and part.empty:
            continue
        entry: dict[str, Any] = {}
        if issue in GROUPED_ISSUES:
            near = np.zeros(len(part), bool)
            if issue in _MIXED_ISSUES:  # exact and near groups: counted apart
                near = part["detail"].astype(str).str.startswith(_NEAR_PREFIX).to_numpy()
            entry = _group_counts(part[~near])
            if near.any():
                entry.update({f"near_{k}": v for k, v in _group_counts(part[near]).items()})
        else:
            entry = {"groups": 0, "images": int(part["row"].nunique())}
        entry.update((extra or {}).get(issue, {}))
        issues[issue] = entry
    return {
        "n_images": len(dataset),
        "splits": dataset.split_counts(),
        "labels": {name: int((dataset.labels == i).sum()) for i, name in enumerate(EMOTIONS)},
        "issues": issues,
    }


#: Issues whose findings can hold exact and near-duplicate groups side by side.
_MIXED_ISSUES: tuple[str, ...] = ("label_conflict", "cross_split_leak")
_NEAR_PREFIX = "near duplicate group"


def _group_counts(part: pd.DataFrame) -> dict[str, int]:
    n_groups = int(part["group"].nunique())
    n_images = int(part["row"].nunique())
    return {"groups": n_groups, "images": n_images, "removable": n_images - n_groups}


def summary_table(summary: dict) -> pd.DataFrame:
    """The short table the CLI prints: issue, groups, images (and removable).

    Examples
    --------
    >>> summary_table({"issues": {"outlier": {"groups": 0, "images": 3}}}).images.tolist()
    [3]
    """
    rows = [
        {"issue": k, "groups": v.get("groups", 0), "images": v.get("images", 0),
         "removable": v.get("removable", "")}
        for k, v in summary["issues"].items()
    ]
    return pd.DataFrame(rows, columns=["issue", "groups", "images", "removable"])
