"""Figures of the suite's results, as ``Figure`` objects (no pyplot, no backend switch)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ferclean._figures import new_figure, save_figure
from ferclean.bench.profiles import DEFAULT_RECIPE, VARIATIONS
from ferclean.bench.stats import run_collapse
from ferclean.dataset import EMOTIONS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_results"]

# (protocol, evaluation set, sampling, legend) of the bars, in drawing order.
_SERIES = (
    ("honest", "PrivateTest", "none", "honest: PrivateTest"),
    ("honest", "PrivateTest_deleaked", "none", "honest: PrivateTest de-leaked"),
    ("seed-replica", "replica_test", "none", "seed-replica (flawed), no resampling"),
    ("seed-replica", "replica_test", "ros",
     "seed-replica (flawed), oversampled before the split: the study's procedure"),
)
_DPI = 100


def plot_results(results: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """Accuracy per variation with error bars, and the best honest cell's confusion matrix.

    Parameters
    ----------
    results : dict
        What :func:`ferclean.bench.run_suite` returns (``profile``, ``runs``, ``summary``).
    out : path
        An existing folder.

    Returns
    -------
    list of Path
        ``accuracy_by_variation.png`` and ``confusion_best.png`` in ``out`` (written
        atomically); none when ``results`` holds no runs, and no confusion matrix without
        an honest PrivateTest result.

    Examples
    --------
    >>> import tempfile
    >>> from ferclean.bench import summarize_runs
    >>> run = {"protocol": "honest", "variation": "A", "sampling": "none",
    ...        "model": "cnn_lstm", "seed": 0, "metrics": {"PrivateTest": {
    ...            "accuracy": 0.6, "macro_f1": 0.5, "loss": 1.1, "confusion": np.eye(7)}}}
    >>> results = {"profile": {"name": "demo"}, "runs": {"r": run},
    ...            "summary": summarize_runs({"r": run}).to_dict(orient="records")}
    >>> [p.name for p in plot_results(results, tempfile.mkdtemp())]
    ['accuracy_by_variation.png', 'confusion_best.png']
    """
    out = Path(out)
    summary = pd.DataFrame(results.get("summary", []))
    if summary.empty:
        return []
    subset = " (SUBSET PROFILE: see table.md)" if results["profile"].get("is_subset") else ""
    title = f"profile {results['profile']['name']}{subset}"
    written = [save_figure(_accuracy_figure(summary, title, bool(subset)),
                           out / "accuracy_by_variation.png", dpi=_DPI)]
    honest = summary[(summary.protocol == "honest") & (summary["eval"] == "PrivateTest")
                     & summary.accuracy_mean.notna()]
    if not honest.empty:
        best = honest.sort_values("accuracy_mean").iloc[-1]
        fig = _confusion_figure(_summed_confusion(results["runs"], best), best, subset)
        written.append(save_figure(fig, out / "confusion_best.png", dpi=_DPI))
    return written


def _accuracy_figure(summary: pd.DataFrame, title: str, small_title: bool) -> Figure:
    """Grouped bars: the study's CNN-LSTM (its recipe) per variation, one bar per
    protocol/evaluation set."""
    sel = summary[(summary.model == "cnn_lstm") & (summary.recipe == DEFAULT_RECIPE)]
    series = [s for s in _SERIES if ((sel.protocol == s[0]) & (sel.sampling == s[2])).any()]
    variations = list(VARIATIONS)
    width = 0.8 / max(len(series), 1)
    fig = new_figure(figsize=(7.5, 4.3), dpi=_DPI)
    ax = fig.subplots()
    for k, (protocol, eval_name, sampling, label) in enumerate(series):
        part = sel[(sel.protocol == protocol) & (sel["eval"] == eval_name)
                   & (sel.sampling == sampling)].set_index("variation").reindex(variations)
        x = np.arange(len(variations)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, 100 * part.accuracy_mean, width, yerr=100 * part.accuracy_std,
               label=label, capsize=2)
    ax.set_xticks(np.arange(len(variations)), variations)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"cnn_lstm, mean ± sd over seeds — {title}",
                 fontsize=9 if small_title else None)
    if series:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    return fig


def _summed_confusion(runs: dict[str, Any], best: pd.Series) -> np.ndarray:
    """The PrivateTest confusion matrices of the best cell, summed over its seeds that
    did not collapse."""
    conf = np.zeros((len(EMOTIONS), len(EMOTIONS)))
    for run in runs.values():
        cell = (run["protocol"], run["variation"], run["sampling"], run["model"],
                run.get("recipe") or DEFAULT_RECIPE)
        if cell == ("honest", best.variation, best.sampling, best.model,
                    best.recipe) and run_collapse(run) is None:
            conf += np.asarray(run["metrics"]["PrivateTest"]["confusion"])
    return conf


def _confusion_figure(conf: np.ndarray, best: pd.Series, subset: str) -> Figure:
    """Row-normalised confusion matrix (rows: true emotion), with the shares written in."""
    norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    fig = new_figure(figsize=(4.5, 4), dpi=_DPI)
    ax = fig.subplots()
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    n = len(EMOTIONS)
    ax.set_xticks(range(n), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(n), EMOTIONS)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6)
    net = best.model if best.recipe == DEFAULT_RECIPE else f"{best.model} ({best.recipe})"
    ax.set_title(f"best honest cell: {best.variation}/{best.sampling}/{net}{subset}",
                 fontsize=6 if subset else 8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return fig
