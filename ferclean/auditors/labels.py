"""Wrong labels: out-of-sample probabilities (confident learning), the copies' vote, FER+.

Three signals, each its own finding (the ``signal`` column), so a reader can see what a
suspicion rests on and a plan can act on one signal or all:

- ``model``: confident learning (:mod:`ferclean.labels.confident`) over out-of-sample
  probabilities handed in as ``pred_probs`` (from :func:`ferclean.learning.crossval`, or
  the user's own); ``score`` is ``1 - label quality``, the suggestion the most probable
  class;
- ``copies``: members of a duplicate group (exact and near copies of one photo) whose
  label is in the minority, with the group's majority as the suggestion (ties suggest
  nothing and flag nothing); ``score`` is ``1 -`` the share of copies agreeing with it;
- ``ferplus``: labels that the FER+ re-annotation's majority (10 annotators) disagrees
  with, when the FER+ votes are given (``ferplus``; aligned row for row with the original
  Kaggle CSV); ``score`` is ``1 -`` the share of FER+ votes for the given label.

Without ``pred_probs`` and ``ferplus`` only the copies vote, which needs no model.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ferclean.auditors.base import Auditor, register
from ferclean.auditors.context import AuditContext
from ferclean.auditors.duplicates import _check_kind, groups_for
from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.findings import concat_findings, empty_findings, make_findings
from ferclean.labels import (
    LABEL_QUALITY_METHODS,
    NoiseEstimate,
    align_pred_probs,
    copies_vote,
    estimate_noise,
    find_label_issues,
    label_quality,
)
from ferclean.similarity.exact import DuplicateGroups, merge_groups

__all__ = ["LabelIssueAuditor"]

SIGNAL_ORDER: tuple[str, ...] = ("ferplus", "copies", "model")


def _counts_text(counts: np.ndarray) -> str:
    parts = [f"{int(counts[k])} {EMOTIONS[k]}" for k in np.argsort(-counts, kind="stable")
             if counts[k] > 0]
    return ", ".join(parts)


@register
class LabelIssueAuditor(Auditor):
    """Images whose label the evidence contradicts (model, copies, FER+).

    Parameters
    ----------
    pred_probs : array, path or crossval result, default=None
        Out-of-sample class probabilities: one row per image, or rows matched by image
        id (see :func:`ferclean.labels.align_pred_probs`). ``None``: no model signal.
    method : {"self_confidence", "normalized_margin"}, default="self_confidence"
        The label-quality score that ranks model findings (``score = 1 - quality``).
    copies : bool, default=True
        Whether the copies vote.
    duplicates : {"all", "exact", "near"}, default="all"
        Which duplicate groups vote (as for label conflicts).
    ferplus : path or FerPlusVotes, default=None
        The FER+ votes (``fer2013new.csv``), row-aligned with the dataset's input rows.

    Attributes
    ----------
    quality_ : ndarray (n,)
        Label quality per image from the model, NaN where no probabilities were given.
    noise_ : NoiseEstimate or None
        The confident-learning estimate (noise matrix, prior), with a model.
    vote_ : CopiesVote or None
        The copies' vote.
    ferplus_ : dict or None
        Agreement with FER+, when given.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> found = LabelIssueAuditor().audit(demo.dataset)
    >>> set(found.signal) <= {"copies"}, bool((found.suggested_label >= 0).all())
    (True, True)
    """

    issue_name: ClassVar[str] = "label_issue"
    suggests_labels: ClassVar[bool] = True  # findings carry suggested_label: relabel applies
    order: ClassVar[int] = 35
    title: ClassVar[str] = "Label issues"
    description: ClassVar[str] = (
        "Labels that out-of-sample predictions, the image's own copies or FER+'s "
        "annotators contradict, with the label they point to.")

    def __init__(self, *, pred_probs: Any = None, method: str = "self_confidence",
                 copies: bool = True, duplicates: str = "all", ferplus: Any = None) -> None:
        self.pred_probs = pred_probs
        self.method = method
        self.copies = copies
        self.duplicates = duplicates
        self.ferplus = ferplus

    def requires(self) -> tuple[str, ...]:
        """The near-duplicate groups when near copies vote; outliers when FER+ is given
        (their agreement with FER+'s not-a-face votes is reported)."""
        needs = []
        if self.copies and _check_kind(self.duplicates) != "exact":
            needs.append("near_duplicate")
        if self.ferplus is not None:
            needs.append("outlier")
        return tuple(needs)

    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        if self.method not in LABEL_QUALITY_METHODS:
            raise ValueError(f"method must be one of {', '.join(LABEL_QUALITY_METHODS)}; "
                             f"got {self.method!r}")
        n = len(dataset)
        labels = dataset.labels.astype(np.int64)
        self.quality_ = np.full(n, np.nan)
        self.noise_: NoiseEstimate | None = None
        self.n_model_images_ = 0
        self.vote_ = None
        self.ferplus_: dict[str, Any] | None = None
        tables = [self._model(dataset, labels)]
        if self.copies:
            tables.append(self._copies(dataset, labels, context))
        if self.ferplus is not None:
            tables.append(self._ferplus(dataset, labels, context, tables[0]))
        found = concat_findings(tables)
        if not len(found):
            return empty_findings()
        rank = found["signal"].map({s: i for i, s in enumerate(SIGNAL_ORDER)})
        order = np.lexsort((found["row"].to_numpy(), rank.to_numpy()))
        return found.iloc[order].reset_index(drop=True)

    # ---------------------------------------------------------------- signals
    def _model(self, dataset: FaceDataset, labels: np.ndarray) -> pd.DataFrame:
        if self.pred_probs is None:
            return empty_findings()
        aligned = align_pred_probs(dataset, self.pred_probs, n_classes=len(EMOTIONS))
        keep = labels[aligned.index] >= 0  # unlabelled images have no label to check
        index, probs = aligned.index[keep], aligned.probs[keep]
        given = labels[index]
        self.n_model_images_ = int(len(index))
        if not len(index):
            return empty_findings()
        quality = label_quality(given, probs, method=self.method)
        self.quality_[index] = quality
        self.noise_ = estimate_noise(given, probs)
        flagged = find_label_issues(given, probs)
        idx, p = index[flagged], probs[flagged]
        suggested = p.argmax(axis=1)
        own = p[np.arange(len(idx)), given[flagged]]
        detail = [f"model: p({EMOTIONS[g]})={o:.2f}, most likely {EMOTIONS[s]} "
                  f"({p[i, s]:.2f})" for i, (g, o, s) in
                  enumerate(zip(given[flagged], own, suggested, strict=True))]
        return make_findings(dataset, idx, self.issue_name, score=1 - quality[flagged],
                             suggested=suggested, signal="model", probabilities=p,
                             detail=detail)

    def _copies(self, dataset: FaceDataset, labels: np.ndarray,
                context: AuditContext) -> pd.DataFrame:
        groupings = groups_for(context, self.duplicates)
        merged: DuplicateGroups = merge_groups(*groupings)
        vote = copies_vote(labels, merged.group_of, n_classes=len(EMOTIONS))
        self.vote_ = vote
        idx = np.flatnonzero(vote.minority)
        if not len(idx):
            return empty_findings()
        gid = merged.group_of[idx]
        detail = [f"copies vote: {_counts_text(vote.counts[g])}" for g in gid]
        related = merged.first_positions()[gid]
        related = np.where(related == idx, -1, related)
        return make_findings(dataset, idx, self.issue_name, score=1 - vote.support[idx],
                             suggested=vote.suggested[idx], signal="copies",
                             related=related, detail=detail)

    def _ferplus(self, dataset: FaceDataset, labels: np.ndarray, context: AuditContext,
                 model_found: pd.DataFrame) -> pd.DataFrame:
        from ferclean.io.ferplus import align_ferplus, read_ferplus

        votes = self.ferplus
        if not hasattr(votes, "votes"):
            votes = read_ferplus(votes)
        votes = align_ferplus(votes, dataset)
        majority = np.asarray(votes.majority, np.int64)
        not_face = np.asarray(votes.is_not_face, bool)
        counts = np.asarray(votes.votes, np.float64)
        totals = counts.sum(axis=1)
        rows = np.arange(len(dataset))
        own = np.where(labels >= 0, counts[rows, np.maximum(labels, 0)], 0)
        share = np.where(totals > 0, own / np.maximum(totals, 1), 0.0)
        judged = (labels >= 0) & (majority >= 0) & ~not_face
        disagree = judged & (majority != labels)
        model_rows = np.zeros(len(dataset), bool)
        if len(model_found):
            model_rows = np.isin(dataset.rows, model_found["row"].to_numpy())
        covered = np.isfinite(self.quality_)
        outlier_rows = context.dependency_findings("outlier")["row"].to_numpy()
        outlier_mask = np.isin(dataset.rows, outlier_rows)
        self.ferplus_ = {
            "judged": int(judged.sum()),
            "disagree": int(disagree.sum()),
            "disagree_share": round(float(disagree.sum() / max(judged.sum(), 1)), 4),
            "disagree_per_class": {EMOTIONS[k]: int((disagree & (labels == k)).sum())
                                   for k in range(len(EMOTIONS))},
            "not_face": int(not_face.sum()),
            "model": _agreement(model_rows & judged, disagree, covered & judged),
            "outlier": _agreement(outlier_mask, not_face, np.ones(len(dataset), bool)),
        }
        idx = np.flatnonzero(disagree)
        detail = [f"FER+ votes: {_counts_text(counts[i])}" for i in idx]
        return make_findings(dataset, idx, self.issue_name, score=1 - share[idx],
                             suggested=majority[idx], signal="ferplus", detail=detail)

    # ---------------------------------------------------------------- summary
    def summarize(self, findings: pd.DataFrame) -> dict[str, Any]:
        """Images flagged (any signal) and per signal; the noise estimate; the vote."""
        entry: dict[str, Any] = {"groups": 0, "images": int(findings["row"].nunique())}
        entry["by_signal"] = {s: int((findings["signal"] == s).sum()) for s in SIGNAL_ORDER}
        entry.update(self.summary_extra())
        return entry

    def summary_extra(self) -> dict[str, Any]:
        """The estimated noise matrix (given x likely true) and errors per class, the
        copies' vote counts, and agreement with FER+."""
        extra: dict[str, Any] = {"model_images": getattr(self, "n_model_images_", 0)}
        noise = getattr(self, "noise_", None)
        if noise is not None:
            extra["noise"] = noise.to_dict(EMOTIONS)
        vote = getattr(self, "vote_", None)
        if vote is not None:
            extra["copies_vote"] = vote.summary()
        if getattr(self, "ferplus_", None) is not None:
            extra["ferplus"] = self.ferplus_
        return extra


def _agreement(flagged: np.ndarray, reference: np.ndarray, among: np.ndarray
               ) -> dict[str, Any]:
    """How a flagged set agrees with a reference set, among the images both judge."""
    flagged, reference = flagged & among, reference & among
    both = int((flagged & reference).sum())
    return {
        "flagged": int(flagged.sum()),
        "reference": int(reference.sum()),
        "both": both,
        "precision": round(both / flagged.sum(), 4) if flagged.any() else None,
        "recall": round(both / reference.sum(), 4) if reference.any() else None,
    }
