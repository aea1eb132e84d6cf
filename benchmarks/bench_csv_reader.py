"""Loader benchmark: ferclean's CSV reader against a naive pandas + ``str.split`` reader.

Usage::

    python benchmarks/bench_csv_reader.py [FER2013_ZIP_OR_CSV]

With a zip (default: ``$FERCLEAN_DATA`` or ``../shared/data/fer2013.zip``), the Kaggle CSV
is first built from it with ``ferclean.io.convert`` into ``benchmarks/data/`` (ignored by
git). Both readers run in this same process, best of three; the ratio is what the target
is stated in. Peak memory is measured in a child process per reader (peak RSS above the
RSS after imports) and compared with the budget ``3 x (pixel array + file size)``.
Results go to ``benchmarks/results/csv_reader.json``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def naive_read(path: Path) -> np.ndarray:
    """The reference: what most FER-2013 notebooks do."""
    frame = pd.read_csv(path)
    rows = frame["pixels"].str.split(" ")
    return np.stack([np.asarray(r, dtype=np.uint8) for r in rows]).reshape(-1, 48, 48)


def ferclean_read(path: Path) -> np.ndarray:
    from ferclean.io.csv import read_csv

    return read_csv(path).pixels


def best_of(fn, path: Path, repeat: int = 3) -> tuple[float, np.ndarray]:
    times = []
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(path)
        times.append(time.perf_counter() - start)
    return min(times), out


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def child_peak(reader: str, path: Path) -> float:
    """Peak RSS (MB) a reader adds in a fresh process, above the RSS after imports."""
    # the file is memory-mapped: its pages count in RSS while touched, as they should
    # VmHWM belongs to the new address space; ru_maxrss would carry the parent's peak
    # across fork+exec.
    code = (
        "import sys, numpy, pandas\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "import bench_csv_reader as b, ferclean.io.csv\n"
        "base = b._status_kb('VmRSS')\n"
        f"b.{reader}(b.Path({str(path)!r}))\n"
        "print(b._status_kb('VmHWM') - base)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def build_csv(source: Path) -> Path:
    if source.suffix.lower() == ".csv":
        return source
    target = HERE / "data" / "fer2013.csv"
    if not target.exists():
        from ferclean.io import convert

        print(f"building {target} from {source} with ferclean.io.convert ...")
        convert(source, target)
    return target


def main() -> None:
    default = os.environ.get("FERCLEAN_DATA", str(REPO.parent / "shared/data/fer2013.zip"))
    source = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    path = build_csv(source)
    size_mb = path.stat().st_size / 1e6

    t_fast, fast = best_of(ferclean_read, path)
    t_naive, naive = best_of(naive_read, path, repeat=2)
    assert np.array_equal(fast, naive), "readers disagree"
    pixel_mb = fast.nbytes / 1e6
    peak_fast = child_peak("ferclean_read", path)
    peak_naive = child_peak("naive_read", path)
    budget = 3 * (pixel_mb + size_mb)

    result = {
        "benchmark": "csv_reader",
        "file": path.name,
        "file_mb": round(size_mb, 1),
        "images": int(len(fast)),
        "ferclean_s": round(t_fast, 3),
        "naive_s": round(t_naive, 3),
        "speedup": round(t_naive / t_fast, 2),
        "target_s": 1.0,
        "ferclean_peak_mb": round(peak_fast, 1),
        "naive_peak_mb": round(peak_naive, 1),
        "peak_budget_mb": round(budget, 1),
        "hardware": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "load_avg_at_end": os.getloadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
        },
    }
    out = HERE / "results" / "csv_reader.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
