"""The ablation suite: what each cleaning step really does to a model's accuracy.

Cells are (protocol, variation, sampling, model); each runs for several seeds.

* Variations are the study's Table 2 — A ``raw``, B ``dedup``, C ``no-conflicts``,
  D ``no-outliers``, C+D ``seed-final`` — plus ferclean's ``strict``.
* Sampling: ``none``, ``ros`` (random oversampling), ``smote``, ``class_weights``.
* Protocols:

  ``honest`` (default)
      The official splits. Cleaning decisions and resampling use Training only;
      PublicTest drives early stopping and the learning-rate schedule; PrivateTest is
      reported, and so is **PrivateTest de-leaked**: the PrivateTest images that have an
      exact copy in the (cleaned) training data removed.
  ``seed-replica``
      A REPLICA OF A FLAWED PROTOCOL, the study's: clean the whole dataset, oversample it,
      then split it at random 90/10. Copies of one image land on both sides of the split,
      so its accuracy measures memorisation as much as recognition. It is here to show how
      much of the study's 82.7% was leakage; every output labels it as such.

Results go to ``<out>/results.json`` (every run: cell, seed, metrics, wall time, plus
hardware and versions), ``<out>/table.md`` (the study's Table 2 re-run, honest numbers next
to the replica's) and ``<out>/*.png``. Finished runs are not recomputed: the suite resumes.
"""

from __future__ import annotations

import json
import os
import platform
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._atomic import atomic_file
from ferclean._json import to_plain
from ferclean.dataset import EMOTIONS, FaceDataset

VARIATIONS: dict[str, str] = {
    "A": "raw", "B": "dedup", "C": "no-conflicts", "D": "no-outliers", "C+D": "seed-final",
    "strict": "strict",
}
SAMPLINGS: tuple[str, ...] = ("none", "ros", "smote", "class_weights")
PROTOCOLS: tuple[str, ...] = ("honest", "seed-replica")
REPLICA_LABEL = "seed-replica (REPLICA OF A FLAWED PROTOCOL: resample, then split)"


@dataclass(frozen=True)
class Cell:
    """One configuration of the suite (run once per seed).

    Examples
    --------
    >>> Cell("honest", "C+D", "ros", "cnn_lstm").key
    'honest|C+D|ros|cnn_lstm'
    """

    protocol: str
    variation: str
    sampling: str
    model: str

    @property
    def key(self) -> str:
        return f"{self.protocol}|{self.variation}|{self.sampling}|{self.model}"


@dataclass(frozen=True)
class Profile:
    """How big a run is: which cells, how many seeds, how much data, how many epochs.

    ``train_subset`` (training images drawn, class shares kept; ``None`` = all) and
    ``epochs`` make the quick profile fit a 2-core CPU; every output of a subset profile
    says so.

    Examples
    --------
    >>> quick = PROFILES["quick"]
    >>> quick.is_subset, len(quick.seeds), PROFILES["full"].is_subset
    (True, 3, False)
    """

    name: str
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    train_subset: int | None = None
    eval_subset: int | None = None
    replica_test_fraction: float = 0.1
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""

    @property
    def is_subset(self) -> bool:
        return self.train_subset is not None or self.eval_subset is not None


def _cells(protocol: str, variations: Iterable[str], samplings: Iterable[str],
           models: Iterable[str]) -> list[Cell]:
    return [Cell(protocol, v, s, m) for m in models for v in variations for s in samplings]


