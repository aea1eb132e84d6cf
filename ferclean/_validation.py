"""Input checks shared by public functions; messages say what was received and allowed."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferclean.dataset import FaceDataset


def check_dataset(dataset: Any, *, name: str = "dataset") -> FaceDataset:
    """Raise ``TypeError`` unless ``dataset`` is a :class:`FaceDataset`.

    Examples
    --------
    >>> import numpy as np
    >>> len(check_dataset(FaceDataset(np.zeros((1, 48, 48), np.uint8))))
    1
    """
    if not isinstance(dataset, FaceDataset):
        raise TypeError(
            f"{name} must be a ferclean.FaceDataset (see ferclean.io.load); "
            f"got {type(dataset).__name__}"
        )
    return dataset


def check_fraction(value: Any, name: str, *, low: float = 0.0, high: float = 1.0) -> float:
    """Validate a number in ``[low, high]``.

    Examples
    --------
    >>> check_fraction(0.5, "contamination")
    0.5
    """
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [{low}, {high}]; got {value!r}") from None
    if not (low <= out <= high) or np.isnan(out):
        raise ValueError(f"{name} must be in [{low}, {high}]; got {value!r}")
    return out


def check_positive(value: Any, name: str) -> float:
    """Validate a strictly positive number.

    Examples
    --------
    >>> check_positive(1.5, "whisker")
    1.5
    """
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; got {value!r}") from None
    if not out > 0:
        raise ValueError(f"{name} must be > 0; got {value!r}")
    return out


def check_random_state(seed: Any) -> np.random.Generator:
    """Turn ``None``, an int or a ``Generator`` into a ``Generator``.

    Examples
    --------
    >>> int(check_random_state(0).integers(10)) == int(check_random_state(0).integers(10))
    True
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise TypeError(f"random_state must be None, an int or a numpy Generator; got {seed!r}")

