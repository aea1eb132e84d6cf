"""Near duplicates: fast hash candidates, exact Hamming search, verification on the pixels.

FER-2013 is full of near-copies: the same photo re-cropped, re-encoded, brightened,
watermarked or mirrored. :class:`NearDuplicateAuditor` finds them in three steps.

1. **Hash each image under a few geometric variants.** A perceptual hash (by default a
   DCT hash: the low 8x8 DCT block against its median, as imagehash's ``phash``) is
   computed from a 16x16 grid of 3x3-pixel block sums, for the image as it is and for
   16 small geometric *variants* of it (:data:`DEFAULT_TRANSFORMS`): 12 whole-pixel
   shifts (:data:`SHIFTS`), zooms of 1.1 and 1.18 (a 2-4 px crop rescaled back) and
   rotations of +-4 degrees; with ``mirror=True`` also for the mirrored image and its
   variants. The hash tolerates about 1 px of misalignment; the variants cover the rest
   (shifts up to 3 px, crops, rotations up to ~6 degrees). Every variant's features are
   a fixed linear map of the pixels (exact for shifts, cubic-spline warps of the grid for
   zooms and rotations), so all variants of all images come out of a few matrix
   products.
2. **Search exactly.** Every pair whose hashes lie within Hamming ``radius`` (a variant
   of one image against the plain hash of the other) is found, none missed, by
   multi-index hashing (:class:`ferclean.similarity.search.HammingIndex`).
3. **Verify on the pixels.** FER faces are aligned and alike, so hash neighbours include
   many different people. Each candidate pair is aligned with the variant that matched
   (refined by +-1 px, and for zooms and rotations by half a step) and compared by the
   normalised cross-correlation of the lightly blurred images (Gaussian, sigma 1 px) over
   the central 36x36 pixels: the *similarity*, in [-1, 1], invariant to brightness and
   contrast. Pairs at or above ``similarity`` (default 0.97) are near duplicates. Most
   candidates are different people and are dismissed after a quick look at 81 pixels.

Groups are the connected components of the near pairs and of the exact duplicates; the
auditor stores them in ``context.extra["near_groups"]`` so the label-conflict and
cross-split-leak auditors can use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from ferclean._validation import check_fraction
from ferclean.dataset import IMAGE_SIZE, as_pixels
from ferclean.similarity.hashing import map_blocks, pack_bits
from ferclean.similarity.search import BACKENDS, HammingIndex

__all__ = [
    "DEFAULT_TRANSFORMS",
    "NEAR_METHODS",
    "SHIFTS",
    "NearDuplicateIndex",
    "Transform",
    "near_hashes",
]

#: Hash methods for the near-duplicate search (imagehash's families, on the 16x16 grid).
NEAR_METHODS: tuple[str, ...] = ("phash", "ahash", "dhash", "whash")

_S = IMAGE_SIZE  # 48
_GRID = 16  # hash grid: 16x16 cells of 3x3 pixels
_CELL = _S // _GRID
_BITS = 8  # hash side: 8x8 = 64 bits
_MARGIN = 6  # the verification window is [6, 42): shifted/cropped borders left out
_REFINE = 1  # +- px searched around the matched variant when verifying
_BLUR = 1.0  # Gaussian sigma (px) before verification: JPEG blocks and noise averaged out
_CHUNK = 512  # images per block when hashing
_PAIR_CHUNK = 4096  # pairs per block when verifying
# Coarse similarity (every 4th pixel, refined) below which a pair is not verified in full,
# and the slack of the unrefined quick look before it. On 300 planted copies of real
# FER-2013 images per edit kind, the quick look at the right alignment scored >= 0.78
# and the full similarity >= 0.97.
_GATE = 0.85


# --------------------------------------------------------------------------- transforms
@dataclass(frozen=True)
class Transform:
    """A small similarity transform of a 48x48 image about its centre.

    The transformed image shows the content moved by ``(dy, dx)`` pixels, scaled by
    ``scale`` (``> 1`` zooms in, as a crop rescaled back does), rotated by ``angle``
    degrees (counter-clockwise on screen), and mirrored left-right first if ``flip``.

    Examples
    --------
    >>> Transform(dx=2).describe(), Transform(scale=1.1, flip=True).describe()
    ('shift 0,+2', 'mirror + zoom 1.10')
    """

    dy: float = 0.0
    dx: float = 0.0
    scale: float = 1.0
    angle: float = 0.0
    flip: bool = False

    def describe(self) -> str:
        """A short human-readable name (``"identity"``, ``"shift -2,0"``, ...).

        Examples
        --------
        >>> Transform(angle=-4).describe()
        'rotate -4'
        """
        parts = []
        if self.dy or self.dx:
            parts.append(f"shift {self.dy:+g},{self.dx:+g}".replace("+0,", "0,").replace(
                ",+0", ",0"))
        if self.scale != 1.0:
            parts.append(f"zoom {self.scale:.2f}")
        if self.angle:
            parts.append(f"rotate {self.angle:+g}")
        text = " + ".join(parts) if parts else "identity"
        return ("mirror + " + text if parts else "mirror") if self.flip else text

    @property
    def is_shift(self) -> bool:
        """True when the transform is a whole-pixel shift (possibly mirrored).

        Examples
        --------
        >>> Transform(dy=1, dx=-2).is_shift, Transform(scale=1.1).is_shift
        (True, False)
        """
        return (self.scale == 1.0 and self.angle == 0.0 and float(self.dy).is_integer()
                and float(self.dx).is_integer())

    def source(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where output points ``(y, x)`` (px from the centre) sample the input.

        Examples
        --------
        >>> import numpy as np
        >>> ys, xs = Transform(dx=2).source(np.array([0.0]), np.array([5.0]))
        >>> float(ys[0]), float(xs[0])  # content moved right: sampled from the left
        (0.0, 3.0)
        """
        a = np.deg2rad(self.angle)
        y0, x0 = (y - self.dy) / self.scale, (x - self.dx) / self.scale
        # the inverse rotation; with y pointing down the screen, this turns the content
        # counter-clockwise for a positive angle (as PIL and scipy.ndimage.rotate do)
        ys = np.cos(a) * y0 + np.sin(a) * x0
        xs = -np.sin(a) * y0 + np.cos(a) * x0
        return ys, (-xs if self.flip else xs)


