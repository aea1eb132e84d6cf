"""The suite's results files: ``results.json``, shard files, predictions, and their merge.

``results.json`` holds every finished run (cell, seed, recipe and training config,
metrics with confusion matrices, per-epoch history, wall time), the profile, the hardware
and versions, the evaluation sets every honest run was evaluated on (rows and checksum)
and a summary recomputed from the runs on every write. Shard files
(``shards/shard-<i>-of-<n>.json``) hold the runs of one worker; a merge folds them into
``results.json`` and deletes them. ``predictions/<run>.npz`` holds one run's per-image
probabilities (float16) and predicted classes on each evaluation set, with the set's rows
and labels; a run's record names its file, and workers write them side by side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ferclean._json import write_json
from ferclean.bench.predictions import (
    PREDICTIONS_DIR,
    load_predictions,
    predictions_path,
    write_predictions,
)
from ferclean.bench.profiles import Cell, Profile
from ferclean.bench.stats import summarize_runs
from ferclean.bench.tables import write_table

__all__ = ["PREDICTIONS_DIR", "SHARD_DIR", "check_evaluation_sets", "load_predictions",
           "load_results", "predictions_path", "save_results", "shard_path",
           "write_predictions", "write_results_json"]

SHARD_DIR = "shards"


def shard_path(out: Path, shard: tuple[int, int]) -> Path:
    """Where worker ``i`` of ``n`` keeps its runs.

    Examples
    --------
    >>> shard_path(Path("out"), (0, 2)).as_posix()
    'out/shards/shard-0-of-2.json'
    """
    return out / SHARD_DIR / f"shard-{shard[0]}-of-{shard[1]}.json"


def load_results(out: Path, profile: Profile) -> tuple[dict[str, Any], list[Path]]:
    """``out/results.json`` with the runs of every shard file merged in, and those files.

    The summary is dropped (it is recomputed from the runs); environment and source are
    taken from a shard when ``results.json`` has none, so a merge that trains nothing
    keeps what the workers recorded.

    Raises
    ------
    ValueError
        If a file holds results of another profile.

    Examples
    --------
    >>> import tempfile
    >>> from ferclean.bench import PROFILES
    >>> results, shards = load_results(Path(tempfile.mkdtemp()), PROFILES["smoke"])
    >>> results, shards
    ({'runs': {}}, [])
    """
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault("runs", {})
    shard_files = sorted((out / SHARD_DIR).glob("shard-*.json"))
    for source, data in [(path, results)] + [(f, json.loads(f.read_text()))
                                             for f in shard_files]:
        name = data.get("profile", {}).get("name")
        if name not in (None, profile.name):
            raise ValueError(f"{source} holds results of profile {name!r}")
        if data is not results:
            sets = data.get("evaluation_sets")
            if sets and results.get("evaluation_sets"):
                _same_sets(results["evaluation_sets"], sets, source)
            results["runs"].update(data["runs"])
            for key in ("environment", "source", "evaluation_sets"):  # a merge keeps theirs
                results[key] = results.get(key) or data.get(key)
    results.pop("summary", None)  # recomputed from the runs
    return results, shard_files


def _same_sets(ours: dict[str, Any], theirs: dict[str, Any], source: Path) -> None:
    """Raise unless two records of the evaluation sets have the same checksums."""
    for name in sorted(set(ours) & set(theirs)):
        if ours[name]["checksum"] != theirs[name]["checksum"]:
            raise ValueError(f"{source}: its {name} ({theirs[name]['n']} images) is not the "
                             f"set the other results were evaluated on ({ours[name]['n']} "
                             "images; checksums differ): results of different data")


def check_evaluation_sets(results: dict[str, Any], records: dict[str, dict[str, Any]],
                          path: Path) -> None:
    """Refuse to add runs to results evaluated on other sets than ``records``.

    Every honest run of one results folder must be evaluated on the same images: the
    recorded sets must have the same checksums, and so must every stored honest run's.
    Runs stored before the single de-leaked set existed (each variation de-leaked against
    its own cleaned Training; no checksum) are refused too: their comparisons mix sets.

    Parameters
    ----------
    results : dict
        Loaded results (:func:`load_results`).
    records : dict
        Evaluation set name to :func:`ferclean.bench.data.evaluation_record`.
    path : Path
        The results file, for the message.

    Raises
    ------
    ValueError
        Naming the file, the first run evaluated on another set, and what to do.

    Examples
    --------
    >>> rec = {"PrivateTest": {"n": 2, "rows": [0, 1], "checksum": "abc"}}
    >>> run = {"protocol": "honest", "metrics": {"PrivateTest": {"n": 3}}}
    >>> check_evaluation_sets({"runs": {"honest|A|none|cnn_lstm|0": run}}, rec,
    ...                       Path("results.json"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: results.json: run honest|A|none|cnn_lstm|0 was evaluated on another ...
    """
    if results.get("evaluation_sets"):
        _same_sets(results["evaluation_sets"], records, path)
    stale = [(key, name) for key, run in results["runs"].items()
             if run["protocol"] == "honest" for name, m in run["metrics"].items()
             if name in records and m.get("checksum") != records[name]["checksum"]]
    if stale:
        key, name = stale[0]
        n_runs = len({k for k, _ in stale})
        raise ValueError(
            f"{path}: run {key} was evaluated on another {name} than this run's "
            f"({records[name]['n']} images, de-leaked once against the raw Training), "
            f"{n_runs} run(s) in all (stored before the single de-leaked set, or on other "
            "data); write this profile into a new folder (--out), or move those runs away")


def save_results(results: dict[str, Any], out: Path, order: list[tuple[Cell, int]]) -> None:
    """Summary, completeness, ``results.json`` and ``table.md`` from ``results["runs"]``.

    ``order`` lists every (cell, seed) of the profile; ``results["complete"]`` says
    whether all of them have a run.

    Examples
    --------
    >>> import tempfile
    >>> from ferclean.bench import PROFILES
    >>> out = Path(tempfile.mkdtemp())
    >>> results = {"profile": PROFILES["smoke"].to_dict(), "runs": {}}
    >>> save_results(results, out, [(PROFILES["smoke"].cells[0], 0)])
    >>> results["complete"], sorted(p.name for p in out.iterdir())
    (False, ['results.json', 'table.md'])
    """
    runs = results["runs"]
    results["summary"] = summarize_runs(runs, out).to_dict(orient="records")
    results["complete"] = all(f"{cell.key}|{seed}" in runs for cell, seed in order)
    write_results_json(out / "results.json", results)
    write_table(results, out / "table.md")


def write_results_json(path: Path, results: dict[str, Any]) -> Path:
    """Write results atomically as strict JSON: NaN and infinities become ``null``.

    The summary has NaN where a statistic is undefined (a p-value from one seed) and a
    diverged run may have an infinite loss; JSON has no such numbers.

    Examples
    --------
    >>> import tempfile
    >>> p = write_results_json(Path(tempfile.mkdtemp()) / "r.json", {"p": float("nan")})
    >>> p.read_text()
    '{\\n "p": null\\n}\\n'
    """
    # indent=1 as the committed results files have, so their diffs stay small
    return write_json(path, _finite(results), indent=1)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float (nested in dicts and lists) as ``None``."""
    if isinstance(value, (float, np.floating)):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
