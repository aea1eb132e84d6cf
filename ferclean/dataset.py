"""The one data model that flows through ferclean: :class:`FaceDataset`.

A ``FaceDataset`` holds FER-2013-style images and their metadata as parallel numpy
arrays. Readers build one, auditors read one, cleaning returns one. Subsets are views of
the pixel array whenever the selected rows are contiguous, so selecting a split of a
dataset stored in split order (as FER-2013 is) never copies the images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

#: FER-2013 emotion names, indexed by label id.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
#: FER-2013 split names, indexed by split code.
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
#: Label value for images without a label (e.g. a CSV without an ``emotion`` column).
UNLABELED: int = -1
#: Image side length in pixels.
IMAGE_SIZE: int = 48

_EMPTY_DROPPED_COLUMNS = ["source", "location", "reason"]


def empty_dropped() -> pd.DataFrame:
    """Return an empty table of dropped input records.

    Examples
    --------
    >>> list(empty_dropped().columns)
    ['source', 'location', 'reason']
    """
    return pd.DataFrame({c: pd.Series(dtype=str) for c in _EMPTY_DROPPED_COLUMNS})


def split_code(name: str) -> int:
    """Return the integer code of a split name (case-insensitive).

    Examples
    --------
    >>> split_code("PublicTest")
    1
    """
    for code, split in enumerate(SPLITS):
        if split.lower() == str(name).lower():
            return code
    raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")


def label_code(name: str | int) -> int:
    """Return the label id for an emotion name or id.

    Examples
    --------
    >>> label_code("happy"), label_code(6)
    (3, 6)
    """
    if isinstance(name, (bool, np.bool_)):  # True is an int to Python, not a label
        raise ValueError(f"unknown label {name!r}; expected 0..{len(EMOTIONS) - 1} or an "
                         f"emotion name")
    if isinstance(name, (int, np.integer)):
        if 0 <= int(name) < len(EMOTIONS):
            return int(name)
        raise ValueError(f"unknown label {name!r}; expected 0..{len(EMOTIONS) - 1}")
    key = str(name).strip().lower()
    if key in EMOTIONS:
        return EMOTIONS.index(key)
    raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}")


class FaceDataset:
    """Images, labels, splits, ids and input positions of a face-expression dataset.

    Parameters
    ----------
    pixels : array-like of uint8, shape (n_images, 48, 48)
        Grayscale images.
    labels : array-like of int, shape (n_images,), default=None
        Emotion ids ``0..6`` in FER-2013 order (see :data:`EMOTIONS`); ``-1`` means
        unlabeled. ``None`` marks every image unlabeled.
    splits : array-like of int or str, shape (n_images,), default=None
        Split per image, as codes into :data:`SPLITS` or as names. ``None`` puts every
        image in ``Training``.
    ids : array-like of str, shape (n_images,), default=None
        Stable image ids (file path for folders, row number for CSV). ``None`` numbers
        the images ``"0"``, ``"1"``, ...
    rows : array-like of int, shape (n_images,), default=None
        0-based position of each image in its input (data rows in file order, folder or
        zip entries sorted by path). ``None`` means ``0..n_images-1``.
    source : str, default=None
        Where the data came from, for messages and reports.
    dropped : DataFrame, default=None
        Input records that a reader skipped, with columns ``source``, ``location`` and
        ``reason`` (see ``on_bad`` in :func:`ferclean.load`).
    synthetic : array-like of bool, shape (n_images,), default=None
        Marks images made by a resampler (e.g. SMOTE) rather than read from data; they are
        never written into a published dataset.
    resampled : bool, default=False
        Set by resamplers: the dataset holds oversampled copies, so splitting it now would
        put copies of one image on both sides of the split.

    Attributes
    ----------
    pixels : ndarray of uint8, shape (n_images, 48, 48)
    labels : ndarray of int8, shape (n_images,)
    splits : ndarray of int8, shape (n_images,)
        Split codes; ``split_names`` gives the names.
    ids : ndarray of str, shape (n_images,)
    rows : ndarray of int64, shape (n_images,)

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0, 3, 6],
    ...                  splits=["Training", "Training", "PrivateTest"])
    >>> len(ds), ds.split_names.tolist()
    (3, ['Training', 'Training', 'PrivateTest'])
    >>> ds.split("Training").pixels.base is ds.pixels
    True
    """

    def __init__(
        self,
        pixels: Any,
        labels: Any = None,
        splits: Any = None,
        ids: Any = None,
        rows: Any = None,
        *,
        source: str | None = None,
        dropped: pd.DataFrame | None = None,
        synthetic: Any = None,
        resampled: bool = False,
    ) -> None:
        if np.ndim(pixels) != 3:  # a dataset is a batch: no single image, no channel axis
            raise ValueError(f"pixels must have shape (n, 48, 48); got {np.shape(pixels)}")
        pixels = as_pixels(pixels)
        n = pixels.shape[0]
        self.pixels = pixels
        self.labels = _as_labels(labels, n)
        self.splits = _as_splits(splits, n)
        self.ids = _as_ids(ids, n)
        self.rows = (
            np.arange(n, dtype=np.int64) if rows is None else _as_vector(rows, n, "rows", np.int64)
        )
        self.source = source
        self.dropped = empty_dropped() if dropped is None else dropped
        self.synthetic = (
            np.zeros(n, dtype=bool) if synthetic is None
            else _as_vector(synthetic, n, "synthetic", bool)
        )
        self.resampled = bool(resampled)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.pixels.shape[0])

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.split_counts().items())
        src = f", source={self.source!r}" if self.source else ""
        return f"FaceDataset(n_images={len(self)}, {counts}{src})"

    @property
    def n_images(self) -> int:
        """Number of images."""
        return len(self)

    @property
    def split_names(self) -> np.ndarray:
        """Split name of every image, as a string array."""
        return np.asarray(SPLITS, dtype=object)[self.splits]

    @property
    def label_names(self) -> np.ndarray:
        """Emotion name of every image (``"unlabeled"`` for ``-1``)."""
        names = np.asarray((*EMOTIONS, "unlabeled"), dtype=object)
        return names[self.labels]  # -1 indexes the trailing "unlabeled"

    @property
    def has_labels(self) -> bool:
        """True when at least one image carries a label."""
        return bool(np.any(self.labels >= 0))

    # ------------------------------------------------------------------ subsets
    def subset(self, index: Any) -> FaceDataset:
        """Return the images selected by a boolean mask, an index array or a slice.

        The pixel array of the result is a view whenever the selection is a contiguous,
        increasing run of rows; otherwise numpy must gather it into a new array.

        Indices follow Python's rules: ``0..n-1`` from the start, ``-n..-1`` from the end
        (``-1`` is the last image); any other index raises :class:`IndexError`, so a
        selection never silently shrinks. A slice is clipped to the dataset, as for a
        list. An index may repeat (the image is then taken twice). A boolean mask must
        have one value per image. One image is ``ds[[i]]``: a dataset always holds a batch.

        Raises
        ------
        IndexError
            If an index is out of range.
        TypeError
            If the index is a scalar, or neither integers nor booleans.
        ValueError
            If a mask has the wrong length, or the index is not 1-D.

        Examples
        --------
        >>> import numpy as np
        >>> ds = FaceDataset(np.zeros((4, 48, 48), np.uint8))
        >>> sub = ds.subset(np.array([True, True, False, False]))
        >>> len(sub), sub.pixels.base is ds.pixels
        (2, True)
        >>> len(ds.subset([-1, 0])), len(ds.subset([]))
        (2, 0)
        >>> ds.subset([3, 4])
        Traceback (most recent call last):
        ...
        IndexError: index 4 is out of range for a FaceDataset of 4 images (valid: -4..3)
        """
        index = _as_view_index(index, len(self))
        return FaceDataset(
            self.pixels[index],
            labels=self.labels[index],
            splits=self.splits[index],
            ids=self.ids[index],
            rows=self.rows[index],
            source=self.source,
            dropped=self.dropped,
            synthetic=self.synthetic[index],
            resampled=self.resampled,
        )

    def __getitem__(self, index: Any) -> FaceDataset:
        return self.subset(index)

    def split(self, name: str | Iterable[str]) -> FaceDataset:
        """Return the images of one split (or several).

        Examples
        --------
        >>> import numpy as np
        >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), splits=["Training", "PublicTest"])
        >>> len(ds.split("PublicTest")), len(ds.split(["Training", "PublicTest"]))
        (1, 2)
        """
        names = [name] if isinstance(name, str) else list(name)
        codes = [split_code(n) for n in names]
        return self.subset(np.isin(self.splits, codes))

    def split_mask(self, name: str) -> np.ndarray:
        """Boolean mask of the images in split ``name``."""
        return self.splits == split_code(name)

    # ------------------------------------------------------------------ summaries
    def split_counts(self) -> dict[str, int]:
        """Images per split, for the splits present, in :data:`SPLITS` order.

        Examples
        --------
        >>> import numpy as np
        >>> FaceDataset(np.zeros((2, 48, 48), np.uint8)).split_counts()
        {'Training': 2}
        """
        counts = np.bincount(self.splits, minlength=len(SPLITS))
        return {SPLITS[i]: int(c) for i, c in enumerate(counts) if c}

    def label_counts(self, split: str | None = None) -> dict[str, int]:
        """Images per emotion (all seven, zero included), optionally within one split.

        Examples
        --------
        >>> import numpy as np
        >>> FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[3, 3]).label_counts()["happy"]
        2
        """
        labels = self.labels if split is None else self.labels[self.split_mask(split)]
        counts = np.bincount(labels[labels >= 0], minlength=len(EMOTIONS))
        out = {EMOTIONS[i]: int(c) for i, c in enumerate(counts)}
        unlabeled = int(np.count_nonzero(labels < 0))
        if unlabeled:
            out["unlabeled"] = unlabeled
        return out

    def counts(self) -> pd.DataFrame:
        """Table of image counts, one row per split and one column per emotion.

        Examples
        --------
        >>> import numpy as np
        >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 1])
        >>> int(ds.counts().loc["Training", "disgust"])
        1
        """
        table = {s: self.label_counts(s) for s in self.split_counts()}
        return pd.DataFrame(table).T.fillna(0).astype(int)

    def to_frame(self) -> pd.DataFrame:
        """Metadata as a DataFrame: ``row``, ``image_id``, ``split``, ``label``, ``emotion``.

        Examples
        --------
        >>> import numpy as np
        >>> FaceDataset(np.zeros((1, 48, 48), np.uint8), labels=[3]).to_frame().emotion[0]
        'happy'
        """
        return pd.DataFrame(
            {
                "row": self.rows,
                "image_id": self.ids.astype(object),
                "split": self.split_names,
                "label": self.labels.astype(np.int64),
                "emotion": self.label_names,
            }
        )

    def checksum(self) -> str:
        """SHA-256 over pixels, labels and splits in order: equal iff the data is equal.

        Ids and input positions are left out so that the same data read from two forms
        (a CSV and its image-folder conversion) can be compared.

        Examples
        --------
        >>> import numpy as np
        >>> a = FaceDataset(np.zeros((1, 48, 48), np.uint8))
        >>> a.checksum() == FaceDataset(np.zeros((1, 48, 48), np.uint8)).checksum()
        True
        """
        digest = hashlib.sha256()
        digest.update(f"ferclean-v1:{len(self)}:".encode())
        digest.update(np.ascontiguousarray(self.pixels).tobytes())
        digest.update(self.labels.astype(np.int8).tobytes())
        digest.update(self.splits.astype(np.int8).tobytes())
        return digest.hexdigest()

    def equals(self, other: FaceDataset, *, ids: bool = False) -> bool:
        """True when pixels, labels and splits (and ``ids`` if asked) match in order."""
        same = (
            len(self) == len(other)
            and np.array_equal(self.pixels, other.pixels)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.splits, other.splits)
        )
        return bool(same and (not ids or np.array_equal(self.ids, other.ids)))

    @staticmethod
    def concat(datasets: Sequence[FaceDataset], *, source: str | None = None) -> FaceDataset:
        """Stack datasets in order (ids and rows are kept as they are).

        Examples
        --------
        >>> import numpy as np
        >>> a = FaceDataset(np.zeros((1, 48, 48), np.uint8))
        >>> len(FaceDataset.concat([a, a]))
        2
        """
        if not datasets:
            return FaceDataset(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), source=source)
        return FaceDataset(
            np.concatenate([d.pixels for d in datasets]),
            labels=np.concatenate([d.labels for d in datasets]),
            splits=np.concatenate([d.splits for d in datasets]),
            ids=np.concatenate([d.ids for d in datasets]),
            rows=np.concatenate([d.rows for d in datasets]),
            source=source if source is not None else datasets[0].source,
            dropped=pd.concat([d.dropped for d in datasets], ignore_index=True),
            synthetic=np.concatenate([d.synthetic for d in datasets]),
            resampled=any(d.resampled for d in datasets),
        )


# ---------------------------------------------------------------------- helpers
def as_pixels(data: Any, *, size: int | None = IMAGE_SIZE) -> np.ndarray:
    """uint8 images ``(n, h, w)`` from a FaceDataset or an array of 0..255 values.

    The one place where pixels are checked and converted: a trailing channel axis of 1
    is dropped and a single 2-D image becomes a batch of one. Values must be grey levels,
    whole numbers in 0..255: integer arrays, or float arrays holding whole numbers (as
    pandas gives). Nothing is coerced silently: values outside 0..255 (never clipped),
    NaN or infinite values and fractional values (an image scaled to [0, 1]: multiply by
    255 and round it first) raise :class:`ValueError`; bool, complex, string and object
    arrays raise :class:`TypeError`. ``size`` requires square ``size`` x ``size`` images;
    ``None`` accepts any size.

    Examples
    --------
    >>> as_pixels(np.full((2, 48, 48, 1), 7.0)).dtype, as_pixels(np.zeros((4, 5)), size=None).shape
    (dtype('uint8'), (1, 4, 5))
    >>> as_pixels(np.full((1, 48, 48), 300))
    Traceback (most recent call last):
    ...
    ValueError: pixels must lie in 0..255; got values from 300 to 300
    >>> as_pixels(np.full((1, 48, 48), np.nan))
    Traceback (most recent call last):
    ...
    ValueError: pixels must be whole numbers 0..255; image 0 holds nan
    """
    if isinstance(data, FaceDataset):
        return data.pixels
    pixels = np.asarray(data)
    if pixels.dtype.kind not in "uif":
        what = {"b": "True/False values are no grey levels", "c": "complex values",
                "O": "Python objects", "U": "strings", "S": "bytes"}.get(pixels.dtype.kind, "")
        raise TypeError(f"pixels must be integers 0..255 (uint8 best); got a {pixels.dtype} "
                        f"array{f' ({what})' if what else ''}")
    if pixels.ndim == 4 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or (size is not None and pixels.shape[1:] != (size, size)):
        want = f"(n, {size}, {size})" if size is not None else "(n, height, width)"
        raise ValueError(f"pixels must have shape {want}; got {pixels.shape}")
    if pixels.dtype != np.uint8:
        if pixels.dtype.kind == "f" and pixels.size:
            _check_whole_pixels(pixels)
        if pixels.size and (pixels.min() < 0 or pixels.max() > 255):
            raise ValueError(f"pixels must lie in 0..255; got values from {pixels.min()} "
                             f"to {pixels.max()}")
        pixels = pixels.astype(np.uint8)
    return pixels


def _check_whole_pixels(pixels: np.ndarray) -> None:
    """ValueError naming the first image with a NaN, infinite or fractional value."""
    flat = pixels.reshape(len(pixels), -1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        value = flat[i][~np.isfinite(flat[i])][0]
        raise ValueError(f"pixels must be whole numbers 0..255; image {i} holds {value}")
    whole = (flat == np.rint(flat)).all(axis=1)
    if not whole.all():
        i = int(np.flatnonzero(~whole)[0])
        value = flat[i][flat[i] != np.rint(flat[i])][0]
        hint = (" (the values lie in [0, 1]: scale them by 255 and round first)"
                if flat.min() >= 0 and flat.max() <= 1 else " (round them first)")
        raise ValueError(
            f"pixels must be whole numbers 0..255; image {i} holds {float(value):g}{hint}"
        )


def _as_vector(values: Any, n: int, name: str, dtype: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},); got {arr.shape}")
    if dtype is bool:
        return _as_flags(arr, name)
    return _whole_numbers(arr, name).astype(dtype, copy=False)


def _whole_numbers(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` if it holds integers, or floats that are whole numbers (as pandas gives for
    an integer column with gaps filled); NaN, fractions, bool and complex values raise."""
    kind = arr.dtype.kind
    if kind in "iu":
        return arr
    if kind != "f":
        raise TypeError(f"{name} must be integers; got a {arr.dtype} array")
    # 2**63: beyond it a cast to int64 would wrap round to another number.
    bad = ~np.isfinite(arr) | (arr != np.rint(arr)) | (np.abs(arr) >= 2.0**63)
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be whole numbers; got {float(arr[i])!r} at position {i}")
    return arr