def _profiles() -> dict[str, Profile]:
    every = list(VARIATIONS)
    # Both profiles are ordered by importance, so that a run cut short (or shards
    # interrupted by a time limit) still holds the core comparison.
    full_cells = (
        _cells("honest", every, ["none"], ["cnn_lstm"])
        + _cells("seed-replica", ["A", "C+D"], ["none", "ros"], ["cnn_lstm"])
        + _cells("honest", ["A", "C+D"], ["none"], ["cnn_mha"])
        + _cells("honest", every, ["ros", "smote", "class_weights"], ["cnn_lstm"])
    )
    # What fits ~20 minutes on 2 CPU cores (a CNN-LSTM step there is ~0.7 s): the
    # cleaning effect (A vs C+D) and the leak (honest vs the replica), three seeds each.
    quick_cells = (
        _cells("honest", ["A", "C+D"], ["none"], ["cnn_lstm"])
        + _cells("seed-replica", ["A"], ["ros"], ["cnn_lstm"])
    )
    # A few dozen steps per run: BatchNorm's running statistics must settle faster than
    # Keras' default momentum (0.99) allows, or evaluation sees untrained statistics.
    short_run = {"cnn_lstm": {"bn_momentum": 0.9}}
    return {
        "full": Profile("full", tuple(full_cells), epochs=60,
                        # same weights and arithmetic; twice as fast per step on an H100
                        model_kwargs={"cnn_lstm": {"lstm_unroll": 25}},
                        note="the study's full setting: all images, up to 60 epochs with "
                        "early stopping; meant for a GPU"),
        "quick": Profile("quick", tuple(quick_cells), epochs=6, train_subset=1500,
                         eval_subset=600, model_kwargs=short_run,
                         note="SUBSET PROFILE for a 2-core CPU (one training step of the "
                         "CNN-LSTM takes ~0.7 s there): 3 cells, 1,500 training images "
                         "drawn with their class shares, 600 evaluation images per set, 6 "
                         "epochs, BatchNorm momentum 0.9. Numbers are far below full-data "
                         "accuracy and only comparable within this profile; the full "
                         "profile runs every cell"),
        "smoke": Profile("smoke", (Cell("honest", "A", "none", "cnn_lstm"),
                                   Cell("seed-replica", "A", "ros", "cnn_lstm")),
                         seeds=(0,), epochs=1, batch_size=32, train_subset=40,
                         eval_subset=100, model_kwargs=short_run,
                         note="SMOKE TEST: tiny subset, one epoch"),
    }


PROFILES: dict[str, Profile] = _profiles()


# ---------------------------------------------------------------------- data prep
def _stratified_subset(ds: FaceDataset, n: int | None, seed: int) -> FaceDataset:
    """About ``n`` images drawn with a fixed seed, each class in its share of ``ds`` (at
    least one image of every class present), in input order.

    The class shares are kept on purpose: a subset balanced per class would leave the
    oversamplers nothing to do, and the seed-replica nothing to leak.
    """
    if n is None or len(ds) <= n:
        return ds
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(ds), bool)
    labels, counts = np.unique(ds.labels, return_counts=True)
    for label, count in zip(labels, counts, strict=True):
        idx = np.flatnonzero(ds.labels == label)
        keep[rng.permutation(idx)[:max(1, round(n * count / len(ds)))]] = True
    return ds.subset(keep)


def _cap(ds: FaceDataset, n: int | None, seed: int) -> FaceDataset:
    if n is None or len(ds) <= n:
        return ds
    keep = np.zeros(len(ds), bool)
    keep[np.random.default_rng(seed).permutation(len(ds))[:n]] = True
    return ds.subset(keep)


def deleaked(train: FaceDataset, test: FaceDataset, *, near: bool = True) -> FaceDataset:
    """``test`` without the images that have a copy in ``train``: exact copies, and with
    ``near`` (the default) also near and mirrored copies, verified on the pixels.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> test = ds.split("PrivateTest")
    >>> exact_only = deleaked(ds.split("Training"), test, near=False)
    >>> len(deleaked(ds.split("Training"), test)) < len(exact_only) < len(test)
    True
    """
    from ferclean.protocol import check_leakage

    leaks = check_leakage(train, test, near=near, mirror=near)
    keep = np.ones(len(test), bool)
    keep[leaks["test_position"].to_numpy()] = False
    return test.subset(keep)


