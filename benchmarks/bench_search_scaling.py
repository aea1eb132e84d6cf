"""How exact Hamming search scales: 10k to 1M random 64-bit codes, radius 8.

Usage::

    python benchmarks/bench_search_scaling.py [--brute-max N]

For each size ``n`` the script draws ``n`` uniformly random 64-bit codes (seed 8) and
plants ``n / 100`` neighbours: copies of random codes with 1-8 random bits flipped. It
then finds every pair within radius 8 with :class:`ferclean.similarity.search.HammingIndex`
(multi-index hashing), checks that every planted pair is among them, and records wall and
CPU time (best of 3 below 300k codes, one run above) and the peak memory numpy allocated
during the search (``tracemalloc``). Up to ``--brute-max`` codes (default 30,000) the
brute-force backend (all pairs, numpy popcount) runs too, and the two results must be
equal. Writes ``benchmarks/results/search_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np

from ferclean.similarity.search import HammingIndex

HERE = Path(__file__).resolve().parent
SIZES = (10_000, 30_000, 100_000, 300_000, 1_000_000)
RADIUS = 8


def planted_codes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    k = n // 100
    src = rng.choice(n, k, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), k, replace=False)
    n_flips = rng.integers(1, RADIUS + 1, k)
    # k random bit sets of the drawn sizes: the first n_flips of a random permutation
    ranks = np.argsort(rng.random((k, 64)), axis=1)
    chosen = ranks < n_flips[:, None]
    flips = (chosen.astype(np.uint64) << np.arange(64, dtype=np.uint64)).sum(
        axis=1, dtype=np.uint64)
    codes[dst] = codes[src] ^ flips
    return codes, np.minimum(src, dst), np.maximum(src, dst)


def measure(fn, repeat: int) -> dict:
    walls, cpus, peaks, out = [], [], [], None
    for _ in range(repeat):
        tracemalloc.start()
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    return {"wall_s": round(min(walls), 3), "cpu_s": round(min(cpus), 3),
            "peak_mib": round(min(peaks) / 2**20, 1), "result": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brute-max", type=int, default=30_000)
    args = parser.parse_args()
    rng = np.random.default_rng(8)
    rows = []
    for n in SIZES:
        codes, a, b = planted_codes(n, rng)
        repeat = 3 if n < 300_000 else 1
        index = HammingIndex(radius=RADIUS)
        fit = measure(lambda index=index, codes=codes: index.fit(codes), repeat)
        search = measure(lambda index=index: index.pairs(), repeat)
        found = search.pop("result")
        fit.pop("result")
        got = set(zip(found.query.tolist(), found.index.tolist(), strict=True))
        planted_found = sum((int(x), int(y)) in got for x, y in zip(a, b, strict=True))
        row = {
            "n": n, "planted_pairs": int(len(a)), "planted_found": int(planted_found),
            "pairs_found": int(len(found)), "substrings": index.substrings_,
            "candidates_checked": int(index.n_candidates_),
            "fit": fit, "search": search,
            "total_wall_s": round(fit["wall_s"] + search["wall_s"], 3),
            "total_cpu_s": round(fit["cpu_s"] + search["cpu_s"], 3),
        }
        assert planted_found == len(a), "a planted pair was missed"
        if n <= args.brute_max:
            brute = measure(lambda codes=codes: HammingIndex(radius=RADIUS, backend="brute")
                            .fit(codes).pairs(), 1)
            reference = brute.pop("result")
            assert all(np.array_equal(x, y) for x, y in zip(found, reference, strict=True))
            row["brute_force"] = brute
            row["brute_over_mih_wall"] = round(brute["wall_s"] / row["total_wall_s"], 1)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "substrings"}), flush=True)
    sizes = np.array([r["n"] for r in rows], float)
    walls = np.array([r["total_wall_s"] for r in rows])
    cpus = np.array([r["total_cpu_s"] for r in rows])
    # peak memory numpy held at once: fitting (tables, layout sample) or searching
    peaks = np.array([max(r["fit"]["peak_mib"], r["search"]["peak_mib"]) for r in rows])
    growth = {
        # log-log slope between consecutive sizes: 1 = linear, 2 = quadratic
        "time_exponent_wall": [round(float(x), 2) for x in
                               np.diff(np.log(walls)) / np.diff(np.log(sizes))],
        "time_exponent_cpu": [round(float(x), 2) for x in
                              np.diff(np.log(cpus)) / np.diff(np.log(sizes))],
        "peak_mib": [float(x) for x in peaks],
        "time_10k_to_1M_wall": round(float(walls[-1] / walls[0]), 1),
        "memory_10k_to_1M": round(float(peaks[-1] / peaks[0]), 1),
    }
    result = {"benchmark": "search_scaling", "radius": RADIUS, "seed": 8,
              "machine": {"python": platform.python_version(), "numpy": np.__version__,
                          "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
              "sizes": rows, "growth": growth}
    out = HERE / "results" / "search_scaling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(growth))


if __name__ == "__main__":
    main()
