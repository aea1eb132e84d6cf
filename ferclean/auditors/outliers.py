"""Outliers by pixel statistics: images that are not faces, or not like the rest.

Two methods, chosen with ``method``:

``"face_model"`` (default)
    Finds non-face images (text crops, blank or flat frames, charts, gradients, noise,
    drawings and cartoons) among real faces. Every image gets a handful of cheap pixel
    statistics, all computed vectorised over the whole array in chunks:

    ========== ==============================================================
    feature    what it measures (why a non-face stands out)
    ========== ==============================================================
    std        contrast; blank frames have almost none
    fine       share of the variance in pixel-level detail (text, noise)
    detail     share at the 2-4 pixel scale (small text, patterns)
    coarse     share at the 8-16 pixel scale
    shading    share in the 16 pixel scale and above (gradients, blank ramps)
    flat       share of flat, unsaturated area (graphics, charts, logos)
    sparsity   mean / root-mean-square gradient (sparse sharp edges of drawings)
    ramp       variance explained by a quadratic surface (gradients)
    rows       high-frequency energy of the row profile (lines of text)
    columns    high-frequency energy of the column profile (letters, bars)
    blocks     median over 16 blocks of their pixel-level detail share (text, noise)
    residual   distance from the face subspace: the part of the 24x24, contrast-
               normalised image that the top eigenfaces do not explain
    ========== ==============================================================

    The eigenfaces are fitted on a random subsample and refitted twice without the
    worst-explained tenth, so non-faces in the data do not shape the face subspace. The
    features are mapped to roughly symmetric scales (log, logit) and standardised
    robustly (median and MAD), and each image is scored by its distance to the
    ``n_neighbors``-th nearest of ``n_reference`` randomly drawn reference images (a
    k-nearest-neighbour outlier model, scikit-learn's ``NearestNeighbors``). Faces come
    in many looks (dark, bright, profile, cropped, clipped to a white background), so
    a distance to the nearest *similar* faces flags far fewer ordinary faces than one
    distance to the centre of them all (a robust covariance model, tried, flagged about
    four times as many real faces at the same recall). The log distance becomes a
    robust z-score against all images of the dataset, and that a score in [0, 1]:
    ``z**2 / (z**2 + 4.75**2)`` for ``z > 0``, so 0.5 at ``z = 4.75``, the default cut.
    On FER-2013 with planted non-faces it finds about 93% of them, and most real images
    it flags are FER-2013's own non-faces and cartoons (see
    ``benchmarks/results/outliers.json``).

    The fitted model is a :class:`FaceModel` (:func:`fit_face_model`), which scores any
    batch of images (:meth:`FaceModel.score`); every feature and neighbour distance is
    computed row by row, without BLAS products (whose rounding depends on a row's place
    in the batch), so a batch gives each image exactly the numbers the whole array does.
    The Dask engine relies on that: it fits the model on a seeded sample and scores
    partition by partition (:mod:`ferclean.engines.dask`).

``"mean_iqr"``
    The classic rule: a box-and-whisker test on each image's mean grey level. It finds
    few non-faces (most are of ordinary brightness) and flags ordinary dark or bright
    faces; it is here to reproduce published cleaning recipes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy import linalg
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from ferclean._validation import check_fraction, check_positive, check_random_state
from ferclean.auditors.base import Auditor, register
from ferclean.auditors.context import AuditContext, intermediate_key
from ferclean.dataset import IMAGE_SIZE, FaceDataset
from ferclean.findings import empty_findings, make_findings
from ferclean.similarity.exact import content_hash

__all__ = ["FEATURES", "METHODS", "FaceModel", "FaceScores", "OutlierAuditor", "face_features",
           "fit_face_model"]

#: The outlier methods, default first.
METHODS: tuple[str, ...] = ("face_model", "mean_iqr")
#: Names of the face-model features, in column order of ``OutlierAuditor.features_``.
FEATURES: tuple[str, ...] = (
    "std", "fine", "detail", "coarse", "shading", "flat", "sparsity", "ramp", "rows",
    "columns", "blocks", "residual",
)

_SMALL = IMAGE_SIZE // 2  # the 24x24 working resolution of the face subspace
_CHUNK = 512  # images per chunk: float32 buffers that stay in cache (measured best)
_FIT_SAMPLE = 2000  # images the eigenfaces are fitted on
_TRIM = 0.1  # share of the worst-explained fit images dropped before each refit
_Z_HALF = 4.75  # robust z-score at which the score is 0.5 (the default cut)
_MIN_IMAGES = 20  # fewer images than this: no model is fitted, nothing is flagged
_FLAT_STD = 3.0  # grey-level std below which the detail calls an image near-flat first
_MAD = 1.4826  # MAD -> standard deviation for normal data
_SCALE_FLOOR = 0.05  # smallest robust scale (in transformed units), for constant data


# ---------------------------------------------------------------------- features
def _half(a: np.ndarray) -> np.ndarray:
    """2x2 block means of a (c, h, w) float32 array, via strided adds (fast)."""
    c, h, w = a.shape
    rows = a.reshape(c, h // 2, 2 * w)
    rows = rows[:, :, :w] + rows[:, :, w:]
    pairs = rows.reshape(c, h // 2, w // 2, 2)
    return (pairs[..., 0] + pairs[..., 1]) * np.float32(0.25)


# 0/1 matrices that sum 12 (or 6) consecutive columns: block sums as one small matmul,
# which is faster than numpy's strided multi-axis sums.
_SUM12 = np.kron(np.eye(4, dtype=np.float32), np.ones((12, 1), np.float32))
_SUM6 = np.kron(np.eye(4, dtype=np.float32), np.ones((6, 1), np.float32))
_AVERAGE = np.full(_SMALL, 1.0 / _SMALL, np.float32)


def _blocks(a: np.ndarray, summer: np.ndarray) -> np.ndarray:
    """Sums over the 4x4 grid of equal blocks of a (c, h, h) array -> (c, 16)."""
    c, h, _ = a.shape
    cols = (a.reshape(c * h, h) @ summer).reshape(c, 4, h // 4, 4)
    return cols.sum(axis=2).reshape(c, 16)


def _meansq(a: np.ndarray) -> np.ndarray:
    flat = a.reshape(len(a), -1)
    return np.einsum("ij,ij->i", flat, flat) / flat.shape[1]


def _quadratic_basis() -> np.ndarray:
    """Orthonormal 24x24 polynomials of degree 1 and 2 (the constant is left out)."""
    yy, xx = np.mgrid[0:_SMALL, 0:_SMALL].astype(np.float64) / (_SMALL - 1) - 0.5
    terms = np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy]).reshape(6, -1)
    q = np.linalg.qr(terms.T)[0]
    return q[:, 1:].astype(np.float32)


_POLY = _quadratic_basis()


def _chunk_stats(pixels: np.ndarray, buf: np.ndarray, out: np.ndarray,
                 small: np.ndarray) -> None:
    """Raw statistics of one chunk into ``out`` (c, 11); its 24x24 means into ``small``.

    Columns of ``out``: variance, the four finest band energies, flat share, edge
    spread, row-profile energy, block detail, 24x24 variance, column-profile energy.
    Only the float copy, the squares with their 12x12 block sums and the 2x2 means touch
    the full-resolution pixels; everything else works on the 24x24 means.
    """
    c = len(pixels)
    x = buf[:c]
    np.copyto(x, pixels, casting="unsafe")
    # Sums of squares per 12x12 block: exact in float32 (integers below 2**24).
    block_sq = _blocks(x * x, _SUM12)
    d = _half(x)
    mean = d.reshape(c, -1).sum(axis=1, dtype=np.float64) / (_SMALL * _SMALL)
    var = np.maximum(block_sq.sum(axis=1, dtype=np.float64) / IMAGE_SIZE**2 - mean * mean, 0)
    # Laplacian-pyramid band energies per pixel (1, 2, 4, 8 px; the rest is the 16 px
    # band and above): they add up to the variance. Centred first, so that the
    # differences are of small numbers (no float32 cancellation on flat images).
    dc = d - mean.astype(np.float32)[:, None, None]
    d12 = _half(dc)
    d6 = _half(d12)
    d3 = _half(d6)
    s24, s12, s6, s3 = _meansq(dc), _meansq(d12), _meansq(d6), _meansq(d3)
    out[:, 0] = var
    out[:, 1] = var - s24
    out[:, 2] = s24 - s12
    out[:, 3] = s12 - s6
    out[:, 4] = s6 - s3
    # Flat, unsaturated area at 24x24: graphics are flat at any grey level, photos only
    # where they clip to black or white.
    dx = d[:, :-1, 1:] - d[:, :-1, :-1]
    dy = d[:, 1:, :-1] - d[:, :-1, :-1]
    ax, ay = np.abs(dx), np.abs(dy)
    inner = d[:, :-1, :-1]
    flat = (np.maximum(ax, ay) <= 0.5) & (np.abs(inner - 127.5) < 124.5)
    out[:, 5] = np.count_nonzero(flat.reshape(c, -1), axis=1) / flat[0].size
    g2 = (ax * ax + ay * ay).reshape(c, -1)
    out[:, 6] = np.sqrt(g2).mean(axis=1) / np.sqrt(g2.mean(axis=1) + 1e-6)
    # Row and column profiles (as matrix products: much faster than .mean(axis=...)).
    # Lines of text make the row means oscillate.
    rows = (d.reshape(c * _SMALL, _SMALL) @ _AVERAGE).reshape(c, _SMALL)
    cols = np.matmul(_AVERAGE, d)
    for j, profile in ((7, rows), (10, cols)):
        out[:, j] = (np.diff(profile, 2, axis=1) ** 2).mean(axis=1) / (var + 1.0)
    # Per 12x12 block: the share of its variance at pixel scale. The median block tells
    # an image textured all over (text, noise) from one textured only in places (a face).
    block_mean = _blocks(d, _SUM6) / 36
    block_fine = (block_sq - 4 * _blocks(d * d, _SUM6)) / 144
    block_var = np.maximum(block_sq / 144 - block_mean * block_mean, 0.0)
    out[:, 8] = np.median(np.maximum(block_fine, 0.0) / (block_var + 4.0), axis=1)
    out[:, 9] = s24  # variance of the 24x24 image, for the ramp fit
    small[:] = d.reshape(c, -1)


def _single_threaded() -> threadpool_limits:
    """One BLAS/OpenMP thread while the face model runs.

    Its matrix products are small (at most a few thousand rows by 576 columns) and its
    neighbour search short, so extra threads gain little, while idle threads spinning
    on a busy shared machine can cost more CPU than the work itself (measured: up to
    9 s instead of 0.03 s for the eigenfaces). The previous limits are restored after.
    """
    return threadpool_limits(limits=1)


def _logit(p: np.ndarray, eps: float = 0.005) -> np.ndarray:
    p = np.clip(p, 0.0, 1.0)
    return np.log((p + eps) / (1.0 - p + eps))


def _face_subspace(unit: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top eigenfaces of the rows of ``unit``, refitted twice without the worst.

    Each refit drops the tenth of the sample that the current eigenfaces explain worst,
    so that non-faces in the sample do not shape the face subspace. Only the top
    eigenvectors of the (576 x 576) scatter matrix are computed, which is far cheaper
    than a full SVD.
    """
    sample = unit
    dim = sample.shape[1]
    k = int(min(n_components, len(sample) - 1, dim))
    for round_ in range(3):
        mean = sample.mean(axis=0)
        centred = sample - mean
        _, vectors = linalg.eigh(centred.T @ centred, subset_by_index=[dim - k, dim - 1])
        if round_ == 2:
            break
        resid = np.einsum("ij,ij->i", centred, centred) - ((centred @ vectors) ** 2).sum(1)
        keep = resid <= np.quantile(resid, 1.0 - _TRIM)
        if keep.sum() <= k + 1:
            break
        sample = sample[keep]
    return mean, np.ascontiguousarray(vectors[:, ::-1].T)