@dataclass
class Prepared:
    """The data one run trains and is evaluated on (what :func:`prepare` returns).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> p = prepare(demo_dataset(n_faces=300), Cell("seed-replica", "A", "ros", "cnn_lstm"),
    ...             PROFILES["smoke"], seed=0)
    >>> list(p.tests), "FLAWED" in p.info["label"]
    (['replica_test'], True)
    """

    train: FaceDataset
    val: FaceDataset
    tests: dict[str, FaceDataset]
    class_weights: dict[int, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def prepare(ds: FaceDataset, cell: Cell, profile: Profile, seed: int,
            cache: dict[Any, Any] | None = None) -> Prepared:
    """Build train/validation/test data for one cell and seed, by the cell's protocol.

    The honest protocol never lets a Training image — or a resampled copy of one — into
    the evaluation sets: they are the official PublicTest/PrivateTest images, untouched.
    ``PrivateTest_deleaked`` also drops the PrivateTest images with an exact, near or
    mirrored copy among the images the model trains on.

    ``cache`` (a dict kept across calls on the same ``ds``) saves the cleaning and the
    de-leaking that cells with the same variation share; results are the same without it.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> p = prepare(demo_dataset(n_faces=300), Cell("honest", "A", "none", "cnn_lstm"),
    ...             PROFILES["smoke"], seed=0)
    >>> sorted(p.tests), set(p.train.split_names)
    (['PrivateTest', 'PrivateTest_deleaked'], {'Training'})
    """
    from ferclean.cleaning import CleaningPlan, clean
    from ferclean.protocol import class_weights, resample

    cache = {} if cache is None else cache
    plan = CleaningPlan.preset(VARIATIONS[cell.variation])
    # Subset draws depend on the seed; full-data runs of one variation share their data.
    draw = seed if profile.is_subset else None

    def cached(key: tuple, make: Any) -> Any:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    if cell.protocol == "honest":
        def cleaned_training() -> tuple[FaceDataset, int]:
            if plan.name == "strict":
                # strict looks at test images only to remove their copies from Training
                cleaned, manifest = clean(ds, plan)
                return cleaned.split("Training"), len(manifest.removed)
            cleaned, manifest = clean(ds.split("Training"), plan)
            return cleaned, len(manifest.removed)

        train, removed = cached(("honest", cell.variation), cleaned_training)
        train = _stratified_subset(train, profile.train_subset, seed)
        val = _cap(ds.split("PublicTest"), profile.eval_subset, seed)
        test = _cap(ds.split("PrivateTest"), profile.eval_subset, seed)
        # De-leaked against the images before resampling: a resampled copy is a copy of
        # one of them, and a SMOTE image is not a copy of any test image.
        clean_test = cached(("deleaked", cell.variation, draw),
                            lambda: deleaked(train, test))
        weights = class_weights(train) if cell.sampling == "class_weights" else None
        if cell.sampling in ("ros", "smote"):
            train = resample(train, cell.sampling, random_state=seed)
        tests = {"PrivateTest": test, "PrivateTest_deleaked": clean_test}
        return Prepared(train, val, tests, weights, {"removed": removed, "n_train": len(train)})
    if cell.protocol == "seed-replica":
        from ferclean.protocol import random_split

        # The study's steps, in its order: clean everything, oversample everything,
        # then split at random. Kept only to measure how much this inflates accuracy.
        def cleaned_everything() -> tuple[FaceDataset, int]:
            merged = FaceDataset(ds.pixels, ds.labels, np.zeros(len(ds), np.int8), ds.ids,
                                 ds.rows, source=ds.source)
            cleaned, manifest = clean(merged, plan)
            return cleaned, len(manifest.removed)

        cleaned, removed = cached(("seed-replica", cell.variation), cleaned_everything)
        cleaned = _stratified_subset(cleaned, profile.train_subset, seed)
        weights = class_weights(cleaned) if cell.sampling == "class_weights" else None
        pool = resample(cleaned, cell.sampling, random_state=seed) if cell.sampling in (
            "ros", "smote") else cleaned
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the LeakageWarning is the point of the replica
            train, test = random_split(pool, profile.replica_test_fraction,
                                       random_state=seed, allow_resampled=True)
            train, val = random_split(train, profile.replica_test_fraction,
                                      random_state=seed + 1, allow_resampled=True)
        return Prepared(train, val, {"replica_test": test}, weights,
                        {"removed": removed, "n_train": len(train), "label": REPLICA_LABEL})
    raise ValueError(f"unknown protocol {cell.protocol!r}; expected one of {PROTOCOLS}")


# ---------------------------------------------------------------------- running
def _run_one(prepared: Prepared, cell: Cell, profile: Profile, seed: int) -> dict[str, Any]:
    """Train and evaluate one run; returns metrics per evaluation set."""
    from ferclean.learning import TrainConfig, classification_metrics, predict, train

    config = TrainConfig(model=cell.model, model_kwargs=profile.model_kwargs.get(cell.model, {}),
                         epochs=profile.epochs,
                         batch_size=profile.batch_size, learning_rate=profile.learning_rate,
                         seed=seed, class_weight=prepared.class_weights,
                         drop_remainder=True)  # one step shape: one compilation per run
    result = train((prepared.train, prepared.val), config)
    metrics = {}
    for name, test in prepared.tests.items():
        m = classification_metrics(test.labels, predict(result, test))
        metrics[name] = {"accuracy": m["accuracy"], "loss": m["loss"],
                         "macro_f1": m["macro_f1"], "n": len(test),
                         "confusion": np.asarray(m["confusion_matrix"]).tolist()}
    return {"metrics": metrics, "epochs_run": len(result.history),
            "best_epoch": int(result.best_epoch)}


def _environment() -> dict[str, Any]:
    import ferclean

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "ferclean": ferclean.__version__}
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

    Returns the results dictionary. Runs already in ``out/results.json`` (or in shard
    files) are kept and not recomputed.

    Parameters
    ----------
    ds : FaceDataset or None
        The whole dataset, all three splits; ``None`` only with ``train_missing=False``
        (a merge needs no images).
    profile : Profile or str, default="quick"
    out : path
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
    out.mkdir(parents=True, exist_ok=True)
    results, shard_files = _load_results(out, profile)
    done = set(results["runs"])  # finished anywhere: results.json or any shard file
    if shard is None:
        path, runs = out / "results.json", results["runs"]
    else:  # this shard's file holds only its own runs; the merge summarises
        path = out / SHARD_DIR / f"shard-{shard[0]}-of-{shard[1]}.json"
        path.parent.mkdir(exist_ok=True)
        runs = json.loads(path.read_text())["runs"] if path.exists() else {}
    # The environment is the one that trained: a merge that trains nothing keeps theirs.
    environment = results.get("environment") if not train_missing else None
    results.update(profile=_profile_dict(profile), environment=environment or _environment(),
                   source=ds.source if ds is not None else results.get("source"), runs=runs)
    order = [(cell, seed) for cell in profile.cells for seed in profile.seeds]
    todo = [(position, cell, seed) for position, (cell, seed) in enumerate(order, start=1)
            if train_missing and f"{cell.key}|{seed}" not in done
            and (shard is None or (position - 1) % shard[1] == shard[0])]
    cache: dict[Any, Any] = {}
    for position, cell, seed in todo:
        key = f"{cell.key}|{seed}"
        start = time.perf_counter()
        prepared = prepare(ds, cell, profile, seed, cache)
        outcome = _run_one(prepared, cell, profile, seed)
        runs[key] = {**asdict(cell), "seed": seed, **outcome, **prepared.info,
                     "wall_s": round(time.perf_counter() - start, 2)}
        if progress:
            acc = {k: round(v["accuracy"], 4) for k, v in outcome["metrics"].items()}
            worker = f"shard {shard[0]}/{shard[1]} " if shard else ""
            print(f"{worker}[{position}/{len(order)}] {key}: {acc} ({runs[key]['wall_s']} s)",
                  flush=True)
        # after every run: resumable, and a cut-short run still leaves its results
        if shard is None:
            _save_results(results, out, order)
        else:
            _write_json(path, results)
    if shard is not None:
        return results
    _save_results(results, out, order)  # written before the shard files go
    for shard_file in shard_files:
        shard_file.unlink()
    if (out / SHARD_DIR).is_dir() and not any((out / SHARD_DIR).iterdir()):
        (out / SHARD_DIR).rmdir()
    plot_results(results, out)
    return results


