"""Out-of-sample probabilities from wherever they come, aligned to a dataset's images.

Probabilities can come from :func:`ferclean.learning.crossval` (its result, or the
``.npz`` file ``ferclean crossval`` writes, aligned by image id) or from the user: an
array with one row per image of the dataset, in the dataset's order, or a ``.npy`` /
``.npz`` file holding one. Everything is validated (:func:`check_pred_probs`) with errors
that name the source.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.labels.confident import check_pred_probs

__all__ = ["PredProbs", "align_pred_probs", "read_pred_probs"]

#: The arrays of a probabilities ``.npz`` (``image_id`` optional: without it the rows
#: are the dataset's images in order).
NPZ_KEYS = ("pred_probs", "image_id")


@dataclass(frozen=True)
class PredProbs:
    """Class probabilities for some images of a dataset.

    Attributes
    ----------
    index : ndarray of int (m,)
        Positions of the covered images in the dataset.
    probs : ndarray (m, K)
        Their probabilities (validated: finite, non-negative, rows sum to 1).
    source : str
        Where they came from, for messages and ``summary.json``.

    Examples
    --------
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 1])
    >>> p = align_pred_probs(ds, np.full((2, 7), 1 / 7))
    >>> p.index.tolist(), p.probs.shape
    ([0, 1], (2, 7))
    """

    index: np.ndarray
    probs: np.ndarray
    source: str = "pred_probs"

    def full(self, n: int) -> np.ndarray:
        """An ``(n, K)`` array with NaN rows for the images not covered."""
        out = np.full((n, self.probs.shape[1]), np.nan)
        out[self.index] = self.probs
        return out


def read_pred_probs(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray | None]:
    """Read probabilities (and image ids, if stored) from ``.npy`` or ``.npz``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "p.npy"
    >>> np.save(f, np.full((3, 7), 1 / 7))
    >>> probs, ids = read_pred_probs(f)
    >>> probs.shape, ids
    ((3, 7), None)
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such probabilities file (.npy or .npz)")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npy/.npz probabilities file ({exc})"
                         ) from None
    if isinstance(data, np.ndarray):  # .npy: one array, rows in the dataset's order
        return data, None
    with data:
        if "pred_probs" not in data.files:
            raise ValueError(f"{path}: no 'pred_probs' array in it (arrays: "
                             f"{', '.join(data.files) or 'none'})")
        ids = np.asarray(data["image_id"]).astype(str) if "image_id" in data.files else None
        return np.asarray(data["pred_probs"]), ids


def align_pred_probs(dataset: FaceDataset, pred_probs: Any, *,
                     n_classes: int = len(EMOTIONS)) -> PredProbs:
    """Align probabilities to ``dataset``'s images and validate them.

    ``pred_probs`` may be a :class:`PredProbs`, an array with one row per image, a path
    to a ``.npy``/``.npz`` file, or an object with ``pred_probs`` and ``image_ids``
    attributes (a :class:`ferclean.learning.CrossvalResult`). With image ids, rows are
    matched by id and may cover only some images (e.g. only Training); without, there
    must be exactly one row per image, in order.

    Examples
    --------
    >>> ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0, 1, 2], ids=["a", "b", "c"])
    >>> class Result:
    ...     pred_probs = np.eye(7)[[2, 0]]
    ...     image_ids = np.array(["c", "a"])
    >>> align_pred_probs(ds, Result()).index.tolist()
    [2, 0]
    >>> align_pred_probs(ds, np.eye(7)[:2])
    Traceback (most recent call last):
    ...
    ValueError: pred_probs: 2 rows of probabilities for 3 images
    """
    if isinstance(pred_probs, PredProbs):
        index = np.asarray(pred_probs.index, np.int64)
        if len(index) and (index.min() < 0 or index.max() >= len(dataset)):
            raise ValueError(f"{pred_probs.source}: image positions outside 0..{len(dataset) - 1}")
        probs = check_pred_probs(pred_probs.probs, len(index), n_classes,
                                 source=pred_probs.source)
        return PredProbs(index, probs, pred_probs.source)
    ids = None
    source = "pred_probs"
    if isinstance(pred_probs, (str, os.PathLike)):
        source = str(pred_probs)
        pred_probs, ids = read_pred_probs(pred_probs)
    elif hasattr(pred_probs, "pred_probs") and hasattr(pred_probs, "image_ids"):
        source = "crossval result"
        pred_probs, ids = pred_probs.pred_probs, np.asarray(pred_probs.image_ids).astype(str)
    if ids is None:
        probs = check_pred_probs(pred_probs, len(dataset), n_classes, source=source)
        return PredProbs(np.arange(len(dataset)), probs, source)
    probs = check_pred_probs(pred_probs, len(ids), n_classes, source=source)
    position = {image_id: i for i, image_id in enumerate(dataset.ids.astype(str))}
    index = np.fromiter((position.get(i, -1) for i in ids), np.int64, len(ids))
    if (index < 0).any():
        missing = ids[index < 0]
        raise ValueError(f"{source}: {len(missing)} image id(s) are not in the dataset, "
                         f"e.g. {missing[0]!r} (probabilities of another dataset?)")
    if len(np.unique(index)) != len(index):
        raise ValueError(f"{source}: an image id appears more than once")
    return PredProbs(index, probs, source)
