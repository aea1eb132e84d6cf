"""Confident learning in numpy: find labels that out-of-sample probabilities contradict.

After Northcutt, Jiang and Chuang, *Confident Learning: Estimating Uncertainty in Dataset
Labels* (JAIR 2021). Given labels ``s`` and out-of-sample class probabilities ``P`` (from a
model that never saw the image, see :func:`ferclean.learning.crossval`):

1. **per-class thresholds** ``t_j``: the mean probability of class ``j`` over the images
   labelled ``j`` (the model's self-confidence on its own class);
2. **confident joint** ``C[i, j]``: images labelled ``i`` whose probability for class ``j``
   reaches ``t_j``; an image with several such classes counts once, for the most
   probable of them; one with none is not counted;
3. **calibration**: each row of ``C`` is rescaled to the number of images carrying that
   label, so the joint sums to ``n``; divided by ``n`` it estimates ``Q[i, j] = p(s=i,
   y=j)``, from which follow the **noise matrix** ``p(s=i | y=j)`` and the **prior of the
   true label** ``p(y=j)``;
4. **issues by noise rate** (the paper's *prune by noise rate*): among images labelled
   ``i``, the ``round(n Q[i, j])`` with the largest margin ``P[:, j] - P[:, i]`` are
   label issues, for every ``j != i``; an image the model predicts as its given label is
   never an issue, and each class keeps at least one image;
5. **label quality** for ranking: the self-confidence ``P[x, s]`` or the normalized margin
   ``(P[x, s] - max_{k != s} P[x, k] + 1) / 2``, both in ``[0, 1]``, low = suspicious.

cleanlab (AGPL-3) implements the same paper; this module is written from the paper, and
``benchmarks/bench_label_issues.py`` compares the two on the same probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LABEL_QUALITY_METHODS",
    "NoiseEstimate",
    "check_pred_probs",
    "confident_joint",
    "estimate_noise",
    "find_label_issues",
    "label_quality",
    "per_class_thresholds",
]

LABEL_QUALITY_METHODS: tuple[str, ...] = ("self_confidence", "normalized_margin")
#: How far a row of probabilities may sum from 1 and still be accepted.
SUM_TOLERANCE = 1e-3


def check_pred_probs(pred_probs: Any, n: int | None = None, n_classes: int | None = None,
                     *, source: str = "pred_probs") -> np.ndarray:
    """Validate class probabilities: 2-d, finite, non-negative, rows summing to 1.

    Returns them as float64. Errors name ``source`` and the first bad row.

    Examples
    --------
    >>> check_pred_probs([[0.2, 0.8], [1.0, 0.0]]).shape
    (2, 2)
    >>> check_pred_probs([[0.2, 0.7]])
    Traceback (most recent call last):
    ...
    ValueError: pred_probs: row 0 sums to 0.9, not 1 (probabilities, not logits or scores?)
    """
    try:
        probs = np.asarray(pred_probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: not an array of numbers ({exc})") from None
    if probs.ndim != 2:
        raise ValueError(f"{source}: expected a 2-d array (images x classes), got shape "
                         f"{probs.shape}")
    if n is not None and len(probs) != n:
        raise ValueError(f"{source}: {len(probs)} rows of probabilities for {n} images")
    if n_classes is not None and probs.shape[1] != n_classes:
        raise ValueError(f"{source}: {probs.shape[1]} classes per row, expected {n_classes}")
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise ValueError(f"{source}: row {int(np.flatnonzero(bad)[0])} is not finite "
                         f"(NaN or infinity)")
    bad = (probs < 0).any(axis=1)
    if bad.any():
        raise ValueError(f"{source}: row {int(np.flatnonzero(bad)[0])} has a negative "
                         f"probability")
    sums = probs.sum(axis=1)
    bad = np.abs(sums - 1) > SUM_TOLERANCE
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{source}: row {i} sums to {sums[i]:.4g}, not 1 (probabilities, "
                         f"not logits or scores?)")
    return probs


def _check_labels(labels: Any, probs: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (len(probs),):
        raise ValueError(f"{len(labels)} labels for {len(probs)} rows of probabilities")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    labels = labels.astype(np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in 0..{probs.shape[1] - 1} (unlabeled images "
                         f"have no label to check; leave them out)")
    return labels


def per_class_thresholds(labels: Any, pred_probs: Any) -> np.ndarray:
    """``t_j``: the mean probability of class ``j`` over the images labelled ``j``.

    A class no image carries gets threshold 1: only a certain prediction reaches it.

    Examples
    --------
    >>> per_class_thresholds([0, 0, 1], [[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]]).tolist()
    [0.7, 0.8]
    """
    probs = check_pred_probs(pred_probs)
    labels = _check_labels(labels, probs)
    k = probs.shape[1]
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros(k)
    np.add.at(sums, labels, probs[np.arange(len(labels)), labels])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)


def _likely_true(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per image, the most probable class among those reaching their threshold; -1 if none."""
    confident = probs >= thresholds[None, :] - 1e-12
    masked = np.where(confident, probs, -1.0)
    guess = masked.argmax(axis=1)
    return np.where(confident.any(axis=1), guess, -1)


