"""Evaluate a trained classifier: metrics, confusion matrices, curves and saliency maps.

The metric functions are plain numpy and equal scikit-learn's (``accuracy_score``,
``f1_score(average="macro")``, ``precision_recall_fscore_support``,
``confusion_matrix``, ``classification_report(output_dict=True)``) with
``zero_division=0`` and all seven FER classes listed, so a class the split lacks
still appears (with support 0). The figure functions draw with matplotlib's object API
(no pyplot state), return the ``Figure`` and, given a path, save a PNG.

:func:`evaluate_checkpoint` ties it together for a checkpoint written by
:func:`ferclean.learning.train_to`: it predicts one split (PrivateTest by default), and
writes ``metrics.json``, ``classification_report.csv``, ``predictions.csv``,
``confusion_matrix.png``, ``saliency.png`` + ``saliency.json`` + ``saliency.npz`` and,
when the checkpoint folder has a history, ``training_curves.png``. Only
:func:`evaluate` and :func:`evaluate_checkpoint` need JAX.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ferclean._atomic import atomic_file
from ferclean._validation import check_dataset
from ferclean.dataset import EMOTIONS, FaceDataset

__all__ = [
    "classification_metrics",
    "classification_report",
    "confusion_matrix",
    "cross_entropy",
    "evaluate",
    "evaluate_checkpoint",
    "plot_confusion_matrix",
    "plot_saliency_grid",
    "plot_training_curves",
]

_N = len(EMOTIONS)
# PNG metadata without the matplotlib version, so equal figures give equal files.
_PNG_META = {"Software": None}


# ---------------------------------------------------------------------- metrics
def _labels_arrays(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
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
    t, p = _labels_arrays(y_true, y_pred, n_classes)
    cm = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )
    if normalize is None:
        return cm.astype(np.int64)
    if normalize == "true":
        denom = cm.sum(axis=1, keepdims=True)
    elif normalize == "pred":
        denom = cm.sum(axis=0, keepdims=True)
    elif normalize == "all":
        denom = np.array(cm.sum())
    else:
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all'; got {normalize!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(cm / denom)


def _prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support, zero where undefined."""
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        # F1 from counts, as scikit-learn: 2tp / (2tp + fp + fn).
        denom = predicted + support
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    return precision, recall, f1, support


def classification_report(
    y_true: Any, y_pred: Any, *, class_names: Sequence[str] = EMOTIONS
) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support, plus macro and weighted averages.

    Equals ``sklearn.metrics.classification_report(y_true, y_pred,
    labels=range(n_classes), output_dict=True, zero_division=0)`` without its
    ``accuracy`` entry.

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
    n = len(class_names)
    cm = confusion_matrix(y_true, y_pred, n_classes=n)
    precision, recall, f1, support = _prf(cm)
    total = int(support.sum())
    weights = support / total if total else np.zeros(n)
    rows = {name: (precision[i], recall[i], f1[i], int(support[i]))
            for i, name in enumerate(class_names)}
    rows["macro avg"] = (precision.mean(), recall.mean(), f1.mean(), total)
    rows["weighted avg"] = (
        float(precision @ weights), float(recall @ weights), float(f1 @ weights), total
    )
    frame = pd.DataFrame.from_dict(
        rows, orient="index", columns=["precision", "recall", "f1-score", "support"]
    )
    return frame.astype({"support": np.int64})


def cross_entropy(y_true: Any, logits: Any) -> float:
    """Mean cross-entropy of integer labels under softmax(``logits``), in float64.

    Examples
    --------
    >>> round(cross_entropy([0, 1], [[0.0, 0.0], [0.0, 0.0]]), 4)  # log(2)
    0.6931
    """
    z = np.asarray(logits, dtype=np.float64)
    t = np.asarray(y_true, dtype=np.int64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(t)), t].mean())


