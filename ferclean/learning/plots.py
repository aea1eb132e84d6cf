"""Figures of training and evaluation: curves, confusion matrices, saliency grids.

Drawn with matplotlib's object API on :func:`ferclean._figures.new_figure` (no pyplot, no
backend switch); each function returns the ``Figure`` and, given a path, also saves it as
a PNG with :func:`ferclean._figures.save_figure` (atomic, no software metadata).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ferclean._figures import new_figure, save_figure
from ferclean.dataset import EMOTIONS

__all__ = ["plot_confusion_matrix", "plot_saliency_grid", "plot_training_curves"]


def _maybe_save(fig: Figure, path: str | os.PathLike | None) -> Figure:
    if path is not None:
        save_figure(fig, path, dpi=fig.dpi)  # the figure's own size in pixels
    return fig


def plot_training_curves(
    history: pd.DataFrame | Sequence[Mapping[str, Any]],
    path: str | os.PathLike | None = None,
) -> Figure:
    """Loss, accuracy and learning rate per epoch (training and validation).

    Parameters
    ----------
    history : DataFrame or list of dict
        :attr:`ferclean.learning.TrainResult.history` or ``history.json``'s ``epochs``.
    path : path, default=None
        Save a PNG there.

    Returns
    -------
    Figure
        Three axes: loss, accuracy, learning rate (log scale).

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
    fig = new_figure(figsize=(12, 3.6), dpi=100)
    axes = fig.subplots(1, 3)
    epochs = frame["epoch"]
    for ax, key in ((axes[0], "loss"), (axes[1], "accuracy")):
        ax.plot(epochs, frame[key], marker="o", label="training")
        # Without validation data history.json holds nulls there: nothing to draw.
        if f"val_{key}" in frame and frame[f"val_{key}"].notna().any():
            ax.plot(epochs, frame[f"val_{key}"].astype(float), marker="o", label="validation")
        ax.set_title(key)
        ax.legend()
    axes[2].plot(epochs, frame["learning_rate"], marker="o")
    axes[2].set_yscale("log")
    axes[2].set_title("learning rate")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    return _maybe_save(fig, path)


def plot_confusion_matrix(
    cm: Any, path: str | os.PathLike | None = None, *, class_names: Sequence[str] = EMOTIONS
) -> Figure:
    """Counts and row-normalised (recall) confusion matrices side by side.

    Parameters
    ----------
    cm : array-like of int, shape (n_classes, n_classes)
        Counts, rows true classes (``classification_metrics(...)["confusion_matrix"]``).
    path : path, default=None
        Save a PNG there.
    class_names : sequence of str, default=EMOTIONS

    Returns
    -------
    Figure

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
    fig = new_figure(figsize=(13, 5.6), dpi=100)
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
    return _maybe_save(fig, path)


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
        Save a PNG there.
    class_names : sequence of str, default=EMOTIONS

    Returns
    -------
    Figure

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
    fig = new_figure(figsize=(1.5 * n_cols + 1.2, 1.6 * n_rows), dpi=100)
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
            _draw_saliency(ax, images[picked[j]], maps[picked[j]])
            k = picked[j]
            wrong = "" if predictions[k] == labels[k] else " x"
            ax.set_title(f"pred {class_names[predictions[k]]}{wrong}", fontsize=7)
    return _maybe_save(fig, path)


def _draw_saliency(ax: Any, image: np.ndarray, saliency: np.ndarray) -> None:
    peak = saliency.max()
    heat = saliency / peak if peak > 0 else saliency
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    # Opacity follows the saliency, so the face stays visible where it is low.
    ax.imshow(np.zeros_like(heat), cmap="autumn", alpha=np.clip(heat, 0, 1) * 0.85,
              vmin=0, vmax=1)  # autumn(0) is pure red
