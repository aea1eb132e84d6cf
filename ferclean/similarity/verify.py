"""Pixel verification of near-duplicate candidates: align, blur, sample, correlate.

FER faces are aligned and alike, so hash neighbours include many different people. Each
candidate pair is aligned with the transform whose hash matched (refined by +-1 px) and
compared by the normalised cross-correlation (NCC) of the lightly blurred images
(Gaussian, sigma 1 px) over the central 36x36 pixels: the *similarity*, in [-1, 1],
invariant to brightness and contrast. Most candidates are different people and are
dismissed after a quick look at 81 pixels (:data:`_QUICK`); only pairs whose coarse
similarity reaches the gate are verified on every other pixel.

Examples
--------
>>> import numpy as np
>>> from ferclean.similarity.transforms import Transform
>>> rng = np.random.default_rng(0)
>>> img = rng.integers(0, 256, (1, 48, 48), dtype=np.uint8)
>>> moved = np.pad(img, 3, mode="edge")[:, 3:51, 1:49]  # content moved 2 px right
>>> pixels = np.concatenate([img, moved])
>>> sim = _verify(pixels, np.array([0]), np.array([1]), np.array([0]),
...               (Transform(dx=2),), n_jobs=1)
>>> bool(sim[0] > 0.99)
True
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ferclean.dataset import IMAGE_SIZE
from ferclean.similarity.hashing import map_blocks
from ferclean.similarity.transforms import Transform

__all__: list[str] = []

_S = IMAGE_SIZE  # 48
_MARGIN = 6  # the verification window is [6, 42): shifted/cropped borders left out
_REFINE = 1  # +- px searched around the matched variant when verifying
_BLUR = 1.0  # Gaussian sigma (px) before verification: JPEG blocks and noise averaged out
_CHUNK = 512  # images per block when blurring and sampling
_PAIR_CHUNK = 4096  # pairs per block when verifying
# Coarse similarity (every 4th pixel, refined) below which a pair is not verified in full,
# and the slack of the unrefined quick look before it. On 300 planted copies of real
# FER-2013 images per edit kind, the quick look at the right alignment scored >= 0.78
# and the full similarity >= 0.97.
_GATE = 0.85


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