def classification_metrics(
    y_true: Any, y_pred: Any, *, logits: Any = None, class_names: Sequence[str] = EMOTIONS
) -> dict[str, Any]:
    """Headline metrics and the per-class report as one JSON-ready dict.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    y_pred : array-like of int, shape (n,), or of float, shape (n, n_classes)
        Predicted classes, or class probabilities (e.g. from
        :func:`ferclean.learning.predict`): their argmax is the prediction and their
        mean negative log-likelihood the ``loss``.
    logits : array-like, shape (n, n_classes), default=None
        If given, ``loss`` (mean cross-entropy of the softmax) is included.
    class_names : sequence of str, default=EMOTIONS

    Returns
    -------
    dict
        ``n_images``, ``accuracy``, ``balanced_accuracy`` (mean recall), ``macro_f1``,
        ``weighted_f1``, ``macro_precision``, ``macro_recall``, optionally ``loss``,
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
    cm = confusion_matrix(t, p, n_classes=n)
    out: dict[str, Any] = {
        "n_images": int(t.size),
        "accuracy": float(np.mean(t == p)) if t.size else 0.0,
        "balanced_accuracy": float(report.loc["macro avg", "recall"]),
        "macro_f1": float(report.loc["macro avg", "f1-score"]),
        "weighted_f1": float(report.loc["weighted avg", "f1-score"]),
        "macro_precision": float(report.loc["macro avg", "precision"]),
        "macro_recall": float(report.loc["macro avg", "recall"]),
    }
    if logits is not None:
        out["loss"] = cross_entropy(t, logits)
    elif proba is not None:
        # As sklearn's log_loss: clip to the float eps, renormalise rows.
        eps = np.finfo(np.float64).eps
        clipped = np.clip(proba, eps, 1 - eps)
        clipped /= clipped.sum(axis=1, keepdims=True)
        out["loss"] = float(-np.log(clipped[np.arange(t.size), t]).mean())
    out["per_class"] = {
        name: {k: (int(v) if k == "support" else float(v)) for k, v in row.items()}
        for name, row in report.iloc[:n].iterrows()
    }
    out["classes"] = list(class_names)
    out["confusion_matrix"] = cm.tolist()
    out["confusion_matrix_normalized"] = confusion_matrix(
        t, p, n_classes=n, normalize="true"
    ).tolist()
    return out


# ---------------------------------------------------------------------- figures
def _save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        fig.savefig(path, format="png", dpi=fig.dpi, metadata=_PNG_META)
    return fig


def plot_training_curves(
    history: pd.DataFrame | Sequence[Mapping[str, float]],
    path: str | os.PathLike | None = None,
) -> Figure:
    """Loss, accuracy and learning rate per epoch (training and validation).

    Parameters
    ----------
    history : DataFrame or list of dict
        :attr:`ferclean.learning.TrainResult.history` or ``history.json``'s ``epochs``.
    path : path, default=None
        Save a PNG there.

    Examples
    --------
    >>> h = [{"epoch": 1, "loss": 1.9, "accuracy": 0.2, "val_loss": 1.8,
    ...       "val_accuracy": 0.3, "learning_rate": 2e-3},
    ...      {"epoch": 2, "loss": 1.5, "accuracy": 0.4, "val_loss": 1.6,
    ...       "val_accuracy": 0.35, "learning_rate": 2e-4}]
    >>> len(plot_training_curves(h).axes)
    3
    """
    frame = pd.DataFrame(history)
    fig = Figure(figsize=(12, 3.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    epochs = frame["epoch"]
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
        ax.plot(epochs, frame[key], marker="o", label="training")
        if f"val_{key}" in frame and frame[f"val_{key}"].notna().any():
            ax.plot(epochs, frame[f"val_{key}"], marker="o", label="validation")
        ax.set_title(title)
        ax.legend()
    axes[2].plot(epochs, frame["learning_rate"], marker="o")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_confusion_matrix(
    cm: Any, path: str | os.PathLike | None = None, *, class_names: Sequence[str] = EMOTIONS
) -> Figure:
    """Counts and row-normalised (recall) confusion matrices side by side.

    Examples
    --------
    >>> fig = plot_confusion_matrix([[3, 1], [0, 2]], class_names=["a", "b"])
    >>> [ax.get_title() for ax in fig.axes[:2]]
    ['counts', 'normalised by true class']
    """
    counts = np.asarray(cm, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    n = len(class_names)
    fig = Figure(figsize=(13, 5.6), dpi=100, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, values, title, fmt in (
        (axes[0], counts, "counts", "d"), (axes[1], norm, "normalised by true class", ".2f")
    ):
        image = ax.imshow(values, cmap="Blues", vmin=0)
        fig.colorbar(image, ax=ax, shrink=0.8)
        limit = values.max() / 2 if values.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, format(values[i, j], fmt), ha="center", va="center",
                        fontsize=8, color="white" if values[i, j] > limit else "black")
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
    return _save(fig, path)


def plot_saliency_grid(
    images: Any,
    maps: Any,
    labels: Sequence[int],
    predictions: Sequence[int],
    path: str | os.PathLike | None = None,
    *,
    class_names: Sequence[str] = EMOTIONS,
) -> Figure:
    """Faces with their saliency maps overlaid, one row per true class.

    Each panel shows the face in gray with ``|gradient|`` (scaled to its own maximum) on
    top in red, opaque where the saliency is high; rows are true classes, titles give
    the predicted class, marked ``x`` when wrong.

    Parameters
    ----------
    images : array, shape (n, 48, 48)
    maps : array, shape (n, 48, 48)
        Non-negative saliency maps (:func:`ferclean.learning.saliency`).
    labels, predictions : sequence of int
    path : path, default=None

    Examples
    --------
    >>> import numpy as np
    >>> imgs = np.zeros((2, 48, 48), np.uint8)
    >>> fig = plot_saliency_grid(imgs, np.ones((2, 48, 48)), [0, 3], [0, 4])
    >>> len(fig.axes)  # 7 rows x 1 column
    7
    """
    images, maps = np.asarray(images), np.abs(np.asarray(maps, dtype=np.float64))
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    n_rows = len(class_names)
    per_class = [np.flatnonzero(labels == c) for c in range(n_rows)]
    n_cols = max(1, max((len(p) for p in per_class), default=1))
    fig = Figure(figsize=(1.5 * n_cols + 1.2, 1.6 * n_rows), dpi=100, layout="constrained")
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for c, picked in enumerate(per_class):
        for j in range(n_cols):
            ax = axes[c, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(class_names[c])
            if j >= len(picked):
                ax.set_frame_on(False)
                continue
            k = picked[j]
            peak = maps[k].max()
            heat = maps[k] / peak if peak > 0 else maps[k]
            ax.imshow(images[k], cmap="gray", vmin=0, vmax=255)
            # Opacity follows the saliency, so the face stays visible where it is low.
            ax.imshow(np.zeros_like(heat), cmap="autumn", alpha=np.clip(heat, 0, 1) * 0.85,
                      vmin=0, vmax=1)  # autumn(0) is pure red
            wrong = "" if predictions[k] == labels[k] else " x"
            ax.set_title(f"pred {class_names[predictions[k]]}{wrong}", fontsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------------- evaluation
def _pick_examples(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to ``per_class`` positions per class, chosen with a seeded generator, sorted."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(_N):
        pool = np.flatnonzero(labels == c)
        if pool.size:
            picks.append(np.sort(rng.choice(pool, size=min(per_class, pool.size), replace=False)))
    return np.concatenate(picks) if picks else np.zeros(0, np.int64)


def evaluate(
    trained: Any,
    dataset: FaceDataset,
    *,
    split: str | None = None,
    out_dir: str | os.PathLike | None = None,
    saliency_per_class: int = 4,
    batch_size: int = 256,
    seed: int = 0,
    history: Any = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics, confusion matrices and saliency maps of a trained model on labelled data.

    Parameters
    ----------
    trained : ferclean.learning.TrainedModel
    dataset : FaceDataset
        Unlabeled images (label -1) are skipped and counted in ``n_unlabeled``.
    split : str, default=None
        Evaluate one split only; ``None`` uses every image given.
    out_dir : path, default=None
        Write the files listed in the module docstring there (the folder is created).
    saliency_per_class : int, default=4
        Examples per true class in the saliency grid (chosen with ``seed``); 0 skips
        saliency.
    batch_size : int, default=256
    seed : int, default=0
    history : DataFrame or list of dict, default=None
        Training history; if given (and ``out_dir``), ``training_curves.png`` is drawn.
    metadata : mapping, default=None
        Extra JSON-ready entries for the result (and ``metrics.json``).

    Returns
    -------
    dict
        :func:`classification_metrics` plus ``split``, ``n_unlabeled``, ``model``,
        ``n_params`` and ``files`` (names written to ``out_dir``).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning.models import TINY
    >>> from ferclean.learning import init_model
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])  # untrained: about chance accuracy
    >>> m = evaluate(tm, demo_dataset(n_faces=100), split="PrivateTest", saliency_per_class=0)
    >>> m["split"], len(m["confusion_matrix"]), 0 <= m["accuracy"] <= 1
    ('PrivateTest', 7, True)
    """
    from ferclean.learning import predict, saliency

    dataset = check_dataset(dataset)
    part = dataset.split(split) if split is not None else dataset
    labelled = part.labels >= 0
    n_unlabeled = int((~labelled).sum())
    part = part.subset(labelled)
    if len(part) == 0:
        raise ValueError(f"no labelled images to evaluate in {split or 'the dataset'}")
    labels = part.labels.astype(np.int64)
    logits = predict(trained, part, batch_size=batch_size, logits=True)
    preds = logits.argmax(axis=1)
    result = classification_metrics(labels, preds, logits=logits)
    result.update(split=split, n_unlabeled=n_unlabeled, model=trained.model,
                  n_params=trained.n_params, **dict(metadata or {}))

    picks = _pick_examples(labels, saliency_per_class, seed) if saliency_per_class > 0 else []
    maps = saliency(trained, part.pixels[picks]) if len(picks) else None

    files: list[str] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report = classification_report(labels, preds)
        _write(out / "classification_report.csv", lambda p: report.to_csv(p, index_label="class"))
        frame = part.to_frame()[["row", "image_id", "split", "label"]]
        frame["prediction"] = preds
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        for i, name in enumerate(EMOTIONS):
            frame[f"p_{name}"] = probs[:, i].round(6)
        _write(out / "predictions.csv", lambda p: frame.to_csv(p, index=False))
        _write(out / "confusion_matrix.png",
               lambda p: plot_confusion_matrix(result["confusion_matrix"], p))
        files += ["classification_report.csv", "predictions.csv", "confusion_matrix.png"]
        if maps is not None:
            _write(out / "saliency.png", lambda p: plot_saliency_grid(
                part.pixels[picks], maps, labels[picks], preds[picks], p))
            _write(out / "saliency.npz", lambda p: _savez(p, maps, picks))
            sal_meta = {
                "method": "|d score(predicted class) / d input|, input scaled to [0, 1]",
                "maps_file": "saliency.npz",
                "examples": [
                    {"row": int(part.rows[k]), "image_id": str(part.ids[k]),
                     "label": EMOTIONS[labels[k]], "prediction": EMOTIONS[preds[k]],
                     "max_saliency": float(maps[i].max())}
                    for i, k in enumerate(picks)
                ],
            }
            _write_json(out / "saliency.json", sal_meta)
            files += ["saliency.png", "saliency.npz", "saliency.json"]
        if history is not None:
            _write(out / "training_curves.png", lambda p: plot_training_curves(history, p))
            files.append("training_curves.png")
        files.append("metrics.json")
    result["files"] = sorted(files)
    if out_dir is not None:
        _write_json(Path(out_dir) / "metrics.json", result)
    return result