#: Whole-pixel shifts hashed: with the identity, every shift of up to 3 px on each axis
#: lies within 1 px along one axis of one of them (or of its negative, which the other
#: image of a pair supplies): the points of the lattice ``dy + 2 dx = 0 (mod 5)`` in
#: [-3, 3]^2, a perfect covering by "plus" shapes, and the four corners it leaves out.
#: A 3x3 grid with 2 px steps needs 8 shifts but leaves diagonal 1 px misses, which cost
#: ~2% of shifted copies at radius 8.
SHIFTS: tuple[tuple[int, int], ...] = (
    (1, 2), (-1, -2), (2, -1), (-2, 1), (3, 1), (-3, -1), (1, -3), (-1, 3),
    (3, 3), (-3, -3), (3, -3), (-3, 3),
)
#: The variants hashed for every image: identity, the shifts above, zooms for 2-4 px
#: crops rescaled back (scale 1.09-1.2), and +-4 degree rotations.
DEFAULT_TRANSFORMS: tuple[Transform, ...] = (
    Transform(),
    *(Transform(dy=float(dy), dx=float(dx)) for dy, dx in SHIFTS),
    Transform(scale=1.1),
    Transform(scale=1.18),
    Transform(angle=-4.0),
    Transform(angle=4.0),
)


def _neighbours(t: Transform) -> tuple[Transform, ...]:
    """Transforms tried around a hash match when verifying: the match itself, and for a
    zoom or rotation its neighbours half a step away (shifts are refined by +-1 px)."""
    out = [t]
    if t.scale != 1.0:
        out += [Transform(t.dy, t.dx, t.scale * f, t.angle, t.flip) for f in (1 / 1.035, 1.035)]
    if t.angle != 0.0:
        out += [Transform(t.dy, t.dx, t.scale, t.angle + d, t.flip) for d in (-2.0, 2.0)]
    return tuple(out)


def _with_mirror(transforms: tuple[Transform, ...]) -> tuple[Transform, ...]:
    """The transforms followed by their mirrored versions."""
    return transforms + tuple(
        Transform(t.dy, t.dx, t.scale, t.angle, not t.flip) for t in transforms)


# --------------------------------------------------------------------------- hashing
def _cell_centres() -> np.ndarray:
    return (np.arange(_GRID) + 0.5) * _CELL - _S / 2


@lru_cache(maxsize=256)
def _warp_1d(shift: float, scale: float, flip: bool) -> np.ndarray:
    """(16, 16) cubic-spline resampling matrix along one axis of the hash grid."""
    from scipy import ndimage

    src = (_cell_centres() - shift) / scale
    if flip:
        src = -src
    index = (src + _S / 2) / _CELL - 0.5
    basis = np.eye(_GRID)
    # the spline (prefilter + cubic) is linear: resample each unit vector once
    out = ndimage.map_coordinates(
        basis, [np.repeat(np.arange(_GRID), _GRID), np.tile(index, _GRID)],
        order=3, mode="nearest").reshape(_GRID, _GRID)
    return out.T  # row = output cell, column = input cell


