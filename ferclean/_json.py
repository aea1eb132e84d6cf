"""JSON for ferclean's outputs: numpy scalars written as plain numbers."""

from __future__ import annotations

from typing import Any


def to_plain(value: Any) -> Any:
    """``json.dumps(..., default=to_plain)``: numpy scalars become Python numbers.

    Examples
    --------
    >>> import json, numpy as np
    >>> json.dumps({"n": np.int64(3)}, default=to_plain)
    '{"n": 3}'
    """
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
