"""Fused CNN-LSTM training steps by ``lstm_unroll``: what unrolling the LSTM loops buys.

Usage::

    python benchmarks/bench_lstm_unroll.py [--unrolls 1,5,25] [--steps-per-call 50]
                                           [--calls 6] [--out PATH]

For each unroll, one compiled call of ``--steps-per-call`` steps (batch 64, the path
:func:`ferclean.learning.train` takes off the CPU) is compiled and timed, then
``--calls`` further calls; the mean step time is reported. Data are random uint8 images
already on the device, as in training. Results are merged into
``benchmarks/results/lstm_unroll.json`` under the backend's name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
RESULTS = REPO / "benchmarks" / "results" / "lstm_unroll.json"
BATCH, N_IMAGES = 64, 32768


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unrolls", default="1,5,25")
    parser.add_argument("--steps-per-call", type=int, default=50)
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import jax

    from ferclean.learning import PRNG_IMPL, TrainConfig, create_train_state, train_steps
    from ferclean.learning.models import get_model

    rng = np.random.default_rng(0)
    data = jax.device_put({
        "image": rng.integers(0, 256, (N_IMAGES, 48, 48), dtype=np.uint8),
        "label": rng.integers(0, 7, N_IMAGES).astype(np.int32),
        "weight": np.ones(N_IMAGES, np.float32)})
    index = rng.permutation(N_IMAGES)[:args.steps_per_call * BATCH].reshape(
        args.steps_per_call, BATCH).astype(np.int32)
    key = jax.random.key(0, impl=PRNG_IMPL)
    rows = {}
    for unroll in (int(u) for u in args.unrolls.split(",")):
        state = create_train_state(get_model("cnn_lstm", lstm_unroll=unroll), TrainConfig(), 0)
        start = time.perf_counter()
        state, _ = train_steps(state, data, index, key)
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(args.calls):
            state, _ = train_steps(state, data, index, key)
        jax.block_until_ready(state)
        step_ms = (time.perf_counter() - start) / (args.calls * args.steps_per_call) * 1000
        rows[str(unroll)] = {"compile_s": round(compile_s, 1), "step_ms": round(step_ms, 2)}
        print(f"unroll {unroll}: compile {compile_s:.1f}s  fused step {step_ms:.2f} ms",
              flush=True)
    payload = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    payload["runs"][jax.default_backend()] = {
        "devices": [str(d) for d in jax.devices()], "batch": BATCH,
        "steps_per_call": args.steps_per_call, "calls": args.calls, "unroll": rows}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
