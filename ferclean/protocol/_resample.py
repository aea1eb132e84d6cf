"""Class rebalancing on the Training split only, and the guard against resampling leaks.

A published FER-2013 study oversampled the whole dataset *before* splitting it, so copies
of one image sat on both sides of the split and test accuracy rose to 82.7%. This module
makes that sequence fail loudly:

* the resamplers (:class:`RandomOverSampler`, :class:`SMOTE`) and :func:`class_weights`
  refuse any dataset that still holds PublicTest or PrivateTest images
  (:class:`LeakageError`); resample ``ds.split("Training")`` and evaluate on the
  untouched test splits;
* every resampled dataset carries ``resampled=True``, and :func:`random_split` refuses to
  split it;
* :func:`check_leakage` lists every test image with a pixel-identical copy in the
  training data, and :func:`assert_no_leakage` raises if there is any.

Resamplers follow imbalanced-learn: the public ``fit_resample`` validates the input,
normalises ``sampling_strategy`` once into ``sampling_strategy_`` and then calls the
subclass's ``_fit_resample``. ``sample_indices_`` traces every output image back to an
input image. SMOTE images are marked ``synthetic`` (``FaceDataset.synthetic``) so that they
are never published as data.
"""

from __future__ import annotations

import warnings
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from ferclean._validation import check_dataset, check_random_state, check_sampling_strategy
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset, split_code
from ferclean.errors import FercleanError, LeakageError, LeakageWarning  # noqa: F401
from ferclean.similarity.exact import content_hash

__all__ = [
    "RESAMPLERS",
    "LeakageError",
    "LeakageWarning",
    "NoResampler",
    "RandomOverSampler",
    "Resampler",
    "SMOTE",
    "assert_no_leakage",
    "check_leakage",
    "class_weights",
    "random_split",
    "resample",
]

_TRAINING = split_code("Training")
_LEAKAGE_COLUMNS = (
    "test_position",
    "test_id",
    "test_split",
    "train_position",
    "train_id",
    "kind",
    "similarity",
)
# Pairs whose pixels are compared per chunk when verifying hash matches: bounds memory
# (chunk * 2304 bytes per side) whatever the number of matching pairs.
_VERIFY_CHUNK = 65536


# ---------------------------------------------------------------------- validation
def _check_training_only(dataset: Any, action: str) -> FaceDataset:
    """Validate a dataset to rebalance: a FaceDataset, all Training, labelled, 2+ classes."""
    dataset = check_dataset(dataset)
    counts = np.bincount(dataset.splits, minlength=len(SPLITS))
    if counts[1:].any():
        held = " and ".join(
            f"{int(counts[code])} {SPLITS[code]}" for code in range(1, len(SPLITS)) if counts[code]
        )
        raise LeakageError(
            f"cannot {action} a dataset that holds test images ({held} image(s) present). "
            f"Resampling before splitting puts copies of one image on both sides of the "
            f"split and inflates test accuracy. Resample ds.split('Training') only, then "
            f"evaluate on the untouched test splits."
        )
    unlabeled = int(np.count_nonzero(dataset.labels < 0))
    if unlabeled:
        raise ValueError(
            f"cannot {action} unlabeled images: {unlabeled} of {len(dataset)} have label -1"
        )
    n_classes = int(np.count_nonzero(np.bincount(dataset.labels, minlength=len(EMOTIONS))))
    if n_classes < 2:
        raise ValueError(
            f"cannot {action} a dataset with {n_classes} class(es); at least 2 are needed"
        )
    return dataset


def _class_counts(labels: np.ndarray) -> dict[int, int]:
    """Images per label id, for the classes present, keys sorted."""
    counts = np.bincount(labels.astype(np.int64), minlength=len(EMOTIONS))
    return {int(c): int(counts[c]) for c in np.flatnonzero(counts)}


def _int_seed(random_state: Any) -> int | None:
    """An int seed for libraries that want one (imblearn, sklearn) from our random_state.

    A Generator is turned into a seed by drawing from it, so a given Generator state
    still gives a reproducible result; ints outside numpy's legacy seed range are mapped
    into it deterministically.
    """
    rng = check_random_state(random_state)  # also rejects unsupported types
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator) or not 0 <= random_state < 2**32:
        return int(rng.integers(0, 2**32))
    return int(random_state)


