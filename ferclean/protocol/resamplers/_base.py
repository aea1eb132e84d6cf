"""The resampler base class: imbalanced-learn's template method on a ``FaceDataset``."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ferclean._validation import check_random_state
from ferclean.dataset import FaceDataset, split_code
from ferclean.protocol._checks import check_training_only, class_counts
from ferclean.protocol.resamplers._strategy import resolve_sampling_strategy

_TRAINING = split_code("Training")


class Resampler(BaseEstimator):
    """Base class of ferclean's resamplers (imbalanced-learn's template method).

    :meth:`fit_resample` validates the dataset (Training images only, all labelled, at
    least two classes), normalises ``sampling_strategy`` into ``sampling_strategy_`` and
    calls ``_fit_resample(dataset)``, which subclasses implement and which returns the
    resampled dataset and its ``sample_indices_``.

    Attributes
    ----------
    sampling_strategy_ : dict of int to int
        Number of images to **add** to each targeted class (label id), as in
        imbalanced-learn's over-samplers. A dict ``sampling_strategy`` gives target totals
        instead; see :class:`RandomOverSampler`.
    sample_indices_ : ndarray of int64, shape (n_images_out,)
        For every output image, the position in the input dataset of the image it came
        from (for SMOTE images, the base image it was interpolated from).
    counts_before_, counts_after_ : dict of int to int
        Images per label id before and after resampling.

    See Also
    --------
    RandomOverSampler, SMOTE, NoResampler

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.protocol import RandomOverSampler
    >>> train = demo_dataset(n_faces=300).split("Training")
    >>> out = RandomOverSampler().fit_resample(train)  # any subclass
    >>> out.resampled, len(set(out.label_counts().values()))
    (True, 1)
    """

    def fit_resample(self, dataset: FaceDataset) -> FaceDataset:
        """Resample a Training-only dataset.

        Parameters
        ----------
        dataset : FaceDataset
            Images of the Training split only (``ds.split("Training")``), all labelled.

        Returns
        -------
        FaceDataset
            The input images in their order, followed by the added images grouped by
            class (label id order). Marked ``resampled=True`` unless nothing was resampled
            (:class:`NoResampler`).

        Raises
        ------
        LeakageError
            If the dataset holds PublicTest or PrivateTest images.

        Examples
        --------
        >>> from ferclean.demo import demo_dataset
        >>> from ferclean.protocol import RandomOverSampler
        >>> train = demo_dataset(n_faces=300).split("Training")
        >>> ros = RandomOverSampler(sampling_strategy="minority")
        >>> len(ros.fit_resample(train)) == len(train) + sum(ros.sampling_strategy_.values())
        True
        """
        dataset = check_training_only(dataset, "resample")
        self._check_params()
        # Resamplers without a strategy (NoResampler) add nothing to any class.
        if hasattr(self, "sampling_strategy"):
            self.sampling_strategy_ = resolve_sampling_strategy(
                self.sampling_strategy, dataset.labels
            )
        else:
            self.sampling_strategy_ = {}
        self.counts_before_ = class_counts(dataset.labels)
        out, sample_indices = self._fit_resample(dataset)
        # Cheap consistency checks on the subclass's provenance, which the manifest uses.
        if len(sample_indices) != len(out) or not np.array_equal(
            dataset.labels[sample_indices], out.labels
        ):
            raise RuntimeError(f"{type(self).__name__} returned inconsistent sample_indices_")
        self.sample_indices_ = np.asarray(sample_indices, dtype=np.int64)
        self.counts_after_ = class_counts(out.labels)
        return out

    def _check_params(self) -> None:
        """Validate the constructor's parameters (subclasses extend)."""
        check_random_state(getattr(self, "random_state", None))

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        """The algorithm: the resampled dataset and, per output image, its input position."""
        raise NotImplementedError


def extended(
    dataset: FaceDataset,
    pixels: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    rows: np.ndarray,
    synthetic: np.ndarray,
) -> FaceDataset:
    """The dataset followed by new Training images, marked as resampled.

    Examples
    --------
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 1])
    >>> out = extended(ds, ds.pixels[:1], ds.labels[:1], np.array(["x"]), ds.rows[:1],
    ...                np.zeros(1, bool))
    >>> len(out), out.resampled
    (3, True)
    """
    return FaceDataset(
        np.concatenate([dataset.pixels, pixels]),
        labels=np.concatenate([dataset.labels, labels.astype(np.int8)]),
        splits=np.full(len(dataset) + len(pixels), _TRAINING, dtype=np.int8),
        ids=np.concatenate([dataset.ids, ids.astype(str)]),
        rows=np.concatenate([dataset.rows, rows.astype(np.int64)]),
        source=dataset.source,
        dropped=dataset.dropped,
        synthetic=np.concatenate([dataset.synthetic, synthetic.astype(bool)]),
        resampled=True,
    )