@lru_cache(maxsize=256)
def _warp_2d(transform: Transform) -> np.ndarray:
    """(256, 256) cubic-spline resampling matrix of the hash grid (any transform)."""
    from scipy import ndimage

    c = _cell_centres()
    yy, xx = np.meshgrid(c, c, indexing="ij")
    ys, xs = transform.source(yy, xx)
    gy = (ys + _S / 2) / _CELL - 0.5
    gx = (xs + _S / 2) / _CELL - 0.5
    n = _GRID * _GRID
    basis = np.eye(n).reshape(n, _GRID, _GRID)
    coords = [np.broadcast_to(np.arange(n)[:, None], (n, n)).astype(float),
              np.broadcast_to(gy.ravel(), (n, n)), np.broadcast_to(gx.ravel(), (n, n))]
    out = ndimage.map_coordinates(basis, coords, order=3, mode="nearest")
    return out.T  # (output cell, input cell)


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
    fy, fx = _features_1d(method)
    n, v = len(pixels), len(transforms)
    # Whole-pixel shifts (mirrored or not) are hashed exactly: features of the shifted
    # image are (Fy Ry) X (Fx Rx)^T with box-sum matrices R that shift and clamp, so all
    # of them come from one product X @ [rows]^T and small per-image products. The
    # other transforms (zooms, rotations) warp the plain 16x16 grid (cubic spline).
    shifts = [k for k, t in enumerate(transforms) if t.is_shift]
    others = [k for k in range(v) if k not in shifts]
    dys = sorted({int(transforms[k].dy) for k in shifts})
    dxs = sorted({(int(transforms[k].dx), transforms[k].flip) for k in shifts})
    left = np.concatenate([fy @ _box_rows(dy) for dy in dys] + [_box_rows(0)]).astype(
        np.float32)  # (8 * len(dys) + 16, 48)
    xrows = np.concatenate([fx @ _box_rows(dx, f) for dx, f in dxs] + [_box_rows(0)])
    xrows_t = np.ascontiguousarray(xrows.T).astype(np.float32)  # (48, 8 * len(dxs) + 16)
    n_y, n_x = _BITS * len(dys), _BITS * len(dxs)
    slot_y = {dy: i for i, dy in enumerate(dys)}
    slot_x = {key: i for i, key in enumerate(dxs)}
    sep = [k for k in others if transforms[k].angle == 0.0]
    full = [k for k in others if transforms[k].angle != 0.0]
    zl = [(fy @ _warp_1d(transforms[k].dy, transforms[k].scale, False)).astype(np.float32)
          for k in sep]
    zr = [(fx @ _warp_1d(transforms[k].dx, transforms[k].scale,
                         transforms[k].flip)).T.astype(np.float32) for k in sep]
    feat2d = np.kron(fy, fx)
    rot = (np.concatenate([feat2d @ _warp_2d(transforms[k]) for k in full]).T.astype(
        np.float32) if full else None)
    out = np.empty((n, v), np.uint64)

    def work(start: int) -> None:
        block = pixels[start:start + _CHUNK]
        m = len(block)
        half = (block.reshape(m * _S, _S).astype(np.float32) @ xrows_t).reshape(m, _S, -1)
        prod = np.matmul(left, half)  # (m, 8*|dy| + 16, 8*|dx| + 16)
        values = np.empty((m, v, _BITS, _BITS), np.float32)
        for k in shifts:
            t = transforms[k]
            y0, x0 = _BITS * slot_y[int(t.dy)], _BITS * slot_x[(int(t.dx), t.flip)]
            values[:, k] = prod[:, y0:y0 + _BITS, x0:x0 + _BITS]
        plain = np.ascontiguousarray(prod[:, n_y:, n_x:])  # the 16x16 grid of 3x3 sums
        for slot, k in enumerate(sep):
            values[:, k] = np.matmul(np.matmul(zl[slot], plain), zr[slot])
        if full:
            flat = plain.reshape(m, _GRID * _GRID) @ rot
            values[:, full] = flat.reshape(m, len(full), _BITS, _BITS)
        bits = _threshold_bits(values.reshape(m, v, _BITS * _BITS), method)
        out[start:start + m] = pack_bits(bits.reshape(m * v, -1)).reshape(m, v)

    map_blocks(work, n, _CHUNK, n_jobs)
    return out


