"""Parameter counts and step times of the reference nets, each with its training preset.

Usage::

    python benchmarks/bench_reference_nets.py [--steps 5] [--warmup 1] [--out PATH]

In one process, on whatever backend JAX picks (CPU here; a GPU when one is present), for
each (net, preset) pair of :data:`CASES`:

* ``n_params`` (trainable) and ``n_batch_stats`` (BatchNorm running statistics), for the
  input side the preset trains on (48, or its crop);
* ``compile_s``: the first :func:`ferclean.learning.train_step` call (tracing, XLA
  compilation, one step) minus the best step;
* ``step_s_best`` and ``step_s_median`` over ``steps`` timed training steps on a batch
  of 64, each step blocked on before the next starts, after ``warmup`` untimed ones. The
  step is the preset's: its optimiser, its augmentation inside the step. The *best* of the
  steps is the figure to quote on a shared machine (others' load only adds time);
* ``predict_s_best``: the best of ``steps`` inference passes over 64 images, without and
  with the preset's test-time augmentation (1, 2 or 10 views).

Batches are random uint8 images (step time does not depend on pixel values). Results are
merged into ``benchmarks/results/reference_nets.json`` under the backend's name, so a GPU
run adds to the CPU figures; the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
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

RESULTS = REPO / "benchmarks" / "results" / "reference_nets.json"
BATCH = 64
SEED = 0
#: (net, training preset, overrides): each net with the recipe it is meant for; the
#: CNN-LSTM also with the augmented recipe, cnn_mha with the study's.
CASES = (
    ("cnn_lstm", "study", {}),
    ("cnn_lstm", "study-augmented", {}),
    ("cnn_mha", "study", {"model": "cnn_mha"}),
    ("vgg", "vgg", {}),
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for name in ("numpy", "jax", "jaxlib", "flax", "optax"):
        out[name] = version(name)
    return out


def _blocked_times(fn: Any, n: int, block: Any) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - t0)
    return times


def bench_case(name: str, preset: str, overrides: dict, steps: int,
               warmup: int) -> dict[str, Any]:
    import jax

    from ferclean.learning import (
        PRNG_IMPL,
        create_train_state,
        predict_proba,
        train_step,
        training_preset,
    )
    from ferclean.learning.models import count_params
    from ferclean.learning.training.model import _module, _trained
    from ferclean.learning.training.steps import input_size

    cfg = training_preset(preset, **overrides, batch_size=BATCH, seed=SEED).validate()
    module = _module(cfg.model, cfg.model_kwargs)
    rng = np.random.default_rng(SEED)
    pool = rng.integers(0, 256, size=(8 * BATCH, 48, 48), dtype=np.uint8)
    labels = rng.integers(0, 7, size=len(pool)).astype(np.int32)
    state = create_train_state(module, cfg, jax.random.key(SEED, impl=PRNG_IMPL))
    key = jax.random.key(SEED + 1, impl=PRNG_IMPL)
    cursor = [0]

    def one_step() -> Any:
        nonlocal state
        start = (cursor[0] * BATCH) % len(pool)
        cursor[0] += 1
        batch = {"image": pool[start:start + BATCH], "label": labels[start:start + BATCH],
                 "weight": np.ones(BATCH, np.float32)}
        state, metrics = train_step(state, batch, key, augment=cfg.augment,
                                    compute_dtype=cfg.compute_dtype)
        return metrics

    block = jax.block_until_ready
    first = _blocked_times(one_step, 1, block)[0]
    _blocked_times(one_step, warmup, block)
    times = _blocked_times(one_step, steps, block)
    trained = _trained(cfg, state.params, state.batch_stats)
    images = pool[:BATCH]
    predict = {}
    for tta in (None, cfg.tta) if cfg.tta else (None,):
        predict_proba(trained, images, batch_size=BATCH, tta=tta)  # compile
        best = min(_blocked_times(lambda t=tta: predict_proba(trained, images, batch_size=BATCH,
                                                              tta=t), steps, block))
        predict[str(tta)] = round(best, 4)
    return {
        "model": name, "preset": preset, "input_side": input_size(cfg.augment),
        "optimizer": cfg.optimizer, "augment": dict(cfg.augment), "tta": cfg.tta,
        "n_params": count_params(state.params),
        "n_batch_stats": count_params(state.batch_stats),
        "batch_size": BATCH,
        "compile_s": round(max(first - min(times), 0.0), 2),
        "steps_timed": steps,
        "step_s_best": round(min(times), 4),
        "step_s_median": round(statistics.median(times), 4),
        "images_per_s_best": round(BATCH / min(times), 1),
        "predict_s_best": predict,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import jax

    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results = []
    for name, preset, overrides in CASES:
        print(f"{name} ({preset}): compiling and timing {args.steps} steps ...", flush=True)
        res = bench_case(name, preset, overrides, args.steps, args.warmup)
        results.append(res)
        print(f"  {res['n_params']:,} params at {res['input_side']}x{res['input_side']}  "
              f"compile {res['compile_s']:.1f}s  step best {res['step_s_best']:.3f}s "
              f"median {res['step_s_median']:.3f}s  predict {res['predict_s_best']}",
              flush=True)
    run = {
        "started": started,
        "hardware": {"backend": jax.default_backend(),
                     "devices": [str(d.device_kind) for d in jax.devices()],
                     "cpu_model": _cpu_model(), "cpu_count": os.cpu_count()},
        "versions": _versions(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "settings": {"steps": args.steps, "warmup": args.warmup, "batch_size": BATCH,
                     "timing": "best (and median) of the timed steps, each blocked on"},
        "cases": {f"{r['model']}/{r['preset']}": r for r in results},
    }
    payload: dict[str, Any] = {"benchmark": "reference_nets", "runs": {}}
    if args.out.exists():
        try:
            payload = json.loads(args.out.read_text())
        except json.JSONDecodeError:
            pass
    payload.setdefault("runs", {})[run["hardware"]["backend"]] = run
    payload["benchmark"] = "reference_nets"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(args.out)  # atomic: a reader never sees half a file
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
