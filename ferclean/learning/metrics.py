"""Classification metrics over the seven FER classes, computed by scikit-learn.

Thin wrappers of :mod:`sklearn.metrics` that fix what FER needs: all seven classes are
listed (``labels=range(7)``), so a class the split lacks still appears, with support 0,
and undefined ratios are 0 (``zero_division=0``). No JAX.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import log_softmax
from sklearn import metrics as skm

from ferclean.dataset import EMOTIONS

__all__ = ["classification_metrics", "classification_report", "confusion_matrix",
           "cross_entropy"]

_N = len(EMOTIONS)


def _labels_arrays(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    # scikit-learn silently drops samples whose class is not in ``labels``; a class id
    # out of range is a caller's bug here, so it raises instead.
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} must hold class ids 0..{n_classes - 1}")
    return t, p


def confusion_matrix(
    y_true: Any, y_pred: Any, *, n_classes: int = _N, normalize: str | None = None
) -> np.ndarray:
    """Counts of (true class, predicted class) pairs; rows are true classes.

    :func:`sklearn.metrics.confusion_matrix` with ``labels=range(n_classes)``.

    Parameters
    ----------
    y_true, y_pred : array-like of int
    n_classes : int, default=7
    normalize : {None, "true", "pred", "all"}, default=None
        As scikit-learn: divide by row sums (recall per class on the diagonal), column
        sums or the total; empty rows or columns give 0.

    Returns
    -------
    ndarray, shape (n_classes, n_classes)
        int64 counts, or float64 when normalised.

    Examples
    --------
    >>> confusion_matrix([0, 0, 1], [0, 1, 1], n_classes=2)
    array([[1, 1],
           [0, 1]])
    >>> confusion_matrix([0, 0, 1], [0, 1, 1], n_classes=2, normalize="true")
    array([[0.5, 0.5],
           [0. , 1. ]])
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}")
    t, p = _labels_arrays(y_true, y_pred, n_classes)
    if t.size == 0:
        return np.zeros((n_classes, n_classes), np.int64 if normalize is None else np.float64)
    cm = skm.confusion_matrix(t, p, labels=np.arange(n_classes), normalize=normalize)
    return cm.astype(np.int64) if normalize is None else cm