# --------------------------------------------------------------------------- search
def _candidates(index: HammingIndex, codes_q: np.ndarray, radius: int, *,
                self_join: bool) -> tuple[np.ndarray, ...]:
    """Hash matches as (moving, fixed, transform, hamming) arrays.

    ``moving`` is the query image whose variant ``transform`` matched the plain hash of
    the fitted image ``fixed``. With ``self_join`` the queries are the fitted images
    themselves: plain-plain pairs come from :meth:`HammingIndex.pairs` (each once) and
    an image never matches itself.
    """
    n, v = codes_q.shape
    parts = []
    if self_join:
        m = index.pairs(radius)
        parts.append((m.query, m.index, np.zeros(len(m), np.int64), m.distance))
        first = 1
    else:
        first = 0
    if v > first:
        m = index.query(codes_q[:, first:].reshape(-1), radius)
        moving, tr = np.divmod(m.query, v - first)
        keep = moving != m.index if self_join else np.ones(len(m), bool)
        parts.append((moving[keep], m.index[keep], tr[keep] + first, m.distance[keep]))
    if not parts:
        z = np.zeros(0, np.int64)
        return z, z, z, z
    return tuple(np.concatenate([p[k] for p in parts]).astype(np.int64) for k in range(4))


def _best_hits(key: np.ndarray, hamming: np.ndarray, tr: np.ndarray, keep: int) -> np.ndarray:
    """Positions of the ``keep`` smallest-distance hits of every pair key (stable)."""
    order = np.lexsort((tr, hamming, key))
    k = key[order]
    start = np.ones(len(k), bool)
    start[1:] = k[1:] != k[:-1]
    rank = np.arange(len(k)) - np.maximum.accumulate(np.where(start, np.arange(len(k)), 0))
    return order[rank < keep]


# --------------------------------------------------------------------------- verification
@lru_cache(maxsize=4)
def _blur_matrix(sigma: float) -> np.ndarray:
    """(48, 48) Gaussian blur with edge-replicated borders, as a matrix."""
    from scipy import ndimage

    return ndimage.gaussian_filter1d(np.eye(_S), sigma, axis=0, mode="nearest").astype(
        np.float32)


def _prepare(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blurred images (m, 2304) and normalised window samples, fine (m, 324) and coarse
    (m, 81), float32.

    The fine window is every other pixel of the central 36x36, the coarse one every
    fourth (the blur makes the samples stand for their neighbours); each is centred to
    zero mean and scaled to unit norm, so a dot product with it is a normalised
    cross-correlation.
    """
    b = _blur_matrix(_BLUR)
    m = len(pixels)
    img = (pixels.reshape(m * _S, _S).astype(np.float32) @ b.T).reshape(m, _S, _S)
    img = np.matmul(b, img)
    out = [img.reshape(m, -1)]
    for step in (2, 4):
        win = img[:, _MARGIN:_S - _MARGIN:step, _MARGIN:_S - _MARGIN:step].reshape(m, -1)
        win = win - win.mean(axis=1, keepdims=True)
        norm = np.sqrt((win * win).sum(axis=1, keepdims=True))
        # a flat window has no structure to compare: a zero vector (similarity 0)
        out.append(np.where(norm > 1e-3, win / np.maximum(norm, 1e-3), 0.0).astype(
            np.float32))
    return out[0], out[1], out[2]


@lru_cache(maxsize=256)
def _sampling(transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices (k, 1444) and weights (k, 1444) of a transformed image, k = 1
    (whole-pixel shifts: exact) or 4 (bilinear), over [5, 43)^2: the verification window
    plus the refinement margin. Points outside the image take the nearest edge pixel."""
    pos = np.arange(_MARGIN - _REFINE, _S - _MARGIN + _REFINE) + 0.5 - _S / 2
    yy, xx = np.meshgrid(pos, pos, indexing="ij")
    ys, xs = transform.source(yy, xx)
    gy = np.clip(ys + _S / 2 - 0.5, 0, _S - 1)
    gx = np.clip(xs + _S / 2 - 0.5, 0, _S - 1)
    if transform.is_shift:
        idx = (np.rint(gy).astype(np.int64) * _S + np.rint(gx).astype(np.int64)).ravel()
        return idx[None], np.ones((1, idx.size), np.float32)
    y0 = np.minimum(np.floor(gy).astype(np.int64), _S - 2)
    x0 = np.minimum(np.floor(gx).astype(np.int64), _S - 2)
    fy, fx = gy - y0, gx - x0
    idx = np.stack([y0 * _S + x0, y0 * _S + x0 + 1, (y0 + 1) * _S + x0,
                    (y0 + 1) * _S + x0 + 1]).reshape(4, -1)
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx]).reshape(4, -1)
    return idx, w.astype(np.float32)