def _load_results(out: Path, profile: Profile) -> tuple[dict[str, Any], list[Path]]:
    """``out/results.json`` with the runs of every shard file merged in, and those files."""
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
            results["runs"].update(data["runs"])
            for key in ("environment", "source"):  # a merge-only call keeps theirs
                results.setdefault(key, data.get(key))
    results.pop("summary", None)  # recomputed from the runs
    return results, shard_files


def _save_results(results: dict[str, Any], out: Path, order: list[tuple[Cell, int]]) -> None:
    """Summary, completeness, ``results.json`` and ``table.md`` from ``results["runs"]``."""
    runs = results["runs"]
    results["summary"] = summarize_runs(runs).to_dict(orient="records")
    results["complete"] = all(f"{cell.key}|{seed}" in runs for cell, seed in order)
    _write_json(out / "results.json", results)
    write_table(results, out / "table.md")


SHARD_DIR = "shards"


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
    out : path
    workers : int, default=2
    progress : bool, default=False
        Let the workers print their per-run lines.

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

    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer; got {workers!r}")
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


def _profile_dict(profile: Profile) -> dict[str, Any]:
    data = asdict(replace(profile, cells=()))
    data["cells"] = [c.key for c in profile.cells]
    data["is_subset"] = profile.is_subset
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=to_plain) + "\n")


