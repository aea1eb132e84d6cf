"""Benchmark :func:`ferclean.io.folder.read_folder` on the real FER-2013 image zip.

Usage::

    python benchmarks/bench_folder_reader.py [ZIP]

``ZIP`` defaults to ``$FERCLEAN_DATA``, else ``../shared/data/fer2013.zip`` relative to the
repository. Times, best of 3 in the same run, in interleaved rounds:

- ``read_folder`` with the default workers (one process per usable CPU),
- ``read_folder(workers=1)`` (in-process, to show what the pool buys),
- a naive reference: a sequential loop of ``zipfile`` + ``PIL.Image.open`` +
  ``np.asarray`` per entry, as one would write it by hand,

checks that the naive reader and ``read_folder`` give the same pixels, prints the times,
ratios and peak RSS, and writes ``benchmarks/results/folder_reader.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from ferclean.io.folder import read_folder  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "folder_reader.json"
REPEATS = 3
TARGET_S = 10.0  # the project's target for the whole zip on a 2-core machine


def naive_read(path: str) -> np.ndarray:
    """The obvious hand-written reader: one entry at a time, in sorted path order."""
    with zipfile.ZipFile(path) as zf:
        names = sorted(
            i.filename
            for i in zf.infolist()
            if not i.is_dir() and i.filename.lower().endswith((".jpg", ".jpeg", ".png"))
        )
        images = []
        for name in names:
            with zf.open(name) as f, Image.open(f) as im:
                images.append(np.asarray(im.convert("L")))
    return np.stack(images)


def best_of(
    fns: dict[str, Callable[[], Any]], repeats: int = REPEATS
) -> dict[str, tuple[float, list[float], Any]]:
    """Time every function ``repeats`` times, interleaved: (best, all times, last result).

    Interleaving rounds (a, b, c, a, b, c, ...) spreads load from other processes on a
    shared machine over all contenders instead of penalising whichever ran during it.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            results[name] = None  # free the previous result before the next run
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {name: (min(t), t, results[name]) for name, t in times.items()}


def usable_cpus() -> int | None:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


_PEAK_RSS_CODE = """
import resource, sys
sys.path.insert(0, {repo!r})
from ferclean.io.folder import read_folder

def own_peak_kib():
    # VmHWM is this process's own high-water mark. ru_maxrss is not: Linux carries it
    # over from the parent through fork and exec.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (
            1024 if sys.platform == "darwin" else 1
        )

base = own_peak_kib()
ds = read_folder({path!r}, workers={workers!r})
print(base, own_peak_kib(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def single_read_peak_rss(path: str, workers: int | None) -> tuple[float, float, float]:
    """Peak RSS (MiB) of one ``read_folder`` call in a fresh interpreter.

    Returns (peak after importing ferclean, peak after the read, largest worker's peak;
    a forked worker's figure includes pages it shares with the main process). A fresh
    interpreter keeps the repeats and the naive reader of this process out of it.
    """
    code = _PEAK_RSS_CODE.format(repo=str(REPO), path=path, workers=workers)
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    worker_scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024
    return int(out[0]) / 1024, int(out[1]) / 1024, int(out[2]) * worker_scale


def default_zip() -> str:
    return os.environ.get("FERCLEAN_DATA") or str(REPO.parent / "shared" / "data" / "fer2013.zip")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zip", nargs="?", default=default_zip(), help="FER-2013 image zip")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON result file")
    args = parser.parse_args(argv)
    if not Path(args.zip).is_file():
        parser.error(f"{args.zip}: no such file (pass the zip or set FERCLEAN_DATA)")

    cpus = os.cpu_count()
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"zip: {args.zip}  cpus: {cpus}  python {platform.python_version()}", flush=True)

    # Memory first, in fresh interpreters, before this process holds any data.
    rss_base, rss_ours, rss_workers = single_read_peak_rss(args.zip, None)
    _, rss_seq, _ = single_read_peak_rss(args.zip, 1)
    timed = best_of(
        {
            "parallel": lambda: read_folder(args.zip),
            "workers1": lambda: read_folder(args.zip, workers=1),
            "naive": lambda: naive_read(args.zip),
        },
        args.repeats,
    )
    par_s, par_all, ds = timed["parallel"]
    seq_s, seq_all, ds1 = timed["workers1"]
    naive_s, naive_all, naive = timed["naive"]
    print(f"read_folder (workers=default): best {par_s:.2f} s  {_fmt(par_all)}")
    print(f"read_folder (workers=1):       best {seq_s:.2f} s  {_fmt(seq_all)}")
    print(f"naive sequential reader:       best {naive_s:.2f} s  {_fmt(naive_all)}")

    same = bool(np.array_equal(naive, ds.pixels) and ds.equals(ds1, ids=True))
    print(
        f"images: {len(ds)}  splits: {ds.split_counts()}  identical to naive: {same}\n"
        f"speed-up vs naive: {naive_s / par_s:.2f}x  (workers=1: {naive_s / seq_s:.2f}x; "
        f"pool vs in-process: {seq_s / par_s:.2f}x)\n"
        f"peak RSS of one read: {rss_ours:.0f} MiB (after imports: {rss_base:.0f} MiB; each "
        f"worker <= {rss_workers:.0f} MiB incl. shared pages); workers=1: {rss_seq:.0f} MiB; "
        f"the pixels alone: {ds.pixels.nbytes / 2**20:.0f} MiB\n"
        f"target <= {TARGET_S:.0f} s: {'met' if par_s <= TARGET_S else 'MISSED'}"
    )

    result = {
        "benchmark": "folder_reader",
        "zip": str(args.zip),
        "zip_bytes": Path(args.zip).stat().st_size,
        "n_images": len(ds),
        "split_counts": ds.split_counts(),
        "repeats": args.repeats,
        "read_folder_s": round(par_s, 3),
        "read_folder_all_s": [round(t, 3) for t in par_all],
        "read_folder_workers1_s": round(seq_s, 3),
        "read_folder_workers1_all_s": [round(t, 3) for t in seq_all],
        "naive_s": round(naive_s, 3),
        "naive_all_s": [round(t, 3) for t in naive_all],
        "speedup_vs_naive": round(naive_s / par_s, 2),
        "speedup_pool_vs_workers1": round(seq_s / par_s, 2),
        "identical_to_naive": same,
        "target_s": TARGET_S,
        "target_met": par_s <= TARGET_S,
        "peak_rss_after_imports_mib": round(rss_base, 1),
        "peak_rss_mib": round(rss_ours, 1),
        "peak_rss_worker_mib": round(rss_workers, 1),
        "peak_rss_workers1_mib": round(rss_seq, 1),
        "pixels_mib": round(ds.pixels.nbytes / 2**20, 1),
        "hardware": {
            "cpu_count": cpus,
            "usable_cpus": usable_cpus(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            # the machine may be shared: a load above 0 means the times are pessimistic
            "load_average_1min_before": load_before,
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if same else 1


def _fmt(times: list[float]) -> str:
    return "(" + ", ".join(f"{t:.2f}" for t in times) + ")"


if __name__ == "__main__":
    raise SystemExit(main())
