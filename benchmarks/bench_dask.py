"""Dask engine benchmark: a synthetic corpus from the real images, audited at growing N.

Usage::

    python benchmarks/bench_dask.py [FER2013_ZIP] [--sizes 100000 1000000]
        [--partition-sizes 25000 100000] [--work /tmp/ferclean-dask-bench] [--memory-max N]

The corpus (written as ferclean Parquet shards under ``--work``, never in the repository,
because it is made of FER-2013's pixels):

* the real FER-2013 images themselves (the first 35,887 rows, when N allows);
* **base images**: a real image blended with a face from :mod:`ferclean.demo`'s generator
  (weight 0.45-0.75 on the real one), mirrored half of the time: distinct, face-like
  images, cheap to make by the million (drawing a million demo faces takes ~20 minutes
  here, blending them takes seconds);
* **planted near copies** (1 % of N): an earlier image edited by one of the demo's near
  edits (JPEG, brightness, contrast, gamma, noise, blur, shift, crop, rotation), its source
  drawn from the current or the previous chunk, so copies cross shard boundaries;
* **planted exact copies** (0.5 %), a third of them with another label (conflicts);
* **planted non-faces** (0.2 %): the demo's text, blank, chart, gradient, noise and
  drawing images.

Each N is audited by the in-memory engine (``ferclean.audit`` over the loaded shards,
where it fits) and by the Dask engine on a ``LocalCluster`` of 2 single-threaded worker
processes at each partition size, each in its own subprocess. Measured: wall time, the
peak memory of every worker (sampled every 0.2 s) and of the in-memory process, and the
recall of the planted copies (a planted pair counts when both images share a duplicate
group) and of the planted non-faces (flagged as outliers). Results go to
``benchmarks/results/dask.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ferclean.dataset import FaceDataset

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "dask.json"
SEED = 2026
CHUNK = 50_000  # rows generated at a time (one chunk's pixels in memory: 115 MB)
COPY_RATE, EXACT_RATE, NONFACE_RATE = 0.01, 0.005, 0.002
EDITS = ("jpeg", "brightness", "contrast", "gamma", "noise", "blur", "shift", "crop", "rotate")
FACE_POOL = 4000


# --------------------------------------------------------------------------- corpus
def _real_images(path: str | None) -> FaceDataset:
    import ferclean

    if path and Path(path).exists():
        return ferclean.load(path)
    from ferclean.demo import demo_dataset  # no real data: the demo's faces stand in

    return demo_dataset(n_faces=3000)


def _non_face(rng: np.random.Generator) -> np.ndarray:
    from ferclean.demo.nonfaces import _NON_FACES, _blank

    kinds = (*_NON_FACES, "blank")
    kind = kinds[int(rng.integers(len(kinds)))]
    return _blank(rng, int(rng.integers(256))) if kind == "blank" else _NON_FACES[kind](rng)


def write_corpus(real: FaceDataset, n: int, folder: Path, *, shard_size: int,
                 seed: int = SEED) -> dict:
    """Write ``n`` synthetic images as Parquet shards in ``folder``; return the truth.

    The truth lists the planted near pairs (source row, copy row, edit), exact pairs and
    non-face rows.
    """
    from ferclean._outputs import output_dir
    from ferclean.demo.edits import _EDITS
    from ferclean.demo.faces import _draw_faces
    from ferclean.io.parquet import SHARD_FILES, _ShardWriter, dataset_table

    rng = np.random.default_rng(seed)
    faces = _draw_faces(rng, (np.arange(FACE_POOL) % 7).astype(np.int8)).astype(np.float32)
    real_px = real.pixels
    label_p = np.bincount(real.labels[real.labels >= 0], minlength=7) / (real.labels >= 0).sum()
    truth: dict[str, list] = {"near": [], "exact": [], "non_face": []}
    previous = np.empty((0, 48, 48), np.uint8)
    with output_dir(folder, what="benchmark corpus", overwrite=True,
                    known=SHARD_FILES) as tmp:
        writer = _ShardWriter(tmp, shard_size, f"synthetic corpus of {n} images")
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            rows = np.arange(start, start + m)
            px = np.empty((m, 48, 48), np.uint8)
            n_real = int(np.clip(len(real_px) - start, 0, m))
            px[:n_real] = real_px[start:start + n_real]
            if m > n_real:  # base images: a real face blended with a drawn one
                k = m - n_real
                a = rng.uniform(0.45, 0.75, size=(k, 1, 1)).astype(np.float32)
                mix = (a * real_px[rng.integers(len(real_px), size=k)]
                       + (1 - a) * faces[rng.integers(FACE_POOL, size=k)])
                mirror = rng.random(k) < 0.5
                mix[mirror] = mix[mirror, :, ::-1]
                px[n_real:] = np.clip(np.rint(mix), 0, 255).astype(np.uint8)
            labels = rng.choice(7, size=m, p=label_p).astype(np.int8)
            splits = rng.choice(3, size=m, p=[0.8, 0.1, 0.1]).astype(np.int8)
            # Planted rows: never the real images, so the truth is only what we planted.
            kind = rng.random(m)
            plant = np.arange(m) >= n_real
            near = np.flatnonzero(plant & (kind < COPY_RATE))
            exact = np.flatnonzero(plant & (kind >= COPY_RATE) & (kind < COPY_RATE + EXACT_RATE))
            nonface = np.flatnonzero(plant & (kind >= 1 - NONFACE_RATE))
            # Sources: any image of the previous chunk (final pixels) or an unplanted one
            # of this chunk, so copies cross shard boundaries and never chain.
            base = np.setdiff1d(np.arange(m), np.concatenate([near, exact, nonface]))
            source_rows = np.concatenate([np.arange(start - len(previous), start),
                                          rows[base]])
            pool = np.concatenate([previous, px[base]])
            for i in near:
                src = int(rng.integers(len(pool)))
                edit = EDITS[int(rng.integers(len(EDITS)))]
                px[i] = _EDITS[edit](pool[src], rng)
                truth["near"].append((int(source_rows[src]), int(rows[i]), edit))
            for i in exact:
                src = int(rng.integers(len(pool)))
                px[i] = pool[src]
                if rng.random() < 1 / 3:
                    labels[i] = (labels[i] + 1 + rng.integers(6)) % 7
                truth["exact"].append((int(source_rows[src]), int(rows[i])))
            for i in nonface:
                px[i] = _non_face(rng)
                truth["non_face"].append(int(rows[i]))
            chunk = FaceDataset(px, labels, splits, ids=[f"s{r}" for r in rows], rows=rows)
            writer.add(dataset_table(chunk))
            previous = px
        writer.close()
    return truth


# --------------------------------------------------------------------------- measuring
def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def recall(findings, truth: dict) -> dict:
    """Recall of the planted pairs (both images in one group) and non-faces (flagged)."""
    out = {}

    def same_group(issues: tuple[str, ...], pairs: list) -> float:
        if not pairs:
            return float("nan")
        sub = findings[findings.issue.isin(issues)]
        key = dict(zip(zip(sub.issue, sub.row, strict=True), sub.group, strict=True))
        hit = 0
        for src, copy, *_ in pairs:
            hit += any(key.get((i, src), -1) == key.get((i, copy), -2) for i in issues)
        return hit / len(pairs)

    out["near_copies"] = same_group(("near_duplicate", "exact_duplicate"), truth["near"])
    out["exact_copies"] = same_group(("exact_duplicate",), truth["exact"])
    flagged = set(findings.row[findings.issue == "outlier"])
    nf = truth["non_face"]
    out["non_faces"] = sum(r in flagged for r in nf) / len(nf) if nf else float("nan")
    return out


class _WorkerMemory:
    """Samples every worker's resident memory every ``every`` seconds; keeps the peaks."""

    def __init__(self, client, every: float = 0.2) -> None:
        self.client, self.every, self.peak = client, every, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for worker, rss in self.client.run(_rss_mib).items():
                    self.peak[worker] = max(self.peak.get(worker, 0.0), rss)
            except Exception:  # a worker restarting between samples: try again
                pass
            self._stop.wait(self.every)

    def __enter__(self) -> _WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def audit_once(folder: Path, engine: str, partition_size: int | None, truth_file: Path) -> dict:
    """One audit of ``folder`` (run in a fresh subprocess by :func:`main`)."""
    import pandas as pd

    import ferclean

    truth = json.loads(truth_file.read_text())
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    if engine == "memory":
        ds = ferclean.load(folder)
        result = ferclean.audit(ds)
        wall = time.perf_counter() - t0
        peak = {"process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    else:
        import logging

        from dask.distributed import Client, LocalCluster

        # The engine logs each stage's time at DEBUG ("hashing: 12.34 s").
        class _Stages(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                desc, _, took = record.getMessage().rpartition(": ")
                if took.endswith(" s"):
                    stages[desc] = float(took[:-2])

        engine_log = logging.getLogger("ferclean.engines.dask")
        engine_log.setLevel(logging.DEBUG)
        engine_log.addHandler(_Stages())
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            with _WorkerMemory(client) as memory:
                t0 = time.perf_counter()
                result = ferclean.audit(folder, engine="dask", client=client,
                                        partition_size=partition_size)
                wall = time.perf_counter() - t0
            peak = dict(memory.peak)
    findings = result.findings if isinstance(result.findings, pd.DataFrame) else None
    return {"engine": engine, "partition_size": partition_size, "wall_s": round(wall, 2),
            "peak_mib": {k: round(v, 1) for k, v in peak.items()},
            "findings": int(len(findings)), "recall": recall(findings, truth),
            **({"stages_s": stages} if engine == "dask" else {})}


ROW_BYTES = 8 + 8 + 2 + 1  # a shuffled search row: route key, code, row id, transform
HASH_ROW_BYTES = 16 + 8 + 8 + 2  # a content-hash row: hash, row, position, split+label


def estimate(real: FaceDataset, sizes: tuple[int, ...] = (10**5, 10**6, 10**8, 10**9),
             *, sample: int = 600, seed: int = SEED) -> list[dict]:
    """On paper: the near search's layout, shuffle volume, bucket rows and comparisons.

    The layout is the one the engine would pick (:meth:`BucketLayout.auto`) from a seeded
    sample of the real images' plain hashes; comparisons are its expected count, ``N * V
    * N * sum_i P(d_i <= t_i)`` with ``P`` measured on the sample's pairs (faces are
    clustered, so this is above the uniform rate). No timing here: the measured per-item
    costs are applied in ``docs/distributed.md``.
    """
    from ferclean.engines.dask_near import _KEY_BITS, BucketLayout, _substring
    from ferclean.similarity.hashing import popcount
    from ferclean.similarity.near_hash import near_hashes
    from ferclean.similarity.search import _n_probes

    rng = np.random.default_rng(seed)
    codes = near_hashes(real.pixels[rng.choice(len(real), sample, replace=False)])
    n_variants = codes.shape[1]
    plain = codes[:, 0]
    out = []
    for n in sizes:
        layout = BucketLayout.auto(plain, n, n_variants, 8)
        first, second = np.triu_indices(len(plain), k=1)
        xor = plain[first] ^ plain[second]
        within = 0.0
        for start, length, t in layout.substrings:
            if t >= 0:
                d = popcount(_substring(xor, start, length))
                within += max(float(np.mean(d <= t)), _n_probes(length, t) / 2.0**length)
        shuffle = layout.shuffle_rows_per_image(n_variants, 7)
        out.append({
            "n": n, "layout": [[int(a), int(b), int(c)] for a, b, c in layout.substrings],
            "shuffle_rows_per_image": int(shuffle),
            "bucket_rows_per_image": int(layout.rows_per_image(n_variants)),
            "near_shuffle_gib": round(n * shuffle * ROW_BYTES / 2**30, 1),
            "hash_shuffle_gib": round(n * HASH_ROW_BYTES / 2**30, 2),
            "pixels_gib": round(n * 2304 / 2**30, 1),
            "comparisons": float(f"{float(n) * n_variants * n * within:.3g}"),
            "comparisons_per_image": float(f"{float(n) * n_variants * within:.3g}"),
            "route_bits": 7, "max_key_bits": _KEY_BITS})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=os.environ.get(
        "FERCLEAN_DATA", "/work/shared/data/fer2013.zip"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--partition-sizes", type=int, nargs="+", default=[25_000, 100_000])
    parser.add_argument("--shard-size", type=int, default=25_000)
    parser.add_argument("--memory-max", type=int, default=1_000_000,
                        help="largest N also audited by the in-memory engine")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ferclean-dask-bench"))
    parser.add_argument("--_audit", nargs=4, metavar=("FOLDER", "ENGINE", "PART", "TRUTH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--estimate-only", action="store_true",
                        help="only (re)write the on-paper estimate for 100k to 1B images")
    args = parser.parse_args(argv)
    if args._audit:
        folder, engine, part, truth = args._audit
        row = audit_once(Path(folder), engine, int(part) or None, Path(truth))
        print("RESULT " + json.dumps(row))
        return 0
    real = _real_images(args.data)
    if args.estimate_only:
        document = json.loads(RESULTS.read_text()) if RESULTS.exists() else _document(args, [])
        document["estimate"] = estimate(real)
        RESULTS.write_text(json.dumps(document, indent=1) + "\n")
        print(json.dumps(document["estimate"], indent=1))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    # Sizes measured in earlier calls stay; a size measured again is replaced.
    kept = json.loads(RESULTS.read_text())["sizes"] if RESULTS.exists() else []
    sizes = [s for s in kept if s["n"] not in args.sizes]
    for n in args.sizes:
        folder = args.work / f"corpus-{n}"
        t0 = time.perf_counter()
        truth = write_corpus(real, n, folder, shard_size=args.shard_size)
        written = time.perf_counter() - t0
        truth_file = args.work / f"truth-{n}.json"
        truth_file.write_text(json.dumps(truth))
        disk = sum(f.stat().st_size for f in folder.iterdir())
        entry = {"n": n, "write_s": round(written, 1), "disk_mib": round(disk / 2**20, 1),
                 "planted": {k: len(v) for k, v in truth.items()}, "runs": []}
        plans = [("dask", p) for p in args.partition_sizes]
        if n <= args.memory_max:
            plans.insert(0, ("memory", 0))
        for engine, part in plans:
            cmd = [sys.executable, __file__, "--_audit", str(folder), engine, str(part),
                   str(truth_file)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode or not lines:
                entry["runs"].append({"engine": engine, "partition_size": part or None,
                                      "failed": done.stderr.strip().splitlines()[-3:]})
            else:
                entry["runs"].append(json.loads(lines[-1][7:]))
            print(n, entry["runs"][-1], flush=True)
        sizes.append(entry)
        sizes.sort(key=lambda s: s["n"])
        document = _document(args, sizes)
        if RESULTS.exists() and "estimate" in json.loads(RESULTS.read_text()):
            document["estimate"] = json.loads(RESULTS.read_text())["estimate"]
        RESULTS.write_text(json.dumps(document, indent=1) + "\n")
    return 0


def _document(args, sizes: list[dict]) -> dict:
    return {"benchmark": "dask_engine", "machine": {
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg()},
        "cluster": "LocalCluster: 2 worker processes, 1 thread each",
        "shard_size": args.shard_size, "sizes": sizes}


if __name__ == "__main__":
    raise SystemExit(main())
