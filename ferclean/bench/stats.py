"""Statistics of the suite: per-cell summaries over seeds, paired comparisons with variation
A, Holm's correction across the table, bootstrap intervals over test images, collapse flags.

Two sources of chance error are reported side by side: the **seed spread** (standard
deviation over training seeds, and a paired t-test over seeds against A) and the **test
set's sampling error** (a percentile bootstrap over the evaluation images). The bootstrap
is paired image by image when both runs stored per-image predictions on the same images;
runs that kept only confusion matrices get a conservative interval from them instead
(:func:`bootstrap_confusion`). A run whose predictions collapsed to (almost) one class is
flagged (:func:`collapse_reason`) and left out of every mean and comparison.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COLLAPSE_SHARE", "CONFIDENCE", "N_RESAMPLES", "bootstrap_confusion",
           "bootstrap_paired", "collapse_reason", "holm", "macro_f1_from_confusion",
           "paired_difference", "run_collapse", "summarize_runs"]

_KEYS = ["protocol", "variation", "sampling", "model", "recipe", "eval"]
#: Bootstrap resamples and interval level of the tables.
N_RESAMPLES = 2000
CONFIDENCE = 0.95
#: A run predicting one class for more than this share of an evaluation set collapsed.
COLLAPSE_SHARE = 0.95


def macro_f1_from_confusion(confusion: Any) -> float:
    """Macro-averaged F1 over the classes present in the true labels.

    Parameters
    ----------
    confusion : array-like of shape (n_classes, n_classes)
        Counts, rows the true class and columns the predicted one.

    Returns
    -------
    float
        The mean over classes with at least one true image of ``2 tp / (2 tp + fp + fn)``.

    Examples
    --------
    >>> macro_f1_from_confusion([[3, 1], [0, 4]])  # F1 6/7 and 8/9
    0.873015873015873
    """
    c = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(c)
    present = c.sum(axis=1) > 0
    denominator = 2 * tp + (c.sum(axis=0) - tp) + (c.sum(axis=1) - tp)
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(f1[present].mean()) if present.any() else float("nan")


def collapse_reason(confusion: Any, *, max_share: float = COLLAPSE_SHARE) -> str | None:
    """Why the predictions behind ``confusion`` collapsed, or ``None`` if they did not.

    A run collapsed when one class takes more than ``max_share`` of its predictions, or
    when its macro-F1 is at or below chance: ``1 / K`` over the ``K`` classes present,
    which is what guessing at random with the true class shares scores (each class's
    precision and recall are then its share).

    Parameters
    ----------
    confusion : array-like of shape (n_classes, n_classes)
        Counts, rows the true class and columns the predicted one.
    max_share : float, default=0.95

    Returns
    -------
    str or None

    Examples
    --------
    >>> collapse_reason([[0, 5], [0, 95]])
    '100% of predictions are one class (column 1)'
    >>> collapse_reason([[40, 10], [10, 40]]) is None
    True
    """
    c = np.asarray(confusion, dtype=np.float64)
    total = c.sum()
    if total == 0:
        return None
    shares = c.sum(axis=0) / total
    top = int(shares.argmax())
    if shares[top] > max_share:
        return f"{shares[top]:.0%} of predictions are one class (column {top})"
    f1, chance = macro_f1_from_confusion(c), 1 / int((c.sum(axis=1) > 0).sum())
    if f1 <= chance:
        return f"macro-F1 {f1:.3f} at or below chance ({chance:.3f})"
    return None


def run_collapse(run: dict[str, Any], *, max_share: float = COLLAPSE_SHARE) -> str | None:
    """Why a stored run collapsed (the first evaluation set that shows it), or ``None``.

    Works on every stored run, old ones included: it reads only the confusion matrices.

    Examples
    --------
    >>> run = {"metrics": {"PrivateTest": {"confusion": [[0, 10], [0, 10]]}}}
    >>> run_collapse(run)
    'PrivateTest: 100% of predictions are one class (column 1)'
    """
    for name, metrics in run.get("metrics", {}).items():
        if metrics.get("confusion") is not None:
            reason = collapse_reason(metrics["confusion"], max_share=max_share)
            if reason:
                return f"{name}: {reason}"
    return None


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values for a family of comparisons.

    The ``i``-th smallest of ``m`` p-values is multiplied by ``m - i + 1``; the results
    are made non-decreasing in that order and capped at 1. NaN (no test) stays NaN and is
    not counted in ``m``. Rejecting where the adjusted value is below ``alpha`` controls
    the family-wise error rate at ``alpha``.

    Parameters
    ----------
    p_values : sequence of float

    Returns
    -------
    ndarray of float
        Adjusted p-values, in the input order.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03, float("nan"), 0.2]).round(2).tolist()
    [0.04, 0.09, 0.09, nan, 0.2]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    if not len(tested):
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    out[order] = np.minimum(adjusted, 1.0)
    return out


def paired_difference(runs: pd.DataFrame, base: pd.DataFrame) -> tuple[float, float, float]:
    """Accuracy of ``runs`` minus that of ``base``, paired by seed.

    Parameters
    ----------
    runs, base : DataFrame
        One row per seed, with columns ``seed`` and ``accuracy``.

    Returns
    -------
    mean, std, p_value : float
        Mean and standard deviation (ddof 1) of the per-seed differences, and the p-value
        of a paired t-test. NaN where undefined: no common seed (mean), fewer than two
        (std, p), or differences without spread (p).

    Examples
    --------
    >>> import pandas as pd
    >>> a = pd.DataFrame({"seed": [0, 1, 2], "accuracy": [0.60, 0.62, 0.61]})
    >>> b = pd.DataFrame({"seed": [0, 1, 2], "accuracy": [0.63, 0.64, 0.65]})
    >>> mean, std, p = paired_difference(b, a)
    >>> round(mean, 3), p < 0.05
    (0.03, True)
    """
    from scipy import stats

    paired = runs[["seed", "accuracy"]].merge(base[["seed", "accuracy"]], on="seed",
                                              suffixes=("", "_base"))
    diff = paired.accuracy - paired.accuracy_base
    mean = float(diff.mean()) if len(diff) else np.nan
    std = float(diff.std(ddof=1)) if len(diff) > 1 else np.nan
    if len(diff) > 1 and std > 0:
        p_value = float(stats.ttest_rel(paired.accuracy, paired.accuracy_base).pvalue)
    else:
        p_value = np.nan
    return mean, std, p_value


def _rng(seed: int, name: str) -> np.random.Generator:
    """A generator for one interval: from the seed and the interval's name, so a result
    never depends on the order in which intervals are computed."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def _mean_of_resamples(scores: np.ndarray, n_resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement, same size) of ``scores``.

    Drawing images with replacement only matters through how often each distinct score
    is drawn, which is multinomial: exactly the same distribution as resampling the
    images, at a cost in the number of distinct scores, not of images.
    """
    values, counts = np.unique(scores, return_counts=True)
    drawn = rng.multinomial(len(scores), counts / len(scores), size=n_resamples)
    return drawn @ values / len(scores)


def bootstrap_paired(correct: Any, correct_base: Any | None = None, *,
                     n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                     seed: int = 0, name: str = "") -> tuple[float, float]:
    """Percentile bootstrap over test images of a mean accuracy or a paired difference.

    Each resample draws the evaluation images with replacement; the statistic is the
    accuracy averaged over the seeds (``correct`` alone) or its difference to
    ``correct_base`` (the same images, the same resample for both: paired).

    Parameters
    ----------
    correct : array-like of bool, shape (n_seeds, n_images)
        Whether each seed's run predicted each image right.
    correct_base : array-like of bool, same shape, default=None
        The compared runs (variation A), seed for seed, on the same images.
    n_resamples : int, default=2000
    confidence : float, default=0.95
    seed : int, default=0
    name : str, default=""
        Names the interval; with ``seed`` it seeds the resampling.

    Returns
    -------
    low, high : float

    Examples
    --------
    >>> a = [[True, False, True, True]]
    >>> bootstrap_paired(a, a)  # no image differs: no uncertainty
    (0.0, 0.0)
    """
    scores = np.atleast_2d(np.asarray(correct, dtype=np.int64))
    if correct_base is not None:
        scores = scores - np.atleast_2d(np.asarray(correct_base, dtype=np.int64))
    # per image the sum over seeds: an integer, so few distinct values to resample
    samples = _mean_of_resamples(scores.sum(axis=0), n_resamples, _rng(seed, name))
    return _percentiles(samples / len(scores), confidence)


def _confusion_samples(confusions: Sequence[Any], n_resamples: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Bootstrap samples of the seed-mean accuracy from confusion matrices alone.

    Which image each seed got right is unknown, so the seeds' right answers are lined up
    (the first ``k_s`` images right for seed ``s``) and resampled together: the most
    positively correlated seeds possible, hence the widest interval of the mean. Seeds
    evaluated on sets of different sizes are resampled independently instead.
    """
    c = [np.asarray(m, dtype=np.int64) for m in confusions]
    right = np.array([np.trace(m) for m in c])
    totals = np.array([m.sum() for m in c])
    if len(set(totals.tolist())) > 1:
        return np.mean([rng.binomial(n, k / n, size=n_resamples) / n
                        for k, n in zip(right, totals, strict=True)], axis=0)
    n = int(totals[0])
    edges = np.sort(right)
    # images 0..k_(1)-1 right for every seed, k_(1)..k_(2)-1 for all but the worst, ...
    widths = np.diff(np.concatenate([[0], edges, [n]]))
    drawn = rng.multinomial(n, widths / n, size=n_resamples)
    below = np.cumsum(drawn, axis=1)[:, :-1]  # resampled images below each seed's k
    return below.mean(axis=1) / n


