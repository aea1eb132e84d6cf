"""SMOTE (imbalanced-learn underneath), with the provenance imbalanced-learn does not expose."""

from __future__ import annotations

import numbers
from functools import cache
from typing import Any

import numpy as np
from sklearn.utils import check_scalar

from ferclean.dataset import EMOTIONS, IMAGE_SIZE, FaceDataset
from ferclean.protocol._checks import int_seed
from ferclean.protocol.resamplers._base import Resampler, extended


class SMOTE(Resampler):
    """SMOTE (imbalanced-learn): new images interpolated between same-class neighbours.

    Each synthetic image is ``x + u * (x_nn - x)`` for an image ``x`` of the class, one of
    its ``k_neighbors`` nearest same-class images ``x_nn`` (Euclidean distance on the
    pixels) and ``u`` uniform in ``[0, 1)``, rounded back to uint8.

    Parameters
    ----------
    sampling_strategy : str, float or dict, default="auto"
        As for :class:`RandomOverSampler`.
    k_neighbors : int, default=5
        Neighbours to interpolate towards; every class to grow needs more images than this.
    random_state : int, numpy Generator or None, default=0
        Seed handed to imbalanced-learn (a Generator is turned into a seed by a draw).

    Attributes
    ----------
    sampling_strategy_, counts_before_, counts_after_
        See :class:`Resampler`.
    sample_indices_ : ndarray of int64
        Input position of every output image; for a synthetic image, its base image ``x``.
    neighbor_indices_ : ndarray of int64
        For a synthetic image, the input position of the neighbour ``x_nn`` it was drawn
        towards; -1 for the input images.

    See Also
    --------
    RandomOverSampler : copies instead of synthetic images.

    Notes
    -----
    Synthetic images are marked ``synthetic=True``, with ids ``"smote-<k>"`` (k from 0),
    ``rows`` -1 (they come from no input record) and split Training. They are training
    material only: never publish them as data. Should a future imbalanced-learn stop
    calling the hook that records base images, ``sample_indices_`` falls back to the
    nearest same-class input image (usually, not always, the base or its neighbour) and
    ``neighbor_indices_`` to -1.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> train = demo_dataset(n_faces=300).split("Training")
    >>> smote = SMOTE(random_state=0)
    >>> out = smote.fit_resample(train)
    >>> set(out.label_counts().values()) == {max(train.label_counts().values())}
    True
    >>> int(out.synthetic.sum()) == len(out) - len(train), str(out.ids[len(train)])
    (True, 'smote-0')
    """

    def __init__(
        self, *, sampling_strategy: Any = "auto", k_neighbors: int = 5, random_state: Any = 0
    ) -> None:
        self.sampling_strategy = sampling_strategy
        self.k_neighbors = k_neighbors
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        k = self.k_neighbors
        try:
            if isinstance(k, bool):  # check_scalar takes True for an Integral
                raise TypeError("bool")
            check_scalar(k, "k_neighbors", numbers.Integral, min_val=1)
        except (TypeError, ValueError) as err:  # one message for both: what is allowed
            raise type(err)(f"k_neighbors must be an int >= 1; got {k!r}") from err

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        n = len(dataset)
        targets = {c: a for c, a in self.sampling_strategy_.items() if a > 0}
        self.neighbor_indices_ = np.full(n, -1, dtype=np.int64)
        if not targets:
            out = dataset.subset(slice(None))
            out.resampled = True
            return out, np.arange(n, dtype=np.int64)
        self._check_class_sizes(targets)

        # float32, not uint8: imblearn casts its float result back to the input dtype,
        # which would truncate instead of round.
        X = dataset.pixels.reshape(n, IMAGE_SIZE * IMAGE_SIZE).astype(np.float32)
        y = dataset.labels.astype(np.int64)
        sampler = _tracing_smote()(
            # imblearn's dict strategy means target totals, not images to add.
            sampling_strategy={c: self.counts_before_[c] + a for c, a in targets.items()},
            k_neighbors=int(self.k_neighbors),
            random_state=int_seed(self.random_state),
        )
        sampler.trace_ = []
        X_res, y_res = sampler.fit_resample(X, y)
        # imblearn returns the inputs unchanged, then the synthetic samples appended.
        new_x, new_y = X_res[n:], y_res[n:]
        base, neighbor = _smote_provenance(sampler.trace_, y, new_x, new_y, X)

        m = len(new_y)
        pixels = np.clip(np.rint(new_x), 0, 255).astype(np.uint8).reshape(m, IMAGE_SIZE, IMAGE_SIZE)
        out = extended(
            dataset,
            pixels,
            new_y,
            np.char.add("smote-", np.arange(m).astype(str)),
            np.full(m, -1, dtype=np.int64),
            np.ones(m, dtype=bool),
        )
        self.neighbor_indices_ = np.concatenate([self.neighbor_indices_, neighbor])
        return out, np.concatenate([np.arange(n, dtype=np.int64), base])

    def _check_class_sizes(self, targets: dict[int, int]) -> None:
        """Refuse, naming them, classes too small for ``k_neighbors`` neighbours."""
        small = {c: self.counts_before_[c] for c in targets
                 if self.counts_before_[c] <= self.k_neighbors}
        if small:
            shown = ", ".join(f"{EMOTIONS[c]} ({m})" for c, m in small.items())
            raise ValueError(
                f"SMOTE with k_neighbors={self.k_neighbors} needs more than "
                f"{self.k_neighbors} images in every class it grows; too few: {shown}. "
                f"Lower k_neighbors or use RandomOverSampler"
            )


@cache
def _tracing_smote() -> type:
    """imblearn's SMOTE, recording which images each synthetic image was made from.

    imblearn does not expose the base image of its synthetic samples; it passes them to
    ``_generate_samples`` (class by class, in the order the samples are appended), so
    this subclass records them there. Built lazily: importing imblearn is slow.
    """
    from imblearn.over_sampling import SMOTE as ImblearnSMOTE

    class TracingSMOTE(ImblearnSMOTE):
        def _generate_samples(self, X, nn_data, nn_num, rows, cols, steps, y_type=None, y=None):
            self.trace_.append((y_type, np.asarray(rows), np.asarray(nn_num[rows, cols])))
            return super()._generate_samples(X, nn_data, nn_num, rows, cols, steps, y_type, y)

    return TracingSMOTE


def _smote_provenance(
    trace: list, y: np.ndarray, new_x: np.ndarray, new_y: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Input positions of the base and neighbour image of every synthetic sample."""
    if trace:
        classes = np.concatenate([np.full(len(rows), c) for c, rows, _ in trace])
        if np.array_equal(classes, new_y):
            # The hook's rows index the class's own images; map them to input positions.
            base, neighbor = [], []
            for c, rows, nbr in trace:
                members = np.flatnonzero(y == c)
                base.append(members[rows])
                neighbor.append(members[nbr])
            return np.concatenate(base).astype(np.int64), np.concatenate(neighbor).astype(np.int64)
    # Fallback: the hook did not fire as expected, so name the nearest same-class image,
    # usually one of the two images the sample was interpolated between.
    base = np.empty(len(new_y), dtype=np.int64)
    for c in np.unique(new_y):
        new_idx = np.flatnonzero(new_y == c)
        members = np.flatnonzero(y == c)
        a, b = new_x[new_idx].astype(np.float64), X[members].astype(np.float64)
        dist = (b * b).sum(1)[None, :] - 2.0 * a @ b.T  # |a|^2 is the same along a row
        base[new_idx] = members[np.argmin(dist, axis=1)]
    return base, np.full(len(new_y), -1, dtype=np.int64)
