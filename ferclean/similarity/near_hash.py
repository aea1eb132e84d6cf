"""Near-duplicate search keys: a 64-bit perceptual hash of every image under every transform.

:func:`near_hashes` computes imagehash's ``phash`` (or ``ahash``, ``dhash``, ``whash``)
on a 16x16 grid of 3x3-pixel block sums, for each image and each
:class:`~ferclean.similarity.transforms.Transform` variant of it. Every method's features
are separable linear maps of the grid and every variant is a linear map of the pixels
(exact for whole-pixel shifts, a cubic-spline warp of the grid for zooms and rotations),
so all variants of a block of images come out of a few matrix products.

Examples
--------
>>> import numpy as np
>>> near_hashes(np.zeros((2, 48, 48), np.uint8)).shape
(2, 17)
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from ferclean.similarity.hashing import map_blocks, pack_bits
from ferclean.similarity.transforms import (
    _CELL,
    _GRID,
    _S,
    DEFAULT_TRANSFORMS,
    Transform,
    _warp_1d,
    _warp_2d,
)

__all__ = ["NEAR_METHODS", "near_hashes"]

#: Hash methods for the near-duplicate search (imagehash's families, on the 16x16 grid).
NEAR_METHODS: tuple[str, ...] = ("phash", "ahash", "dhash", "whash")

_BITS = 8  # hash side: 8x8 = 64 bits
_CHUNK = 512  # images per block when hashing


@lru_cache(maxsize=8)
def _features_1d(method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis feature matrices (rows, columns) of a hash method on the 16x16 grid.

    Every method is separable: features = ``Fy @ grid @ Fx.T`` (8x8).
    """
    k = np.arange(_BITS)[:, None]
    i = np.arange(_GRID)[None, :]
    pairs = np.kron(np.eye(_BITS), np.ones((1, _GRID // _BITS)))  # 8x16 block sums
    if method == "phash":  # the DCT-II basis, low 8 frequencies
        dct = np.cos(np.pi * k * (2 * i + 1) / (2 * _GRID))
        return dct, dct
    if method in ("ahash", "whash"):  # 8x8 block sums (Haar LL)
        return pairs, pairs
    if method == "dhash":  # 9 columns by linear interpolation, then neighbour differences
        pos = (np.arange(_BITS + 1) + 0.5) * _GRID / (_BITS + 1) - 0.5
        lo = np.clip(np.floor(pos).astype(int), 0, _GRID - 1)
        hi = np.clip(lo + 1, 0, _GRID - 1)
        w = pos - np.floor(pos)
        cols = np.zeros((_BITS + 1, _GRID))
        np.add.at(cols, (np.arange(_BITS + 1), lo), 1 - w)
        np.add.at(cols, (np.arange(_BITS + 1), hi), w)
        return pairs, cols[1:] - cols[:-1]
    raise ValueError(f"method must be one of {', '.join(NEAR_METHODS)}; got {method!r}")


def _threshold_bits(values: np.ndarray, method: str) -> np.ndarray:
    """Bits of (n, V, 64) float32 feature values, by the method's imagehash rule."""
    if method == "dhash":
        return values > 0
    if method == "ahash":
        return values > values.mean(axis=-1, keepdims=True)
    # the median of 64 values is the mean of the 32nd and 33rd; numpy's SIMD sort of
    # float32 rows is ~10x faster than np.median's partition here
    ranked = np.sort(values, axis=-1)
    mid = values.shape[-1] // 2
    median = (ranked[..., mid - 1:mid] + ranked[..., mid:mid + 1]) * np.float32(0.5)
    return values > median


@lru_cache(maxsize=64)
def _box_rows(shift: int, flip: bool = False) -> np.ndarray:
    """(16, 48) matrix: 3-pixel sums of each hash cell of the image shifted by ``shift``
    whole pixels along one axis (edge pixels replicated), optionally mirrored first."""
    out = np.zeros((_GRID, _S))
    for i in range(_GRID):
        for k in range(_CELL):
            src = min(max(_CELL * i + k - shift, 0), _S - 1)
            out[i, _S - 1 - src if flip else src] += 1.0
    return out


class _HashPlan(NamedTuple):
    """The matrices that hash a block of images under a tuple of transforms.

    Whole-pixel shifts (mirrored or not) are hashed exactly: features of the shifted
    image are (Fy Ry) X (Fx Rx)^T with box-sum matrices R that shift and clamp, so all
    of them come from one product ``left @ X @ xrows_t`` (whose last 16 rows and columns
    are the plain 16x16 grid of 3x3 sums). The other transforms warp that grid: zooms
    separably (``zl @ grid @ zr``), rotations through one (256, 64 * k) matrix ``rot``.
    """

    left: np.ndarray  # (8 * len(dys) + 16, 48)
    xrows_t: np.ndarray  # (48, 8 * len(dxs) + 16)
    shift_slots: tuple[tuple[int, int, int], ...]  # (transform, row offset, column offset)
    grid_at: tuple[int, int]  # where the plain grid starts in the product
    sep: tuple[int, ...]  # zooms (and shifted zooms): separable warps
    zl: tuple[np.ndarray, ...]
    zr: tuple[np.ndarray, ...]
    full: tuple[int, ...]  # rotations: a full 2-D warp
    rot: np.ndarray | None


@lru_cache(maxsize=16)
def _hash_plan(transforms: tuple[Transform, ...], method: str) -> _HashPlan:
    """The :class:`_HashPlan` of ``transforms`` under ``method`` (built once per pair:
    querying one image at a time would otherwise rebuild the warps every call)."""
    fy, fx = _features_1d(method)
    shifts = [k for k, t in enumerate(transforms) if t.is_shift]
    others = [k for k in range(len(transforms)) if k not in shifts]
    dys = sorted({int(transforms[k].dy) for k in shifts})
    dxs = sorted({(int(transforms[k].dx), transforms[k].flip) for k in shifts})
    left = np.concatenate([fy @ _box_rows(dy) for dy in dys] + [_box_rows(0)]).astype(
        np.float32)
    xrows = np.concatenate([fx @ _box_rows(dx, f) for dx, f in dxs] + [_box_rows(0)])
    xrows_t = np.ascontiguousarray(xrows.T).astype(np.float32)
    slot_y = {dy: i for i, dy in enumerate(dys)}
    slot_x = {key: i for i, key in enumerate(dxs)}
    shift_slots = tuple((k, _BITS * slot_y[int(transforms[k].dy)],
                         _BITS * slot_x[(int(transforms[k].dx), transforms[k].flip)])
                        for k in shifts)
    sep = tuple(k for k in others if transforms[k].angle == 0.0)
    full = tuple(k for k in others if transforms[k].angle != 0.0)
    zl = tuple((fy @ _warp_1d(transforms[k].dy, transforms[k].scale, False)).astype(
        np.float32) for k in sep)
    zr = tuple((fx @ _warp_1d(transforms[k].dx, transforms[k].scale,
                              transforms[k].flip)).T.astype(np.float32) for k in sep)
    feat2d = np.kron(fy, fx)
    rot = (np.concatenate([feat2d @ _warp_2d(transforms[k]) for k in full]).T.astype(
        np.float32) if full else None)
    return _HashPlan(left, xrows_t, shift_slots, (_BITS * len(dys), _BITS * len(dxs)), sep,
                     zl, zr, full, rot)


def _hash_block(block: np.ndarray, plan: _HashPlan, n_transforms: int,
                method: str) -> np.ndarray:
    """(m, n_transforms) uint64 hashes of a block of (m, 48, 48) uint8 images."""
    m = len(block)
    half = (block.reshape(m * _S, _S).astype(np.float32) @ plan.xrows_t).reshape(m, _S, -1)
    prod = np.matmul(plan.left, half)  # (m, 8*|dy| + 16, 8*|dx| + 16)
    values = np.empty((m, n_transforms, _BITS, _BITS), np.float32)
    for k, y0, x0 in plan.shift_slots:
        values[:, k] = prod[:, y0:y0 + _BITS, x0:x0 + _BITS]
    n_y, n_x = plan.grid_at
    plain = np.ascontiguousarray(prod[:, n_y:, n_x:])  # the 16x16 grid of 3x3 sums
    for slot, k in enumerate(plan.sep):
        values[:, k] = np.matmul(np.matmul(plan.zl[slot], plain), plan.zr[slot])
    if plan.full:
        # one product per image: BLAS rounds the rows of one large product differently
        # by their place in it, and a hash must not depend on the images batched with it
        # (the Dask engine hashes partitions, the in-memory engine blocks of 512)
        flat = np.matmul(plain.reshape(m, 1, _GRID * _GRID), plan.rot)
        values[:, list(plan.full)] = flat.reshape(m, len(plan.full), _BITS, _BITS)
    bits = _threshold_bits(values.reshape(m, n_transforms, _BITS * _BITS), method)
    return pack_bits(bits.reshape(m * n_transforms, -1)).reshape(m, n_transforms)


def near_hashes(pixels: Any, transforms: tuple[Transform, ...] = DEFAULT_TRANSFORMS, *,
                method: str = "phash", n_jobs: int | None = None) -> np.ndarray:
    """64-bit hash of every image under every transform (the near-duplicate search keys).

    Parameters
    ----------
    pixels : array-like of uint8, shape (n, 48, 48)
    transforms : tuple of Transform, default=DEFAULT_TRANSFORMS
    method : {"phash", "ahash", "dhash", "whash"}, default="phash"
        Features and threshold of imagehash's method of that name, on the 16x16 grid of
        3x3-pixel block sums (``phash``: low 8x8 DCT block > its median).
    n_jobs : int, default=None
        Threads; ``None`` uses every core.

    Returns
    -------
    ndarray of uint64, shape (n, len(transforms))

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.demo import make_demo
    >>> px = make_demo(n_faces=300).dataset.pixels
    >>> codes = near_hashes(px[:4])
    >>> codes.shape, codes.dtype.name
    ((4, 17), 'uint64')
    >>> DEFAULT_TRANSFORMS[1].describe()
    'shift +1,+2'
    >>> moved = np.pad(px[:1], 3, mode="edge")[3:4, 2:50, 1:49]  # content 1 down, 2 right
    >>> bool(near_hashes(moved)[0, 0] == codes[0, 1])  # whole-pixel shifts are exact
    True
    """
    pixels = np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[1:] != (_S, _S):
        raise ValueError(f"pixels must have shape (n, 48, 48); got {pixels.shape}")
    transforms = tuple(transforms)
    plan = _hash_plan(transforms, method)
    out = np.empty((len(pixels), len(transforms)), np.uint64)

    def work(start: int) -> None:
        block = pixels[start:start + _CHUNK]
        out[start:start + len(block)] = _hash_block(block, plan, len(transforms), method)

    map_blocks(work, len(pixels), _CHUNK, n_jobs)
    return out
