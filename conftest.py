"""Repository-wide pytest settings.

The reference models, the trainer and the evaluation (``ferclean.learning``) need the
``bench`` extra (JAX, Flax, Optax), and so does the benchmark suite (``ferclean.bench``).
Without it their doctests are not collected, so ``pytest`` still passes on a
plain install; their test files skip themselves with ``pytest.importorskip``.
"""

from __future__ import annotations

import importlib.util

_BENCH = ("jax", "flax", "optax")
_NEEDS_BENCH = ["ferclean/learning", "ferclean/bench"]


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


collect_ignore = [] if all(_installed(name) for name in _BENCH) else _NEEDS_BENCH