def classification_report(
    y_true: Any, y_pred: Any, *, class_names: Sequence[str] = EMOTIONS
) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, plus macro and weighted averages.

    :func:`sklearn.metrics.classification_report` (``labels=range(n_classes)``,
    ``output_dict=True``, ``zero_division=0``) as a table, without its ``accuracy`` entry.

    Parameters
    ----------
    y_true, y_pred : array-like of int
    class_names : sequence of str, default=EMOTIONS

    Returns
    -------
    DataFrame
        Index: the class names, then ``macro avg`` and ``weighted avg``; columns
        ``precision``, ``recall``, ``f1-score`` (float) and ``support`` (int).

    Examples
    --------
    >>> report = classification_report([0, 0, 1, 1], [0, 1, 1, 1], class_names=["a", "b"])
    >>> report.round(3).loc[["a", "b", "macro avg"]]
               precision  recall  f1-score  support
    a              1.000    0.50     0.667        2
    b              0.667    1.00     0.800        2
    macro avg      0.833    0.75     0.733        4
    """
    names = list(class_names)
    t, p = _labels_arrays(y_true, y_pred, len(names))
    report = skm.classification_report(t, p, labels=np.arange(len(names)), target_names=names,
                                       output_dict=True, zero_division=0)
    rows = [*names, "macro avg", "weighted avg"]
    frame = pd.DataFrame.from_dict({name: report[name] for name in rows}, orient="index")
    frame = frame[["precision", "recall", "f1-score", "support"]]
    return frame.astype({"precision": float, "recall": float, "f1-score": float,
                         "support": np.int64})


def cross_entropy(y_true: Any, logits: Any) -> float:
    """Mean cross-entropy of integer labels under softmax(``logits``), in float64.

    Exact, from :func:`scipy.special.log_softmax`: unlike :func:`sklearn.metrics.log_loss`
    on probabilities, no clipping caps a confidently wrong prediction's loss.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    logits : array-like of float, shape (n, n_classes)

    Returns
    -------
    float

    Examples
    --------
    >>> round(cross_entropy([0, 1], [[0.0, 0.0], [0.0, 0.0]]), 4)  # log(2)
    0.6931
    """
    log_probs = log_softmax(np.asarray(logits, dtype=np.float64), axis=1)
    t = np.asarray(y_true, dtype=np.int64)
    return float(-log_probs[np.arange(len(t)), t].mean())


def _log_loss(t: np.ndarray, proba: np.ndarray, n_classes: int) -> float:
    # Float32 probabilities (predict_proba) sum to 1 only within float32 rounding, which
    # log_loss warns about at float64 precision: renormalise in float64 first.
    proba = np.asarray(proba, dtype=np.float64)
    proba = proba / proba.sum(axis=1, keepdims=True)
    return float(skm.log_loss(t, proba, labels=np.arange(n_classes)))


def classification_metrics(
    y_true: Any, y_pred: Any, *, logits: Any = None, class_names: Sequence[str] = EMOTIONS
) -> dict[str, Any]:
    """Headline metrics and the per-class report as one JSON-ready dict.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    y_pred : array-like of int, shape (n,), or of float, shape (n, n_classes)
        Predicted classes, or class probabilities (e.g. from
        :func:`ferclean.learning.predict_proba`): their argmax is the prediction and
        :func:`sklearn.metrics.log_loss` the ``loss``.
    logits : array-like, shape (n, n_classes), default=None
        If given, ``loss`` is their :func:`cross_entropy`.
    class_names : sequence of str, default=EMOTIONS

    Returns
    -------
    dict
        ``n_images``, ``accuracy``, ``balanced_accuracy`` (scikit-learn's: mean recall
        over the classes present in ``y_true``), ``macro_f1``, ``weighted_f1``,
        ``macro_precision``, ``macro_recall`` (over all classes), optionally ``loss``,
        ``per_class`` ({name: {precision, recall, f1-score, support}}), ``classes``,
        ``confusion_matrix`` (counts, rows true) and ``confusion_matrix_normalized``
        (rows sum to 1).

    Examples
    --------
    >>> m = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], class_names=["a", "b", "c"])
    >>> m["accuracy"], round(m["macro_f1"], 4)
    (0.75, 0.7778)
    >>> probs = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.5, 0.4]]
    >>> m = classification_metrics([0, 1, 2, 2], probs, class_names=["a", "b", "c"])
    >>> m["accuracy"], round(m["loss"], 4)
    (0.75, 0.4298)
    """
    n = len(class_names)
    proba = None
    if np.ndim(y_pred) == 2:
        proba = np.asarray(y_pred, dtype=np.float64)
        y_pred = proba.argmax(axis=1)
    t, p = _labels_arrays(y_true, y_pred, n)
    report = classification_report(t, p, class_names=class_names)
    out: dict[str, Any] = {
        "n_images": int(t.size),
        "accuracy": float(skm.accuracy_score(t, p)) if t.size else 0.0,
        "balanced_accuracy": _balanced_accuracy(t, p),
        "macro_f1": float(report.loc["macro avg", "f1-score"]),
        "weighted_f1": float(report.loc["weighted avg", "f1-score"]),
        "macro_precision": float(report.loc["macro avg", "precision"]),
        "macro_recall": float(report.loc["macro avg", "recall"]),
    }
    if logits is not None:
        out["loss"] = cross_entropy(t, logits)
    elif proba is not None:
        out["loss"] = _log_loss(t, proba, n)
    out["per_class"] = {
        name: {k: (int(v) if k == "support" else float(v)) for k, v in row.items()}
        for name, row in report.iloc[:n].iterrows()
    }
    out["classes"] = list(class_names)
    out["confusion_matrix"] = confusion_matrix(t, p, n_classes=n).tolist()
    out["confusion_matrix_normalized"] = confusion_matrix(
        t, p, n_classes=n, normalize="true"
    ).tolist()
    return out


def _balanced_accuracy(t: np.ndarray, p: np.ndarray) -> float:
    if t.size == 0:
        return 0.0
    with warnings.catch_warnings():
        # A class predicted but absent from y_true has no recall; scikit-learn leaves it
        # out and warns. On small test splits that is expected, not news.
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return float(skm.balanced_accuracy_score(t, p))