# Positions (in the 38x38 sampled region) of the unrefined window, every 4th pixel.
_QUICK = (np.add.outer(np.arange(1, 37, 4) * 38, np.arange(1, 37, 4))).ravel()
# The quick look is unrefined: a true copy 1 px off scores up to ~0.2 lower there.
_QUICK_SLACK = 0.2


def _refine_slices(step: int) -> list[tuple[slice, slice]]:
    side = _S - 2 * _MARGIN
    return [(slice(dy, dy + side, step), slice(dx, dx + side, step))
            for dy in range(2 * _REFINE + 1) for dx in range(2 * _REFINE + 1)]


def _best_ncc(moved: np.ndarray, target: np.ndarray, step: int) -> np.ndarray:
    """Best NCC of the refined windows of ``moved`` (h, 38, 38) with ``target``."""
    best = np.full(len(moved), -1.0, np.float32)
    n = target.shape[1]
    for ys, xs in _refine_slices(step):  # the window moved by -1..+1 px each way
        cand = moved[:, ys, xs].reshape(len(moved), n)
        mean = cand.mean(axis=1)
        var = np.maximum((cand * cand).sum(axis=1) - n * mean * mean, 1e-6)
        np.maximum(best, np.einsum("hp,hp->h", cand, target) / np.sqrt(var), out=best)
    return best


