"""Running the ablation suite: every (cell, seed) of a profile, resumable and shardable.

Results go to ``<out>/results.json`` (every run: cell, seed, recipe and training config,
metrics, per-epoch history, wall time, plus hardware and versions, and the evaluation sets'
rows and checksums), ``<out>/predictions/`` (one ``.npz`` per run: per-image probabilities
and predicted classes on every evaluation set), ``<out>/table.md`` (the study's Table 2
re-run, honest numbers next to the replica's) and ``<out>/*.png``. Finished runs are not
recomputed: the suite resumes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import check_scalar

from ferclean._outputs import claim_dir, dataset_inputs
from ferclean.bench.data import (
    Prepared,
    evaluation_checksum,
    evaluation_record,
    evaluation_sets,
    prepare,
)
from ferclean.bench.plots import plot_results
from ferclean.bench.profiles import DEFAULT_RECIPE, PROFILES, Cell, Profile
from ferclean.bench.results import (
    PREDICTIONS_DIR,
    SHARD_DIR,
    check_evaluation_sets,
    load_results,
    save_results,
    shard_path,
    write_predictions,
    write_results_json,
)
from ferclean.dataset import FaceDataset

__all__ = ["run_suite", "run_suite_parallel", "train_config"]

#: What a results folder holds: recognises one written before the output marker.
BENCH_FILES = ("results.json", "table.md", "*.png", SHARD_DIR, PREDICTIONS_DIR, "RUNS.md",
               "rederived.md", "rederived.json")


def run_suite(
    ds: FaceDataset | None,
    profile: Profile | str = "quick",
    out: str | os.PathLike = "benchmarks/results/quick",
    *,
    progress: bool = False,
    shard: tuple[int, int] | None = None,
    train_missing: bool = True,
) -> dict[str, Any]:
    """Run (or resume) a profile; write results.json, table.md and plots into ``out``.

    Runs already in ``out/results.json`` (or in shard files) are kept and not recomputed.

    Parameters
    ----------
    ds : FaceDataset or None
        The whole dataset, all three splits; ``None`` only with ``train_missing=False``
        (a merge needs no images).
    profile : Profile or str, default="quick"
        A :class:`Profile` or a name in :data:`PROFILES`.
    out : path, default="benchmarks/results/quick"
    progress : bool, default=False
        Print one line per finished run.
    shard : (i, n), default=None
        Run only every n-th run starting at the i-th (0-based), writing
        ``out/shards/shard-i-of-n.json`` after each run. n processes with i = 0..n-1
        share one GPU (or several machines) and finish the profile together; a later
        call without ``shard`` merges their files into ``results.json``, runs whatever
        is still missing, and writes the table and plots.
        :func:`run_suite_parallel` does all of this.
    train_missing : bool, default=True
        False only merges shard files and rewrites the table and plots, training nothing
        (e.g. on a laptop, after shards ran on a GPU machine); the results then say which
        runs are missing.

    Returns
    -------
    dict
        The results: ``profile``, ``environment``, ``source``, ``runs`` and, unless
        ``shard`` is given, ``summary`` and ``complete``.

    Examples
    --------
    Trains models (seconds for ``"smoke"``, hours for ``"full"``), so not run here:

    >>> from ferclean.demo import demo_dataset
    >>> results = run_suite(demo_dataset(), "smoke", "/tmp/bench")  # doctest: +SKIP
    >>> results["complete"], len(results["runs"])  # doctest: +SKIP
    (True, 2)
    """
    profile = PROFILES[profile] if isinstance(profile, str) else profile
    if ds is None and train_missing:
        raise ValueError("run_suite needs the dataset unless train_missing=False")
    if shard is not None and not (isinstance(shard[1], int) and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n; got {shard!r}")
    out = Path(out)
    # resumed in place: an empty folder or a benchmark's, never the data or a stranger's
    claim_dir(out, what="ferclean benchmark results", inputs=dataset_inputs(ds),
              known=BENCH_FILES, resume=True)
    results, shard_files = load_results(out, profile)
    done = set(results["runs"])  # finished anywhere: results.json or any shard file
    if shard is None:
        path, runs = out / "results.json", results["runs"]
    else:  # this shard's file holds only its own runs; the merge summarises
        path = shard_path(out, shard)
        path.parent.mkdir(exist_ok=True)
        runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    # The environment is the one that trained: a merge that trains nothing keeps theirs.
    environment = results.get("environment") if not train_missing else None
    order = profile.runs()
    todo = [(position, cell, seed) for position, (cell, seed) in enumerate(order, start=1)
            if train_missing and f"{cell.key}|{seed}" not in done
            and (shard is None or (position - 1) % shard[1] == shard[0])]
    cache: dict[Any, Any] = {}
    if ds is not None and train_missing and any(c.protocol == "honest" for c in profile.cells):
        # computed once for the run (prepare() reuses it through the cache), checked
        # against what earlier runs in this folder were evaluated on before training more
        sets = cache.setdefault(("evaluation", profile.eval_subset),
                                evaluation_sets(ds, profile.eval_subset))
        records = {name: evaluation_record(test) for name, test in sets.items()}
        check_evaluation_sets(results, records, out / "results.json")
        results["evaluation_sets"] = records
    results.update(profile=profile.to_dict(), environment=environment or _environment(),
                   source=ds.source if ds is not None else results.get("source"), runs=runs)
    for position, cell, seed in todo:
        key = f"{cell.key}|{seed}"
        runs[key] = _timed_run(ds, cell, profile, seed, cache, out)
        if progress:
            acc = {k: round(v["accuracy"], 4) for k, v in runs[key]["metrics"].items()}
            worker = f"shard {shard[0]}/{shard[1]} " if shard else ""
            print(f"{worker}[{position}/{len(order)}] {key}: {acc} ({runs[key]['wall_s']} s)",
                  flush=True)
        # after every run: resumable, and a cut-short run still leaves its results
        if shard is None:
            save_results(results, out, order)
        else:
            write_results_json(path, results)
    if shard is None:
        _finish(results, out, order, shard_files)
    return results


def _timed_run(ds: FaceDataset, cell: Cell, profile: Profile, seed: int,
               cache: dict[Any, Any], out: Path) -> dict[str, Any]:
    """One run's record: its cell, seed, metrics, history, data facts and wall time.

    Its per-image predictions go to ``out/predictions/`` first, so a record never names
    a file that is not there."""
    start = time.perf_counter()
    prepared = prepare(ds, cell, profile, seed, cache)
    outcome, predictions = _run_one(prepared, cell, profile, seed)
    key = f"{cell.key}|{seed}"
    path = write_predictions(out, key, prepared.tests, predictions)
    return {**asdict(cell), "seed": seed, **outcome, **prepared.info,
            "predictions": path.relative_to(out).as_posix(),
            "wall_s": round(time.perf_counter() - start, 2)}


def _finish(results: dict[str, Any], out: Path, order: list[tuple[Cell, int]],
            shard_files: list[Path]) -> None:
    """Write the merged results, then delete the shard files they came from, then plot."""
    save_results(results, out, order)  # written before the shard files go
    for shard_file in shard_files:
        shard_file.unlink()
    if (out / SHARD_DIR).is_dir() and not any((out / SHARD_DIR).iterdir()):
        (out / SHARD_DIR).rmdir()
    plot_results(results, out)


def train_config(cell: Cell, profile: Profile, seed: int,
                 class_weight: dict[int, float] | None = None) -> Any:
    """The :class:`ferclean.learning.TrainConfig` one run of ``cell`` trains with.

    The cell's recipe (a preset of :data:`ferclean.learning.TRAINING_PRESETS`) with the
    profile's changes: for ``"study"`` its ``epochs``, ``batch_size`` and
    ``learning_rate`` (the study's recipe is what the profiles ran before recipes
    existed), for any recipe its ``recipe_overrides`` entry; then the cell's model, the
    profile's ``model_kwargs`` for it, the seed and class weights.

    Examples
    --------
    >>> from ferclean.bench import PROFILES, Cell
    >>> cfg = train_config(Cell("honest", "A", "none", "cnn_lstm"), PROFILES["quick"], 1)
    >>> cfg.epochs, cfg.seed, cfg.optimizer, dict(cfg.model_kwargs)
    (6, 1, 'adam', {'bn_momentum': 0.9})
    """
    from ferclean.learning import training_preset

    changes: dict[str, Any] = {}
    if cell.recipe == DEFAULT_RECIPE:
        changes.update(epochs=profile.epochs, batch_size=profile.batch_size,
                       learning_rate=profile.learning_rate)
    changes.update(profile.recipe_overrides.get(cell.recipe, {}))
    preset = training_preset(cell.recipe)
    model_kwargs = {**(dict(preset.model_kwargs) if preset.model == cell.model else {}),
                    **profile.model_kwargs.get(cell.model, {})}
    return training_preset(cell.recipe, **changes, model=cell.model, model_kwargs=model_kwargs,
                           seed=seed, class_weight=class_weight,
                           drop_remainder=True)  # one step shape: one compilation per run


def _run_one(prepared: Prepared, cell: Cell, profile: Profile,
             seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train and evaluate one run: its record (metrics per evaluation set, config,
    history) and its class probabilities per evaluation set."""
    from ferclean.learning import classification_metrics, predict_proba, train

    config = train_config(cell, profile, seed, prepared.class_weights)
    result = train((prepared.train, prepared.val), config)
    metrics, probabilities = {}, {}
    for name, test in prepared.tests.items():
        probabilities[name] = proba = predict_proba(result, test)
        m = classification_metrics(test.labels, proba)
        metrics[name] = {"accuracy": m["accuracy"], "loss": m["loss"],
                         "macro_f1": m["macro_f1"], "n": len(test),
                         "checksum": evaluation_checksum(test),
                         "confusion": np.asarray(m["confusion_matrix"]).tolist()}
    history = result.history.to_dict(orient="records")
    return {"metrics": metrics, "epochs_run": len(result.history),
            "best_epoch": int(result.best_epoch), "stopped_early": bool(result.stopped_early),
            "config": config.to_dict(), "history": history}, probabilities


