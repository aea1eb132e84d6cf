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


def check_sampling_strategy(sampling_strategy: Any, labels: Any) -> dict[int, int]:
    """Normalise an over-sampling ``sampling_strategy`` into ``{label id: images to add}``.

    Follows imbalanced-learn's conventions for over-sampling. The class counts are those
    of ``labels``; the majority (and minority) class is the most (least) frequent one,
    ties going to the lowest label id.

    * ``"auto"`` / ``"not majority"``: every class but the majority grows to the
      majority's count; ``"not minority"`` every class but the minority;
      ``"minority"`` only the minority class; ``"all"`` every class (the majority
      gets 0 new images).
    * float ``r`` in ``(0, 1]``: every class but the majority grows to
      ``floor(r * n_majority)`` images (classes already that large get 0). imblearn
      allows a float for two classes only; this is the same rule applied to each class.
    * dict ``{label id or emotion name: target count}``: each listed class grows to the
      given number of images *in total*; unlisted classes are left alone.

    Parameters
    ----------
    sampling_strategy : str, float or dict
    labels : array-like of int
        Label ids ``0..6`` of the images to resample (no ``-1``).

    Returns
    -------
    dict of int to int
        Number of images to *add* per targeted class, keys sorted. Note that a dict input
        gives target totals, while the result gives counts to add, as in imblearn.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 0, 3, 3, 6])
    >>> check_sampling_strategy("auto", labels)
    {3: 2, 6: 3}
    >>> check_sampling_strategy(0.5, labels)
    {3: 0, 6: 1}
    >>> check_sampling_strategy({"neutral": 3}, labels)
    {6: 2}
    """
    # Imported here: this module's existing imports are left exactly as they were.
    from ferclean.dataset import EMOTIONS, label_code

    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("sampling_strategy needs labelled images; found label -1")
    counts = np.bincount(labels.astype(np.int64), minlength=len(EMOTIONS))
    present = np.flatnonzero(counts)
    if present.size == 0:
        raise ValueError("cannot resample an empty dataset")
    # argmax/argmin return the first extreme, i.e. the lowest label id on ties.
    majority = int(present[np.argmax(counts[present])])
    minority = int(present[np.argmin(counts[present])])
    n_major = int(counts[majority])

    if isinstance(sampling_strategy, str):
        targets_by_name = {
            "auto": [c for c in present if c != majority],
            "not majority": [c for c in present if c != majority],
            "not minority": [c for c in present if c != minority],
            "minority": [minority],
            "all": list(present),
        }
        targets = targets_by_name.get(sampling_strategy)
        if targets is None:
            raise ValueError(
                f"sampling_strategy must be one of {', '.join(map(repr, targets_by_name))}, "
                f"a float in (0, 1] or a dict {{label: count}}; got {sampling_strategy!r}"
            )
        return {int(c): n_major - int(counts[c]) for c in sorted(targets)}

    if isinstance(sampling_strategy, (float, np.floating)) and not isinstance(
        sampling_strategy, bool
    ):
        ratio = float(sampling_strategy)
        if not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"a float sampling_strategy is the wanted ratio of each class to the majority "
                f"class and must be in (0, 1]; got {sampling_strategy!r}"
            )
        target = int(np.floor(ratio * n_major))
        return {int(c): max(0, target - int(counts[c])) for c in present if c != majority}

    if isinstance(sampling_strategy, dict):
        out: dict[int, int] = {}
        for key, value in sampling_strategy.items():
            label = label_code(key)
            if label in out:
                raise ValueError(f"sampling_strategy names class {EMOTIONS[label]!r} twice")
            if counts[label] == 0:
                raise ValueError(
                    f"sampling_strategy asks for class {EMOTIONS[label]!r}, which has no "
                    f"images to resample; classes present: "
                    f"{', '.join(EMOTIONS[c] for c in present)}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(
                    f"sampling_strategy[{key!r}] must be an int (the wanted number of "
                    f"{EMOTIONS[label]!r} images); got {value!r}"
                )
            if value < counts[label]:
                raise ValueError(
                    f"sampling_strategy[{key!r}] = {value} is below the {counts[label]} "
                    f"{EMOTIONS[label]!r} images present; over-sampling only adds images"
                )
            out[label] = int(value) - int(counts[label])
        return dict(sorted(out.items()))

    raise TypeError(
        f"sampling_strategy must be a str, a float in (0, 1] or a dict {{label: count}}; "
        f"got {type(sampling_strategy).__name__} {sampling_strategy!r}"
    )
