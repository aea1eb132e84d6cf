"""The resampler that resamples nothing, so that switching methods keeps the leakage guard."""

from __future__ import annotations

import numpy as np

from ferclean.dataset import FaceDataset
from ferclean.protocol.resamplers._base import Resampler


class NoResampler(Resampler):
    """Leave the classes as they are (the ``"none"`` method of :func:`resample`).

    Still validates that the dataset holds Training images only, so that switching the
    method never switches the leakage guard off.

    Attributes
    ----------
    sampling_strategy_ : dict
        Always ``{}``.
    sample_indices_, counts_before_, counts_after_
        See :class:`Resampler`.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> train = demo_dataset(n_faces=300).split("Training")
    >>> out = NoResampler().fit_resample(train)
    >>> out.equals(train), out.resampled
    (True, False)
    """

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        return dataset.subset(slice(None)), np.arange(len(dataset), dtype=np.int64)
