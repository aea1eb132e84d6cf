"""The audit's exploratory figures, as matplotlib Figures and as PNG files for papers.

Three figures, each a function of the dataset and (where it needs one) the audit result:

======================== ================================================================
figure                   what it shows
======================== ================================================================
duplicates_per_emotion   images in exact (and near) duplicate groups per emotion, and how
                         many of them a keep-one cleaning would remove
mean_pixel_boxplot       box-and-whisker plot of each image's mean grey level, overall and
                         per emotion, with the thresholds of a ``mean_iqr`` outlier audit
class_counts             images per emotion in each split
======================== ================================================================

Figures are :class:`matplotlib.figure.Figure` objects made by
:func:`ferclean._figures.new_figure`, never through ``pyplot``: no global figure registry
to leak memory into, no backend switch, and the functions are safe to call from a
notebook, a server or a test. :func:`figure_png` (re-exported from
:mod:`ferclean._figures`) gives a figure's PNG bytes without software metadata.

Examples
--------
>>> import tempfile, pathlib
>>> import ferclean
>>> from ferclean.demo import make_demo
>>> ds = make_demo(n_faces=300).dataset
>>> result = ferclean.audit(ds, only=["exact_duplicate", "near_duplicate"])
>>> paths = save_figures(ds, result, pathlib.Path(tempfile.mkdtemp()))
>>> [p.name for p in paths]
['class_counts.png', 'duplicates_per_emotion.png', 'mean_pixel_boxplot.png']
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.cbook import boxplot_stats
from matplotlib.figure import Figure

from ferclean._figures import figure_png, new_figure, save_figure
from ferclean.auditors.context import AuditContext
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.findings import AuditResult

__all__ = [
    "FIGURES",
    "class_counts",
    "duplicates_per_emotion",
    "figure_png",
    "mean_pixel_boxplot",
    "mean_pixel_stats",
    "save_figures",
]

#: One colour per split (Training, PublicTest, PrivateTest), shared with the HTML report.
SPLIT_COLORS: tuple[str, ...] = ("#4c72b0", "#dd8452", "#c44e52")
_DEFAULT_WHISKER = 1.5


# ---------------------------------------------------------------------- helpers
def _outlier_auditor(result: AuditResult | None) -> Any:
    """The fitted outlier auditor of ``result``, or None."""
    for auditor in getattr(result, "auditors", None) or ():
        if getattr(auditor, "issue_name", None) == "outlier":
            return auditor
    return None


def _removable_mask(part: pd.DataFrame) -> np.ndarray:
    """True for findings beyond the first (lowest row) of their group."""
    if part.empty:
        return np.zeros(0, bool)
    first = part.groupby("group")["row"].transform("min")
    return (part["row"] != first).to_numpy()


def _annotate_bars(ax: Any, bars: Any, fontsize: float = 7.0) -> None:
    for bar in bars:
        height = bar.get_height()
        if height > 0:
            ax.annotate(f"{int(height):,}", (bar.get_x() + bar.get_width() / 2, height),
                        ha="center", va="bottom", fontsize=fontsize, xytext=(0, 1),
                        textcoords="offset points")


# ---------------------------------------------------------------------- figures
def duplicates_per_emotion(dataset: FaceDataset, result: AuditResult) -> Figure:
    """Bar chart: images in duplicate groups per emotion, and how many are removable.

    Bars come from the findings: ``exact_duplicate`` members and the removable ones among
    them (every member but the lowest row of its group), and ``near_duplicate`` members
    when the audit looked for near copies.

    Parameters
    ----------
    dataset : FaceDataset
        The audited dataset (gives the per-emotion totals in the tick labels).
    result : AuditResult
        The audit of ``dataset``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> fig = duplicates_per_emotion(ds, ferclean.audit(ds, only=["exact_duplicate"]))
    >>> fig.axes[0].get_title()
    'Duplicates per emotion'
    """
    findings = result.findings
    series: list[tuple[str, np.ndarray, str]] = []
    for issue, name, colour in (("exact_duplicate", "exact duplicates", "#4c72b0"),
                                ("near_duplicate", "near duplicates", "#55a868")):
        part = findings[findings["issue"] == issue]
        ran = issue in result.summary.get("issues", {}) or not part.empty
        if not ran:
            continue
        labels = part["label"].to_numpy()
        series.append((f"in {name} groups",
                       np.bincount(labels[labels >= 0], minlength=len(EMOTIONS)), colour))
        removable = labels[_removable_mask(part)]
        series.append((f"removable ({name}, keep one per group)",
                       np.bincount(removable[removable >= 0], minlength=len(EMOTIONS)),
                       colour + "80"))  # same hue, half transparent

    fig = new_figure(figsize=(8.0, 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(EMOTIONS))
    width = 0.8 / max(len(series), 1)
    for k, (name, counts, colour) in enumerate(series):
        bars = ax.bar(x + (k - (len(series) - 1) / 2) * width, counts, width, label=name,
                      color=colour, edgecolor="#333333", linewidth=0.4)
        _annotate_bars(ax, bars)
    totals = dataset.label_counts()
    ax.set_xticks(x, [f"{e}\n(n={totals[e]:,})" for e in EMOTIONS], fontsize=8)
    ax.set_ylabel("images")
    ax.set_title("Duplicates per emotion")
    if not series or not any(c.any() for _, c, _ in series):
        ax.text(0.5, 0.5, "no duplicates found" if series else "duplicates not audited",
                transform=ax.transAxes, ha="center", va="center", color="#666666")
        ax.set_ylim(0, 1)
    else:
        ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def mean_pixel_stats(dataset: FaceDataset, result: AuditResult | None = None) -> dict[str, Any]:
    """Box-plot statistics of the mean grey level, and the outlier audit's thresholds.

    The whisker factor is the outlier auditor's ``whisker`` when it ran with
    ``method="mean_iqr"``, else 1.5 (Tukey's rule); the thresholds are the auditor's
    ``lower_`` and ``upper_`` when it used ``mean_iqr`` (the IQR fences, or its fixed
    ``bounds``), else None.

    Parameters
    ----------
    dataset : FaceDataset
    result : AuditResult, default=None

    Returns
    -------
    dict
        ``means`` (ndarray, one per image), ``q1``, ``median``, ``q3``, ``iqr``,
        ``whisker`` (the factor), ``fence_low``/``fence_high`` (``q1 - whisker*iqr``,
        ``q3 + whisker*iqr``), ``whisker_low``/``whisker_high`` (the most extreme means
        within the fences, where the drawn whiskers end), ``beyond`` (images outside
        the fences), ``method`` (the outlier method of ``result`` or None) and
        ``thresholds`` (``(lower, upper)`` or None).

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean import FaceDataset
    >>> px = np.repeat(np.arange(0, 250, 10, dtype=np.uint8), 48 * 48).reshape(-1, 48, 48)
    >>> s = mean_pixel_stats(FaceDataset(px))
    >>> float(s["q1"]), float(s["q3"]), s["thresholds"]
    (60.0, 180.0, None)
    """
    auditor = _outlier_auditor(result)
    means = getattr(auditor, "means_", None)
    if means is None or len(means) != len(dataset):
        means = AuditContext(dataset).mean_pixel
    means = np.asarray(means, dtype=np.float64)
    method = getattr(auditor, "method", None)
    uses_iqr = method == "mean_iqr" and hasattr(auditor, "lower_")
    whisker = float(auditor.whisker) if uses_iqr else _DEFAULT_WHISKER
    stats: dict[str, Any] = {"means": means, "whisker": whisker, "method": method,
                             "thresholds": None}
    if uses_iqr:
        stats["thresholds"] = (float(auditor.lower_), float(auditor.upper_))
    if not len(means):
        stats.update(q1=np.nan, median=np.nan, q3=np.nan, iqr=np.nan, fence_low=np.nan,
                     fence_high=np.nan, whisker_low=np.nan, whisker_high=np.nan, beyond=0)
        return stats
    q1, median, q3 = np.percentile(means, [25, 50, 75])
    iqr = q3 - q1
    low, high = q1 - whisker * iqr, q3 + whisker * iqr
    inside = means[(means >= low) & (means <= high)]
    stats.update(q1=q1, median=median, q3=q3, iqr=iqr, fence_low=low, fence_high=high,
                 whisker_low=inside.min(), whisker_high=inside.max(),
                 beyond=int(np.count_nonzero((means < low) | (means > high))))
    return stats


def mean_pixel_boxplot(dataset: FaceDataset, result: AuditResult | None = None) -> Figure:
    """Box-and-whisker plot of each image's mean grey level, with the chosen thresholds.

    One box for all images, then one per emotion. Boxes span Q1..Q3, whiskers reach the
    most extreme means within ``whisker * IQR`` of the box (see :func:`mean_pixel_stats`)
    and the points beyond are drawn as fliers. When the outlier audit used the
    ``mean_iqr`` rule, its lower and upper thresholds are drawn as dashed red lines:
    images beyond them are the ones it flagged.

    Parameters
    ----------
    dataset : FaceDataset
    result : AuditResult, default=None
        The audit of ``dataset``; gives the thresholds and the whisker factor.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> result = ferclean.audit(ds, [{"outlier": {"method": "mean_iqr"}}])
    >>> ax = mean_pixel_boxplot(ds, result).axes[0]
    >>> sorted(line.get_label() for line in ax.lines if line.get_label().startswith("thr"))
    ['threshold high', 'threshold low']
    """
    stats = mean_pixel_stats(dataset, result)
    means, whisker = stats["means"], stats["whisker"]
    groups = [("all", np.ones(len(means), bool))] + [
        (e, dataset.labels == i) for i, e in enumerate(EMOTIONS)]
    groups = [(name, mask) for name, mask in groups if mask.any()]

    fig = new_figure(figsize=(8.0, 4.2))
    ax = fig.add_subplot()
    if not groups:
        ax.text(0.5, 0.5, "no images", transform=ax.transAxes, ha="center", va="center")
        return fig
    box_stats = []
    for name, mask in groups:
        (entry,) = boxplot_stats(means[mask], whis=whisker)
        entry["label"] = f"{name}\n(n={int(mask.sum()):,})"
        box_stats.append(entry)
    drawn = ax.bxp(box_stats, widths=0.6, patch_artist=True, showfliers=True,
           boxprops={"facecolor": "#c6d3e6", "edgecolor": "#333333", "linewidth": 0.8},
           medianprops={"color": "#1f3a68", "linewidth": 1.4},
           flierprops={"marker": ".", "markersize": 2.5, "alpha": 0.5,
                       "markerfacecolor": "#555555", "markeredgecolor": "none"})
    drawn["boxes"][0].set_facecolor("#9fb4d6")  # the "all" box, a shade darker
    ax.tick_params(axis="x", labelsize=8)
    ax.set_ylabel("mean pixel value (0-255)")
    ax.set_ylim(-5, 260)
    if stats["thresholds"] is not None:
        low, high = stats["thresholds"]
        for value, name in ((low, "low"), (high, "high")):
            if np.isfinite(value):
                ax.axhline(value, color="#c0392b", linestyle="--", linewidth=1.1,
                           label=f"threshold {name}")
                ax.annotate(f"{name} {value:.1f}", (1.0, value), xycoords=("axes fraction",
                            "data"), xytext=(-4, 3), textcoords="offset points", ha="right",
                            fontsize=8, color="#c0392b")
        note = f"mean_iqr thresholds, whisker {whisker:g} x IQR"
    else:
        method = stats["method"]
        note = (f"whiskers {whisker:g} x IQR; no mean-pixel threshold"
                + (f" (outliers by {method})" if method else ""))
    ax.set_title(f"Mean pixel value per image  ({note})", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def class_counts(dataset: FaceDataset, result: AuditResult | None = None) -> Figure:
    """Grouped bar chart: images per emotion in each split.

    Parameters
    ----------
    dataset : FaceDataset
    result : AuditResult, default=None
        Unused; accepted so every figure function has the same signature.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> fig = class_counts(make_demo(n_faces=300).dataset)
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['Training', 'PublicTest', 'PrivateTest']
    """
    present = list(dataset.split_counts())
    fig = new_figure(figsize=(8.0, 4.0))
    ax = fig.add_subplot()
    x = np.arange(len(EMOTIONS))
    width = 0.8 / max(len(present), 1)
    for k, split in enumerate(present):
        counts = [dataset.label_counts(split)[e] for e in EMOTIONS]
        bars = ax.bar(x + (k - (len(present) - 1) / 2) * width, counts, width, label=split,
                      color=SPLIT_COLORS[SPLITS.index(split)], edgecolor="#333333",
                      linewidth=0.4)
        _annotate_bars(ax, bars, fontsize=6.5)
    ax.set_xticks(x, list(EMOTIONS))
    ax.set_ylabel("images")
    ax.set_title("Class counts per split")
    if present:
        ax.legend(fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


#: The report's figures by file stem, in the order the report shows them.
FIGURES: dict[str, Callable[[FaceDataset, AuditResult], Figure]] = {
    "class_counts": class_counts,
    "duplicates_per_emotion": duplicates_per_emotion,
    "mean_pixel_boxplot": mean_pixel_boxplot,
}


def save_figures(dataset: FaceDataset, result: AuditResult, folder: str | os.PathLike,
                 *, dpi: float = 200) -> list[Path]:
    """Write every figure of :data:`FIGURES` as ``<name>.png`` into ``folder``.

    Each file is written atomically; existing files of the same name are replaced.

    Parameters
    ----------
    dataset : FaceDataset
    result : AuditResult
        The audit of ``dataset``.
    folder : path
        Created if missing.
    dpi : float, default=200
        Resolution of the PNGs (print quality).

    Returns
    -------
    list of Path
        The files written, in :data:`FIGURES` order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> out = save_figures(ds, ferclean.audit(ds, only=["outlier"]), tempfile.mkdtemp())
    >>> all(p.read_bytes().startswith(b"\\x89PNG") for p in out)
    True
    """
    return _write_pngs({name: make(dataset, result) for name, make in FIGURES.items()},
                       folder, dpi=dpi)


def _write_pngs(figures: dict[str, Figure], folder: str | os.PathLike,
                *, dpi: float = 200) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [save_figure(fig, folder / f"{name}.png", dpi=dpi) for name, fig in figures.items()]
