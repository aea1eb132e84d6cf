"""Resamplers by method name, and the one-call helper that picks one."""

from __future__ import annotations

from typing import Any

from ferclean.dataset import FaceDataset
from ferclean.protocol.resamplers._base import Resampler
from ferclean.protocol.resamplers._none import NoResampler
from ferclean.protocol.resamplers._random_over_sampler import RandomOverSampler
from ferclean.protocol.resamplers._smote import SMOTE

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
    ValueError
        If ``method`` is not a key of :data:`RESAMPLERS` (the message lists them).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
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
