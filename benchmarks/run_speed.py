"""Run every auditing-side speed benchmark and print the measured ratios.

Usage::

    python benchmarks/run_speed.py [FER2013_ZIP]

Each benchmark runs its reference implementation in the same run and writes
``benchmarks/results/<name>.json``; this script runs them one after another (so they do
not compete for the two cores) and prints one line per measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# script, its results file, and the figures to print: (label, key path, unit)
BENCHMARKS = [
    ("bench_csv_reader.py", "csv_reader.json", [
        ("CSV reader (s)", ("ferclean_s",), "s"),
        ("naive pandas + str.split (s)", ("naive_s",), "s"),
        ("speed-up", ("speedup",), "x"),
        ("peak MB / budget", ("ferclean_peak_mb",), "MB"),
    ]),
    ("bench_folder_reader.py", "folder_reader.json", [
        ("zip reader (s)", ("read_folder_s",), "s"),
        ("naive zip loop (s)", ("naive_s",), "s"),
        ("speed-up", ("speedup_vs_naive",), "x"),
    ]),
    ("bench_audit.py", "audit.json", [
        ("auditors without near (s)", ("seconds", "auditors_without_near"), "s"),
        ("all auditors incl. near (s)", ("seconds", "all_auditors"), "s"),
        ("exact grouping (s)", ("seconds", "exact_grouping"), "s"),
        ("np.unique(axis=0) / ferclean", ("ratios", "np_unique_over_ferclean_grouping"), "x"),
        ("md5 loop / ferclean", ("ratios", "md5_loop_over_ferclean_grouping"), "x"),
    ]),
    ("bench_near.py", "near.json", [
        ("pHash of every image (s)", ("speed", "hash_images_phash", "wall_s"), "s"),
        ("imagehash loop / ferclean pHash", ("speed", "ratios",
                                              "imagehash_loop_over_hash_images_phash"), "x"),
        ("17 search hashes (s)", ("speed", "near_hashes_17_transforms", "wall_s"), "s"),
        ("search + verification (s)", ("speed", "search_and_verification", "wall_s"), "s"),
        ("brute force, plain pHash r8 (s)", ("speed", "reference_brute_force_plain_phash_r8",
                                             "wall_s"), "s"),
        ("brute / multi-index, plain pHash", ("speed", "ratios", "brute_over_mih_plain_phash"),
         "x"),
        ("brute plain / near search+verify", ("speed", "ratios",
                                               "brute_plain_over_near_search_and_verification"),
         "x"),
    ]),
    ("bench_search_scaling.py", "search_scaling.json", [
        (f"{n:>9,} hashes: search (s)", ("sizes", i, "total_wall_s"), "s")
        for i, n in enumerate([10_000, 30_000, 100_000, 300_000, 1_000_000])
    ]),
]


def _get(data: dict, path: tuple[str, ...]):
    for key in path:
        data = data[key]
    return data


def main() -> int:
    args = sys.argv[1:]
    failed = []
    for script, result, figures in BENCHMARKS:
        if not (HERE / script).exists():
            print(f"-- {script}: not present, skipped")
            continue
        print(f"== {script}", flush=True)
        run = subprocess.run([sys.executable, str(HERE / script), *args],
                             capture_output=True, text=True, env=os.environ.copy())
        if run.returncode != 0:
            failed.append(script)
            print(run.stdout[-2000:], run.stderr[-2000:])
            continue
        data = json.loads((HERE / "results" / result).read_text())
        if not figures:  # print the benchmark's own top-level numbers
            figures = [(k, (k,), "") for k, v in data.items() if isinstance(v, int | float)]
        for label, path, unit in figures:
            try:
                print(f"   {label:40s} {_get(data, path)} {unit}")
            except (KeyError, IndexError):
                print(f"   {label:40s} (missing)")
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