def _as_flags(arr: np.ndarray, name: str) -> np.ndarray:
    """A bool array from bools, or from integers that are all 0 or 1."""
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise TypeError(f"{name} must be True/False values; got a {arr.dtype} array")


def _as_labels(labels: Any, n: int) -> np.ndarray:
    if labels is None:
        return np.full(n, UNLABELED, dtype=np.int8)
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},); got {arr.shape}")
    if arr.dtype.kind in "OUS":
        arr = np.array([label_code(v) for v in arr], dtype=np.int8)
    arr = _whole_numbers(arr, "labels")
    bad = (arr < UNLABELED) | (arr >= len(EMOTIONS))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"label {int(arr[i])} at position {i} is not in -1..6")
    return arr.astype(np.int8, copy=False)


def _as_splits(splits: Any, n: int) -> np.ndarray:
    if splits is None:
        return np.zeros(n, dtype=np.int8)
    arr = np.asarray(splits)
    if arr.shape != (n,):
        raise ValueError(f"splits must have shape ({n},); got {arr.shape}")
    if arr.dtype.kind in "OUS":
        lookup = {s.lower(): i for i, s in enumerate(SPLITS)}
        uniq, inverse = np.unique(arr.astype(str), return_inverse=True)
        codes = []
        for u in uniq:
            if u.lower() not in lookup:
                raise ValueError(f"unknown split {u!r}; expected one of {', '.join(SPLITS)}")
            codes.append(lookup[u.lower()])
        return np.asarray(codes, dtype=np.int8)[inverse].reshape(n)
    arr = _whole_numbers(arr, "split codes")
    bad = (arr < 0) | (arr >= len(SPLITS))
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"split codes must lie in 0..{len(SPLITS) - 1}; got {int(arr[i])} at "
                         f"position {i}")
    return arr.astype(np.int8, copy=False)


