"""Class imbalance: counts and ratios per split, and the under-represented classes."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ferclean._validation import check_fraction
from ferclean.auditors.base import Auditor, register
from ferclean.auditors.context import AuditContext
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.findings import empty_findings, make_findings

_TABLE_COLUMNS = ["split", "label", "emotion", "count", "share", "ratio_to_largest",
                  "ratio_to_mean", "under_represented"]


def imbalance_table(counts: np.ndarray, threshold: float = 0.5
                    ) -> tuple[pd.DataFrame, dict[str, float]]:
    """The per-(split, emotion) table and the imbalance ratio per split, from counts.

    Parameters
    ----------
    counts : ndarray, shape (len(SPLITS), len(EMOTIONS) + 1)
        Images per split and label, unlabelled last
        (:func:`ferclean.auditors.context.class_counts`); splits without a labelled image
        are left out.
    threshold : float, default=0.5
        As :class:`ClassImbalanceAuditor`'s.

    Returns
    -------
    table : DataFrame
        Columns as :attr:`ClassImbalanceAuditor.table_`.
    imbalance_ratio : dict
        Largest over smallest non-empty class count, per split.

    Examples
    --------
    >>> counts = np.zeros((3, 8), np.int64); counts[0, :7] = [50, 5, 50, 90, 60, 40, 60]
    >>> table, ratio = imbalance_table(counts)
    >>> table.query("under_represented").emotion.tolist(), ratio
    (['disgust'], {'Training': 18.0})
    """
    rows = []
    ratio: dict[str, float] = {}
    for s, split in enumerate(SPLITS):
        per_class = np.asarray(counts[s, : len(EMOTIONS)], np.int64)
        if not per_class.sum():
            continue
        mean = per_class.mean()
        largest = per_class.max()
        ratio[split] = float(largest / per_class[per_class > 0].min())
        for code, name in enumerate(EMOTIONS):
            rows.append({
                "split": split, "label": code, "emotion": name,
                "count": int(per_class[code]),
                "share": float(per_class[code] / per_class.sum()),
                "ratio_to_largest": float(per_class[code] / largest),
                "ratio_to_mean": float(per_class[code] / mean),
                "under_represented": bool(per_class[code] < threshold * mean),
            })
    return pd.DataFrame(rows, columns=_TABLE_COLUMNS), ratio


@register
class ClassImbalanceAuditor(Auditor):
    """Flag the images of classes that are under-represented in their split.

    A class is under-represented in a split when its count is below ``threshold`` times
    the split's mean count per class (FER-2013 Training: *disgust*, 436 images against a
    mean of 4,101). Its images get one finding each, scored ``1 - count / mean``, so
    resamplers and reports can pick them out. The full table is in ``table_``.

    Parameters
    ----------
    threshold : float, default=0.5
        Fraction of the mean class count below which a class is under-represented.

    Attributes
    ----------
    table_ : DataFrame
        One row per (split, emotion): ``split``, ``label``, ``emotion``, ``count``,
        ``share`` (of the split), ``ratio_to_largest``, ``ratio_to_mean``,
        ``under_represented``.
    imbalance_ratio_ : dict
        Largest over smallest non-empty class count, per split.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> auditor = ClassImbalanceAuditor()
    >>> found = auditor.audit(demo_dataset(n_faces=300))
    >>> "disgust" in set(auditor.table_.query("under_represented").emotion)
    True
    """

    issue_name: ClassVar[str] = "class_imbalance"
    order: ClassVar[int] = 60
    title: ClassVar[str] = "Class imbalance"
    description: ClassVar[str] = (
        "Emotions under-represented in a split; every image of such a class is listed.")
    gallery: ClassVar[str | None] = None

    def __init__(self, *, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        threshold = check_fraction(self.threshold, "threshold")
        # the table from the whole dataset's counts; the findings for the images at hand
        # (every image in memory; those of the flagged classes from an engine)
        self.table_, self.imbalance_ratio_ = imbalance_table(context.class_counts, threshold)
        under_masks = np.zeros(len(dataset), bool)
        scores = np.zeros(len(dataset))
        for r in self.table_[self.table_["under_represented"]].itertuples():
            sel = dataset.split_mask(r.split) & (dataset.labels == r.label)
            under_masks |= sel
            scores[sel] = 1.0 - r.ratio_to_mean
        if not under_masks.any():
            return empty_findings()
        index = np.flatnonzero(under_masks)
        lookup = {(r.split, r.label): r for r in self.table_.itertuples()}
        names = dataset.split_names
        detail = []
        for i in index:
            r = lookup[(names[i], int(dataset.labels[i]))]
            detail.append(
                f"{r.emotion} is under-represented in {r.split}: {r.count} images, "
                f"{r.share:.1%} of the split, {r.ratio_to_mean:.2f}x the mean class count"
            )
        return make_findings(dataset, index, self.issue_name, score=scores[index],
                             detail=detail)

    def summary_extra(self) -> dict[str, Any]:
        table = self.table_
        return {
            "imbalance_ratio": {k: round(v, 3) for k, v in self.imbalance_ratio_.items()},
            "under_represented": {
                split: part.loc[part.under_represented, "emotion"].tolist()
                for split, part in table.groupby("split", sort=False)
            },
            "counts": {
                split: dict(zip(part.emotion, part["count"].astype(int), strict=True))
                for split, part in table.groupby("split", sort=False)
            },
        }