def _environment() -> dict[str, Any]:
    """Hardware and versions of the process that trains."""
    from ferclean._version import __version__

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "ferclean": __version__}
    try:
        import flax
        import jax
        import optax

        versions.update(jax=jax.__version__, flax=flax.__version__, optax=optax.__version__)
        devices = [str(d) for d in jax.devices()]
    except ImportError:  # pragma: no cover
        devices = []
    return {"cpus": os.cpu_count(), "machine": platform.machine(), "platform":
            platform.platform(), "devices": devices, "versions": versions}


def run_suite_parallel(
    ds: FaceDataset,
    profile: str = "quick",
    out: str | os.PathLike = "benchmarks/results/quick",
    *,
    workers: int = 2,
    progress: bool = False,
) -> dict[str, Any]:
    """Run a profile in ``workers`` processes (``ferclean bench --shard i/n``), then merge.

    Small models leave a GPU mostly idle, so several processes share one well: each runs
    every ``workers``-th run and writes its own shard file; the merge (a final
    :func:`run_suite` call in this process) runs anything a worker left undone and writes
    ``results.json``, the table and the plots. The workers read ``ds`` from a temporary
    ``.npz`` and are told not to pre-allocate most of the GPU's memory, as JAX does by
    default. Finished runs are resumed as with :func:`run_suite`.

    Parameters
    ----------
    ds : FaceDataset
    profile : str, default="quick"
        A name in :data:`PROFILES` (workers are separate processes).
    out : path, default="benchmarks/results/quick"
    workers : int, default=2
    progress : bool, default=False
        Let the workers print their per-run lines.

    Returns
    -------
    dict
        As :func:`run_suite`.

    Examples
    --------
    Starts training processes, so not run here:

    >>> from ferclean.io import load
    >>> ds = load("fer2013.zip")  # doctest: +SKIP
    >>> run_suite_parallel(ds, "full", "benchmarks/results/full", workers=6)  # doctest: +SKIP
    """
    import subprocess
    import sys
    import tempfile

    from ferclean.io.npz import write_npz

    check_scalar(workers, "workers", int, min_val=1)
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {sorted(PROFILES)}")
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    with tempfile.TemporaryDirectory(prefix="ferclean-bench-") as tmp:
        data = Path(tmp) / "dataset.npz"
        write_npz(ds, data)
        base = [sys.executable, "-m", "ferclean", "bench", str(data), "--input-format", "npz",
                "--profile", profile, "--out", str(out)]
        procs = [subprocess.Popen([*base, "--shard", f"{i}/{workers}"], env=env,
                                  stdout=None if progress else subprocess.DEVNULL)
                 for i in range(workers)]
        try:
            codes = [p.wait() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
    if any(codes):
        raise RuntimeError(f"bench workers exited with {codes}; their finished runs are kept "
                           f"in {Path(out) / SHARD_DIR} and a re-run resumes from them")
    return run_suite(ds, profile, out, progress=progress)