def confident_joint(labels: Any, pred_probs: Any, *, calibrate: bool = True) -> np.ndarray:
    """The confident joint ``C[given, likely true]``, calibrated to the label counts.

    Uncalibrated, ``C[i, j]`` counts images labelled ``i`` that are confidently ``j``.
    Calibrated (the default), each row is rescaled to the number of images labelled
    ``i`` (rows with no confident image keep their diagonal), so the matrix sums to the
    number of images.

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]]
    >>> confident_joint([0, 0, 1, 1], probs, calibrate=False).tolist()
    [[1, 0], [1, 1]]
    >>> confident_joint([0, 0, 1, 1], probs).tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    """
    probs = check_pred_probs(pred_probs)
    labels = _check_labels(labels, probs)
    k = probs.shape[1]
    guess = _likely_true(probs, per_class_thresholds(labels, probs))
    counted = guess >= 0
    joint = np.zeros((k, k), np.int64)
    np.add.at(joint, (labels[counted], guess[counted]), 1)
    if not calibrate:
        return joint
    label_counts = np.bincount(labels, minlength=k).astype(np.float64)
    row_sums = joint.sum(axis=1).astype(np.float64)
    calibrated = np.where(row_sums[:, None] > 0,
                          joint / np.maximum(row_sums, 1)[:, None] * label_counts[:, None],
                          np.diag(label_counts))
    return calibrated


@dataclass(frozen=True)
class NoiseEstimate:
    """What confident learning estimates about the label noise.

    Attributes
    ----------
    joint : ndarray (K, K)
        ``Q[i, j] = p(given = i, true = j)``; sums to 1.
    noise_matrix : ndarray (K, K)
        ``p(given = i | true = j)``: columns sum to 1 (a class no image is estimated to
        be keeps the identity column).
    prior : ndarray (K,)
        ``p(true = j)``, the estimated class distribution of the true labels.
    counts : ndarray (K, K)
        ``joint * n``: estimated images per (given, true) pair; the off-diagonal row sums
        are the estimated label errors per given class.
    thresholds : ndarray (K,)
        The per-class thresholds used.

    Examples
    --------
    >>> est = estimate_noise([0, 0, 1, 1], [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]])
    >>> est.counts.tolist()
    [[2.0, 0.0], [1.0, 1.0]]
    >>> est.errors_per_class().tolist()
    [0.0, 1.0]
    """

    joint: np.ndarray
    noise_matrix: np.ndarray
    prior: np.ndarray
    counts: np.ndarray
    thresholds: np.ndarray

    def errors_per_class(self) -> np.ndarray:
        """Estimated mislabelled images per given class (off-diagonal row sums)."""
        return self.counts.sum(axis=1) - np.diag(self.counts)

    def to_dict(self, names: Any = None) -> dict[str, Any]:
        """Plain data for ``summary.json`` (matrices as nested lists, rows = given)."""
        names = list(names) if names is not None else list(range(len(self.prior)))
        return {
            "classes": names,
            "counts": np.round(self.counts, 2).tolist(),
            "noise_matrix": np.round(self.noise_matrix, 4).tolist(),
            "prior": np.round(self.prior, 4).tolist(),
            "thresholds": np.round(self.thresholds, 4).tolist(),
            "errors_per_class": dict(zip(names, np.round(self.errors_per_class(), 1).tolist(),
                                         strict=True)),
            "estimated_errors": round(float(self.errors_per_class().sum()), 1),
        }