def bootstrap_confusion(confusions: Sequence[Any], confusions_base: Sequence[Any] | None = None,
                        *, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                        seed: int = 0, name: str = "") -> tuple[float, float]:
    """Percentile bootstrap over test images from confusion matrices (no per-image data).

    The seed-mean accuracy of ``confusions`` (or its difference to that of
    ``confusions_base``) under resampling of the evaluation images. Both choices forced
    by the missing pairing err on the wide side: a cell's seeds are resampled as if
    perfectly correlated, and the two sides of a difference independently (runs on the
    same images are positively correlated, which would narrow a paired interval).

    Parameters
    ----------
    confusions : sequence of array-like, each (n_classes, n_classes)
        One confusion matrix per seed (rows true, columns predicted).
    confusions_base : sequence of array-like, default=None
        The compared runs' (variation A).
    n_resamples, confidence, seed, name
        As :func:`bootstrap_paired`.

    Returns
    -------
    low, high : float

    Examples
    --------
    >>> low, high = bootstrap_confusion([[[50, 0], [0, 50]]])
    >>> low, high  # every image right: every resample too
    (1.0, 1.0)
    """
    rng = _rng(seed, name)
    samples = _confusion_samples(confusions, n_resamples, rng)
    if confusions_base is not None:
        samples = samples - _confusion_samples(confusions_base, n_resamples, rng)
    return _percentiles(samples, confidence)