def _prepare_images(pixels: np.ndarray, used: np.ndarray,
                    n_jobs: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_prepare` of ``pixels[used]`` (sorted positions), in threaded blocks."""
    images = np.empty((len(used), _S * _S), np.float32)
    fine = np.empty((len(used), ((_S - 2 * _MARGIN) // 2) ** 2), np.float32)
    coarse = np.empty((len(used), ((_S - 2 * _MARGIN) // 4) ** 2), np.float32)

    def prepare(start: int) -> None:
        img, f, c = _prepare(pixels[used[start:start + _CHUNK]])
        stop = start + len(img)
        images[start:stop], fine[start:stop], coarse[start:stop] = img, f, c

    map_blocks(prepare, len(used), _CHUNK, n_jobs)
    return images, fine, coarse


def _verify(pixels: np.ndarray, moving: np.ndarray, fixed: np.ndarray, tr: np.ndarray,
            transforms: tuple[Transform, ...], n_jobs: int | None,
            gate: float = -1.0, prepared: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
    """Similarity of each (moving, fixed, transform) hit: the best normalised
    cross-correlation over +-1 px around the transform, on the central 36x36 window
    (every other pixel of the blurred images), in [-1, 1].

    Hits whose coarse similarity (every fourth pixel) is below ``gate`` keep the coarse
    value: they are far below any sensible threshold, and skipping them saves most of
    the work (hash candidates between different people are the majority).

    ``prepared`` is ``(used, images, fine, coarse)`` from :func:`_prepare_images` for
    sorted positions ``used`` that hold every moving and fixed image: callers that
    verify several batches of hits prepare the images once.
    """
    out = np.zeros(len(moving), np.float64)
    if not len(moving):
        return out
    if prepared is None:
        used = np.unique(np.concatenate([moving, fixed]))
        prepared = (used, *_prepare_images(pixels, used, n_jobs))
    used, images, fine, coarse = prepared
    mov, fix = np.searchsorted(used, moving), np.searchsorted(used, fixed)
    region = _S - 2 * _MARGIN + 2 * _REFINE  # 38
    order = np.argsort(tr, kind="stable")  # group hits by transform: one sampling each
    starts = np.flatnonzero(np.r_[True, tr[order][1:] != tr[order][:-1]])
    bounds = np.r_[starts, len(order)]
    blocks = [order[s:min(b, s + _PAIR_CHUNK)] for a, b in zip(bounds[:-1], bounds[1:],
                                                                strict=True)
              for s in range(a, b, _PAIR_CHUNK)]
    flat_images = images.reshape(-1)

    def score(k: int) -> None:
        hits = blocks[k]
        idx, w = _sampling(transforms[int(tr[hits[0]])])
        base = (mov[hits] * (_S * _S))[:, None]
        # first a quick look: the unrefined window, every 4th pixel (81 samples); most
        # candidate pairs (different people) end here
        quick = np.take(flat_images, base + idx[0][_QUICK]) * w[0][_QUICK]
        for j in range(1, len(idx)):
            quick += np.take(flat_images, base + idx[j][_QUICK]) * w[j][_QUICK]
        mean = quick.mean(axis=1)
        var = np.maximum((quick * quick).sum(axis=1) - quick.shape[1] * mean * mean, 1e-6)
        first = np.einsum("hp,hp->h", quick, coarse[fix[hits]]) / np.sqrt(var)
        look = np.flatnonzero(first >= gate - _QUICK_SLACK)
        out[hits] = np.clip(first, -1.0, 1.0)
        if not len(look):
            return
        hits, base = hits[look], base[look]
        moved = np.take(flat_images, base + idx[0]) * w[0]
        for j in range(1, len(idx)):
            moved += np.take(flat_images, base + idx[j]) * w[j]
        moved = moved.reshape(len(hits), region, region)
        sim = np.maximum(_best_ncc(moved, coarse[fix[hits]], 4), first[look])
        keep = np.flatnonzero(sim >= gate)
        if len(keep):
            sim[keep] = _best_ncc(moved[keep], fine[fix[hits[keep]]], 2)
        out[hits] = np.clip(sim, -1.0, 1.0)  # rounding can overshoot 1 by ~1e-5

    map_blocks(score, len(blocks), 1, n_jobs)
    return out


# --------------------------------------------------------------------------- index
def _check_params(radius: Any, similarity: Any, method: str, backend: str) -> None:
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)):
        raise TypeError(f"radius must be an integer in [0, 64]; got {radius!r}")
    if not 0 <= radius <= 64:
        raise ValueError(f"radius must be in [0, 64]; got {radius}")
    check_fraction(similarity, "similarity", low=-1.0, high=1.0)
    if method not in NEAR_METHODS:
        raise ValueError(f"method must be one of {', '.join(NEAR_METHODS)}; got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")


class NearDuplicateIndex:
    """Near-duplicate search over a set of images: built once, queried with new ones.

    ``fit`` hashes the images (every :class:`Transform` variant) and indexes their plain
    hashes; :meth:`pairs` finds the near duplicates within the fitted images and
    :meth:`query` those of new images (a new batch, or a test set against a training
    set: a leakage check). Matches are verified on the pixels (see the module notes).

    Parameters
    ----------
    radius : int, default=8
        Hamming radius (of 64 bits) within which hashes are candidates.
    similarity : float, default=0.97
        Verified pairs have at least this similarity (normalised cross-correlation).
    mirror : bool, default=False
        Also match left-right mirrored copies (their ``kind`` is ``"mirror"``).
    method : {"phash", "ahash", "dhash", "whash"}, default="phash"
        Hash family (see :func:`near_hashes`).
    backend : {"mih", "brute"}, default="mih"
        Hamming search (see :class:`~ferclean.similarity.search.HammingIndex`).
    n_jobs : int, default=None
        Threads; ``None`` uses every core. Results do not depend on it.

    Attributes
    ----------
    codes_ : ndarray of uint64, shape (n, n_transforms)
        The hashes of the fitted images, one column per transform (plain first).
    transforms_ : tuple of Transform
    index_ : HammingIndex
        The index over the plain hashes.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> px = demo.dataset.pixels
    >>> index = NearDuplicateIndex().fit(px[:250])
    >>> found = index.query(px[250:])
    >>> list(found.columns)
    ['new', 'fitted', 'hamming', 'similarity', 'transform', 'kind']
    >>> copy = px[7:8, :, ::-1]  # a mirrored copy of image 7
    >>> NearDuplicateIndex(mirror=True).fit(px[:250]).query(copy)[["fitted", "kind"]]
       fitted    kind
    0       7  mirror
    """

    def __init__(self, *, radius: int = 8, similarity: float = 0.97, mirror: bool = False,
                 method: str = "phash", backend: str = "mih",
                 n_jobs: int | None = None) -> None:
        self.radius = radius
        self.similarity = similarity
        self.mirror = mirror
        self.method = method
        self.backend = backend
        self.n_jobs = n_jobs

    def fit(self, data: Any) -> NearDuplicateIndex:
        """Hash and index ``data`` (a FaceDataset or uint8 pixels ``(n, 48, 48)``).

        Returns
        -------
        self

        Examples
        --------
        >>> from ferclean.demo import demo_dataset
        >>> index = NearDuplicateIndex().fit(demo_dataset(n_faces=300))
        >>> index.codes_.shape[1] == len(DEFAULT_TRANSFORMS)
        True
        """
        _check_params(self.radius, self.similarity, self.method, self.backend)
        self.pixels_ = as_pixels(data)
        self.transforms_ = _with_mirror(DEFAULT_TRANSFORMS) if self.mirror else (
            DEFAULT_TRANSFORMS)
        self.codes_ = near_hashes(self.pixels_, self.transforms_, method=self.method,
                                  n_jobs=self.n_jobs)
        self.index_ = HammingIndex(radius=int(self.radius), backend=self.backend).fit(
            self.codes_[:, 0])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "codes_"):
            raise RuntimeError("this NearDuplicateIndex is not fitted yet; call fit first")

    def _verify_hits(self, pixels: np.ndarray, moving: np.ndarray, fixed: np.ndarray,
                     tr: np.ndarray, gate: float, threshold: float,
                     prepared: tuple[np.ndarray, ...]) -> np.ndarray:
        """Similarity of each hit: its transform's, or where that falls short of
        ``threshold`` but not far (a zoom or rotation half a step off), the best of its
        neighbours' (:func:`_neighbours`).

        "Not far" is at least ``gate``: retrying from 0.65 instead found the same pairs on
        FER-2013 with several times the retries, the costliest (interpolated)
        verifications."""
        best = _verify(pixels, moving, fixed, tr, self.transforms_, self.n_jobs, gate,
                       prepared)
        tried = [_neighbours(t)[1:] for t in self.transforms_]
        count = np.array([len(g) for g in tried])[tr]
        retry = np.flatnonzero((count > 0) & (best < threshold) & (best >= gate))
        if not len(retry):
            return best
        flat = tuple(t for group in tried for t in group)
        first = np.cumsum([0] + [len(g) for g in tried])
        c = count[retry]
        which = np.repeat(retry, c)
        offset = np.arange(len(which)) - np.repeat(np.cumsum(c) - c, c)
        sims = _verify(pixels, moving[which], fixed[which], first[tr[which]] + offset, flat,
                       self.n_jobs, gate, prepared)
        np.maximum.at(best, which, sims)
        return best

    def _table(self, pixels: np.ndarray, moving: np.ndarray, fixed: np.ndarray,
               tr: np.ndarray, hamming: np.ndarray, first: np.ndarray, second: np.ndarray,
               names: tuple[str, str], min_similarity: float | None) -> pd.DataFrame:
        """Verify hits and reduce them to one row per (first, second) pair."""
        if not len(moving):
            return pd.DataFrame({names[0]: pd.Series(dtype=np.int64),
                                 names[1]: pd.Series(dtype=np.int64),
                                 "hamming": pd.Series(dtype=np.int64),
                                 "similarity": pd.Series(dtype=np.float64),
                                 "transform": pd.Series(dtype=object),
                                 "kind": pd.Series(dtype=object)})
        n_keys = int(max(first.max(initial=-1), second.max(initial=-1))) + 1
        key = first * max(n_keys, 1) + second
        threshold = self.similarity if min_similarity is None else min_similarity
        # Verify every pair's closest hash hit; where that fails, its second closest:
        # the closest variant is not always the best alignment (a photometric change
        # can favour a neighbouring shift). Hits far below any threshold are cut short.
        keep = _best_hits(key, hamming, tr, 2)
        moving, fixed, tr, hamming = moving[keep], fixed[keep], tr[keep], hamming[keep]
        first, second, key = first[keep], second[keep], key[keep]
        rank = np.zeros(len(key), np.int64)  # 0 for a pair's closest hit, 1 for the next
        rank[1:] = key[1:] == key[:-1]  # (keep is sorted by key)
        sim = np.full(len(key), -1.0)
        primary = np.flatnonzero(rank == 0)
        gate = min(_GATE, threshold)
        # every image in a kept hit, blurred and sampled once for all the batches below
        used = np.unique(np.concatenate([moving, fixed]))
        prepared = (used, *_prepare_images(pixels, used, self.n_jobs))
        sim[primary] = self._verify_hits(pixels, moving[primary], fixed[primary],
                                         tr[primary], gate, threshold, prepared)
        failed = np.zeros(len(key), bool)
        failed[primary] = sim[primary] < threshold
        retry = np.flatnonzero((rank == 1) & np.r_[False, failed[:-1]])
        sim[retry] = self._verify_hits(pixels, moving[retry], fixed[retry], tr[retry], gate,
                                       threshold, prepared)
        identical = np.zeros(len(key), bool)
        zero = np.flatnonzero(hamming == 0)
        if len(zero):
            identical[zero] = (pixels[moving[zero]] == pixels[fixed[zero]]).all(axis=(1, 2))
        sim[identical] = 1.0
        # one row per pair: the best similarity, and the smallest hash distance
        order = np.lexsort((tr, -sim, key))
        k = key[order]
        head = order[np.r_[True, k[1:] != k[:-1]]]
        min_ham = pd.Series(hamming).groupby(key).min()
        names_tr = np.array([t.describe() for t in self.transforms_], dtype=object)
        flips = np.array([t.flip for t in self.transforms_])
        same = pd.Series(identical).groupby(key).any()
        table = pd.DataFrame({
            names[0]: first[head], names[1]: second[head],
            "hamming": min_ham.loc[key[head]].to_numpy(np.int64),
            "similarity": sim[head],
            "transform": names_tr[tr[head]],
            "kind": np.where(same.loc[key[head]].to_numpy(), "exact",
                             np.where(flips[tr[head]], "mirror", "near")).astype(object),
        })
        table = table[table["similarity"] >= threshold]
        return table.sort_values(list(names), kind="stable").reset_index(drop=True)

    def pairs(self, min_similarity: float | None = None) -> pd.DataFrame:
        """Near-duplicate pairs among the fitted images.

        Parameters
        ----------
        min_similarity : float, default=None
            Keep pairs with at least this similarity; ``None`` uses ``similarity``.
            ``-1`` keeps every hash candidate, verified or not.

        Returns
        -------
        DataFrame
            ``i < j`` (positions), ``hamming`` (smallest distance of a variant's hash to
            the other's), ``similarity``, ``transform`` (the best alignment, e.g.
            ``"shift 0,+2"``), ``kind`` (``"exact"`` for identical pixels, ``"mirror"``,
            or ``"near"``); sorted by ``(i, j)``.

        Examples
        --------
        >>> from ferclean.demo import make_demo
        >>> demo = make_demo(n_faces=300)
        >>> found = NearDuplicateIndex().fit(demo.dataset).pairs()
        >>> shift = next(iter(demo.truth.near_groups("shift")))
        >>> tuple(sorted(shift)) in set(zip(found.i, found.j))
        True
        """
        self._check_fitted()
        moving, fixed, tr, hamming = _candidates(self.index_, self.codes_, int(self.radius),
                                                 self_join=True)
        first, second = np.minimum(moving, fixed), np.maximum(moving, fixed)
        return self._table(self.pixels_, moving, fixed, tr, hamming, first, second,
                           ("i", "j"), min_similarity)

    def query(self, data: Any, min_similarity: float | None = None) -> pd.DataFrame:
        """Near duplicates of new images among the fitted ones (both ways round).

        Parameters
        ----------
        data : FaceDataset or array-like of uint8, shape (q, 48, 48)
        min_similarity : float, default=None
            As for :meth:`pairs`.

        Returns
        -------
        DataFrame
            ``new`` (position in ``data``), ``fitted`` (position in the fitted images),
            ``hamming``, ``similarity``, ``transform``, ``kind``; sorted by ``(new,
            fitted)``.

        Examples
        --------
        >>> import numpy as np
        >>> from ferclean.demo import demo_dataset
        >>> px = demo_dataset(n_faces=300).pixels
        >>> index = NearDuplicateIndex().fit(px[:200])
        >>> brighter = np.clip(px[[4]].astype(int) + 20, 0, 255).astype(np.uint8)
        >>> index.query(brighter)[["new", "fitted", "kind"]].values.tolist()
        [[0, 4, 'near']]
        """
        self._check_fitted()
        new = as_pixels(data)
        r = int(self.radius)
        codes = near_hashes(new, self.transforms_, method=self.method, n_jobs=self.n_jobs)
        n_fit = len(self.pixels_)
        # new images' variants against the fitted plain hashes ...
        mov1, fix1, tr1, ham1 = _candidates(self.index_, codes, r, self_join=False)
        # ... and the fitted images' variants against the new plain hashes
        small = HammingIndex(radius=r, backend=self.backend).fit(codes[:, 0])
        mov2, fix2, tr2, ham2 = _candidates(small, self.codes_[:, 1:], r, self_join=False)
        tr2 = tr2 + 1
        both = np.concatenate([self.pixels_, new]) if len(new) else self.pixels_
        moving = np.concatenate([mov1 + n_fit, mov2])
        fixed = np.concatenate([fix1, fix2 + n_fit])
        query_pos = np.concatenate([mov1, fix2])
        index_pos = np.concatenate([fix1, mov2])
        return self._table(both, moving, fixed, np.concatenate([tr1, tr2]),
                           np.concatenate([ham1, ham2]), query_pos, index_pos,
                           ("new", "fitted"), min_similarity)