# ---------------------------------------------------------------------- statistics
def summarize_runs(runs: dict[str, Any]) -> pd.DataFrame:
    """Mean and standard deviation over seeds per cell and evaluation set, and the paired
    difference to variation A (raw) with the same protocol, sampling, model and seeds.

    Columns: ``protocol``, ``variation``, ``sampling``, ``model``, ``eval``, ``seeds``,
    ``accuracy_mean``, ``accuracy_std``, ``macro_f1_mean``, ``macro_f1_std``,
    ``loss_mean``, ``delta_vs_A``, ``delta_std``, ``p_value`` (paired t-test; NaN with
    fewer than 2 pairs).

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
    from scipy import stats

    rows = []
    for run in runs.values():
        for eval_name, m in run["metrics"].items():
            rows.append({"protocol": run["protocol"], "variation": run["variation"],
                         "sampling": run["sampling"], "model": run["model"],
                         "seed": run["seed"], "eval": eval_name, "accuracy": m["accuracy"],
                         "macro_f1": m["macro_f1"], "loss": m["loss"]})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    keys = ["protocol", "variation", "sampling", "model", "eval"]
    out = []
    for key, part in frame.groupby(keys, sort=False):
        entry = dict(zip(keys, key, strict=True))
        entry.update(seeds=len(part), accuracy_mean=part.accuracy.mean(),
                     accuracy_std=part.accuracy.std(ddof=1) if len(part) > 1 else 0.0,
                     macro_f1_mean=part.macro_f1.mean(),
                     macro_f1_std=part.macro_f1.std(ddof=1) if len(part) > 1 else 0.0,
                     loss_mean=part.loss.mean())
        base = frame[(frame.protocol == entry["protocol"]) & (frame.variation == "A")
                     & (frame.sampling == entry["sampling"]) & (frame.model == entry["model"])
                     & (frame["eval"] == entry["eval"])]
        paired = part.merge(base, on="seed", suffixes=("", "_a"))
        diff = paired.accuracy - paired.accuracy_a
        entry["delta_vs_A"] = diff.mean() if len(diff) else np.nan
        entry["delta_std"] = diff.std(ddof=1) if len(diff) > 1 else np.nan
        if len(diff) > 1 and entry["variation"] != "A" and diff.std(ddof=1) > 0:
            entry["p_value"] = float(stats.ttest_rel(paired.accuracy, paired.accuracy_a).pvalue)
        else:
            entry["p_value"] = np.nan
        out.append(entry)
    return pd.DataFrame(out)


def _fmt(mean: float, std: float) -> str:
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def write_table(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """The study's Table 2, re-run: honest PrivateTest accuracy (and de-leaked) next to
    the seed-replica accuracy, per variation, plus the sampling and model rows.

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
    prof = results["profile"]
    lines = [f"# Benchmark results: profile `{prof['name']}`", ""]
    if not results.get("complete", True):
        done = len(results.get("runs", {}))
        lines += [f"**INCOMPLETE: {done} of {len(prof['cells']) * len(prof['seeds'])} runs "
                  "finished; the missing cells are absent from the tables below.**", ""]
    if prof.get("note"):
        lines += [f"**{prof['note']}**", ""]
    env = results.get("environment", {})
    lines += [f"Seeds: {', '.join(map(str, prof['seeds']))}; epochs: {prof['epochs']}; "
              f"batch {prof['batch_size']}; devices: {', '.join(env.get('devices', []))}.",
              "", "Accuracy in %, mean ± standard deviation over seeds. Δ is the paired "
              "difference to variation A with the same seeds (p from a paired t-test).", ""]
    if summary.empty:
        lines.append("No runs yet.")
    else:
        def cell(protocol, variation, sampling, model, eval_name):
            row = summary[(summary.protocol == protocol) & (summary.variation == variation)
                          & (summary.sampling == sampling) & (summary.model == model)
                          & (summary["eval"] == eval_name)]
            if row.empty:
                return "", ""
            r = row.iloc[0]
            delta = "" if variation == "A" or np.isnan(r.delta_vs_A) else (
                f"{100 * r.delta_vs_A:+.1f}" + (f" (p={r.p_value:.2f})"
                                                if not np.isnan(r.p_value) else ""))
            value = _fmt(r.accuracy_mean, r.accuracy_std)
            if r.seeds < len(prof["seeds"]):  # a cut-short run: say how little it rests on
                value += f" ({r.seeds} of {len(prof['seeds'])} seeds)"
            return value, delta

        for model in summary.model.unique():
            for sampling in SAMPLINGS:
                sub = summary[(summary.model == model) & (summary.sampling == sampling)]
                if sub.empty:
                    continue
                lines += [f"## {model}, sampling `{sampling}`", "",
                          "| variation | plan | honest PrivateTest | Δ | honest PrivateTest "
                          "de-leaked | Δ | seed-replica (flawed protocol) |",
                          "|---|---|---|---|---|---|---|"]
                for variation, plan in VARIATIONS.items():
                    h, hd = cell("honest", variation, sampling, model, "PrivateTest")
                    d, dd = cell("honest", variation, sampling, model, "PrivateTest_deleaked")
                    r, _ = cell("seed-replica", variation, sampling, model, "replica_test")
                    if h or r:
                        lines.append(f"| {variation} | {plan} | {h} | {hd} | {d} | {dd} | "
                                     f"{r} |")
                lines.append("")
        lines += ["The seed-replica column is a " + REPLICA_LABEL + ": it oversamples the "
                  "whole dataset before a random split, so copies of the same image are in "
                  "both training and test data.", ""]
    with atomic_file(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return Path(path)


def plot_results(results: dict[str, Any], out: str | os.PathLike) -> list[Path]:
    """Accuracy per variation with error bars, and the best honest cell's confusion matrix.

    Writes ``accuracy_by_variation.png`` and ``confusion_best.png`` into ``out``; returns
    their paths (none when ``results`` holds no runs).

    Examples
    --------
    >>> import tempfile
    >>> run = {"protocol": "honest", "variation": "A", "sampling": "none",
    ...        "model": "cnn_lstm", "seed": 0, "metrics": {"PrivateTest": {
    ...            "accuracy": 0.6, "macro_f1": 0.5, "loss": 1.1, "confusion": np.eye(7)}}}
    >>> results = {"profile": {"name": "demo"}, "runs": {"r": run},
    ...            "summary": summarize_runs({"r": run}).to_dict(orient="records")}
    >>> [p.name for p in plot_results(results, tempfile.mkdtemp())]
    ['accuracy_by_variation.png', 'confusion_best.png']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    summary = pd.DataFrame(results.get("summary", []))
    written = []
    if summary.empty:
        return written
    sel = summary[summary.model == "cnn_lstm"]
    fig, ax = plt.subplots(figsize=(7.5, 4.3))
    series = [("honest", "PrivateTest", "none", "honest: PrivateTest"),
              ("honest", "PrivateTest_deleaked", "none", "honest: PrivateTest de-leaked"),
              ("seed-replica", "replica_test", "none", "seed-replica (flawed), no resampling"),
              ("seed-replica", "replica_test", "ros",
               "seed-replica (flawed), oversampled before the split: the study's procedure")]
    series = [s for s in series if ((sel.protocol == s[0]) & (sel.sampling == s[2])).any()]
    variations = list(VARIATIONS)
    width = 0.8 / max(len(series), 1)
    for k, (protocol, eval_name, sampling, label) in enumerate(series):
        part = sel[(sel.protocol == protocol) & (sel["eval"] == eval_name)
                   & (sel.sampling == sampling)].set_index("variation").reindex(variations)
        x = np.arange(len(variations)) + (k - (len(series) - 1) / 2) * width
        ax.bar(x, 100 * part.accuracy_mean, width, yerr=100 * part.accuracy_std,
               label=label, capsize=2)
    ax.set_xticks(np.arange(len(variations)), variations)
    ax.set_ylabel("accuracy (%)")
    subset = " (SUBSET PROFILE: see table.md)" if results["profile"].get("is_subset") else ""
    ax.set_title(f"cnn_lstm, mean ± sd over seeds — profile {results['profile']['name']}"
                 f"{subset}", fontsize=9 if subset else None)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.tight_layout()
    fig.savefig(out / "accuracy_by_variation.png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    written.append(out / "accuracy_by_variation.png")

    honest = summary[(summary.protocol == "honest") & (summary["eval"] == "PrivateTest")]
    if not honest.empty:
        best = honest.sort_values("accuracy_mean").iloc[-1]
        conf = np.zeros((len(EMOTIONS), len(EMOTIONS)))
        for run in results["runs"].values():
            if (run["protocol"], run["variation"], run["sampling"], run["model"]) == (
                    "honest", best.variation, best.sampling, best.model):
                conf += np.asarray(run["metrics"]["PrivateTest"]["confusion"])
        norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(4.5, 4))
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(7), EMOTIONS, rotation=45, ha="right")
        ax.set_yticks(range(7), EMOTIONS)
        for i in range(7):
            for j in range(7):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6)
        ax.set_title(f"best honest cell: {best.variation}/{best.sampling}/{best.model}"
                     f"{subset}", fontsize=8 if not subset else 6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.tight_layout()
        fig.savefig(out / "confusion_best.png", dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append(out / "confusion_best.png")
    return written


__all__ = ["Cell", "PROFILES", "Profile", "VARIATIONS", "deleaked", "prepare", "run_suite",
           "run_suite_parallel", "summarize_runs", "write_table"]
