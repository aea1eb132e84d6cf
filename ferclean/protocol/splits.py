"""Splits: FER-2013's own (the honest way) and a random one that refuses resampled data.

Train on Training, tune on PublicTest, test once on PrivateTest (:func:`honest_splits`).
:func:`random_split` is the split a published study made *after* oversampling the whole
dataset, which put copies of one image on both sides and inflated test accuracy to 82.7%;
it refuses a resampled dataset unless told to reproduce that mistake.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ferclean._validation import check_dataset, check_random_state
from ferclean.dataset import FaceDataset, split_code
from ferclean.errors import LeakageError, LeakageWarning
from ferclean.protocol._checks import int_seed

__all__ = ["honest_splits", "random_split"]

_TRAINING = split_code("Training")


def honest_splits(dataset: FaceDataset) -> tuple[FaceDataset, FaceDataset, FaceDataset]:
    """FER-2013's own splits: (Training, PublicTest, PrivateTest).

    Train on Training, pick epochs and learning rates on PublicTest, and report
    PrivateTest once. Resampling and class weights belong to Training only; a test split
    holding synthetic (e.g. SMOTE) images is refused.

    Parameters
    ----------
    dataset : FaceDataset
        A dataset with FER-2013's three splits.

    Returns
    -------
    train, val, test : FaceDataset
        The Training, PublicTest and PrivateTest images, each in input order.

    Raises
    ------
    LeakageError
        If PublicTest or PrivateTest holds synthetic images.
    ValueError
        If the Training split is empty.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> train_ds, val_ds, test_ds = honest_splits(demo_dataset(n_faces=300))
    >>> len(train_ds) > len(val_ds) > 0 and len(test_ds) > 0
    True
    """
    dataset = check_dataset(dataset)
    parts = tuple(dataset.split(name) for name in ("Training", "PublicTest", "PrivateTest"))
    if len(parts[0]) == 0:
        raise ValueError("the dataset has no Training images to train on")
    for part, name in zip(parts[1:], ("PublicTest", "PrivateTest"), strict=True):
        if part.synthetic.any():
            raise LeakageError(
                f"{name} holds {int(part.synthetic.sum())} synthetic image(s); resample the "
                f"Training split only and keep the test splits untouched"
            )
    return parts  # type: ignore[return-value]


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
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.protocol import resample
    >>> train_all = demo_dataset(n_faces=300).split("Training")
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
    if dataset.resampled or dataset.synthetic.any():
        message = (
            "splitting after resampling puts copies of the same image (or SMOTE images "
            "made from it) on both sides of the split, which inflates test accuracy; "
            "split first, then resample the training part only"
        )
        if not allow_resampled:
            raise LeakageError(f"cannot split a resampled dataset: {message}")
        warnings.warn(message, LeakageWarning, stacklevel=2)
    n = len(dataset)
    n_test = _n_test(test_size, n)
    if stratify:
        from sklearn.model_selection import train_test_split

        _, test_idx = train_test_split(
            np.arange(n), test_size=n_test, stratify=dataset.labels,
            random_state=int_seed(random_state),
        )
    else:
        test_idx = check_random_state(random_state).permutation(n)[:n_test]
    is_test = np.zeros(n, dtype=bool)
    is_test[test_idx] = True
    train, test = dataset.subset(~is_test), dataset.subset(is_test)
    train.splits = np.full(len(train), _TRAINING, dtype=np.int8)
    test.splits = np.full(len(test), test_code, dtype=np.int8)
    return train, test


def _n_test(test_size: Any, n: int) -> int:
    """The number of test images ``test_size`` asks for, out of ``n``.

    Not ``check_scalar``: an int and a float mean different things here, and the message
    says how many images a fraction gave.
    """
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
    return n_test
