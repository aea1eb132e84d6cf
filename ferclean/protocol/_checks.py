"""Checks shared by the protocol's resamplers, class weights and splits."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferclean._validation import check_dataset, check_random_state
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.errors import LeakageError


def check_training_only(dataset: Any, action: str) -> FaceDataset:
    """Validate a dataset to rebalance: a FaceDataset, all Training, labelled, 2+ classes.

    ``action`` completes the messages ("cannot <action> a dataset that ...").

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> len(check_training_only(ds.split("Training"), "resample")) > 0
    True
    >>> check_training_only(ds, "resample")
    Traceback (most recent call last):
    ...
    ferclean.errors.LeakageError: cannot resample a dataset that holds test images ...
    """
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


def class_counts(labels: np.ndarray) -> dict[int, int]:
    """Images per label id, for the classes present, keys sorted.

    Examples
    --------
    >>> class_counts(np.array([3, 0, 3]))
    {0: 1, 3: 2}
    """
    counts = np.bincount(labels.astype(np.int64), minlength=len(EMOTIONS))
    return {int(c): int(counts[c]) for c in np.flatnonzero(counts)}


def int_seed(random_state: Any) -> int | None:
    """An int seed for libraries that want one (imblearn, sklearn) from our random_state.

    A Generator is turned into a seed by drawing from it, so a given Generator state
    still gives a reproducible result; ints outside numpy's legacy seed range are mapped
    into it deterministically.

    Examples
    --------
    >>> int_seed(7), int_seed(None)
    (7, None)
    >>> int_seed(np.random.default_rng(0)) == int_seed(np.random.default_rng(0))
    True
    """
    rng = check_random_state(random_state)  # also rejects unsupported types
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator) or not 0 <= random_state < 2**32:
        return int(rng.integers(0, 2**32))
    return int(random_state)
