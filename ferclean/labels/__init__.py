"""Label noise: confident learning, the copies' vote, and aligning user probabilities.

Layer 2 (beside :mod:`ferclean.similarity`): pure numpy on labels, probabilities and
duplicate groups; no model is trained here (:func:`ferclean.learning.crossval` makes the
out-of-fold probabilities) and nothing is printed.
"""

from ferclean.labels.confident import (
    LABEL_QUALITY_METHODS,
    NoiseEstimate,
    check_pred_probs,
    confident_joint,
    estimate_noise,
    find_label_issues,
    label_quality,
    per_class_thresholds,
)
from ferclean.labels.probs import PredProbs, align_pred_probs, read_pred_probs
from ferclean.labels.votes import CopiesVote, copies_vote

__all__ = [
    "LABEL_QUALITY_METHODS",
    "CopiesVote",
    "NoiseEstimate",
    "PredProbs",
    "align_pred_probs",
    "copies_vote",
    "read_pred_probs",
    "check_pred_probs",
    "confident_joint",
    "estimate_noise",
    "find_label_issues",
    "label_quality",
    "per_class_thresholds",
]
