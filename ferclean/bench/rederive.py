"""Re-derive a stored profile's table with today's statistics, and say what to re-run.

Runs stored before the suite kept per-image predictions still have their confusion
matrices, so Holm's correction, bootstrap intervals (from the confusion matrices) and the
collapse flags can be recomputed from them. What they cannot give is the single de-leaked
PrivateTest: each variation was de-leaked against its own cleaned Training. With the
dataset at hand the single set is computed, and each variation's old set is rebuilt to
see whether it is the single set (then its numbers stand) or a superset of it by a few
images (then its accuracy on the single set is bounded, not known). ``rederived.json``
and ``rederived.md`` are written beside ``results.json``, which is left as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._atomic import atomic_file
from ferclean.bench.profiles import (
    CORE_SEEDS,
    DEFAULT_RECIPE,
    LABEL_VARIATIONS,
    PROFILES,
    VARIATIONS,
    Cell,
)
from ferclean.bench.stats import (
    COLLAPSE_SHARE,
    CONFIDENCE,
    N_RESAMPLES,
    run_collapse,
    summarize_runs,
)
from ferclean.dataset import FaceDataset

__all__ = ["REDERIVED_JSON", "REDERIVED_MD", "rederive", "variation_sets"]

REDERIVED_JSON = "rederived.json"
REDERIVED_MD = "rederived.md"
_DELEAKED = "PrivateTest_deleaked"


def variation_sets(ds: FaceDataset, variations: list[str],
                   eval_subset: int | None = None) -> dict[str, Any]:
    """The single de-leaked PrivateTest, and each variation's own de-leaked set compared
    with it (how the suite de-leaked before the single set: against the variation's
    cleaned Training).

    Parameters
    ----------
    ds : FaceDataset
        The whole dataset the runs were trained on.
    variations : list of str
        Keys of :data:`~ferclean.bench.VARIATIONS` to rebuild (label variations are
        skipped: they never ran that way).
    eval_subset : int or None, default=None
        The stored profile's.

    Returns
    -------
    dict
        ``single``: ``n``, ``checksum``, ``rows`` of the single set; ``variations``: per
        variation ``n`` (of its own set), ``same`` (it is the single set) and ``extra``
        (images it has beyond the single set; every cleaned Training is a subset of the
        raw one, so its set is a superset: ``superset`` says whether that held).
        :func:`rederive` adds ``stored_n`` (sizes of the stored runs' sets) and
        ``rebuilt`` (they are the size rebuilt: the same cleaning).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> facts = variation_sets(demo_dataset(n_faces=300), ["A", "relabel"])
    >>> facts["variations"], facts["single"]["n"] > 0  # relabel: Training folds only
    ({'A': {'n': 31, 'same': True, 'superset': True, 'extra': 0}}, True)
    """
    from ferclean.bench.data import _cleaned, deleaked, evaluation_record, evaluation_sets

    sets = evaluation_sets(ds, eval_subset)
    single = sets[_DELEAKED]
    single_rows = set(single.rows.tolist())
    cache: dict[Any, Any] = {}

    def cached(key: tuple, make: Any) -> Any:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    facts: dict[str, Any] = {}
    for variation in variations:
        if variation in LABEL_VARIATIONS:
            continue
        if VARIATIONS[variation] == "strict":  # as the suite cleaned it: all splits seen
            train = _cleaned(ds, variation, "all", cached)[0].split("Training")
        else:
            train = _cleaned(ds.split("Training"), variation, "training", cached)[0]
        rows = set(deleaked(train, sets["PrivateTest"]).rows.tolist())
        facts[variation] = {"n": len(rows), "same": rows == single_rows,
                            "superset": rows >= single_rows,
                            "extra": len(rows - single_rows)}
    return {"single": evaluation_record(single), "variations": facts}


def rederive(folder: str | os.PathLike, ds: FaceDataset | None = None, *,
             n_resamples: int = N_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Re-derive ``folder/results.json`` with today's statistics; write
    ``rederived.json`` and ``rederived.md`` beside it.

    Parameters
    ----------
    folder : path
        A results folder (``results.json``, and ``predictions/`` if the runs kept them).
    ds : FaceDataset, default=None
        The dataset the runs were trained on. With it, the single de-leaked PrivateTest is
        computed and each stored variation's own set compared with it
        (:func:`variation_sets`), which bounds the accuracy of runs de-leaked against
        their own Training on the single set. Without it only the stored facts are used.
    n_resamples : int, default=2000
        Bootstrap resamples per interval.
    seed : int, default=0
        Seeds the bootstrap.

    Returns
    -------
    dict
        What ``rederived.json`` holds: ``source``, ``profile``, ``statistics`` (the
        settings), ``single_deleaked_set`` and ``variation_sets`` (with ``ds``),
        ``summary`` (records of :func:`~ferclean.bench.summarize_runs`, with
        ``single_low`` and ``single_high``: bounds of the mean accuracy and Δ on the
        single set, for de-leaked rows), ``collapsed_runs``, ``rerun`` (per stored cell
        its seeds and the reasons it must run again) and ``not_run`` (cells of today's
        profile of that name without any stored run).

    Raises
    ------
    FileNotFoundError
        If ``folder`` has no ``results.json``.

    Examples
    --------
    Reads a results folder, so not run here:

    >>> facts = rederive("benchmarks/results/full")  # doctest: +SKIP
    >>> facts["collapsed_runs"]  # doctest: +SKIP
    {'honest|A|none|cnn_mha|0': 'PrivateTest: 100% of predictions are one class ...'}
    """
    folder = Path(folder)
    path = folder / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no results.json to re-derive")
    results = json.loads(path.read_text())
    runs = results.get("runs", {})
    profile = results.get("profile", {})
    summary = summarize_runs(runs, folder, n_resamples=n_resamples, seed=seed)
    facts = None
    if ds is not None:
        honest = sorted({r["variation"] for r in runs.values() if r["protocol"] == "honest"},
                        key=list(VARIATIONS).index)
        facts = variation_sets(ds, honest, profile.get("eval_subset"))
        for variation, fact in facts["variations"].items():
            stored = sorted({r["metrics"][_DELEAKED]["n"] for r in runs.values()
                             if r["protocol"] == "honest" and r["variation"] == variation
                             and _DELEAKED in r["metrics"]})
            fact.update(stored_n=stored, rebuilt=stored == [fact["n"]])
    summary = _with_bounds(summary, runs, facts)
    out = {
        "source": "results.json",
        "profile": profile.get("name"),
        "n_runs": len(runs),
        "statistics": {"bootstrap_resamples": n_resamples, "confidence": CONFIDENCE,
                       "bootstrap_seed": seed, "collapse_share": COLLAPSE_SHARE,
                       "holm_family": int(summary.p_value.notna().sum())
                       if not summary.empty else 0},
        "single_deleaked_set": None if facts is None else facts["single"],
        "variation_sets": None if facts is None else facts["variations"],
        "collapsed_runs": {k: r for k, r in ((k, run_collapse(v)) for k, v in runs.items())
                           if r},
        "summary": summary.to_dict(orient="records"),
        "rerun": _rerun(runs, facts, folder, profile),
        "not_run": _not_run(runs, profile.get("name")),
    }
    from ferclean.bench.results import write_results_json

    write_results_json(folder / REDERIVED_JSON, out)
    _write_markdown(folder / REDERIVED_MD, results, out)
    return out


def _with_bounds(summary: pd.DataFrame, runs: dict[str, Any],
                 facts: dict[str, Any] | None) -> pd.DataFrame:
    """Add ``single_low``/``single_high``: where a de-leaked row's runs were evaluated on
    a superset of the single set by ``k`` images, its mean accuracy on the single set,
    and its Δ to A there, lie between these bounds (the ``k`` extra images all wrong, or
    all right); equal to the stored values where the set is the single set."""
    summary = summary.copy()
    summary["single_low"] = summary["single_high"] = np.nan
    summary["delta_single_low"] = summary["delta_single_high"] = np.nan
    if facts is None or summary.empty:
        return summary
    n_single = facts["single"]["n"]
    per_seed: dict[tuple, dict[int, tuple[float, float]]] = {}
    for run in runs.values():
        m = run["metrics"].get(_DELEAKED)
        fact = facts["variations"].get(run["variation"])
        if (run["protocol"] != "honest" or m is None or fact is None
                or not fact["superset"] or m["n"] != fact["n"] or not fact.get("rebuilt", True)
                or run_collapse(run)):
            continue  # not the rebuilt set (other size), or left out of the means
        k = m["n"] - n_single
        right = round(m["accuracy"] * m["n"])
        cell = (run["variation"], run["sampling"], run["model"],
                run.get("recipe") or DEFAULT_RECIPE)
        per_seed.setdefault(cell, {})[run["seed"]] = ((right - k) / n_single,
                                                      right / n_single)
    sizes = {v: f["n"] for v, f in facts["variations"].items()}
    for i, row in summary.iterrows():
        if row.protocol != "honest" or row["eval"] != _DELEAKED:
            continue
        cell = (row.variation, row.sampling, row.model, row.recipe)
        ours, theirs = (facts["variations"].get(v) for v in (row.variation, "A"))
        if row.variation != "A" and ours and theirs and row.n_images == sizes[row.variation]:
            # both sets rebuilt: the same images exactly when both are the single set
            summary.loc[i, "same_images"] = float(ours["same"] and theirs["same"])
        bounds = per_seed.get(cell)
        if not bounds:
            continue
        low, high = np.array(list(bounds.values())).mean(axis=0)
        summary.loc[i, ["single_low", "single_high"]] = low, high
        base = per_seed.get(("A", *cell[1:]), {})
        seeds = sorted(set(bounds) & set(base))
        if row.variation != "A" and seeds:
            # A's own set is the single set (A is the raw Training), so its bounds meet
            lows = [bounds[s][0] - base[s][1] for s in seeds]
            highs = [bounds[s][1] - base[s][0] for s in seeds]
            summary.loc[i, ["delta_single_low", "delta_single_high"]] = (
                float(np.mean(lows)), float(np.mean(highs)))
    return summary


def _rerun(runs: dict[str, Any], facts: dict[str, Any] | None, folder: Path,
           profile: dict[str, Any]) -> dict[str, Any]:
    """Why stored cells must run again: ``every_cell`` (reasons all of them share) and
    ``cells`` (per cell its seeds and its own reasons; none left: it stands)."""
    cells: dict[str, dict[str, Any]] = {}
    for run in runs.values():
        cell = Cell.from_run(run)
        entry = cells.setdefault(cell.key, {"cell": cell, "seeds": [], "collapsed": [],
                                            "predictions": True, "history": True,
                                            "deleaked_n": set()})
        entry["seeds"].append(run["seed"])
        if run_collapse(run):
            entry["collapsed"].append(run["seed"])
        entry["predictions"] &= bool(run.get("predictions")) and (
            folder / run["predictions"]).exists()
        entry["history"] &= bool(run.get("history"))
        if _DELEAKED in run["metrics"]:
            entry["deleaked_n"].add(run["metrics"][_DELEAKED]["n"])
    listed = []
    for key, entry in cells.items():
        cell = entry["cell"]
        reasons = []  # (kind, text): a kind every cell shares is said once for all
        if entry["deleaked_n"]:
            text = _deleaked_reason(cell, entry["deleaked_n"], facts)
            if text:
                reasons.append(("deleaked", text))
        if not entry["predictions"]:
            reasons.append(("predictions", "no per-image predictions (no paired bootstrap "
                            "over images; no question about image subsets can be answered)"))
        if not entry["history"]:
            reasons.append(("history", "no per-epoch history"))
        planned = (profile.get("seed_overrides") or {}).get(key, profile.get("seeds", []))
        missing = sorted(set(planned) - set(entry["seeds"]))
        if missing:
            reasons.append(("missing", f"seed {', '.join(map(str, missing))} never finished"))
        if entry["collapsed"]:
            reasons.append(("collapsed", "collapsed run(s), seed "
                            f"{', '.join(map(str, entry['collapsed']))}: excluded from the "
                            "means, so fewer seeds count"))
        if len(entry["seeds"]) < len(CORE_SEEDS):
            reasons.append(("seeds", f"fewer than the {len(CORE_SEEDS)} seeds the "
                            "conclusions need"))
        listed.append((key, sorted(entry["seeds"]), reasons))
    kinds = [{k for k, _ in reasons} for _, _, reasons in listed]
    common = (set.intersection(*kinds) - {"deleaked", "collapsed", "missing"}
              if kinds else set())
    order = {key: i for i, key in enumerate(profile.get("cells", []))}
    listed.sort(key=lambda item: order.get(item[0], len(order)))
    every = list(dict.fromkeys(t for _, _, reasons in listed for k, t in reasons
                               if k in common))
    return {"every_cell": every,
            "cells": [{"cell": key, "seeds": seeds,
                       "reasons": [t for k, t in reasons if k not in common]}
                      for key, seeds, reasons in listed]}


def _deleaked_reason(cell: Cell, sizes: set[int], facts: dict[str, Any] | None) -> str:
    """Why a cell's de-leaked numbers do not stand on the single set ("" if they do)."""
    if facts is None:
        return ("de-leaked against its own cleaned Training, not the single set: "
                "re-run on the single set (give the dataset to see which stand)")
    fact = facts["variations"].get(cell.variation)
    n_single = facts["single"]["n"]
    if fact is None or sizes != {fact["n"]}:
        return (f"its de-leaked set ({', '.join(map(str, sorted(sizes)))} images) cannot be "
                "rebuilt with today's cleaning: re-run on the single set "
                f"({n_single} images)")
    if fact["same"]:
        return ""
    return (f"de-leaked set {fact['n']} images, the single set plus {fact['extra']}: "
            f"re-run on the single set ({n_single} images)")


def _not_run(runs: dict[str, Any], profile_name: str | None) -> dict[str, Any]:
    """Cells of today's profile of that name without any stored run, by count."""
    if profile_name not in PROFILES:
        return {}
    profile = PROFILES[profile_name]
    stored = {Cell.from_run(r).key for r in runs.values()}
    missing = [c.key for c in profile.cells if c.key not in stored]
    return {"profile_cells": len(profile.cells), "profile_runs": len(profile.runs()),
            "cells_without_runs": len(missing), "first": missing[:10]}


def _write_markdown(path: Path, results: dict[str, Any], facts: dict[str, Any]) -> None:
    """``rederived.md``: the header, the table with today's statistics, what to re-run."""
    from ferclean.bench.tables import STATISTICS_NOTE, table_body

    prof = results.get("profile", {})
    single = facts["single_deleaked_set"]
    lines = [f"# Re-derived: profile `{prof.get('name')}` with today's statistics", "",
             f"From `{facts['source']}` ({facts['n_runs']} stored runs), left unchanged: "
             "its runs are not re-trained. Written by `ferclean bench --rederive`.", "",
             STATISTICS_NOTE, "",
             f"Bootstrap: {facts['statistics']['bootstrap_resamples']} resamples, seed "
             f"{facts['statistics']['bootstrap_seed']}; the stored runs kept no per-image "
             "predictions, so every interval comes from their confusion matrices (seeds "
             "resampled as if perfectly correlated, the two sides of a Δ independently: "
             "wide, not narrow).", ""]
    if single is not None:
        sets = facts["variation_sets"]
        same = [v for v, f in sets.items() if f["same"] and f["rebuilt"]]
        other = [f"{v}'s had {f['n']} images ({f['extra']} more)"
                 for v, f in sets.items() if not f["same"] and f["rebuilt"]]
        lost = [f"{v}'s stored set ({', '.join(map(str, f['stored_n']))} images) is not what "
                f"today's {VARIATIONS[v]} plan gives ({f['n']}): its cleaning changed since"
                for v, f in sets.items() if not f["rebuilt"]]
        lines += [f"**The single de-leaked PrivateTest** (no exact, near or mirrored copy "
                  f"in the raw Training split) has {single['n']} images (sha256 "
                  f"`{single['checksum'][:12]}`). The stored de-leaked runs of "
                  f"{', '.join(same) or 'no variation'} were evaluated on exactly this set "
                  "(their own set, rebuilt with today's code, is the same). "
                  + "".join(f"{text}. " for text in other + lost)
                  + "The last column gives the mean de-leaked accuracy on the single set "
                  "(and the Δ to A there) where the stored set is the single set or a "
                  "rebuilt superset of it, then as bounds: the extra images all wrong, or "
                  "all right.", ""]
    summary = pd.DataFrame(facts["summary"])
    table = {"profile": prof, "summary": facts["summary"]}
    extra = _bounds_text if single is not None else None
    lines += table_body(table, extra)
    if not summary.empty and facts["collapsed_runs"]:
        lines += ["Collapsed runs (flagged by `ferclean.bench.stats.run_collapse`, one class "
                  f"over {COLLAPSE_SHARE:.0%} of predictions or macro-F1 at chance):", ""]
        lines += [f"* `{k}`: {r}" for k, r in facts["collapsed_runs"].items()] + [""]
    rerun = facts["rerun"]
    lines += ["## Cells to re-run", ""]
    if rerun["every_cell"]:
        lines += ["Every stored cell: " + "; ".join(rerun["every_cell"]) + ".", "",
                  "Besides:", ""]
    for entry in rerun["cells"]:
        why = "; ".join(entry["reasons"]) or "nothing else"
        seeds = ", ".join(map(str, entry["seeds"]))
        lines.append(f"* `{entry['cell']}` (seeds {seeds}): {why}")
    lines.append("")
    missing = facts["not_run"]
    if missing:
        lines += [f"Today's `{prof.get('name')}` profile has {missing['profile_cells']} cells "
                  f"({missing['profile_runs']} runs); {missing['cells_without_runs']} of "
                  "them have no stored run at all (the VGG-class net and the augmented "
                  "recipe first).", ""]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _bounds_text(row: pd.Series | None) -> str:
    """``"low–high (Δ low–high)"`` in % for a de-leaked row with bounds."""
    if row is None or pd.isna(row.get("single_low")):
        return ""
    text = (f"{100 * row.single_low:.1f}" if np.isclose(row.single_low, row.single_high)
            else f"{100 * row.single_low:.1f}–{100 * row.single_high:.1f}")
    if not pd.isna(row.get("delta_single_low")):
        low, high = 100 * row.delta_single_low, 100 * row.delta_single_high
        text += (f" (Δ {low:+.1f})" if np.isclose(low, high) else
                 f" (Δ {low:+.1f} to {high:+.1f})")
    return text