# ---------------------------------------------------------------------- resamplers
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
        instead; see :func:`ferclean._validation.check_sampling_strategy`.
    sample_indices_ : ndarray of int64, shape (n_images_out,)
        For every output image, the position in the input dataset of the image it came
        from (for SMOTE images, the base image it was interpolated from).
    counts_before_, counts_after_ : dict of int to int
        Images per label id before and after resampling.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> train = make_demo(n_faces=300).dataset.split("Training")
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
        """
        dataset = _check_training_only(dataset, "resample")
        self._check_params()
        # Resamplers without a strategy (NoResampler) add nothing to any class.
        if hasattr(self, "sampling_strategy"):
            self.sampling_strategy_ = check_sampling_strategy(
                self.sampling_strategy, dataset.labels
            )
        else:
            self.sampling_strategy_ = {}
        self.counts_before_ = _class_counts(dataset.labels)
        out, sample_indices = self._fit_resample(dataset)
        # Cheap consistency checks on the subclass's provenance, which the manifest uses.
        if len(sample_indices) != len(out) or not np.array_equal(
            dataset.labels[sample_indices], out.labels
        ):
            raise RuntimeError(f"{type(self).__name__} returned inconsistent sample_indices_")
        self.sample_indices_ = np.asarray(sample_indices, dtype=np.int64)
        self.counts_after_ = _class_counts(out.labels)
        return out

    def _check_params(self) -> None:
        """Validate the constructor's parameters (subclasses extend)."""
        check_random_state(getattr(self, "random_state", None))

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        raise NotImplementedError


def _extended(
    dataset: FaceDataset,
    pixels: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    rows: np.ndarray,
    synthetic: np.ndarray,
) -> FaceDataset:
    """The dataset followed by new Training images, marked as resampled."""
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


class NoResampler(Resampler):
    """Leave the classes as they are (the ``"none"`` method of :func:`resample`).

    Still validates that the dataset holds Training images only, so that switching the
    method never switches the leakage guard off.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> train = make_demo(n_faces=300).dataset.split("Training")
    >>> out = NoResampler().fit_resample(train)
    >>> out.equals(train), out.resampled
    (True, False)
    """

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        return dataset.subset(slice(None)), np.arange(len(dataset), dtype=np.int64)