def _as_ids(ids: Any, n: int) -> np.ndarray:
    if ids is None:
        return np.arange(n).astype(str)
    arr = np.asarray(ids)
    if arr.shape != (n,):
        raise ValueError(f"ids must have shape ({n},); got {arr.shape}")
    return arr.astype(str, copy=False)


def _as_view_index(index: Any, n: int) -> Any:
    """Turn a mask or index array into a slice when it selects a contiguous run.

    Out-of-range indices raise: a slice view (``pixels[2:4]`` of 3 images) would silently
    drop them, and numpy's fancy indexing only raises on some of them.
    """
    if isinstance(index, slice):
        return index
    index = np.asarray(index)
    if index.ndim == 0:
        raise TypeError(f"index a FaceDataset with a list, an array, a mask or a slice "
                        f"(ds[[i]] for one image); got the scalar {index.item()!r}")
    if index.ndim != 1:
        raise ValueError(f"a FaceDataset index must be 1-D; got shape {index.shape}")
    if index.dtype == bool:
        if index.shape != (n,):
            raise ValueError(f"boolean mask must have shape ({n},); got {index.shape}")
        index = np.flatnonzero(index)
    elif index.size == 0:  # [] is float64 to numpy: an empty selection all the same
        return slice(0, 0)
    elif index.dtype.kind not in "iu":
        raise TypeError(f"cannot index a FaceDataset with {index.dtype} values")
    # Compared before the cast: a uint64 near 2**64 must not wrap round to a negative index.
    outside = (index >= n) if index.dtype.kind == "u" else (index < -n) | (index >= n)
    if np.any(outside):
        bad = int(index[outside][0])
        valid = f"valid: -{n}..{n - 1}" if n else "it is empty"
        raise IndexError(
            f"index {bad} is out of range for a FaceDataset of {n} images ({valid})"
        )
    index = index.astype(np.int64, copy=False)
    if index.size and np.any(index < 0):
        index = np.where(index < 0, index + n, index)
    if index.size == 0:
        return slice(0, 0)
    start = int(index[0])
    if index[-1] - start == index.size - 1 and np.all(np.diff(index) == 1):
        return slice(start, start + index.size)
    return index
