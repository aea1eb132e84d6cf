"""The honest protocol: resamplers (Training only), random splits, leakage checks."""

from ferclean.protocol._resample import (
    RESAMPLERS,
    SMOTE,
    LeakageError,
    LeakageWarning,
    NoResampler,
    RandomOverSampler,
    Resampler,
    assert_no_leakage,
    check_leakage,
    class_weights,
    random_split,
    resample,
)
from ferclean.protocol.splits import honest_splits

__all__ = [
    "RESAMPLERS",
    "SMOTE",
    "LeakageError",
    "LeakageWarning",
    "NoResampler",
    "RandomOverSampler",
    "Resampler",
    "assert_no_leakage",
    "check_leakage",
    "class_weights",
    "honest_splits",
    "random_split",
    "resample",
]
