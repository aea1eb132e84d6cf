"""The honest protocol: resamplers (Training only), splits, class weights, leakage checks.

A published FER-2013 study oversampled the whole dataset *before* splitting it, so copies
of one image sat on both sides of the split and test accuracy rose to 82.7%. This package
makes that sequence fail loudly:

* the resamplers (:class:`RandomOverSampler`, :class:`SMOTE`) and :func:`class_weights`
  refuse any dataset that still holds PublicTest or PrivateTest images
  (:class:`LeakageError`); resample ``ds.split("Training")`` and evaluate on the
  untouched test splits;
* every resampled dataset carries ``resampled=True``, and :func:`random_split` refuses to
  split it;
* :func:`check_leakage` lists every test image with a copy in the training data, and
  :func:`assert_no_leakage` raises if there is any.

Modules: ``resamplers/`` (one estimator per module), ``splits`` (:func:`honest_splits`,
:func:`random_split`), ``weights`` (:func:`class_weights`) and ``leakage``. Nothing here
imports from the auditors, cleaning, learning, reporting or the benchmark suite.
"""

from ferclean.errors import LeakageError, LeakageWarning
from ferclean.protocol.leakage import assert_no_leakage, check_leakage
from ferclean.protocol.resamplers import (
    RESAMPLERS,
    SMOTE,
    NoResampler,
    RandomOverSampler,
    Resampler,
    resample,
)
from ferclean.protocol.splits import honest_splits, random_split
from ferclean.protocol.weights import class_weights

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