def face_features(pixels: np.ndarray, *, n_components: int = 20,
                  random_state: Any = 0) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """Per-image statistics the face model scores, vectorised over the whole array.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (n_images, 48, 48)
    n_components : int, default=20
        Eigenfaces of the face subspace, fitted on a random subsample of ``pixels``
        (at most 2000 images).
    random_state : int, Generator or None, default=0
        Seeds the subsample the eigenfaces are fitted on. The subsample is drawn from the
        images sorted by content, so the same images in another order get the same
        features.

    Returns
    -------
    features : DataFrame, shape (n_images, len(FEATURES))
        Raw values, columns :data:`FEATURES`. ``residual`` is the share of the
        contrast-normalised 24x24 image that the eigenfaces leave unexplained.
    small : ndarray of float32, shape (n_images, 576)
        The 24x24 (2x2-mean) images, row-major.
    subspace : dict
        ``mean`` (576,) and ``components`` (k, 576) of the face subspace, in
        contrast-normalised units.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> feats, small, subspace = face_features(demo.dataset.pixels)
    >>> list(feats.columns) == list(FEATURES), small.shape, subspace["components"].shape
    (True, (410, 576), (20, 576))
    >>> blank = sorted(demo.truth.non_face_rows("blank"))
    >>> bool(feats["std"].iloc[blank].max() < feats["std"].median() / 10)
    True
    """
    pixels = np.asarray(pixels)
    order = _canonical_order(content_hash(pixels))
    with _single_threaded():
        features, small, subspace = _face_features(pixels[order], n_components, random_state)
    inverse = _inverse(order)
    return features.iloc[inverse].reset_index(drop=True), small[inverse], subspace


