"""Statistics over seeds: mean and spread per cell, and paired differences to variation A."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["paired_difference", "summarize_runs"]

_KEYS = ["protocol", "variation", "sampling", "model", "eval"]


def summarize_runs(runs: dict[str, Any]) -> pd.DataFrame:
    """Mean and standard deviation over seeds per cell and evaluation set, and the paired
    difference to variation A (raw) with the same protocol, sampling, model and seeds.

    Parameters
    ----------
    runs : dict
        ``results["runs"]``: per run its cell fields, ``seed`` and ``metrics`` (per
        evaluation set, ``accuracy``, ``macro_f1`` and ``loss``).

    Returns
    -------
    DataFrame
        Columns ``protocol``, ``variation``, ``sampling``, ``model``, ``eval``, ``seeds``,
        ``accuracy_mean``, ``accuracy_std``, ``macro_f1_mean``, ``macro_f1_std``,
        ``loss_mean``, ``delta_vs_A``, ``delta_std``, ``p_value`` (see
        :func:`paired_difference`). Empty when there are no runs.

    Examples
    --------
    >>> run = lambda v, s, acc: {"protocol": "honest", "variation": v, "sampling": "none",
    ...     "model": "cnn_lstm", "seed": s,
    ...     "metrics": {"PrivateTest": {"accuracy": acc, "macro_f1": acc, "loss": 1.0}}}
    >>> runs = {str(i): r for i, r in enumerate([run("A", 0, .60), run("A", 1, .62),
    ...                                           run("B", 0, .63), run("B", 1, .64)])}
    >>> row = summarize_runs(runs).set_index("variation").loc["B"]
    >>> round(float(row.delta_vs_A), 3)
    0.025
    """
    rows = [{"protocol": run["protocol"], "variation": run["variation"],
             "sampling": run["sampling"], "model": run["model"], "seed": run["seed"],
             "eval": eval_name, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
             "loss": m["loss"]}
            for run in runs.values() for eval_name, m in run["metrics"].items()]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    out = []
    for key, part in frame.groupby(_KEYS, sort=False):
        entry = dict(zip(_KEYS, key, strict=True))
        entry.update(seeds=len(part), accuracy_mean=part.accuracy.mean(),
                     accuracy_std=part.accuracy.std(ddof=1) if len(part) > 1 else 0.0,
                     macro_f1_mean=part.macro_f1.mean(),
                     macro_f1_std=part.macro_f1.std(ddof=1) if len(part) > 1 else 0.0,
                     loss_mean=part.loss.mean())
        same = np.ones(len(frame), bool)
        for name in ("protocol", "sampling", "model", "eval"):
            same &= (frame[name] == entry[name]).to_numpy()
        base = frame[same & (frame.variation == "A").to_numpy()]
        delta, delta_std, p_value = paired_difference(part, base)
        if entry["variation"] == "A":
            p_value = np.nan  # A against itself: nothing to test
        entry.update(delta_vs_A=delta, delta_std=delta_std, p_value=p_value)
        out.append(entry)
    return pd.DataFrame(out)


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
