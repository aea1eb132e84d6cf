"""The study's Table 2, re-run, as Markdown: honest numbers next to the flawed replica's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ferclean._atomic import atomic_file
from ferclean.bench.profiles import DEFAULT_RECIPE, REPLICA_LABEL, SAMPLINGS, VARIATIONS, Cell

__all__ = ["STATISTICS_NOTE", "table_body", "write_table"]


def write_table(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the study's Table 2, re-run, as Markdown.

    Per model, recipe and sampling, one row per variation: honest PrivateTest accuracy
    and de-leaked accuracy (mean ± standard deviation over seeds, then the bootstrap
    interval over test images), each with the paired difference to variation A, its
    interval and its p-value (raw, then Holm-adjusted across the table), next to the
    seed-replica accuracy. Collapsed runs are flagged and left out of the means.
    Incomplete results and subset profiles say so at the top.

    Parameters
    ----------
    results : dict
        What :func:`ferclean.bench.run_suite` returns: ``profile``, ``summary`` (records
        of :func:`ferclean.bench.summarize_runs`), and optionally ``runs``,
        ``complete``, ``environment`` and ``evaluation_sets``.
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
    lines = _header(results) + table_body(results)
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)


def table_body(results: dict[str, Any],
               extra: Callable[[pd.Series | None], str] | None = None) -> list[str]:
    """The sections of the table and their notes, as Markdown lines.

    ``extra``, if given, adds a last column to the rows: it gets the honest de-leaked
    summary row of the variation (or ``None``) and returns the column's text.

    Examples
    --------
    >>> table_body({"profile": {"seeds": [0]}, "summary": []})
    ['No runs yet.']
    """
    summary = pd.DataFrame(results.get("summary", []))
    if summary.empty:
        return ["No runs yet."]
    if "recipe" not in summary:  # a summary from before recipes
        summary["recipe"] = DEFAULT_RECIPE
    expected = _expected_seeds(results["profile"])
    lines: list[str] = []
    nets = summary[["model", "recipe"]].drop_duplicates().itertuples(index=False)
    for model, recipe in nets:
        for sampling in SAMPLINGS:
            if ((summary.model == model) & (summary.recipe == recipe)
                    & (summary.sampling == sampling)).any():
                lines += _section(summary, model, recipe, sampling, expected, extra)
    lines += _notes(summary)
    return lines


def _expected_seeds(profile: dict[str, Any]) -> Callable[[str], int]:
    """How many seeds the profile gives a cell, by the cell's key."""
    seeds, overrides = profile.get("seeds", []), profile.get("seed_overrides") or {}
    return lambda key: len(overrides.get(key, seeds))


def _header(results: dict[str, Any]) -> list[str]:
    """Title, the incomplete and subset warnings, the evaluation sets, what numbers are."""
    prof = results["profile"]
    lines = [f"# Benchmark results: profile `{prof['name']}`", ""]
    if not results.get("complete", True):
        done = len(results.get("runs", {}))
        total = prof.get("n_runs") or len(prof["cells"]) * len(prof["seeds"])
        lines += [f"**INCOMPLETE: {done} of {total} runs "
                  "finished; the missing cells are absent from the tables below.**", ""]
    if prof.get("note"):
        lines += [f"**{prof['note']}**", ""]
    env = results.get("environment") or {}
    lines += [f"Seeds: {', '.join(map(str, prof['seeds']))}; epochs: {prof['epochs']}; "
              f"batch {prof['batch_size']}; devices: {', '.join(env.get('devices', []))}.",
              ""]
    sets = results.get("evaluation_sets") or {}
    if "PrivateTest_deleaked" in sets:
        clean, plain = sets["PrivateTest_deleaked"], sets.get("PrivateTest", {})
        lines += [f"Every honest run is evaluated on the same two sets: PrivateTest "
                  f"({plain.get('n', '?')} images) and PrivateTest de-leaked "
                  f"({clean['n']} images: those with no exact, near or mirrored copy in "
                  f"the raw Training split; sha256 `{clean['checksum'][:12]}`; rows in "
                  "`results.json`).", ""]
    lines += [STATISTICS_NOTE, ""]
    return lines


#: What the numbers of the table are (also the rederived table's).
STATISTICS_NOTE = (
    "Accuracy in %: mean ± standard deviation over seeds, then [95% bootstrap interval "
    "over test images]. Δ is the paired difference to variation A with the same seeds "
    "(model, recipe, sampling and evaluation set the same), with its bootstrap interval "
    "(paired image by image where per-image predictions are stored, else from the "
    "confusion matrices: wider). p: paired t-test over seeds, then (in brackets) Holm-"
    "adjusted across every comparison of the table. A run whose predictions collapsed to "
    "one class (or to chance macro-F1) is flagged † and left out of means and tests.")


