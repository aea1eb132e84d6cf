"""``sampling_strategy`` for over-samplers: emotion names mapped to ids, then imbalanced-learn.

imbalanced-learn's :func:`imblearn.utils.check_sampling_strategy` does the normalising.
This layer only adds what FER-2013 users need on top of it:

* dict keys may be emotion names (``{"disgust": 500}``) as well as label ids;
* a float ``r`` grows every class but the majority to ``floor(r * n_majority)`` images,
  the rule imbalanced-learn applies to two classes, applied to each of FER's seven;
* messages name the emotion and the counts present, where imbalanced-learn's name a
  label id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.utils import check_scalar

from ferclean.dataset import EMOTIONS, label_code

# imbalanced-learn's string strategies that mean something to an over-sampler
# ("majority" is an under-sampling strategy; imbalanced-learn refuses it here).
STRING_STRATEGIES = ("auto", "not majority", "not minority", "minority", "all")


def resolve_sampling_strategy(sampling_strategy: Any, labels: Any) -> dict[int, int]:
    """Normalise an over-sampling ``sampling_strategy`` into ``{label id: images to add}``.

    The class counts are those of ``labels``; the majority (minority) class is the most
    (least) frequent one, ties going to the lowest label id, as in imbalanced-learn.

    Parameters
    ----------
    sampling_strategy : str, float or dict
        * ``"auto"`` / ``"not majority"``: every class but the majority grows to the
          majority's count; ``"not minority"`` every class but the minority;
          ``"minority"`` only the minority class; ``"all"`` every class (the majority
          gets 0 new images).
        * float ``r`` in ``(0, 1]``: every class but the majority grows to
          ``floor(r * n_majority)`` images (classes already that large get 0).
          imbalanced-learn allows a float for two classes only; this is its rule applied
          to each class.
        * dict ``{label id or emotion name: target count}``: each listed class grows to
          the given number of images *in total*; unlisted classes are left alone.
    labels : array-like of int
        Label ids ``0..6`` of the images to resample (no ``-1``), two classes or more.

    Returns
    -------
    dict of int to int
        Number of images to *add* per targeted class, keys sorted. A dict input gives
        target totals, the result counts to add, as in imbalanced-learn.

    Raises
    ------
    TypeError
        If the strategy or a dict value has the wrong type.
    ValueError
        For an unknown string or emotion, a float outside ``(0, 1]``, a class named twice
        or absent from ``labels``, or a target below the images already present.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([0, 0, 0, 0, 3, 3, 6])
    >>> resolve_sampling_strategy("auto", labels)
    {3: 2, 6: 3}
    >>> resolve_sampling_strategy(0.5, labels)
    {3: 0, 6: 1}
    >>> resolve_sampling_strategy({"neutral": 3}, labels)
    {6: 2}
    >>> resolve_sampling_strategy({"happy": 1}, labels)
    Traceback (most recent call last):
    ...
    ValueError: sampling_strategy['happy'] = 1 is below the 2 'happy' images present; ...
    """
    from imblearn.utils import check_sampling_strategy  # imported late: imblearn is slow

    y = np.asarray(labels).astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError("sampling_strategy needs labelled images; found label -1")
    counts = np.bincount(y, minlength=len(EMOTIONS))
    if isinstance(sampling_strategy, str):
        if sampling_strategy not in STRING_STRATEGIES:
            raise ValueError(
                f"sampling_strategy must be one of {', '.join(map(repr, STRING_STRATEGIES))}, "
                f"a float in (0, 1] or a dict {{label: count}}; got {sampling_strategy!r}"
            )
        target: Any = sampling_strategy
    elif isinstance(sampling_strategy, (float, np.floating)):
        target = _ratio_targets(float(sampling_strategy), counts)
    elif isinstance(sampling_strategy, dict):
        target = _dict_targets(sampling_strategy, counts)
    else:
        raise TypeError(
            f"sampling_strategy must be a str, a float in (0, 1] or a dict {{label: count}}; "
            f"got {type(sampling_strategy).__name__} {sampling_strategy!r}"
        )
    resolved = check_sampling_strategy(target, y, "over-sampling")
    return {int(c): int(n) for c, n in sorted(resolved.items())}


def _ratio_targets(ratio: float, counts: np.ndarray) -> dict[int, int]:
    """A float strategy as target totals, for imbalanced-learn's dict form."""
    try:
        check_scalar(ratio, "sampling_strategy", float, min_val=0.0, max_val=1.0,
                     include_boundaries="right")
        if np.isnan(ratio):  # passes check_scalar's comparisons
            raise ValueError("nan")
    except ValueError as err:  # check_scalar's message does not say what the float means
        raise ValueError(
            f"a float sampling_strategy is the wanted ratio of each class to the majority "
            f"class and must be in (0, 1]; got {ratio!r}"
        ) from err
    present = np.flatnonzero(counts)
    # argmax returns the first extreme, i.e. the lowest label id on ties (as imblearn).
    majority = int(present[np.argmax(counts[present])])
    wanted = int(np.floor(ratio * counts[majority]))
    return {int(c): max(wanted, int(counts[c])) for c in present if c != majority}


def _dict_targets(strategy: dict[Any, Any], counts: np.ndarray) -> dict[int, int]:
    """Emotion names mapped to label ids, checked with messages that name the emotion.

    imbalanced-learn would refuse an absent class or a target below the count too, but
    its messages name neither the emotion nor the classes present.
    """
    out: dict[int, int] = {}
    for key, value in strategy.items():
        label = label_code(key)  # "unknown emotion 'grumpy'; expected one of ..."
        name = EMOTIONS[label]
        if label in out:
            raise ValueError(f"sampling_strategy names class {name!r} twice")
        if counts[label] == 0:
            present = ", ".join(EMOTIONS[c] for c in np.flatnonzero(counts))
            raise ValueError(
                f"sampling_strategy asks for class {name!r}, which has no images to "
                f"resample; classes present: {present}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"sampling_strategy[{key!r}] must be an int (the wanted number of {name!r} "
                f"images); got {value!r}"
            )
        if value < counts[label]:
            raise ValueError(
                f"sampling_strategy[{key!r}] = {value} is below the {counts[label]} {name!r} "
                f"images present; over-sampling only adds images"
            )
        out[label] = int(value)
    return out