def estimate_noise(labels: Any, pred_probs: Any) -> NoiseEstimate:
    """Estimate the joint of given and true labels, the noise matrix and the true prior.

    Examples
    --------
    >>> est = estimate_noise([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    >>> est.prior.round(3).tolist(), float(est.joint.sum().round(6))
    ([0.333, 0.667], 1.0)
    """
    probs = check_pred_probs(pred_probs)
    labels = _check_labels(labels, probs)
    counts = confident_joint(labels, probs, calibrate=True)
    n = max(len(labels), 1)
    joint = counts / n
    prior = joint.sum(axis=0)
    k = len(prior)
    noise = np.where(prior[None, :] > 0, joint / np.where(prior > 0, prior, 1)[None, :],
                     np.eye(k))
    return NoiseEstimate(joint=joint, noise_matrix=noise, prior=prior, counts=counts,
                         thresholds=per_class_thresholds(labels, probs))


def find_label_issues(labels: Any, pred_probs: Any, *, min_per_class: int = 1) -> np.ndarray:
    """Boolean mask of label issues, selected by the estimated noise rates.

    For each given class ``i`` and other class ``j``, the ``round(counts[i, j])`` images
    labelled ``i`` with the largest margin ``P[:, j] - P[:, i]`` are flagged (an image
    can be picked for several ``j``; it counts once). Images whose most probable class is
    their given label are never flagged, and at least ``min_per_class`` images of each
    class stay unflagged.

    Examples
    --------
    >>> probs = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.9, 0.1]]
    >>> find_label_issues([0, 0, 1, 1], probs).tolist()
    [False, False, False, True]
    """
    probs = check_pred_probs(pred_probs)
    labels = _check_labels(labels, probs)
    est = estimate_noise(labels, probs)
    k = probs.shape[1]
    issues = np.zeros(len(labels), bool)
    for i in range(k):
        members = np.flatnonzero(labels == i)
        if not len(members):
            continue
        budget = max(len(members) - min_per_class, 0)
        for j in range(k):
            take = min(int(np.round(est.counts[i, j])), budget) if j != i else 0
            if take <= 0:
                continue
            margin = probs[members, j] - probs[members, i]
            # stable: equal margins are taken in input order, so results are reproducible
            order = np.argsort(-margin, kind="stable")
            issues[members[order[:take]]] = True
    issues &= probs.argmax(axis=1) != labels
    return issues


def label_quality(labels: Any, pred_probs: Any, *, method: str = "self_confidence"
                  ) -> np.ndarray:
    """Per-image label quality in ``[0, 1]``; low means the label looks wrong.

    ``self_confidence`` is the probability of the given label; ``normalized_margin`` is
    ``(P[x, s] - max_{k != s} P[x, k] + 1) / 2``.

    Examples
    --------
    >>> probs = [[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]
    >>> label_quality([0, 0], probs).tolist()
    [0.7, 0.1]
    >>> label_quality([0, 0], probs, method="normalized_margin").round(3).tolist()
    [0.75, 0.25]
    """
    if method not in LABEL_QUALITY_METHODS:
        raise ValueError(f"method must be one of {', '.join(LABEL_QUALITY_METHODS)}; "
                         f"got {method!r}")
    probs = check_pred_probs(pred_probs)
    labels = _check_labels(labels, probs)
    rows = np.arange(len(labels))
    own = probs[rows, labels]
    if method == "self_confidence":
        return own
    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1) if probs.shape[1] > 1 else np.zeros(len(labels))
    return np.clip((own - best_other + 1) / 2, 0.0, 1.0)