def _canonical_order(hashes: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """Positions that sort the images by content hash, then by id.

    The face model is fitted and sampled in this order, so its random draws pick the
    same images and every array product sees the same rows wherever the images stood
    in the input: results do not depend on input order (identical images tie on the
    hash, and ``ids`` break the tie the same way in any order).
    """
    keys = (hashes,) if ids is None else (np.asarray(ids, dtype=str), hashes)
    return np.lexsort(keys)


def _inverse(order: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return inverse


def _face_features(pixels: np.ndarray, n_components: int, random_state: Any
                   ) -> tuple[pd.DataFrame, np.ndarray, dict]:
    raw, small = _pixel_stats(pixels)
    mean, comps = _fit_subspace(raw, small, n_components, check_random_state(random_state))
    return _features(raw, small, mean, comps), small, {"mean": mean, "components": comps}


def _pixel_stats(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw statistics ``(n, 11)`` and 24x24 means ``(n, 576)`` of every image, in chunks.

    Every value is computed per image, so a batch of any size (a Dask partition) gives
    each image the same numbers as the whole array does.
    """
    n = len(pixels)
    raw = np.empty((n, 11), np.float64)
    small = np.empty((n, _SMALL * _SMALL), np.float32)
    buf = np.empty((min(_CHUNK, max(n, 1)), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        _chunk_stats(np.ascontiguousarray(pixels[start:stop]), buf, raw[start:stop],
                     small[start:stop])
    return raw, small


def _norms(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Contrast-normalised 24x24 images u = (s - mean) / (norm + 1), where the +1 keeps
    # flat frames from being blown up into pure noise. They are never formed for all
    # images: every product with u follows from one product with s, ``s @ W``.
    norm = np.sqrt(_SMALL * _SMALL * np.maximum(raw[:, 9], 0.0))
    return norm, norm + 1.0


def _fit_subspace(raw: np.ndarray, small: np.ndarray, n_components: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mean face and eigenfaces fitted on a random subsample of the images."""
    n, dim = small.shape
    row_mean = small.sum(axis=1, dtype=np.float64) / dim
    _, denom = _norms(raw)
    fit = np.sort(rng.choice(n, size=min(n, _FIT_SAMPLE), replace=False))
    if n > 2:
        unit_fit = (small[fit] - row_mean[fit, None].astype(np.float32)) / denom[
            fit, None].astype(np.float32)
        return _face_subspace(unit_fit, n_components)
    return np.zeros(dim, np.float32), np.zeros((0, dim), np.float32)


def _features(raw: np.ndarray, small: np.ndarray, mean: np.ndarray, comps: np.ndarray
              ) -> pd.DataFrame:
    """The features of :data:`FEATURES` from the raw statistics and the face subspace."""
    var, bands = raw[:, 0], np.maximum(raw[:, 1:5], 0.0)
    energy = np.concatenate([bands, np.maximum(var - bands.sum(1), 0.0)[:, None]], axis=1)
    # Shares of the variance per band; the small constants keep flat images finite.
    share = (energy + 0.01) / (energy.sum(axis=1, keepdims=True) + 0.05)
    norm, denom = _norms(raw)
    k = len(comps)
    # (s - row mean) . w = s . (w - mean of w): centring the weights instead of the
    # images makes one matrix product give every projection of the centred images.
    weights = np.concatenate([_POLY, comps.T, mean[:, None]], axis=1).astype(np.float64)
    weights -= weights.mean(axis=0)
    # einsum, not BLAS: a BLAS product's rounding depends on the row's place in the
    # batch (measured: up to 2e-4 in a feature), einsum's does not, so an image gets the
    # same features in any batch (a Dask partition) as in the whole array; ~0.2 s slower
    # on FER-2013.
    sw = np.einsum("ij,kj->ik", small, np.ascontiguousarray(
        weights.T.astype(np.float32))).astype(np.float64)
    ramp = (sw[:, :5] ** 2).sum(axis=1) / (norm * norm + 1.0)
    uw = sw[:, 5:] / denom[:, None]
    mean64 = mean.astype(np.float64)
    coef = uw[:, :k] - comps.astype(np.float64) @ mean64  # (u - mean) @ components.T
    # |u - mean|^2 = |u|^2 - 2 u.mean + |mean|^2, minus the part the eigenfaces explain
    resid = (norm / denom) ** 2 - 2 * uw[:, k] + mean64 @ mean64 - (coef * coef).sum(axis=1)
    features = pd.DataFrame(
        {
            "std": np.sqrt(var),
            "fine": share[:, 0],
            "detail": share[:, 1],
            "coarse": share[:, 3],
            "shading": share[:, 4],
            "flat": raw[:, 5],
            "sparsity": raw[:, 6],
            "ramp": np.clip(ramp, 0.0, 1.0),
            "rows": raw[:, 7],
            "columns": raw[:, 10],
            "blocks": raw[:, 8],
            "residual": np.clip(resid, 0.0, 1.0),
        },
        columns=list(FEATURES),
    )
    return features


def _transform(features: pd.DataFrame) -> np.ndarray:
    """Map raw features to scales on which faces are roughly symmetric (log, logit)."""
    f = features
    cols = [
        np.log(f["std"].to_numpy() + 1.0),
        _logit(f["fine"].to_numpy()),
        _logit(f["detail"].to_numpy()),
        _logit(f["coarse"].to_numpy()),
        _logit(f["shading"].to_numpy()),
        _logit(f["flat"].to_numpy()),
        f["sparsity"].to_numpy(),
        _logit(f["ramp"].to_numpy()),
        np.log(f["rows"].to_numpy() + 1e-3),
        np.log(f["columns"].to_numpy() + 1e-3),
        np.log(f["blocks"].to_numpy() + 1e-3),
        _logit(f["residual"].to_numpy()),
    ]
    return np.stack(cols, axis=1)


def _robust_scale(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    center = np.median(values, axis=axis)
    scale = _MAD * np.median(np.abs(values - center), axis=axis)
    return center, np.maximum(scale, _SCALE_FLOOR)


# ---------------------------------------------------------------------- the model
@dataclass(frozen=True)
class FaceScores:
    """The face model's view of some images, one row per image.

    Attributes
    ----------
    features : DataFrame
        Raw features (columns :data:`FEATURES`).
    z_features : ndarray, shape (n, len(FEATURES))
        Robust z-scores of the transformed features.
    z : ndarray, shape (n,)
        Robust z-score of each image's log distance to its nearest reference images.
    scores : ndarray, shape (n,)
        In [0, 1], higher = more likely a non-face.
    """

    features: pd.DataFrame
    z_features: np.ndarray
    z: np.ndarray
    scores: np.ndarray


@dataclass(frozen=True)
class FaceModel:
    """The face model fitted on a set of images: everything that scores any image.

    Fitted by :func:`fit_face_model`, in memory on the whole dataset; the Dask engine fits
    it on a seeded sample and scores every partition with :meth:`score`. ``neighbors`` is
    ``None`` when fewer than 20 images were fitted (then nothing is flagged).

    Attributes
    ----------
    mean, components : ndarray
        The face subspace (contrast-normalised 24x24 images, flattened).
    center, scale : ndarray, shape (len(FEATURES),)
        Robust location and scale of the transformed features.
    neighbors : sklearn.neighbors.NearestNeighbors or None
        Fitted on the reference images' standardised features (``reference_features``);
        the scores use the same distances, computed row by row (:func:`_neighbour_distances`).
    n_neighbors : int
        The neighbour whose distance scores (``k``; a reference counts one further).
    reference : ndarray of int
        Positions, among the fitted images, of the reference images (model row order).
    reference_features : ndarray, shape (n_reference, len(FEATURES))
        The reference images' standardised features.
    distance_center, distance_scale : float
        Median and robust scale of the fitted images' log neighbour distances.
    median_residual : float
        Median face-subspace residual of the fitted images (for the evidence text).
    threshold : float
        The score cut (after ``contamination``, if given, over the fitted images).
    """

    mean: np.ndarray
    components: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    neighbors: NearestNeighbors | None
    n_neighbors: int
    reference: np.ndarray
    reference_features: np.ndarray
    distance_center: float
    distance_scale: float
    median_residual: float
    threshold: float

    def score(self, pixels: np.ndarray, in_reference: np.ndarray | None = None) -> FaceScores:
        """Score images with this model (a Dask partition, or any new images).

        ``in_reference`` marks the images that are themselves reference images (a
        reference finds itself at distance 0, so its distance is one neighbour further);
        ``None``: none are.

        Examples
        --------
        >>> from ferclean.demo import demo_dataset
        >>> from ferclean.similarity.exact import content_hash
        >>> ds = demo_dataset(n_faces=300)
        >>> model, fitted = fit_face_model(ds.pixels, content_hash(ds.pixels), ds.ids)
        >>> again = model.score(ds.pixels[:50], np.isin(np.arange(50), model.reference))
        >>> bool((again.scores == fitted.scores[:50]).all())  # exactly: row by row
        True
        """
        n = len(pixels)
        in_reference = np.zeros(n, bool) if in_reference is None else np.asarray(
            in_reference, bool)
        with _single_threaded():
            raw, small = _pixel_stats(np.asarray(pixels))
            features = _features(raw, small, self.mean, self.components)
            if self.neighbors is None:
                nan = np.full((n, len(FEATURES)), np.nan)
                return FaceScores(features, nan, np.zeros(n), np.zeros(n))
            z_features = (_transform(features) - self.center) / self.scale
            log_kth = _log_kth(self.reference_features, self.n_neighbors, z_features,
                               in_reference)
        z = (log_kth - self.distance_center) / self.distance_scale
        return FaceScores(features, z_features, z, _score_from_z(z))


def _neighbour_distances(reference: np.ndarray, queries: np.ndarray, k: int,
                         chunk: int = 512) -> np.ndarray:
    """Euclidean distances of each query to its ``k``-th and ``k + 1``-th nearest
    reference (1-based), shape ``(n, 2)``.

    What :meth:`NearestNeighbors.kneighbors` gives in columns ``k - 1`` and ``k``, but
    with einsum instead of BLAS, whose rounding depends on a row's place in the batch
    (measured: 1e-15), so that a Dask partition scores an image exactly as the whole
    array does: with ``contamination`` the cut is one image's own score, and the
    slightest wobble would flag it.
    """
    ref = np.ascontiguousarray(reference, np.float64)
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    out = np.empty((len(queries), 2))
    for start in range(0, len(queries), chunk):
        q = np.ascontiguousarray(queries[start:start + chunk], np.float64)
        d2 = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * np.einsum("ij,kj->ik", q, ref)
        d2 += ref_sq[None, :]
        nearest = np.partition(np.maximum(d2, 0.0), (k - 1, k), axis=1)[:, k - 1:k + 1]
        out[start:start + chunk] = np.sqrt(nearest)
    return out


def _log_kth(reference: np.ndarray, k: int, z_features: np.ndarray,
             in_reference: np.ndarray) -> np.ndarray:
    dist = _neighbour_distances(reference, z_features, k)
    # A reference image finds itself at distance 0: count one neighbour further.
    kth = np.where(in_reference, dist[:, 1], dist[:, 0])
    return np.log(kth + 1e-3)


def _score_from_z(z: np.ndarray) -> np.ndarray:
    zp = np.maximum(z, 0.0)
    return zp * zp / (zp * zp + _Z_HALF * _Z_HALF)


def fit_face_model(pixels: np.ndarray, hashes: np.ndarray, ids: np.ndarray, *,
                   n_components: int = 20, n_neighbors: int = 10, n_reference: int = 1000,
                   threshold: float = 0.5, contamination: float | None = None,
                   random_state: Any = 0) -> tuple[FaceModel, FaceScores]:
    """Fit the face model on ``pixels`` and score them (see the module notes).

    Everything is computed on the images in canonical order (by content hash, then id),
    then mapped back: the eigenface subsample and the reference images are random
    positions, so fitting in input order would make the flagged images depend on it.

    Parameters
    ----------
    pixels : ndarray of uint8, shape (n, 48, 48)
    hashes : ndarray of uint64, shape (n,)
        Content hashes (:func:`~ferclean.similarity.exact.content_hash`).
    ids : ndarray of str, shape (n,)
    n_components, n_neighbors, n_reference, threshold, contamination, random_state
        As :class:`OutlierAuditor`'s (checked there).

    Returns
    -------
    model : FaceModel
    scores : FaceScores
        Of the fitted images, in input order.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> from ferclean.similarity.exact import content_hash
    >>> ds = make_demo(n_faces=300).dataset
    >>> model, fitted = fit_face_model(ds.pixels, content_hash(ds.pixels), ds.ids)
    >>> model.components.shape, bool((fitted.scores > model.threshold).any())
    ((20, 576), True)
    """
    n = len(pixels)
    rng = check_random_state(random_state)
    order = _canonical_order(hashes, ids)
    inverse = _inverse(order)
    with _single_threaded():
        features_c, _, subspace = _face_features(pixels[order], n_components, rng)
        features = features_c.iloc[inverse].reset_index(drop=True)
        median_residual = max(float(np.median(features["residual"])), 1e-6) if n else 1e-6
        if n < _MIN_IMAGES:
            # Too few images to say what a typical face of this dataset looks like.
            nan = np.full(len(FEATURES), np.nan)
            model = FaceModel(subspace["mean"], subspace["components"], nan, nan, None, 0,
                              np.zeros(0, np.int64), np.zeros((0, len(FEATURES))),
                              float("nan"), float("nan"), median_residual, float(threshold))
            return model, FaceScores(features, np.full((n, len(FEATURES)), np.nan),
                                     np.zeros(n), np.zeros(n))
        values_c = _transform(features_c)
        center, scale = _robust_scale(values_c)
        z_feat_c = (values_c - center) / scale
        reference_c = np.sort(rng.choice(n, size=min(n_reference, n), replace=False))
        k = min(n_neighbors, len(reference_c) - 1)
        reference_features = z_feat_c[reference_c]
        neighbors = NearestNeighbors(n_neighbors=k + 1, algorithm="brute")
        neighbors.fit(reference_features)
        in_reference = np.zeros(n, bool)
        in_reference[reference_c] = True
        log_kth = _log_kth(reference_features, k, z_feat_c, in_reference)
    d_center, d_scale = _robust_scale(log_kth)
    z = ((log_kth - d_center) / d_scale)[inverse]
    scores = _score_from_z(z)
    cut = float(threshold)
    if contamination is not None:
        ranked = np.argsort(-scores, kind="stable")
        n_flag = int(np.ceil(contamination * n))
        cut = float(scores[ranked[n_flag]]) if n_flag < n else 0.0
    # reference in the order of the model's fitted rows
    model = FaceModel(subspace["mean"], subspace["components"], center, scale, neighbors, k,
                      order[reference_c], reference_features, float(d_center),
                      float(d_scale), median_residual, cut)
    return model, FaceScores(features, z_feat_c[inverse], z, scores)


# ---------------------------------------------------------------------- evidence
# How to name each feature when it is the strongest evidence, by sign of its z-score.
# Each phrase gets the raw value (residual: as a multiple of the median residual).
_EVIDENCE: dict[str, tuple[str, str]] = {
    "std": ("near-flat image (std {v:.1f})", "very high contrast (std {v:.1f})"),
    "fine": ("no pixel-level detail ({v:.1%} of variance)",
             "pixel-level texture like text or noise ({v:.0%} of variance)"),
    "detail": ("little 2-4 px structure ({v:.1%} of variance)",
               "2-4 px structure like small print or patterns ({v:.0%} of variance)"),
    "coarse": ("little 8-16 px structure ({v:.1%} of variance)",
               "mostly 8-16 px blobs ({v:.0%} of variance)"),
    "shading": ("no broad shading ({v:.1%} of variance)",
                "only broad shading ({v:.0%} of variance)"),
    "flat": ("no flat areas ({v:.1%} flat)",
             "flat unsaturated areas as in graphics ({v:.0%} flat)"),
    "sparsity": ("sparse sharp edges as in line art (edge spread {v:.2f})",
                 "evenly spread gradients (edge spread {v:.2f})"),
    "ramp": ("no smooth shading (ramp fit {v:.0%})", "smooth ramp (ramp fit {v:.0%})"),
    "rows": ("unusually smooth row profile ({v:.3f})",
             "rows oscillate like lines of text ({v:.2f})"),
    "columns": ("unusually smooth column profile ({v:.3f})",
                "columns oscillate like letters or bars ({v:.2f})"),
    "blocks": ("smooth in every block (block detail {v:.2f})",
               "textured all over like text or noise (block detail {v:.2f})"),
    "residual": ("unusually close to the mean face (residual {v:.1f}x median)",
                 "far from face subspace (residual {v:.1f}x median)"),
}


def _evidence(features: pd.DataFrame, z: np.ndarray, median_residual: float,
              n_reasons: int = 2) -> list[str]:
    """The ``n_reasons`` strongest feature deviations of each image (row) given.

    ``features`` and ``z`` hold only the flagged images; ``median_residual`` is the
    dataset's (the face model's :attr:`FaceModel.median_residual`).
    """
    names = list(FEATURES)
    raw = features.to_numpy()
    out = []
    strength = np.abs(z)
    # A (near) blank frame is best described as such, whatever else stands out.
    strength[:, 0] = np.where(features["std"].to_numpy() < _FLAT_STD, np.inf, strength[:, 0])
    for i in range(len(raw)):  # only the flagged images: a short loop
        order = np.argsort(-strength[i], kind="stable")[:n_reasons]
        parts = []
        for j in order:
            name = names[j]
            value = raw[i, j] / median_residual if name == "residual" else raw[i, j]
            parts.append(_EVIDENCE[name][int(z[i, j] > 0)].format(v=value))
        out.append("face_model: " + "; ".join(parts))
    return out


# ---------------------------------------------------------------------- validation
def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {low}; got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}; got {value!r}")
    return int(value)


def _check_bounds(bounds: Any) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        low, high = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise TypeError(
            f"bounds must be None or a pair of numbers (low, high); got {bounds!r}"
        ) from None
    if np.isnan(low) or np.isnan(high) or not low < high:
        raise ValueError(f"bounds must be (low, high) with low < high; got {bounds!r}")
    return low, high


# ---------------------------------------------------------------------- auditor
@register
class OutlierAuditor(Auditor):
    """Images that are not faces (``face_model``) or have an odd mean grey level.

    Parameters
    ----------
    method : {"face_model", "mean_iqr"}, default="face_model"
        ``"face_model"`` scores every image by how unlike the dataset's faces its pixel
        statistics and its fit to the eigenfaces are (see the module docstring);
        ``"mean_iqr"`` is the classic box-and-whisker rule on the mean grey level.
    threshold : float in [0, 1], default=0.5
        ``face_model``: flag images whose score exceeds this. The score is 0.5 where
        the image's distance to its nearest reference faces is 4.75 robust standard
        deviations above the dataset's median (0.8 at 9.5).
    contamination : float in (0, 0.5] or None, default=None
        ``face_model``: if given, flag this share of the images with the highest
        scores instead (ties at the cut are left out), whatever their score.
    n_components : int, default=20
        ``face_model``: eigenfaces of the face subspace.
    n_neighbors : int, default=10
        ``face_model``: the score uses the distance to this many nearest reference
        images (fewer when there are fewer references).
    n_reference : int, default=1000
        ``face_model``: reference images drawn at random from the dataset.
    whisker : float, default=1.5
        ``mean_iqr``: flag means below ``Q1 - whisker * IQR`` or above
        ``Q3 + whisker * IQR``.
    bounds : (low, high) or None, default=None
        ``mean_iqr``: explicit limits on the mean grey level; override ``whisker``.
    random_state : int, numpy Generator or None, default=0
        ``face_model``: seeds the eigenface subsample and the reference images. Both
        are drawn from the images sorted by content hash (then id), so the same images
        in another order give the same scores and findings.

    Attributes
    ----------
    scores_ : ndarray of float, shape (n_images,)
        Per image in [0, 1], higher = more likely a non-face (``mean_iqr``: how far
        beyond its limit, 0 inside). Flagged images are those with
        ``scores_ > threshold_``.
    threshold_ : float
        The score cut used (``mean_iqr``: 0).
    features_ : DataFrame
        ``face_model``: the raw features (columns :data:`FEATURES`).
    z_ : ndarray, shape (n_images,)
        ``face_model``: robust z-score of each image's neighbour distance.
    model_ : sklearn.neighbors.NearestNeighbors or None
        ``face_model``: the fitted k-nearest-neighbour model on the robustly
        standardised features of the reference images (``None`` when the dataset has
        fewer than 20 images: then nothing is flagged).
    reference_ : ndarray of int
        ``face_model``: positions of the reference images, in the order of the model's
        fitted rows.
    center_, scale_ : ndarray, shape (len(FEATURES),)
        ``face_model``: robust location and scale of the transformed features.
    distance_center_, distance_scale_ : float
        ``face_model``: median and robust scale of the log neighbour distances, which
        turn a distance into ``z_``.
    mean_face_ : ndarray, shape (24, 24)
    components_ : ndarray, shape (n_components, 24, 24)
        ``face_model``: the face subspace (contrast-normalised 24x24 images).
    means_ : ndarray, shape (n_images,)
        ``mean_iqr``: mean grey level of every image.
    lower_, upper_ : float
        ``mean_iqr``: the limits used.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> found = OutlierAuditor().audit(demo.dataset)
    >>> planted = demo.truth.non_face_rows()
    >>> len(set(found.row) & planted) / len(planted) >= 0.9
    True
    >>> found.score.is_monotonic_decreasing, found.detail.iloc[0].startswith("face_model:")
    (True, True)
    >>> classic = OutlierAuditor(method="mean_iqr").audit(demo.dataset)
    >>> bool(classic.detail.str.startswith("mean_iqr: mean pixel").all())
    True
    """

    issue_name: ClassVar[str] = "outlier"
    order: ClassVar[int] = 50
    title: ClassVar[str] = "Outliers"
    description: ClassVar[str] = (
        "Images unlike the faces of this dataset (text, blank frames, charts, drawings), "
        "worst first.")

    def __init__(
        self,
        *,
        method: str = "face_model",
        threshold: float = 0.5,
        contamination: float | None = None,
        n_components: int = 20,
        n_neighbors: int = 10,
        n_reference: int = 1000,
        whisker: float = 1.5,
        bounds: tuple[float, float] | None = None,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        self.method = method
        self.threshold = threshold
        self.contamination = contamination
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.n_reference = n_reference
        self.whisker = whisker
        self.bounds = bounds
        self.random_state = random_state

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> dict[str, Any]:
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        params: dict[str, Any] = {
            "threshold": check_fraction(self.threshold, "threshold"),
            "n_components": _check_int(self.n_components, "n_components", 1),
            "n_neighbors": _check_int(self.n_neighbors, "n_neighbors", 1),
            "n_reference": _check_int(self.n_reference, "n_reference", 2),
            "whisker": check_positive(self.whisker, "whisker"),
            "bounds": _check_bounds(self.bounds),
            "contamination": None,
        }
        if self.contamination is not None:
            c = check_fraction(self.contamination, "contamination", high=0.5)
            if c <= 0:
                raise ValueError(
                    f"contamination must be None or in (0, 0.5]; got {self.contamination!r}")
            params["contamination"] = c
        check_random_state(self.random_state)  # TypeError for anything else
        return params

    # ------------------------------------------------------------------ audit
    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        params = self._check_params()
        if self.method == "mean_iqr":
            return self._mean_iqr(dataset, context, params)
        with _single_threaded():
            return self._face_model(dataset, context, params)

    def _mean_iqr(self, dataset: FaceDataset, context: AuditContext,
                  params: dict[str, Any]) -> pd.DataFrame:
        means = np.asarray(context.mean_pixel, dtype=np.float64)
        self.means_ = means
        self.threshold_ = 0.0
        if len(means) == 0:
            self.lower_, self.upper_ = -np.inf, np.inf
            self.scores_ = np.zeros(0)
            return empty_findings()
        q1, q3 = np.percentile(means, [25, 75])
        iqr = float(q3 - q1)
        if params["bounds"] is None:
            lower, upper = q1 - params["whisker"] * iqr, q3 + params["whisker"] * iqr
            kind = "whisker"
        else:
            lower, upper = params["bounds"]
            kind = "bound"
        self.lower_, self.upper_ = float(lower), float(upper)
        beyond = np.maximum(lower - means, 0.0) + np.maximum(means - upper, 0.0)
        # Distance beyond the limit in units of the spread of the means (1 grey level if
        # they do not spread), squashed into [0, 1): ranks the extreme ones first.
        self.scores_ = 1.0 - np.exp(-beyond / max(iqr, 1.0))
        index = np.flatnonzero((means < lower) | (means > upper))
        if not len(index):
            return empty_findings()
        index = index[np.lexsort((index, -self.scores_[index]))]
        detail = [
            f"mean_iqr: mean pixel {means[i]:.1f} < lower {kind} {lower:.1f}"
            if means[i] < lower
            else f"mean_iqr: mean pixel {means[i]:.1f} > upper {kind} {upper:.1f}"
            for i in index
        ]
        # A flagged image is strictly beyond its limit; keep its score above 0.
        score = np.clip(self.scores_[index], np.finfo(float).tiny, 1.0)
        return make_findings(dataset, index, self.issue_name, score=score, detail=detail)

    def _face_model(self, dataset: FaceDataset, context: AuditContext,
                    params: dict[str, Any]) -> pd.DataFrame:
        # the fitted model and the scores of the context's images; an engine may supply
        # them (the Dask engine fits on a sample and scores partition by partition)
        model, found = context.intermediate(
            intermediate_key("face_model", self),
            lambda: fit_face_model(
                dataset.pixels, context.content_hashes, dataset.ids,
                n_components=params["n_components"], n_neighbors=params["n_neighbors"],
                n_reference=params["n_reference"], threshold=params["threshold"],
                contamination=params["contamination"], random_state=self.random_state))
        self.features_ = found.features
        self.mean_face_ = model.mean.reshape(_SMALL, _SMALL)
        self.components_ = model.components.reshape(-1, _SMALL, _SMALL)
        self.threshold_ = model.threshold
        self.scores_, self.z_ = found.scores, found.z
        self.model_, self.reference_ = model.neighbors, model.reference
        self.center_, self.scale_ = model.center, model.scale
        self.distance_center_ = model.distance_center
        self.distance_scale_ = model.distance_scale
        if model.neighbors is None:
            return empty_findings()
        scores = found.scores
        index = np.flatnonzero(scores > self.threshold_)  # NaN (not supplied) never is
        if not len(index):
            return empty_findings()
        index = index[np.lexsort((index, -scores[index]))]  # worst first, then by row
        detail = _evidence(found.features.iloc[index], found.z_features[index],
                           model.median_residual)
        return make_findings(dataset, index, self.issue_name, score=scores[index],
                             detail=detail)

    def summary_extra(self) -> dict[str, Any]:
        """The method and the score cut, for ``summary.json``."""
        extra: dict[str, Any] = {"method": self.method}
        if hasattr(self, "threshold_"):
            extra["threshold"] = float(self.threshold_)
        if self.method == "mean_iqr" and hasattr(self, "lower_"):
            extra.update(lower=float(self.lower_), upper=float(self.upper_))
        return extra
