"""Training speed of the reference models: time per step and per (extrapolated) epoch.

Usage::

    python benchmarks/bench_training.py [--models cnn_lstm,cnn_mha] [--steps 30]
                                        [--batch-size 64] [--out PATH]

For each model, on whatever backend JAX picks (CPU here; a GPU when one is present):

1. ``compile_s``: wall time of the first :func:`ferclean.learning.train_step` call
   (tracing, XLA compilation and one step), minus one measured step;
2. ``warmup`` further steps, not timed;
3. ``steps`` timed steps (wall and process CPU time), blocking once at the end, so the
   host prepares batch k+1 while the device runs step k, as in :func:`train`;
4. the same for :func:`ferclean.learning.eval_step` at batch 256 (validation);
5. an epoch over FER-2013's Training split (28,709 images, 449 steps of 64) plus one
   validation pass over PublicTest (3,589 images), extrapolated from the median step.

Batches are random uint8 images indexed from one array with a seeded permutation, the
same pipeline as training; the step time does not depend on pixel values. Results are
merged into ``benchmarks/results/training_speed.json`` under the backend's name
(``cpu``, ``gpu``), so a later GPU run adds to the CPU figures instead of replacing them.
The load average is recorded before and after: on a shared machine it explains noise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

RESULTS = REPO / "benchmarks" / "results" / "training_speed.json"
N_TRAIN, N_VAL = 28_709, 3_589  # FER-2013 Training and PublicTest sizes
EVAL_BATCH = 256
SEED = 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _hardware(jax: Any) -> dict[str, Any]:
    devices = jax.devices()
    return {
        "backend": jax.default_backend(),
        "devices": [str(d.device_kind) for d in devices],
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("numpy", "jax", "jaxlib", "flax", "optax"):
        out[name] = version(name)
    return out


def _timed(fn: Any, n: int, block: Any) -> tuple[float, float, list[float]]:
    """Run ``fn`` ``n`` times; per-step wall times (each blocked) and total wall/CPU."""
    per_step = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        block(fn())
        per_step.append(time.perf_counter() - t0)
    return time.perf_counter() - wall0, time.process_time() - cpu0, per_step


def bench_model(name: str, steps: int, warmup: int, batch_size: int) -> dict[str, Any]:
    import jax

    from ferclean.learning import (
        PRNG_IMPL,
        TrainConfig,
        create_train_state,
        eval_step,
        train_step,
    )
    from ferclean.learning.models import count_params
    from ferclean.learning.training.model import _module  # cached: the loop's jit caches hit

    cfg = TrainConfig(model=name, batch_size=batch_size, seed=SEED)
    module = _module(name, {})
    rng = np.random.default_rng(SEED)
    # A pool of random images to index batches from, like the Training array in train().
    pool = rng.integers(0, 256, size=(4096, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, size=4096).astype(np.int32)
    weights = np.ones(4096, np.float32)
    order = rng.permutation(len(pool))

    t0 = time.perf_counter()
    state = create_train_state(module, cfg, jax.random.key(SEED, impl=PRNG_IMPL))
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    dropout_key = jax.random.key(SEED + 1, impl=PRNG_IMPL)

    cursor = [0]

    def next_batch(size: int) -> dict[str, np.ndarray]:
        start = cursor[0] % (len(pool) - size)
        idx = order[start:start + size]
        cursor[0] += size
        return {"image": pool[idx], "label": labels[idx], "weight": weights[idx]}

    def one_train_step() -> Any:
        nonlocal state
        state, metrics = train_step(state, next_batch(batch_size), dropout_key)
        return metrics

    block = jax.block_until_ready
    first_wall, _, _ = _timed(one_train_step, 1, block)
    _timed(one_train_step, warmup, block)
    # Throughput: dispatch all steps, block once (as the training loop does).
    wall0, cpu0 = time.perf_counter(), time.process_time()
    last = None
    for _ in range(steps):
        last = one_train_step()
    block((state, last))
    train_wall, train_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    # Per-step latency spread, blocking after each step.
    _, _, per_step = _timed(one_train_step, min(steps, 10), block)
    step_s = train_wall / steps

    def one_eval_step() -> Any:
        return eval_step(state, next_batch(EVAL_BATCH))

    eval_first, _, _ = _timed(one_eval_step, 1, block)
    _timed(one_eval_step, 2, block)
    eval_wall, eval_cpu, _ = _timed(one_eval_step, max(5, steps // 3), block)
    n_eval = max(5, steps // 3)
    eval_step_s = eval_wall / n_eval

    steps_per_epoch = math.ceil(N_TRAIN / batch_size)
    eval_batches = math.ceil(N_VAL / EVAL_BATCH)
    epoch_s = steps_per_epoch * step_s + eval_batches * eval_step_s
    return {
        "model": name,
        "n_params": count_params(state.params),
        "batch_size": batch_size,
        "init_s": round(init_s, 3),
        "compile_s": round(max(first_wall - step_s, 0.0), 3),
        "steps_timed": steps,
        "step_s": round(step_s, 4),
        "step_cpu_s": round(train_cpu / steps, 4),
        "cpu_per_wall": round(train_cpu / train_wall, 2),
        "step_s_blocking_median": round(statistics.median(per_step), 4),
        "step_s_blocking_min": round(min(per_step), 4),
        "images_per_s": round(batch_size / step_s, 1),
        "eval_batch_size": EVAL_BATCH,
        "eval_compile_s": round(max(eval_first - eval_step_s, 0.0), 3),
        "eval_step_s": round(eval_step_s, 4),
        "eval_step_cpu_s": round(eval_cpu / n_eval, 4),
        "epoch": {
            "train_images": N_TRAIN,
            "steps": steps_per_epoch,
            "val_images": N_VAL,
            "val_batches": eval_batches,
            "extrapolated_s": round(epoch_s, 1),
            "extrapolated_min": round(epoch_s / 60, 2),
            "extrapolated_cpu_s": round(
                steps_per_epoch * train_cpu / steps + eval_batches * eval_cpu / n_eval, 1
            ),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="cnn_lstm,cnn_mha")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import jax

    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results = []
    for name in args.models.split(","):
        print(f"{name}: compiling and timing {args.steps} steps ...", flush=True)
        res = bench_model(name, args.steps, args.warmup, args.batch_size)
        results.append(res)
        print(
            f"  {res['n_params']:,} params  compile {res['compile_s']:.1f}s  "
            f"step {res['step_s'] * 1000:.0f} ms (cpu {res['step_cpu_s'] * 1000:.0f} ms, "
            f"{res['images_per_s']:.0f} img/s)  eval step {res['eval_step_s'] * 1000:.0f} ms"
            f"  epoch ~{res['epoch']['extrapolated_min']:.1f} min",
            flush=True,
        )
    run = {
        "started": started,
        "hardware": _hardware(jax),
        "versions": _versions(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "settings": {"steps": args.steps, "warmup": args.warmup,
                     "batch_size": args.batch_size, "eval_batch_size": EVAL_BATCH},
        "models": {r["model"]: r for r in results},
    }
    payload: dict[str, Any] = {"benchmark": "training_speed", "runs": {}}
    if args.out.exists():
        try:
            payload = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            pass
    payload.setdefault("runs", {})[run["hardware"]["backend"]] = run
    payload["benchmark"] = "training_speed"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
