"""Perceptual hashes of whole image arrays, bit for bit as :mod:`imagehash` computes them.

:func:`hash_images` computes imagehash's average (``ahash``), difference (``dhash``),
perceptual/DCT (``phash``) and wavelet (``whash``) hashes, with imagehash's defaults, for
all images of a ``(n, 48, 48)`` array at once: no per-image Python loop and no PIL call.

imagehash first shrinks each image with PIL's LANCZOS (``ANTIALIAS``) filter. PIL resizes
an 8-bit image in two separable passes (horizontal, then vertical) with fixed-point filter
weights (22 fractional bits) and rounds to 8 bits after each pass. :func:`resize_lanczos`
reproduces that exactly: it recomputes PIL's integer weights (``precompute_coeffs`` in
``Resample.c``) and applies each pass to the whole array as one matrix product. The
products run in float32 (fast BLAS); float32 can only mis-round a value that lies within
``~1e-3`` of a rounding boundary, so exactly those values (about one in a thousand) are
recomputed in float64, which is exact for these integer products. The result equals PIL's
pixel for pixel. The hash steps after the resize follow imagehash's code: the pHash DCT
as two small matrix products (scipy's unnormalised DCT-II), medians, the Haar wavelet as
block sums. Where float rounding decides a bit in imagehash (a coefficient within
rounding noise of the median, as in flat images and pure ramps; tied block sums in
``whash``), those few images are recomputed with imagehash's own scipy / PyWavelets calls,
batched, so the bits match there too.

Codes are stored as ``uint64``: shape ``(n,)`` when the hash has at most 64 bits (the
defaults), else ``(n, words)``. Bit order follows imagehash's hex strings, first bit most
significant, so ``int(str(imagehash.phash(img)), 16) == hash_images(px, "phash")[k]``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

from ferclean.dataset import as_pixels

__all__ = [
    "METHODS",
    "as_code_matrix",
    "hash_bits",
    "hash_images",
    "pack_bits",
    "popcount",
    "resize_lanczos",
    "unpack_bits",
]

#: Hash methods of :func:`hash_images`, named as imagededup and CleanVision name them.
METHODS: tuple[str, ...] = ("ahash", "dhash", "phash", "whash")

_PRECISION_BITS = 22  # PIL's fixed-point precision for 8-bit resampling (Resample.c)
_CHUNK = 256  # images per block: keeps the float work arrays in cache-sized pieces


# ---------------------------------------------------------------------- BLAS threads
@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS single-threaded inside the block.

    The matrix products here are many small ones; on a busy two-core machine OpenBLAS's
    spinning worker threads made them ~10x slower in wall time than one thread.

    Examples
    --------
    >>> import numpy as np
    >>> with single_threaded_blas():
    ...     float((np.ones((2, 2)) @ np.ones((2, 2)))[0, 0])
    2.0
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def map_blocks(work: Any, n: int, chunk: int, n_jobs: int | None) -> None:
    """Call ``work(start)`` for ``start = 0, chunk, 2 * chunk, ... < n`` on threads.

    numpy releases the GIL in its loops and in BLAS, so blocks of images run in parallel
    threads without copying; each block runs single-threaded BLAS. ``n_jobs=None`` uses
    every core; the blocks write disjoint parts of their output, so results do not depend
    on it.

    Examples
    --------
    >>> import numpy as np
    >>> out = np.zeros(10)
    >>> def work(start):
    ...     out[start:start + 4] = np.arange(start, min(start + 4, 10))
    >>> map_blocks(work, 10, 4, n_jobs=2)
    >>> out.tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    """
    starts = range(0, n, chunk)
    jobs = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
    if jobs < 1:
        raise ValueError(f"n_jobs must be >= 1 or None; got {n_jobs!r}")
    with single_threaded_blas():
        if jobs == 1 or len(starts) < 2:
            for start in starts:
                work(start)
            return
        with ThreadPoolExecutor(min(jobs, len(starts))) as pool:
            for _ in pool.map(work, starts):  # re-raises a block's exception here
                pass


# ---------------------------------------------------------------------- PIL LANCZOS
def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    # PIL: truncated sinc, support 3
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3.0)
    return 0.0


@lru_cache(maxsize=64)
def lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """PIL's fixed-point LANCZOS weights for resizing ``in_size`` pixels to ``out_size``.

    A re-implementation of ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` in Pillow's
    ``Resample.c``: output pixel ``j`` is ``sum_x w[j, x] * in[x]`` in units of
    ``2**-22``, rounded down after adding ``2**21``, then clipped to ``0..255``.

    Returns
    -------
    ndarray of int64, shape (out_size, in_size)

    Examples
    --------
    >>> w = lanczos_weights(48, 8)
    >>> w.shape, bool(abs(int(w.sum(axis=1)[0]) - 2**22) < 10)
    ((8, 48), True)
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    out = np.zeros((out_size, in_size), np.int64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)  # C casts truncate toward zero
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [_lanczos((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = sum(w)
        for x, v in enumerate(w):
            k = v / total if total != 0.0 else v
            scaled = k * (1 << _PRECISION_BITS)
            out[xx, xmin + x] = int(scaled - 0.5) if k < 0 else int(scaled + 0.5)
    return out


def _guard(weights: np.ndarray) -> float:
    """How far float32 sums can be from exact, in pixel units (a rigorous bound).

    A float32 dot product of ``K`` terms is within ``K * 2**-24 * sum(|a_i * b_i|)`` of
    the exact value (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1); here
    ``|a_i| <= 255`` and the weights are exact in float32 (at most 23-bit integers scaled
    by a power of two). Adding 0.5 rounds by at most half an ulp of 512.
    """
    k = weights.shape[1]
    abs_sum = np.abs(weights).sum(axis=1).max() / 2.0**_PRECISION_BITS
    return 1.1 * (k + 1) * 2.0**-24 * 255.0 * abs_sum + 2.0**-15


def _round_pass(acc: np.ndarray, guard: float, exact: Any) -> np.ndarray:
    """PIL's rounding after a pass, ``floor(v + 0.5)`` clipped to 0..255, made exact.

    ``acc`` holds float32 sums in pixel units (changed in place). Values within ``guard``
    of a rounding boundary could round the wrong way in float32; ``exact(flat_positions)``
    recomputes just those (about 0.2% of them) in float64, where the sums are exact.
    """
    acc += np.float32(0.5)
    out = np.floor(acc)
    acc -= out  # the fractional part
    suspect = (acc < guard) | (acc > 1 - guard)
    where = np.flatnonzero(suspect)
    if len(where):
        out.reshape(-1)[where] = np.floor(exact(where) + 0.5)
    np.clip(out, 0, 255, out=out)
    return out


def _resize_block(block: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize ``(n, H, W)`` uint8 images to float32 ``(n, height, width)``, PIL-exact."""
    n, h_in, w_in = block.shape
    kx = lanczos_weights(w_in, width)
    ky = lanczos_weights(h_in, height)
    scale = 2.0**-_PRECISION_BITS
    kx32 = (kx.T * scale).astype(np.float32)  # exact: at most 23-bit integers
    ky32 = (ky * scale).astype(np.float32)

    rows = block.reshape(n * h_in, w_in)
    horiz = rows.astype(np.float32) @ kx32  # (n*H, width): PIL's first pass

    def exact_h(where: np.ndarray) -> np.ndarray:
        r, c = np.divmod(where, width)
        return np.einsum("kx,kx->k", rows[r].astype(np.float64), kx[c] * scale)

    horiz = _round_pass(horiz, _guard(kx), exact_h).reshape(n, h_in, width)
    vert = np.matmul(ky32, horiz)  # (n, height, width): the second pass, per image

    def exact_v(where: np.ndarray) -> np.ndarray:
        i, rest = np.divmod(where, height * width)
        r, c = np.divmod(rest, width)
        return np.einsum("ky,ky->k", horiz[i, :, c].astype(np.float64), ky[r] * scale)

    return _round_pass(vert, _guard(ky), exact_v)


def resize_lanczos(pixels: Any, width: int, height: int) -> np.ndarray:
    """Resize every image as ``PIL.Image.resize((width, height), Image.LANCZOS)`` does.

    Parameters
    ----------
    pixels : array-like of uint8, shape (n, H, W)
    width, height : int
        Output size (PIL's order: width first).

    Returns
    -------
    ndarray of uint8, shape (n, height, width)
        Equal to PIL's output pixel for pixel.

    Examples
    --------
    >>> import numpy as np
    >>> from PIL import Image
    >>> px = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    >>> ours = resize_lanczos(px, 9, 8)
    >>> pil = np.stack([np.asarray(Image.fromarray(p).resize((9, 8), Image.LANCZOS))
    ...                 for p in px])
    >>> bool((ours == pil).all())
    True
    """
    pixels = _as_images(pixels)
    n = len(pixels)
    out = np.empty((n, height, width), np.uint8)

    def work(start: int) -> None:
        out[start:start + _CHUNK] = _resize_block(pixels[start:start + _CHUNK], width, height)

    map_blocks(work, n, _CHUNK, None)
    return out


# ---------------------------------------------------------------------- hash steps
@lru_cache(maxsize=16)
def _dct_rows(n_out: int, n_in: int) -> np.ndarray:
    """First ``n_out`` rows of scipy.fftpack's unnormalised DCT-II matrix of size n_in."""
    k = np.arange(n_out)[:, None]
    i = np.arange(n_in)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n_in))


def _median_bits(values: np.ndarray) -> np.ndarray:
    """``values > median`` per row of a (n, k) array, as imagehash does per image."""
    return values > np.median(values, axis=1, keepdims=True)


def _block_bits(block: np.ndarray, method: str, hash_size: int) -> np.ndarray:
    """Bits (n, n_bits) of one block of uint8 images."""
    n = len(block)
    if method == "ahash":
        flat = _resize_block(block, hash_size, hash_size).reshape(n, -1).astype(np.float64)
        # p > mean  <=>  k * p > sum, exactly (imagehash's float64 mean of <= 2^16 ints)
        return flat * flat.shape[1] > flat.sum(axis=1, keepdims=True)
    if method == "dhash":
        r = _resize_block(block, hash_size + 1, hash_size)
        return (r[:, :, 1:] > r[:, :, :-1]).reshape(n, -1)
    if method == "phash":
        size = hash_size * 4  # imagehash's highfreq_factor=4
        r = _resize_block(block, size, size).astype(np.float64)
        d = _dct_rows(hash_size, size)
        # DCT-II over rows and columns, only the low hash_size x hash_size block
        low = np.matmul(np.matmul(d, r), d.T).reshape(n, -1)
        median = np.median(low, axis=1, keepdims=True)
        bits = low > median
        # Where a coefficient lies within rounding noise of the median (flat images and
        # pure ramps: many coefficients are exactly zero), the bits are decided by
        # imagehash's float rounding; recompute those images with its own scipy calls.
        gap = np.abs(low - median).min(axis=1)
        fragile = np.flatnonzero(gap <= 1e-9 * (np.abs(low).max(axis=1) + 1.0))
        if len(fragile):
            from scipy import fftpack

            exact = fftpack.dct(fftpack.dct(r[fragile], axis=1), axis=2)
            bits[fragile] = _median_bits(exact[:, :hash_size, :hash_size].reshape(
                len(fragile), -1))
        return bits
    if method == "whash":
        return _whash_bits(block, hash_size)
    raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")


def _whash_bits(block: np.ndarray, hash_size: int) -> np.ndarray:
    """imagehash.whash (haar, remove_max_haar_ll=True, default image_scale).

    In exact arithmetic imagehash's steps reduce to: Haar LL after ``k`` levels is the
    ``2^k x 2^k`` block sums divided by ``2^k``, and removing the global mean (the zeroed
    top-level LL) shifts every value equally, so ``bit = block sum > median of block
    sums``, which integer block sums give exactly. Only when the two middle block sums tie
    does imagehash's float rounding noise (~1e-16) decide bits; for those images (about 2%
    of FER-2013) we run imagehash's own PyWavelets calls, batched, to match it bit for bit.
    """
    n, h, w = block.shape
    if hash_size & (hash_size - 1):
        raise ValueError(f"whash needs a power-of-two hash_size; got {hash_size}")
    scale = max(2 ** int(np.log2(min(h, w))), hash_size)
    ll_max = int(np.log2(scale))
    level = int(np.log2(hash_size))
    r = _resize_block(block, scale, scale)  # (n, s, s), integer-valued
    f = scale // hash_size
    sums = r.reshape(n, hash_size, f, hash_size, f).sum(axis=(2, 4), dtype=np.float64)
    sums = sums.reshape(n, -1)
    bits = _median_bits(sums)
    middle = np.sort(sums, axis=1)[:, [(sums.shape[1] - 1) // 2, sums.shape[1] // 2]]
    tied = np.flatnonzero(middle[:, 0] == middle[:, 1])
    if len(tied):
        try:
            import pywt
        except ImportError:  # pragma: no cover - PyWavelets is an imagehash dependency
            return bits
        pixels = r[tied].astype(np.float64) / 255.0
        coeffs = list(pywt.wavedec2(pixels, "haar", level=ll_max, axes=(-2, -1)))
        coeffs[0] = coeffs[0] * 0
        pixels = pywt.waverec2(coeffs, "haar", axes=(-2, -1))
        low = pywt.wavedec2(pixels, "haar", level=ll_max - level, axes=(-2, -1))[0]
        bits[tied] = _median_bits(low.reshape(len(tied), -1))
    return bits


# ---------------------------------------------------------------------- public API
def _as_images(pixels: Any) -> np.ndarray:
    return as_pixels(pixels, size=None)  # hashes take any image size


def _check_method(method: str, hash_size: Any) -> int:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if isinstance(hash_size, bool) or not isinstance(hash_size, (int, np.integer)):
        raise TypeError(f"hash_size must be an integer >= 2; got {hash_size!r}")
    if hash_size < 2:
        raise ValueError(f"hash_size must be >= 2; got {hash_size}")
    return int(hash_size)


def hash_bits(pixels: Any, method: str = "phash", hash_size: int = 8, *,
              n_jobs: int | None = None) -> np.ndarray:
    """The hash bits of every image, as imagehash's ``ImageHash.hash`` arrays.

    Parameters
    ----------
    pixels : array-like of uint8, shape (n, height, width)
    method : {"ahash", "dhash", "phash", "whash"}, default="phash"
    hash_size : int, default=8
    n_jobs : int, default=None
        Threads; ``None`` uses every core. Results do not depend on it.

    Returns
    -------
    ndarray of bool, shape (n, hash_size, hash_size)

    Examples
    --------
    >>> import numpy as np
    >>> hash_bits(np.tile(np.arange(48, dtype=np.uint8), (1, 48, 1)), "dhash")[0, 0].tolist()
    [True, True, True, True, True, True, True, True]
    """
    hash_size = _check_method(method, hash_size)
    pixels = _as_images(pixels)
    n = len(pixels)
    out = np.empty((n, hash_size * hash_size), bool)

    def work(start: int) -> None:
        out[start:start + _CHUNK] = _block_bits(pixels[start:start + _CHUNK], method,
                                                hash_size)

    map_blocks(work, n, _CHUNK, n_jobs)
    return out.reshape(n, hash_size, hash_size)


def hash_images(pixels: Any, method: str = "phash", hash_size: int = 8, *,
                n_jobs: int | None = None) -> np.ndarray:
    """Perceptual hash codes of every image, packed into ``uint64``.

    Parameters
    ----------
    pixels : array-like of uint8, shape (n, height, width)
        Grayscale images (a :class:`~ferclean.FaceDataset`'s ``pixels``).
    method : {"ahash", "dhash", "phash", "whash"}, default="phash"
        imagehash's ``average_hash``, ``dhash``, ``phash`` and ``whash``, with their
        defaults (``phash``: 32x32 LANCZOS, DCT, low 8x8 block against its median;
        ``whash``: Haar, largest power-of-two scale <= the image, LL removed).
    hash_size : int, default=8
        Bits per side; the code has ``hash_size**2`` bits.
    n_jobs : int, default=None
        Threads; ``None`` uses every core. Results do not depend on it.

    Returns
    -------
    ndarray of uint64
        Shape ``(n,)`` for up to 64 bits, else ``(n, words)`` (see :func:`pack_bits`).

    See Also
    --------
    ferclean.similarity.search.HammingIndex : find every pair of codes within a Hamming radius.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> px = make_demo(n_faces=300).dataset.pixels
    >>> codes = hash_images(px, "phash")
    >>> codes.dtype.name, codes.shape == (len(px),)
    ('uint64', True)
    >>> import imagehash
    >>> from PIL import Image
    >>> int(str(imagehash.phash(Image.fromarray(px[0]))), 16) == int(codes[0])
    True
    """
    bits = hash_bits(pixels, method, hash_size, n_jobs=n_jobs)
    return pack_bits(bits.reshape(len(bits), bits.shape[1] * bits.shape[2]))


# ---------------------------------------------------------------------- bit helpers
def pack_bits(bits: Any) -> np.ndarray:
    """Pack rows of bits, first bit most significant, into ``uint64`` codes.

    Rows of up to 64 bits give shape ``(n,)``; longer rows give ``(n, words)``, the row
    read as one big integer split into 64-bit words, most significant word first.

    Examples
    --------
    >>> pack_bits([[1, 0, 1, 1]]).tolist()
    [11]
    >>> pack_bits(np.ones((1, 65), bool)).tolist()
    [[1, 18446744073709551615]]
    """
    bits = np.asarray(bits, dtype=bool)
    if bits.ndim != 2:
        raise ValueError(f"bits must have shape (n, n_bits); got {bits.shape}")
    n, n_bits = bits.shape
    words = max(1, -(-n_bits // 64))
    padded = np.zeros((n, words * 64), bool)
    padded[:, words * 64 - n_bits:] = bits  # right-align: the value is the bit string
    codes = np.packbits(padded, axis=1).view(">u8").astype(np.uint64)
    return codes[:, 0] if words == 1 else codes


def unpack_bits(codes: Any, n_bits: int | None = None) -> np.ndarray:
    """The inverse of :func:`pack_bits`: ``(n, n_bits)`` bool, first bit first.

    Examples
    --------
    >>> unpack_bits(np.array([11], np.uint64), 4).astype(int).tolist()
    [[1, 0, 1, 1]]
    """
    codes = as_code_matrix(codes)
    n, words = codes.shape
    bits = np.unpackbits(codes.astype(">u8").view(np.uint8).reshape(n, words * 8), axis=1)
    n_bits = words * 64 if n_bits is None else int(n_bits)
    return bits[:, words * 64 - n_bits:].astype(bool)


def as_code_matrix(codes: Any) -> np.ndarray:
    """Codes as a 2-D ``(n, words)`` uint64 array (a 1-D array becomes one column).

    Examples
    --------
    >>> as_code_matrix(np.array([1, 2], np.uint64)).shape
    (2, 1)
    """
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[:, None]
    if codes.ndim != 2:
        raise ValueError(f"codes must have shape (n,) or (n, words); got {codes.shape}")
    if codes.dtype != np.uint64:
        if codes.dtype.kind not in "ui" or (codes.size and codes.min() < 0):
            raise TypeError(f"codes must be unsigned 64-bit integers; got {codes.dtype}")
        codes = codes.astype(np.uint64)
    return codes


if hasattr(np, "bitwise_count"):  # numpy >= 2.0: a hardware popcount ufunc

    def popcount(x: np.ndarray) -> np.ndarray:
        """Number of set bits of each ``uint64`` (numpy's ``bitwise_count``, uint8).

        Examples
        --------
        >>> popcount(np.array([0, 7, 2**64 - 1], np.uint64)).tolist()
        [0, 3, 64]
        """
        return np.bitwise_count(x)

else:  # pragma: no cover - numpy 1.x
    _BYTE_COUNTS = np.array([bin(i).count("1") for i in range(256)], np.int64)

    def popcount(x: np.ndarray) -> np.ndarray:
        """Number of set bits of each ``uint64`` (byte lookup table on numpy 1.x)."""
        x = np.ascontiguousarray(x, dtype=np.uint64)
        return _BYTE_COUNTS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1)
