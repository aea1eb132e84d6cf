"""The study's Table 2, re-run, as Markdown: honest numbers next to the flawed replica's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ferclean._atomic import atomic_file
from ferclean.bench.profiles import REPLICA_LABEL, SAMPLINGS, VARIATIONS

__all__ = ["write_table"]


def write_table(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the study's Table 2, re-run, as Markdown.

    Per model and sampling, one row per variation: honest PrivateTest accuracy (and
    de-leaked) with the paired difference to variation A, next to the seed-replica
    accuracy. Incomplete results and subset profiles say so at the top.

    Parameters
    ----------
    results : dict
        What :func:`ferclean.bench.run_suite` returns: ``profile``, ``summary`` (records
        of :func:`ferclean.bench.summarize_runs`), and optionally ``runs``,
        ``complete`` and ``environment``.
    path : path
        The Markdown file to write (atomically).

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> results = {"profile": {"name": "smoke", "seeds": [0], "epochs": 1,
    ...            "batch_size": 32, "cells": [], "note": "SMOKE"}, "summary": []}
    >>> path = write_table(results, pathlib.Path(tempfile.mkdtemp()) / "table.md")
    >>> "No runs yet." in path.read_text()
    True
    """
    summary = pd.DataFrame(results.get("summary", []))
    lines = _header(results)
    if summary.empty:
        lines.append("No runs yet.")
    else:
        n_seeds = len(results["profile"]["seeds"])
        for model in summary.model.unique():
            for sampling in SAMPLINGS:
                if ((summary.model == model) & (summary.sampling == sampling)).any():
                    lines += _section(summary, model, sampling, n_seeds)
        lines += ["The seed-replica column is a " + REPLICA_LABEL + ": it oversamples the "
                  "whole dataset before a random split, so copies of the same image are in "
                  "both training and test data.", ""]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)


def _header(results: dict[str, Any]) -> list[str]:
    """Title, the incomplete and subset warnings, and what the numbers are."""
    prof = results["profile"]
    lines = [f"# Benchmark results: profile `{prof['name']}`", ""]
    if not results.get("complete", True):
        done = len(results.get("runs", {}))
        lines += [f"**INCOMPLETE: {done} of {len(prof['cells']) * len(prof['seeds'])} runs "
                  "finished; the missing cells are absent from the tables below.**", ""]
    if prof.get("note"):
        lines += [f"**{prof['note']}**", ""]
    env = results.get("environment") or {}
    lines += [f"Seeds: {', '.join(map(str, prof['seeds']))}; epochs: {prof['epochs']}; "
              f"batch {prof['batch_size']}; devices: {', '.join(env.get('devices', []))}.",
              "", "Accuracy in %, mean ± standard deviation over seeds. Δ is the paired "
              "difference to variation A with the same seeds (p from a paired t-test).", ""]
    return lines


def _section(summary: pd.DataFrame, model: str, sampling: str, n_seeds: int) -> list[str]:
    """The table of one model and sampling: a row per variation that has a result."""
    lines = [f"## {model}, sampling `{sampling}`", "",
             "| variation | plan | honest PrivateTest | Δ | honest PrivateTest "
             "de-leaked | Δ | seed-replica (flawed protocol) |",
             "|---|---|---|---|---|---|---|"]
    for variation, plan in VARIATIONS.items():
        cell = (variation, sampling, model)
        h, hd = _cell_text(summary, ("honest", *cell, "PrivateTest"), n_seeds)
        d, dd = _cell_text(summary, ("honest", *cell, "PrivateTest_deleaked"), n_seeds)
        r, _ = _cell_text(summary, ("seed-replica", *cell, "replica_test"), n_seeds)
        if h or r:
            lines.append(f"| {variation} | {plan} | {h} | {hd} | {d} | {dd} | {r} |")
    lines.append("")
    return lines


def _cell_text(summary: pd.DataFrame, key: tuple[str, str, str, str, str],
               n_seeds: int) -> tuple[str, str]:
    """``"mean ± std"`` and ``"+Δ (p=…)"`` of one summary row; empty strings if absent."""
    protocol, variation, sampling, model, eval_name = key
    row = summary[(summary.protocol == protocol) & (summary.variation == variation)
                  & (summary.sampling == sampling) & (summary.model == model)
                  & (summary["eval"] == eval_name)]
    if row.empty:
        return "", ""
    r = row.iloc[0]
    # pd.isna, not np.isnan: a summary read back from results.json holds null as None
    delta = "" if variation == "A" or pd.isna(r.delta_vs_A) else (
        f"{100 * r.delta_vs_A:+.1f}" + ("" if pd.isna(r.p_value) else f" (p={r.p_value:.2f})"))
    value = f"{100 * r.accuracy_mean:.1f} ± {100 * r.accuracy_std:.1f}"
    if r.seeds < n_seeds:  # a cut-short run: say how little it rests on
        value += f" ({r.seeds} of {n_seeds} seeds)"
    return value, delta