def evaluate_checkpoint(
    dataset: FaceDataset,
    checkpoint_dir: str | os.PathLike,
    *,
    split: str | None = "PrivateTest",
    out_dir: str | os.PathLike | None = None,
    saliency_per_class: int = 4,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Load a checkpoint and :func:`evaluate` it on one split (PrivateTest by default).

    Parameters
    ----------
    dataset : FaceDataset
    checkpoint_dir : path
        A folder written by :func:`ferclean.learning.train_to` (or ``save_checkpoint``).
    split : str or None, default="PrivateTest"
    out_dir : path, default=None
        Where figures and JSON go; a ``history.json`` in ``checkpoint_dir`` adds the
        training curves.
    saliency_per_class, batch_size, seed
        As :func:`evaluate`.

    Returns
    -------
    dict
        As :func:`evaluate`, plus ``checkpoint`` (the folder) and ``checkpoint_epoch``.

    Examples
    --------
    >>> import tempfile
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning.models import TINY
    >>> from ferclean.learning import init_model, save_checkpoint
    >>> ckpt = save_checkpoint(tempfile.mkdtemp(), init_model("cnn_mha", **TINY["cnn_mha"]))
    >>> m = evaluate_checkpoint(demo_dataset(n_faces=100), ckpt, saliency_per_class=0)
    >>> m["split"], m["model"]
    ('PrivateTest', 'cnn_mha')
    """
    from ferclean.learning import HISTORY_FILE, load_checkpoint

    ckpt = Path(checkpoint_dir)
    trained = load_checkpoint(ckpt)
    history = None
    if (ckpt / HISTORY_FILE).is_file():
        history = json.loads((ckpt / HISTORY_FILE).read_text()).get("epochs") or None
    info = trained.info.get("info") or {}
    return evaluate(
        trained, dataset, split=split, out_dir=out_dir, saliency_per_class=saliency_per_class,
        batch_size=batch_size, seed=seed, history=history,
        metadata={"checkpoint": str(ckpt), "checkpoint_epoch": info.get("epoch")},
    )


def _savez(path: Path, maps: np.ndarray, picks: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez_compressed(fh, saliency=maps.astype(np.float32), positions=np.asarray(picks))


def _write(path: Path, writer: Any) -> None:
    with atomic_file(path) as tmp:
        writer(tmp)


def _write_json(path: Path, payload: Any) -> None:
    def default(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        raise TypeError(f"cannot write {type(value).__name__} to JSON")

    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=default) + "\n")
