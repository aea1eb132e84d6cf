"""Near duplicates: fast hash candidates, exact Hamming search, verification on the pixels.

FER-2013 is full of near-copies: the same photo re-cropped, re-encoded, brightened,
watermarked or mirrored. :class:`NearDuplicateIndex` finds them in three steps, each in
its own module.

1. **Hash each image under a few geometric variants**
   (:mod:`~ferclean.similarity.transforms`, :mod:`~ferclean.similarity.near_hash`). A
   perceptual hash (by default a DCT hash: the low 8x8 DCT block against its median, as
   imagehash's ``phash``) is computed from a 16x16 grid of 3x3-pixel block sums, for the
   image as it is and for 16 small geometric *variants* of it (:data:`DEFAULT_TRANSFORMS`):
   12 whole-pixel shifts (:data:`SHIFTS`), zooms of 1.1 and 1.18 (a 2-4 px crop rescaled
   back) and rotations of +-4 degrees; with ``mirror=True`` also for the mirrored image and
   its variants. The hash tolerates about 1 px of misalignment; the variants cover the rest
   (shifts up to 3 px, crops, rotations up to ~6 degrees). Every variant's features are a
   fixed linear map of the pixels (exact for shifts, cubic-spline warps of the grid for
   zooms and rotations), so all variants of all images come out of a few matrix products.
2. **Search exactly.** Every pair whose hashes lie within Hamming ``radius`` (a variant
   of one image against the plain hash of the other) is found, none missed, by
   multi-index hashing (:class:`ferclean.similarity.search.HammingIndex`).
3. **Verify on the pixels** (:mod:`~ferclean.similarity.verify`). FER faces are aligned and
   alike, so hash neighbours include many different people. Each candidate pair is aligned
   with the variant that matched (refined by +-1 px, and for zooms and rotations by half a
   step) and compared by the normalised cross-correlation of the lightly blurred images
   (Gaussian, sigma 1 px) over the central 36x36 pixels: the *similarity*, in [-1, 1],
   invariant to brightness and contrast. Pairs at or above ``similarity`` (default 0.97)
   are near duplicates. Most candidates are different people and are dismissed after a
   quick look at 81 pixels.

This module keeps the index and re-exports the names the other steps define
(:class:`Transform`, :data:`SHIFTS`, :data:`DEFAULT_TRANSFORMS`, :data:`NEAR_METHODS`,
:func:`near_hashes`). The auditor
(:class:`ferclean.auditors.near.NearDuplicateAuditor`) groups the pairs it finds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ferclean._validation import check_fraction
from ferclean.dataset import as_pixels
from ferclean.similarity.near_hash import NEAR_METHODS, near_hashes
from ferclean.similarity.search import BACKENDS, HammingIndex, _check_radius
from ferclean.similarity.transforms import (
    DEFAULT_TRANSFORMS,
    SHIFTS,
    Transform,
    _neighbours,
    _with_mirror,
)
from ferclean.similarity.verify import _GATE, _prepare_images, _verify

__all__ = [
    "DEFAULT_TRANSFORMS",
    "NEAR_METHODS",
    "SHIFTS",
    "NearDuplicateIndex",
    "Transform",
    "near_hashes",
]


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


def _verify_hits(pixels: np.ndarray, moving: np.ndarray, fixed: np.ndarray, tr: np.ndarray,
                 transforms: tuple[Transform, ...], gate: float, threshold: float,
                 prepared: tuple[np.ndarray, ...], n_jobs: int | None) -> np.ndarray:
    """Similarity of each hit: its transform's, or where that falls short of
    ``threshold`` but not far (a zoom or rotation half a step off), the best of its
    neighbours' (:func:`_neighbours`). Each hit's value depends on that hit alone.

    "Not far" is at least ``gate``: retrying from 0.65 instead found the same pairs on
    FER-2013 with several times the retries, the costliest (interpolated)
    verifications."""
    best = _verify(pixels, moving, fixed, tr, transforms, n_jobs, gate, prepared)
    tried = [_neighbours(t)[1:] for t in transforms]
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
                   n_jobs, gate, prepared)
    np.maximum.at(best, which, sims)
    return best


def _empty_pairs(names: tuple[str, str]) -> pd.DataFrame:
    """The pair table with no rows (its columns and dtypes)."""
    return pd.DataFrame({names[0]: pd.Series(dtype=np.int64),
                         names[1]: pd.Series(dtype=np.int64),
                         "hamming": pd.Series(dtype=np.int64),
                         "similarity": pd.Series(dtype=np.float64),
                         "transform": pd.Series(dtype=object),
                         "kind": pd.Series(dtype=object)})


def _pairs_table(pixels: np.ndarray, moving: np.ndarray, fixed: np.ndarray, tr: np.ndarray,
                 hamming: np.ndarray, first: np.ndarray, second: np.ndarray,
                 names: tuple[str, str], threshold: float,
                 transforms: tuple[Transform, ...], n_jobs: int | None) -> pd.DataFrame:
    """Verify hits (positions into ``pixels``) and reduce them to one row per (first,
    second) pair. Every hit of a pair must be given (the Dask engine gives each
    partition's pairs theirs); ties between hits go to the earlier one."""
    if not len(moving):
        return _empty_pairs(names)
    n_keys = int(max(first.max(initial=-1), second.max(initial=-1))) + 1
    key = first * max(n_keys, 1) + second
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
    prepared = (used, *_prepare_images(pixels, used, n_jobs))
    sim[primary] = _verify_hits(pixels, moving[primary], fixed[primary], tr[primary],
                                transforms, gate, threshold, prepared, n_jobs)
    failed = np.zeros(len(key), bool)
    failed[primary] = sim[primary] < threshold
    retry = np.flatnonzero((rank == 1) & np.r_[False, failed[:-1]])
    sim[retry] = _verify_hits(pixels, moving[retry], fixed[retry], tr[retry], transforms,
                              gate, threshold, prepared, n_jobs)
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
    names_tr = np.array([t.describe() for t in transforms], dtype=object)
    flips = np.array([t.flip for t in transforms])
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


# --------------------------------------------------------------------------- index
def _check_params(radius: Any, similarity: Any, method: str, backend: str) -> None:
    """Check the index's (and the auditor's) parameters; messages say what was received
    and what is allowed.

    Examples
    --------
    >>> _check_params(8, 0.97, "phash", "mih")
    >>> _check_params(65, 0.97, "phash", "mih")
    Traceback (most recent call last):
    ...
    ValueError: radius == 65, must be <= 64.
    """
    _check_radius(radius, 64)
    # check_fraction, not sklearn's check_scalar: check_scalar lets NaN through (every
    # comparison with NaN is False), and a NaN threshold would silently keep no pair.
    check_fraction(similarity, "similarity", low=-1.0, high=1.0)
    if method not in NEAR_METHODS:
        raise ValueError(f"method must be one of {', '.join(NEAR_METHODS)}; got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")


class NearDuplicateIndex(BaseEstimator):
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
    pixels_ : ndarray of uint8, shape (n, 48, 48)
        The fitted images (verification reads them).

    See Also
    --------
    ferclean.auditors.near.NearDuplicateAuditor : the ``near_duplicate`` findings.
    ferclean.similarity.search.HammingIndex : the exact Hamming search underneath.

    Notes
    -----
    :meth:`pairs` and :meth:`query` raise :class:`sklearn.exceptions.NotFittedError`
    before :meth:`fit`.

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
        # sklearn's NotFittedError (a ValueError and an AttributeError), as every
        # estimator raises it, so callers can catch one error for all of them
        check_is_fitted(self, "codes_", msg="This %(name)s is not fitted yet; call fit "
                        "with the images to search first.")

    def _table(self, pixels: np.ndarray, moving: np.ndarray, fixed: np.ndarray,
               tr: np.ndarray, hamming: np.ndarray, first: np.ndarray, second: np.ndarray,
               names: tuple[str, str], min_similarity: float | None) -> pd.DataFrame:
        """Verify hits and reduce them to one row per (first, second) pair."""
        threshold = self.similarity if min_similarity is None else min_similarity
        return _pairs_table(pixels, moving, fixed, tr, hamming, first, second, names,
                            threshold, self.transforms_, self.n_jobs)

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
        if min_similarity is not None:
            check_fraction(min_similarity, "min_similarity", low=-1.0, high=1.0)
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
        if min_similarity is not None:
            check_fraction(min_similarity, "min_similarity", low=-1.0, high=1.0)
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