def _correct(run: dict[str, Any], eval_name: str, out: Path | None,
             loaded: dict[Path, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows, right or wrong per image) of one run on one set, from its predictions file;
    ``None`` without one."""
    from ferclean.bench.predictions import load_predictions

    if out is None or not run.get("predictions"):
        return None
    path = out / run["predictions"]
    if path not in loaded:
        loaded[path] = load_predictions(path) if path.exists() else None
    if loaded[path] is None or eval_name not in loaded[path]:
        return None
    entry = loaded[path][eval_name]
    return entry["rows"], entry["pred"] == entry["labels"]


def _aligned(entries: list[tuple[np.ndarray, np.ndarray] | None]) -> np.ndarray | None:
    """The seeds' right-or-wrong vectors stacked, if every one exists on the same rows."""
    if not entries or any(e is None for e in entries):
        return None
    rows = entries[0][0]
    if any(not np.array_equal(e[0], rows) for e in entries[1:]):
        return None
    return np.stack([e[1] for e in entries])


def _same_images(part: pd.DataFrame, base: pd.DataFrame) -> float:
    """1.0 if both groups' runs were evaluated on one set (equal checksums), 0.0 if not
    (checksums or sizes differ), NaN if unknown (no checksums, equal sizes)."""
    both = pd.concat([part, base])
    if both.checksum.notna().all():
        return float(both.checksum.nunique() == 1)
    return 0.0 if both.n.nunique() > 1 else np.nan


def summarize_runs(runs: dict[str, Any], out: str | Path | None = None, *,
                   n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Per cell and evaluation set: mean and spread over seeds, the paired comparison
    with variation A, Holm-adjusted p-values, bootstrap intervals and collapsed runs.

    A run that collapsed (:func:`run_collapse`) counts in ``n_collapsed`` and nowhere
    else: not in the means, not in any comparison (its seed is dropped from the pairs).

    Parameters
    ----------
    runs : dict
        ``results["runs"]``: per run its cell fields (``recipe`` missing means the
        study's), ``seed`` and ``metrics`` (per evaluation set ``accuracy``,
        ``macro_f1``, ``loss``, ``n``, and where stored ``confusion`` and ``checksum``),
        and where stored ``predictions`` (a file under ``out``).
    out : path, default=None
        The results folder the ``predictions`` files are in; without it intervals come
        from the confusion matrices.
    n_resamples : int, default=2000
        Bootstrap resamples per interval.
    seed : int, default=0
        Seeds the bootstrap (each interval draws from this seed and its own name).

    Returns
    -------
    DataFrame
        One row per (protocol, variation, sampling, model, recipe, eval): ``seeds``
        (runs counted), ``n_collapsed``, ``collapsed`` (why, ``""`` if none),
        ``n_images``, ``accuracy_mean``, ``accuracy_std``, ``accuracy_ci_low``,
        ``accuracy_ci_high`` (bootstrap over images of the seed mean), ``ci_method``
        (``"paired images"`` from per-image predictions, or ``"confusion matrices"``),
        ``macro_f1_mean``, ``macro_f1_std``, ``loss_mean``; against variation A with the
        same protocol, sampling, model, recipe and evaluation set, paired by seed:
        ``n_pairs``, ``delta_vs_A``, ``delta_std``, ``p_value`` (paired t-test over
        seeds), ``p_holm`` (Holm's adjustment across every p-value of the table),
        ``delta_ci_low``, ``delta_ci_high`` (bootstrap over images), ``delta_ci_method``
        and ``same_images`` (1 if both sides were evaluated on one set, 0 if not, NaN if
        the stored runs cannot tell).
        Empty when there are no runs.

    Examples
    --------
    >>> run = lambda v, s, acc: {"protocol": "honest", "variation": v, "sampling": "none",
    ...     "model": "cnn_lstm", "seed": s,
    ...     "metrics": {"PrivateTest": {"accuracy": acc, "macro_f1": acc, "loss": 1.0}}}
    >>> runs = {str(i): r for i, r in enumerate([run("A", 0, .60), run("A", 1, .62),
    ...                                           run("B", 0, .63), run("B", 1, .64)])}
    >>> row = summarize_runs(runs).set_index("variation").loc["B"]
    >>> round(float(row.delta_vs_A), 3), row.recipe
    (0.025, 'study')
    """
    from ferclean.bench.profiles import DEFAULT_RECIPE

    out = None if out is None else Path(out)
    records = []
    for key, run in runs.items():
        reason = run_collapse(run)
        for eval_name, m in run["metrics"].items():
            records.append({
                "key": key, "protocol": run["protocol"], "variation": run["variation"],
                "sampling": run["sampling"], "model": run["model"],
                "recipe": run.get("recipe") or DEFAULT_RECIPE, "seed": run["seed"],
                "eval": eval_name, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                "loss": m["loss"], "n": m.get("n", np.nan),
                "checksum": m.get("checksum"), "confusion": m.get("confusion"),
                "collapsed": reason})
    if not records:
        return pd.DataFrame()
    frame = pd.DataFrame(records)
    kept = frame[frame.collapsed.isna()]
    loaded: dict[Path, Any] = {}
    rows = []
    for key, group in frame.groupby(_KEYS, sort=False):
        entry = dict(zip(_KEYS, key, strict=True))
        part = kept.loc[kept.index.intersection(group.index)].sort_values("seed")
        reasons = group.collapsed.dropna()
        entry.update(
            seeds=len(part), n_collapsed=len(reasons),
            collapsed="; ".join(f"seed {s}: {r}" for s, r in
                                zip(group.seed[reasons.index], reasons, strict=True)),
            n_images=int(group.n.max()) if group.n.notna().any() else np.nan,
            accuracy_mean=part.accuracy.mean(),
            accuracy_std=part.accuracy.std(ddof=1) if len(part) > 1 else 0.0,
            macro_f1_mean=part.macro_f1.mean(),
            macro_f1_std=part.macro_f1.std(ddof=1) if len(part) > 1 else 0.0,
            loss_mean=part.loss.mean())
        name = "|".join(map(str, key))
        entry.update(_accuracy_interval(part, runs, out, loaded, n_resamples, seed, name))
        same = np.ones(len(kept), bool)
        for field in ("protocol", "sampling", "model", "recipe", "eval"):
            same &= (kept[field] == entry[field]).to_numpy()
        base = kept[same & (kept.variation == "A").to_numpy()]
        delta, delta_std, p_value = paired_difference(part, base)
        entry.update(delta_vs_A=delta, delta_std=delta_std, p_value=p_value,
                     n_pairs=len(set(part.seed) & set(base.seed)))
        if entry["variation"] == "A":  # A against itself: nothing to test
            entry.update(p_value=np.nan, delta_ci_low=np.nan, delta_ci_high=np.nan,
                         delta_ci_method="", same_images=np.nan)
        else:
            entry.update(_delta_interval(part, base, runs, out, loaded, n_resamples,
                                         seed, name))
        rows.append(entry)
    summary = pd.DataFrame(rows)
    summary["p_holm"] = holm(summary.p_value.to_numpy(np.float64))
    return summary


def _accuracy_interval(part: pd.DataFrame, runs: dict[str, Any], out: Path | None,
                       loaded: dict[Path, Any], n_resamples: int, seed: int,
                       name: str) -> dict[str, Any]:
    """Bootstrap interval of a cell's seed-mean accuracy, and how it was computed."""
    nan = {"accuracy_ci_low": np.nan, "accuracy_ci_high": np.nan, "ci_method": ""}
    if part.empty:
        return nan
    eval_name = part["eval"].iloc[0]
    correct = _aligned([_correct(runs[k], eval_name, out, loaded) for k in part.key])
    if correct is not None:
        low, high = bootstrap_paired(correct, n_resamples=n_resamples, seed=seed, name=name)
        method = "paired images"
    elif part.confusion.notna().all():
        low, high = bootstrap_confusion(list(part.confusion), n_resamples=n_resamples,
                                        seed=seed, name=name)
        method = "confusion matrices"
    else:
        return nan
    return {"accuracy_ci_low": low, "accuracy_ci_high": high, "ci_method": method}


def _delta_interval(part: pd.DataFrame, base: pd.DataFrame, runs: dict[str, Any],
                    out: Path | None, loaded: dict[Path, Any], n_resamples: int, seed: int,
                    name: str) -> dict[str, Any]:
    """Bootstrap interval of the paired difference to A over the seeds both have."""
    seeds = sorted(set(part.seed) & set(base.seed))
    result = {"delta_ci_low": np.nan, "delta_ci_high": np.nan, "delta_ci_method": "",
              "same_images": np.nan}
    if not seeds:
        return result
    ours = part.set_index("seed").loc[seeds]
    theirs = base.set_index("seed").loc[seeds]
    result["same_images"] = _same_images(ours, theirs)
    eval_name = part["eval"].iloc[0]
    both = _aligned([_correct(runs[k], eval_name, out, loaded)
                     for k in [*ours.key, *theirs.key]])
    if both is not None:
        low, high = bootstrap_paired(both[:len(seeds)], both[len(seeds):],
                                     n_resamples=n_resamples, seed=seed, name=name)
        result.update(delta_ci_low=low, delta_ci_high=high, delta_ci_method="paired images")
    elif ours.confusion.notna().all() and theirs.confusion.notna().all():
        low, high = bootstrap_confusion(list(ours.confusion), list(theirs.confusion),
                                        n_resamples=n_resamples, seed=seed, name=name)
        result.update(delta_ci_low=low, delta_ci_high=high,
                      delta_ci_method="confusion matrices")
    return result
