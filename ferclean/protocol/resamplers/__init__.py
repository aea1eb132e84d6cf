"""Resamplers in imbalanced-learn's style, one per module, for Training images only.

The public ``fit_resample`` (:class:`Resampler`) validates the input, normalises
``sampling_strategy`` once into ``sampling_strategy_`` and then calls the subclass's
``_fit_resample``; ``sample_indices_`` traces every output image back to an input image.
SMOTE images are marked ``synthetic`` so that they are never published as data.
"""

from ferclean.protocol.resamplers._base import Resampler
from ferclean.protocol.resamplers._none import NoResampler
from ferclean.protocol.resamplers._random_over_sampler import RandomOverSampler
from ferclean.protocol.resamplers._registry import RESAMPLERS, resample
from ferclean.protocol.resamplers._smote import SMOTE

__all__ = ["RESAMPLERS", "SMOTE", "NoResampler", "RandomOverSampler", "Resampler", "resample"]
