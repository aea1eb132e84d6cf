"""A fast CPU classifier for out-of-fold probabilities: learned patch features + LDA.

Coates, Lee and Ng (*An Analysis of Single-Layer Networks in Unsupervised Feature
Learning*, AISTATS 2011): normalise and ZCA-whiten small patches, learn a dictionary of
them with k-means, encode every patch of an image by its "triangle" distance to each
centroid, and sum the codes over a grid of regions. The dictionary uses no labels, so it
can be learned on every image before the folds are made without leaking any label; a
linear discriminant (scikit-learn's LDA with Ledoit-Wolf shrinkage) is then fitted per
fold. Everything is matrix products (BLAS), which is why it beats a small CNN here: on
this project's 2-core CPU, XLA's convolutions trained a 16-32-64 CNN at about 60-170
images/s, too slow for five folds of FER-2013 in 15 minutes.

Measured choice (``benchmarks/bench_label_issues.py``): HOG features with logistic
regression reached 43.6 % on a held-out fifth of FER-2013 Training; these patch features
with LDA 50.5 %.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

__all__ = ["PatchFeatures", "PatchLDAClassifier"]


class PatchFeatures(TransformerMixin, BaseEstimator):
    """Unsupervised patch features (whitened k-means dictionary, triangle coding).

    Parameters
    ----------
    n_filters : int, default=256
        Dictionary size (k-means centroids).
    patch_size : int, default=6
    stride : int, default=2
        Between encoded patches (1 is slightly better and four times slower).
    pooling : int, default=3
        Codes are summed over ``pooling x pooling`` regions: ``n_filters * pooling**2``
        features per image.
    n_patches : int, default=100_000
        Patches sampled to learn the whitening and the dictionary.
    seed : int, default=0
    batch_size : int, default=256
        Images encoded at a time (bounds memory: about 120 MB at the defaults).

    Attributes
    ----------
    mean_, whiten_, centroids_ : ndarray
        The patch mean, the ZCA whitening matrix and the dictionary.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> images = rng.integers(0, 256, (20, 48, 48)).astype(np.uint8)
    >>> f = PatchFeatures(n_filters=8, n_patches=500).fit(images)
    >>> f.transform(images).shape
    (20, 72)
    """

    def __init__(self, *, n_filters: int = 256, patch_size: int = 6, stride: int = 2,
                 pooling: int = 3, n_patches: int = 100_000, seed: int = 0,
                 batch_size: int = 256) -> None:
        self.n_filters = n_filters
        self.patch_size = patch_size
        self.stride = stride
        self.pooling = pooling
        self.n_patches = n_patches
        self.seed = seed
        self.batch_size = batch_size

    def _patches(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
        p = self.patch_size
        windows = sliding_window_view(images.astype(np.float32), (p, p), axis=(1, 2))
        windows = windows[:, :: self.stride, :: self.stride]
        n, h, w = windows.shape[:3]
        flat = windows.reshape(n * h * w, p * p)
        # brightness and contrast normalisation (the +10 keeps flat patches from
        # being blown up into noise), as in Coates et al.
        flat = flat - flat.mean(axis=1, keepdims=True)
        flat /= np.sqrt(flat.var(axis=1, keepdims=True) + 10.0)
        return flat, (n, h, w)

    def fit(self, images: Any, y: Any = None) -> PatchFeatures:
        """Learn the whitening and the dictionary from ``images`` (labels unused)."""
        from sklearn.cluster import MiniBatchKMeans

        images = np.asarray(images)
        rng = np.random.default_rng(self.seed)
        chosen = rng.choice(len(images), min(len(images), 2000), replace=False)
        patches, _ = self._patches(images[np.sort(chosen)])
        take = rng.choice(len(patches), min(len(patches), self.n_patches), replace=False)
        patches = patches[np.sort(take)].astype(np.float64)
        self.mean_ = patches.mean(axis=0)
        cov = np.cov(patches - self.mean_, rowvar=False)
        eigval, eigvec = np.linalg.eigh(cov)
        self.whiten_ = ((eigvec / np.sqrt(eigval + 0.1)) @ eigvec.T).astype(np.float32)
        white = ((patches - self.mean_) @ self.whiten_).astype(np.float32)
        kmeans = MiniBatchKMeans(self.n_filters, random_state=self.seed, n_init=1,
                                 batch_size=4096).fit(white)
        self.centroids_ = kmeans.cluster_centers_.astype(np.float32)
        self.mean_ = self.mean_.astype(np.float32)
        return self

    def transform(self, images: Any) -> np.ndarray:
        """Encode ``images`` (N, 48, 48) as ``(N, n_filters * pooling**2)`` features."""
        check_is_fitted(self, "centroids_")
        images = np.asarray(images)
        c2 = (self.centroids_ ** 2).sum(axis=1)
        out = []
        for start in range(0, len(images), self.batch_size):
            patches, (n, h, w) = self._patches(images[start:start + self.batch_size])
            z = (patches - self.mean_) @ self.whiten_
            dist = np.sqrt(np.maximum((z ** 2).sum(axis=1, keepdims=True)
                                      - 2 * z @ self.centroids_.T + c2, 0))
            codes = np.maximum(dist.mean(axis=1, keepdims=True) - dist, 0)
            codes = codes.reshape(n, h, w, self.n_filters)
            bands = np.array_split(np.arange(h), self.pooling)
            cols = np.array_split(np.arange(w), self.pooling)
            pooled = [codes[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1].sum(axis=(1, 2))
                      for r in bands for c in cols]
            out.append(np.concatenate(pooled, axis=1))
        if not out:
            return np.zeros((0, self.n_filters * self.pooling ** 2), np.float32)
        return np.concatenate(out).astype(np.float32)


class PatchLDAClassifier(ClassifierMixin, BaseEstimator):
    """Standardised features -> shrinkage LDA; ``predict_proba`` over all classes.

    Works on feature rows (from :class:`PatchFeatures`), so the features of a dataset are
    computed once and every fold fits only this.

    Parameters
    ----------
    n_classes : int, default=7
        Columns of ``predict_proba``, even if a fold lacks a class (its column is 0).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(60, 5)), np.arange(60) % 3
    >>> X[:, 0] += y * 3
    >>> p = PatchLDAClassifier(n_classes=4).fit(X, y).predict_proba(X)
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1)), float(p[:, 3].max())
    ((60, 4), True, 0.0)
    """

    def __init__(self, *, n_classes: int = 7) -> None:
        self.n_classes = n_classes

    def fit(self, X: Any, y: Any) -> PatchLDAClassifier:
        """Fit the scaler and the discriminant on feature rows ``X``, labels ``y``."""
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, np.float64)
        self.scaler_ = StandardScaler().fit(X)
        self.lda_ = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto")
        self.lda_.fit(self.scaler_.transform(X), np.asarray(y))
        self.classes_ = np.arange(self.n_classes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, ``(N, n_classes)``; rows sum to 1."""
        check_is_fitted(self, "lda_")
        inner = self.lda_.predict_proba(self.scaler_.transform(np.asarray(X, np.float64)))
        out = np.zeros((len(inner), self.n_classes))
        out[:, self.lda_.classes_.astype(np.int64)] = inner
        return out

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class per row."""
        return self.predict_proba(X).argmax(axis=1)
