"""Random oversampling: copies of randomly drawn images of each class to grow."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferclean._validation import check_random_state
from ferclean.dataset import FaceDataset
from ferclean.protocol.resamplers._base import Resampler, extended


class RandomOverSampler(Resampler):
    """Random oversampling: add copies of randomly drawn images of each small class.

    Parameters
    ----------
    sampling_strategy : str, float or dict, default="auto"
        ``"auto"`` (= ``"not majority"``), ``"not minority"``, ``"minority"``, ``"all"``;
        a float ``r`` in ``(0, 1]`` (grow every class to ``floor(r * n_majority)``); or a
        dict ``{label id or emotion name: target count}``, e.g. ``{"disgust": 500}``.
        Normalised by imbalanced-learn's ``check_sampling_strategy``, with emotion names
        mapped to label ids.
    random_state : int, numpy Generator or None, default=0
        Seed of the draws (sources are drawn uniformly with replacement per class).

    Attributes
    ----------
    sampling_strategy_, sample_indices_, counts_before_, counts_after_
        See :class:`Resampler`.

    See Also
    --------
    SMOTE : synthetic images instead of copies.

    Notes
    -----
    Copies keep their source's label, pixels and ``rows`` (input position); their ids are
    ``"<source id>#copy<k>"``, the k-th copy of that source (k from 1). They are real
    images, so ``synthetic`` stays False, but the returned dataset has
    ``resampled=True``: splitting it now would put copies on both sides.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> train = demo_dataset(n_faces=300).split("Training")
    >>> ros = RandomOverSampler(sampling_strategy={"disgust": 40}, random_state=0)
    >>> out = ros.fit_resample(train)
    >>> ros.sampling_strategy_ == {1: 40 - train.label_counts()["disgust"]}
    True
    >>> out.label_counts()["disgust"]
    40
    >>> bool((out.pixels == train.pixels[ros.sample_indices_]).all())
    True
    >>> str(out.ids[-1]).split("#")[1].startswith("copy")
    True
    """

    def __init__(self, *, sampling_strategy: Any = "auto", random_state: Any = 0) -> None:
        self.sampling_strategy = sampling_strategy
        self.random_state = random_state

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        rng = check_random_state(self.random_state)
        parts = []
        for label, n_add in self.sampling_strategy_.items():  # at most 7 classes
            if n_add:
                members = np.flatnonzero(dataset.labels == label)
                parts.append(members[rng.integers(0, members.size, size=n_add)])
        added = np.concatenate(parts) if parts else np.empty(0, np.int64)
        copy_no = _occurrence_number(added) + 1
        ids = np.char.add(np.char.add(dataset.ids[added].astype(str), "#copy"), copy_no.astype(str))
        out = extended(
            dataset,
            dataset.pixels[added],
            dataset.labels[added],
            ids,
            dataset.rows[added],
            dataset.synthetic[added],  # a copy of a synthetic image is still synthetic
        )
        return out, np.concatenate([np.arange(len(dataset), dtype=np.int64), added])


def _occurrence_number(values: np.ndarray) -> np.ndarray:
    """For each element, how many equal elements precede it (0 for the first)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]]) if len(values) else []
    run_start = np.repeat(starts, np.diff(np.r_[starts, len(values)]).astype(np.int64))
    out = np.empty(len(values), dtype=np.int64)
    out[order] = np.arange(len(values)) - run_start
    return out