def _section(summary: pd.DataFrame, model: str, recipe: str, sampling: str,
             expected: Callable[[str], int],
             extra: Callable[[pd.Series | None], str] | None) -> list[str]:
    """The table of one net and sampling: a row per variation that has a result."""
    head = ("| variation | plan | seeds | honest PrivateTest | Δ | p (Holm) | honest "
            "PrivateTest de-leaked | Δ | p (Holm) | seed-replica (flawed protocol) |")
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if extra is not None:
        head, rule = head + " single de-leaked set |", rule + "---|"
    lines = [f"## {model}, recipe `{recipe}`, sampling `{sampling}`", "", head, rule]
    for variation, plan in VARIATIONS.items():
        cell = Cell("honest", variation, sampling, model, recipe)
        rows = {name: _row(summary, protocol, cell, name) for protocol, name in
                [("honest", "PrivateTest"), ("honest", "PrivateTest_deleaked"),
                 ("seed-replica", "replica_test")]}
        honest, clean, replica = rows.values()
        if honest is None and replica is None:
            continue
        seeds = _seeds_text(honest, expected(cell.key)) if honest is not None else ""
        r_key = Cell("seed-replica", variation, sampling, model, recipe).key
        r_text = "" if replica is None else _accuracy_text(replica)
        if replica is not None and (replica.seeds < expected(r_key)
                                    or replica.get("n_collapsed")):
            r_text += f" ({_seeds_text(replica, expected(r_key))} seeds)"
        line = (f"| {variation} | {plan} | {seeds} | {_accuracy_text(honest)} | "
                f"{_delta_text(honest)} | {_p_text(honest)} | {_accuracy_text(clean)} | "
                f"{_delta_text(clean)} | {_p_text(clean)} | {r_text.strip()} |")
        if extra is not None:
            line += f" {extra(clean)} |"
        lines.append(line)
    lines.append("")
    return lines


def _row(summary: pd.DataFrame, protocol: str, cell: Cell, eval_name: str) -> pd.Series | None:
    row = summary[(summary.protocol == protocol) & (summary.variation == cell.variation)
                  & (summary.sampling == cell.sampling) & (summary.model == cell.model)
                  & (summary.recipe == cell.recipe) & (summary["eval"] == eval_name)]
    return None if row.empty else row.iloc[0]


def _pct(value: Any, sign: bool = False) -> str:
    return f"{100 * value:+.1f}" if sign else f"{100 * value:.1f}"


def _accuracy_text(r: pd.Series | None) -> str:
    """``"mean ± std [low, high]"`` in %, or why there is none."""
    if r is None:
        return ""
    if not r.seeds:
        return "all runs collapsed †"
    text = f"{_pct(r.accuracy_mean)} ± {_pct(r.accuracy_std)}"
    # pd.isna, not np.isnan: a summary read back from results.json holds null as None
    if not pd.isna(r.get("accuracy_ci_low")):
        text += f" [{_pct(r.accuracy_ci_low)}, {_pct(r.accuracy_ci_high)}]"
    return text


def _seeds_text(r: pd.Series, n_expected: int) -> str:
    """Seeds counted, ``"k of n"`` for a cut-short cell, † for collapsed runs."""
    n_collapsed = int(r.get("n_collapsed", 0) or 0)
    counted = int(r.seeds)
    text = str(counted) if counted + n_collapsed >= n_expected else (
        f"{counted} of {n_expected}")
    if n_collapsed:
        text += f" (+{n_collapsed} collapsed †)"
    return text


def _delta_text(r: pd.Series | None) -> str:
    """``"+Δ [low, high]"`` in %, ‡ where the two sides saw different images."""
    if r is None or r.variation == "A" or pd.isna(r.delta_vs_A):
        return ""
    text = _pct(r.delta_vs_A, sign=True)
    if not pd.isna(r.get("delta_ci_low")):
        text += f" [{_pct(r.delta_ci_low, True)}, {_pct(r.delta_ci_high, True)}]"
    if r.get("same_images") == 0:
        text += " ‡"
    return text


def _p_text(r: pd.Series | None) -> str:
    if r is None or pd.isna(r.get("p_value")):
        return ""
    return f"{r.p_value:.2f} ({r.p_holm:.2f})"


def _notes(summary: pd.DataFrame) -> list[str]:
    """Footnotes: the replica, the family of the correction, collapsed runs, ‡."""
    n_tests = int(summary.p_value.notna().sum())
    lines = ["The seed-replica column is a " + REPLICA_LABEL + ": it oversamples the "
             "whole dataset before a random split, so copies of the same image are in "
             "both training and test data.", "",
             f"Holm's correction is over the {n_tests} p-values of this table.", ""]
    collapsed = summary[summary.get("n_collapsed", pd.Series(0, index=summary.index))
                        .fillna(0) > 0]
    seen: set[str] = set()
    for r in collapsed.itertuples(index=False):
        cell = f"{r.protocol}|{r.variation}|{r.sampling}|{r.model}|{r.recipe}"
        if cell not in seen:
            seen.add(cell)
            lines.append(f"† {cell}: collapsed, excluded from the means: {r.collapsed}")
    if seen:
        lines.append("")
    if "same_images" in summary and (summary.same_images == 0).any():
        lines += ["‡ the two sides of this Δ were evaluated on different images.", ""]
    return lines
