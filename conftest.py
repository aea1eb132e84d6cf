"""Repository-wide pytest settings.

The reference models, the trainer and the evaluation (``ferclean.learning``) need the
``bench`` extra (JAX, Flax, Optax), and so does the benchmark suite (``ferclean.bench``).
The distributed engine (``ferclean.engines``) and the Parquet form's examples need the
``dask`` extra (dask, distributed, pyarrow). Without an extra its doctests are not
collected, so ``pytest`` still passes on a plain install; the test files skip themselves
with ``pytest.importorskip``.
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


_DASK = ("dask", "distributed", "pyarrow")
_NEEDS_DASK = ["ferclean/engines", "ferclean/io/parquet.py"]

collect_ignore = ([] if all(_installed(name) for name in _BENCH) else _NEEDS_BENCH) + (
    [] if all(_installed(name) for name in _DASK) else _NEEDS_DASK)
