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
    "random_split",
    "resample",
]