class RandomOverSampler(Resampler):
    """Random oversampling: add copies of randomly drawn images of each small class.

    Parameters
    ----------
    sampling_strategy : str, float or dict, default="auto"
        ``"auto"`` (= ``"not majority"``), ``"not minority"``, ``"minority"``, ``"all"``;
        a float ``r`` in ``(0, 1]`` (grow every class to ``floor(r * n_majority)``); or a
        dict ``{label id or emotion name: target count}``. See
        :func:`ferclean._validation.check_sampling_strategy`.
    random_state : int, numpy Generator or None, default=0
        Seed of the draws (sources are drawn uniformly with replacement per class).

    Attributes
    ----------
    sampling_strategy_, sample_indices_, counts_before_, counts_after_
        See :class:`Resampler`.

    Notes
    -----
    Copies keep their source's label, pixels and ``rows`` (input position); their ids are
    ``"<source id>#copy<k>"``, the k-th copy of that source (k from 1). They are real
    images, so ``synthetic`` stays False, but the returned dataset has
    ``resampled=True``: splitting it now would put copies on both sides.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> train = make_demo(n_faces=300).dataset.split("Training")
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
        out = _extended(
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
    >>> from ferclean.demo import make_demo
    >>> train = make_demo(n_faces=300).dataset.split("Training")
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
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k_neighbors must be an int >= 1; got {k!r}")

    def _fit_resample(self, dataset: FaceDataset) -> tuple[FaceDataset, np.ndarray]:
        n = len(dataset)
        targets = {c: a for c, a in self.sampling_strategy_.items() if a > 0}
        self.neighbor_indices_ = np.full(n, -1, dtype=np.int64)
        if not targets:
            out = dataset.subset(slice(None))
            out.resampled = True
            return out, np.arange(n, dtype=np.int64)
        counts = self.counts_before_
        small = {c: counts[c] for c in targets if counts[c] <= self.k_neighbors}
        if small:
            shown = ", ".join(f"{EMOTIONS[c]} ({m})" for c, m in small.items())
            raise ValueError(
                f"SMOTE with k_neighbors={self.k_neighbors} needs more than "
                f"{self.k_neighbors} images in every class it grows; too few: {shown}. "
                f"Lower k_neighbors or use RandomOverSampler"
            )

        # float32, not uint8: imblearn casts its float result back to the input dtype,
        # which would truncate instead of round.
        X = dataset.pixels.reshape(n, IMAGE_SIZE * IMAGE_SIZE).astype(np.float32)
        y = dataset.labels.astype(np.int64)
        sampler = _tracing_smote()(
            # imblearn's dict strategy means target totals, not images to add.
            sampling_strategy={c: self.counts_before_[c] + a for c, a in targets.items()},
            k_neighbors=int(self.k_neighbors),
            random_state=_int_seed(self.random_state),
        )
        sampler.trace_ = []
        X_res, y_res = sampler.fit_resample(X, y)
        # imblearn returns the inputs unchanged, then the synthetic samples appended.
        new_x, new_y = X_res[n:], y_res[n:]
        base, neighbor = _smote_provenance(sampler.trace_, y, new_x, new_y, X)

        m = len(new_y)
        pixels = np.clip(np.rint(new_x), 0, 255).astype(np.uint8).reshape(m, IMAGE_SIZE, IMAGE_SIZE)
        out = _extended(
            dataset,
            pixels,
            new_y,
            np.char.add("smote-", np.arange(m).astype(str)),
            np.full(m, -1, dtype=np.int64),
            np.ones(m, dtype=bool),
        )
        self.neighbor_indices_ = np.concatenate([self.neighbor_indices_, neighbor])
        return out, np.concatenate([np.arange(n, dtype=np.int64), base])


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


#: Resampler classes by method name, for :func:`resample` and configs.
RESAMPLERS: dict[str, type[Resampler]] = {
    "none": NoResampler,
    "ros": RandomOverSampler,
    "smote": SMOTE,
}


def resample(dataset: FaceDataset, method: str = "ros", **params: Any) -> FaceDataset:
    """Rebalance the classes of a Training-only dataset with a resampler chosen by name.

    Parameters
    ----------
    dataset : FaceDataset
        Training images only (``ds.split("Training")``).
    method : {"none", "ros", "smote"}, default="ros"
        Key of :data:`RESAMPLERS`.
    **params
        Parameters of the resampler (``sampling_strategy``, ``random_state``, ...).

    Returns
    -------
    FaceDataset
        See :meth:`Resampler.fit_resample`.

    Raises
    ------
    LeakageError
        If the dataset holds test images.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> out = resample(ds.split("Training"), "ros", sampling_strategy="minority")
    >>> out.label_counts()["disgust"] == max(ds.label_counts("Training").values())
    True
    >>> resample(ds, "ros")
    Traceback (most recent call last):
    ...
    ferclean.errors.LeakageError: cannot resample a dataset that holds test images ...
    """
    if method not in RESAMPLERS:
        raise ValueError(
            f"unknown resampling method {method!r}; expected one of {', '.join(RESAMPLERS)}"
        )
    return RESAMPLERS[method](**params).fit_resample(dataset)


def class_weights(dataset: FaceDataset, *, strategy: str | None = "balanced") -> dict[int, float]:
    """Per-class loss weights computed on a Training-only dataset.

    ``"balanced"`` is scikit-learn's ``compute_class_weight("balanced")``:
    ``n_images / (n_classes * n_images_of_class)``, so every class contributes equally to
    the loss. Test images are refused: weights computed on them would leak the test label
    distribution into training.

    Parameters
    ----------
    dataset : FaceDataset
        Training images only, all labelled.
    strategy : {"balanced", None}, default="balanced"
        ``None`` gives every class weight 1.0.

    Returns
    -------
    dict of int to float
        Weight per label id present, keys sorted.

    Raises
    ------
    LeakageError
        If the dataset holds test images.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> w = class_weights(make_demo(n_faces=300).dataset.split("Training"))
    >>> w[1] > 1 > w[3]  # disgust is rare, happy common
    True
    """
    dataset = _check_training_only(dataset, "compute class weights for")
    counts = _class_counts(dataset.labels)
    if strategy is None:
        return dict.fromkeys(counts, 1.0)
    if strategy != "balanced":
        raise ValueError(f"strategy must be 'balanced' or None; got {strategy!r}")
    n, k = len(dataset), len(counts)
    return {c: n / (k * m) for c, m in counts.items()}


# ---------------------------------------------------------------------- splitting
def random_split(
    dataset: FaceDataset,
    test_size: float | int = 0.1,
    *,
    random_state: Any = 0,
    stratify: bool = False,
    allow_resampled: bool = False,
    test_split: str = "PublicTest",
) -> tuple[FaceDataset, FaceDataset]:
    """Split a dataset at random into a training part and a test part.

    This is the split the study made, after (wrongly) oversampling. It refuses a
    resampled dataset: resample the training part *after* splitting.

    Parameters
    ----------
    dataset : FaceDataset
    test_size : float or int, default=0.1
        Fraction of images in the test part (rounded up, as scikit-learn does) or their
        number.
    random_state : int, numpy Generator or None, default=0
    stratify : bool, default=False
        Keep the class proportions in both parts (scikit-learn's stratified split).
    allow_resampled : bool, default=False
        Split a resampled dataset anyway, with a :class:`LeakageWarning`; only to
        reproduce the study's mistake.
    test_split : str, default="PublicTest"
        Split name given to the test part; the training part becomes ``"Training"``, so
        that it can be resampled.

    Returns
    -------
    train, test : FaceDataset
        Each keeps the input order.

    Raises
    ------
    LeakageError
        If the dataset is resampled (or holds synthetic images) and ``allow_resampled``
        is False.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> train_all = make_demo(n_faces=300).dataset.split("Training")
    >>> train, val = random_split(train_all, 0.2, random_state=0)
    >>> len(val) == int(np.ceil(0.2 * len(train_all))), len(train) + len(val) == len(train_all)
    (True, True)
    >>> list(train.split_counts()), list(val.split_counts())
    (['Training'], ['PublicTest'])
    >>> random_split(resample(train_all, "ros"))
    Traceback (most recent call last):
    ...
    ferclean.errors.LeakageError: cannot split a resampled dataset: ...
    """
    dataset = check_dataset(dataset)
    test_code = split_code(test_split)
    n = len(dataset)
    if dataset.resampled or dataset.synthetic.any():
        message = (
            "splitting after resampling puts copies of the same image (or SMOTE images "
            "made from it) on both sides of the split, which inflates test accuracy; "
            "split first, then resample the training part only"
        )
        if not allow_resampled:
            raise LeakageError(f"cannot split a resampled dataset: {message}")
        warnings.warn(message, LeakageWarning, stacklevel=2)

    if isinstance(test_size, (int, np.integer)) and not isinstance(test_size, bool):
        n_test = int(test_size)
    elif isinstance(test_size, (float, np.floating)) and 0.0 < test_size < 1.0:
        n_test = int(np.ceil(test_size * n))
    else:
        raise ValueError(f"test_size must be a float in (0, 1) or an int; got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(
            f"test_size={test_size!r} gives {n_test} test image(s) out of {n}; "
            f"both parts need at least one"
        )

    if stratify:
        from sklearn.model_selection import train_test_split

        _, test_idx = train_test_split(
            np.arange(n),
            test_size=n_test,
            stratify=dataset.labels,
            random_state=_int_seed(random_state),
        )
    else:
        test_idx = check_random_state(random_state).permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train, test = dataset.subset(~is_test), dataset.subset(is_test)
    train.splits = np.full(len(train), _TRAINING, dtype=np.int8)
    test.splits = np.full(len(test), test_code, dtype=np.int8)
    return train, test


# ---------------------------------------------------------------------- leakage
def check_leakage(
    train: FaceDataset, test: FaceDataset, *, near: bool = False, mirror: bool = False
) -> pd.DataFrame:
    """List every test image that has a copy in the training data (exact, or also near).

    Images are matched by a 64-bit content hash and each match is then verified byte for
    byte, so the table is exact; the work is vectorised (no comparison of every test
    image with every training image).

    Parameters
    ----------
    train, test : FaceDataset
        The data a model trains on (resampled or not) and the data it is evaluated on.
    near : bool, default=False
        Also report near duplicates (re-encoded, re-lit, shifted, cropped, rotated copies),
        found with :class:`ferclean.similarity.near.NearDuplicateIndex` fitted on ``train``
        and verified on the pixels; their ``kind`` is ``"near"`` and ``similarity`` the
        verified correlation.
    mirror : bool, default=False
        With ``near``, also report horizontally flipped copies (``kind`` ``"mirror"``):
        a flipped copy of a test image in training is still a leak.

    Returns
    -------
    DataFrame
        One row per (test image, training image) pair of copies, sorted by
        ``test_position`` then ``train_position``, with columns ``test_position``,
        ``test_id``, ``test_split``, ``train_position``, ``train_id`` (positions index
        the two datasets), ``kind`` (``"exact"``) and ``similarity`` (1.0 for exact
        copies). Empty, with these columns, when nothing leaks. A training image that
        is an oversampled copy appears in a row of its own, next to its source.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> leaks = check_leakage(ds.split("Training"), ds.split(["PublicTest", "PrivateTest"]))
    >>> list(leaks.columns)
    ['test_position', 'test_id', 'test_split', 'train_position', 'train_id', 'kind', 'similarity']
    >>> len(leaks) > 0, set(leaks.kind)
    (True, {'exact'})
    """
    train = check_dataset(train, name="train")
    test = check_dataset(test, name="test")
    if mirror and not near:
        raise ValueError("mirror=True needs near=True")

    test_pos, train_pos = _hash_matches(content_hash(train.pixels), content_hash(test.pixels))
    if len(test_pos):
        same = np.ones(len(test_pos), dtype=bool)
        for start in range(0, len(test_pos), _VERIFY_CHUNK):
            part = slice(start, start + _VERIFY_CHUNK)
            same[part] = np.all(
                train.pixels[train_pos[part]] == test.pixels[test_pos[part]], axis=(1, 2)
            )
        test_pos, train_pos = test_pos[same], train_pos[same]
    kind = np.full(len(test_pos), "exact", dtype=object)
    similarity = np.ones(len(test_pos), dtype=np.float64)
    if near and len(train) and len(test):
        from ferclean.similarity.near import NearDuplicateIndex

        found = NearDuplicateIndex(mirror=mirror).fit(train).query(test)
        found = found[found["kind"] != "exact"]  # identical copies are listed above
        test_pos = np.concatenate([test_pos, found["new"].to_numpy(np.int64)])
        train_pos = np.concatenate([train_pos, found["fitted"].to_numpy(np.int64)])
        kind = np.concatenate([kind, found["kind"].to_numpy(object)])
        similarity = np.concatenate([similarity, found["similarity"].to_numpy(np.float64)])
    order = np.lexsort((train_pos, test_pos))
    test_pos, train_pos = test_pos[order], train_pos[order]
    kind, similarity = kind[order], similarity[order]
    return pd.DataFrame(
        {
            "test_position": test_pos.astype(np.int64),
            "test_id": test.ids[test_pos].astype(object),
            "test_split": np.asarray(SPLITS, dtype=object)[test.splits[test_pos]],
            "train_position": train_pos.astype(np.int64),
            "train_id": train.ids[train_pos].astype(object),
            "kind": kind,
            "similarity": similarity,
        },
        columns=list(_LEAKAGE_COLUMNS),
    )


def _hash_matches(train_hash: np.ndarray, test_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (test position, train position) pairs with equal hashes, via one sort."""
    order = np.argsort(train_hash, kind="stable")
    ordered = train_hash[order]
    lo = np.searchsorted(ordered, test_hash, side="left")
    hi = np.searchsorted(ordered, test_hash, side="right")
    counts = hi - lo
    total = int(counts.sum())
    test_pos = np.repeat(np.arange(len(test_hash), dtype=np.int64), counts)
    # Offset of each pair inside its test image's run of equal train hashes.
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    train_pos = order[np.repeat(lo, counts) + within].astype(np.int64)
    return test_pos, train_pos


def assert_no_leakage(train: FaceDataset, test: FaceDataset, *, near: bool = False) -> None:
    """Raise :class:`LeakageError` if any test image has a copy in the training data.

    Parameters
    ----------
    train, test : FaceDataset
    near : bool, default=False
        As for :func:`check_leakage`.

    Raises
    ------
    LeakageError
        Naming how many test images leak, with up to five examples.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> assert_no_leakage(ds.split("Training")[:50], ds.split("PrivateTest")[:5])
    >>> assert_no_leakage(ds.split("Training"), ds.split(["PublicTest", "PrivateTest"]))
    Traceback (most recent call last):
    ...
    ferclean.errors.LeakageError: ... test image(s) have a copy in the training data ...
    """
    leaks = check_leakage(train, test, near=near)
    if len(leaks):
        n_images = leaks.test_position.nunique()
        shown = "; ".join(
            f"test {r.test_id} ({r.test_split}) = train {r.train_id}"
            for r in leaks.drop_duplicates("test_position").head(5).itertuples()
        )
        more = f" (and {n_images - 5} more)" if n_images > 5 else ""
        raise LeakageError(
            f"{n_images} of {len(test)} test image(s) have a copy in the training data "
            f"({len(leaks)} pair(s)): {shown}{more}. Remove them from training (see "
            f"ferclean's cross-split leak audit) before evaluating."
        )
