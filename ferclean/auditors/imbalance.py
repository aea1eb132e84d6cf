"""Class imbalance: counts and ratios per split, and the under-represented classes."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ferclean._validation import check_fraction
from ferclean.auditors.base import Auditor, register
from ferclean.auditors.context import AuditContext
from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.findings import empty_findings, make_findings


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
        rows = []
        self.imbalance_ratio_: dict[str, float] = {}
        under_masks = np.zeros(len(dataset), bool)
        scores = np.zeros(len(dataset))
        for split in dataset.split_counts():
            in_split = dataset.split_mask(split)
            labels = dataset.labels[in_split]
            labels = labels[labels >= 0]
            if not len(labels):
                continue
            counts = np.bincount(labels, minlength=len(EMOTIONS))
            mean = counts.mean()
            largest = counts.max()
            present = counts[counts > 0]
            self.imbalance_ratio_[split] = float(largest / present.min())
            for code, name in enumerate(EMOTIONS):
                under = bool(counts[code] < threshold * mean)
                rows.append({
                    "split": split, "label": code, "emotion": name,
                    "count": int(counts[code]),
                    "share": float(counts[code] / counts.sum()),
                    "ratio_to_largest": float(counts[code] / largest),
                    "ratio_to_mean": float(counts[code] / mean),
                    "under_represented": under,
                })
                if under:
                    sel = in_split & (dataset.labels == code)
                    under_masks |= sel
                    scores[sel] = 1.0 - counts[code] / mean
        self.table_ = pd.DataFrame(rows, columns=[
            "split", "label", "emotion", "count", "share", "ratio_to_largest",
            "ratio_to_mean", "under_represented"])
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
