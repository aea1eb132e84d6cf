"""The one JSON encoder for ferclean's outputs: numpy scalars and arrays as plain values."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def to_plain(value: Any) -> Any:
    """``json.dumps(..., default=to_plain)``: numpy scalars and arrays become plain values.

    Examples
    --------
    >>> import json, numpy as np
    >>> json.dumps({"n": np.int64(3), "v": np.arange(2)}, default=to_plain)
    '{"n": 3, "v": [0, 1]}'
    """
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def dumps(payload: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``payload`` as JSON text with a final newline, numpy values converted.

    Examples
    --------
    >>> import numpy as np
    >>> dumps({"a": np.float64(0.5)}, indent=None)
    '{"a": 0.5}\\n'
    """
    return json.dumps(payload, indent=indent, sort_keys=sort_keys, default=to_plain,
                      allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, payload: Any, *, indent: int | None = 2,
               sort_keys: bool = False) -> Path:
    """Write ``payload`` to ``path`` as JSON, atomically (see :func:`dumps`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = write_json(pathlib.Path(tempfile.mkdtemp()) / "a.json", {"n": 1})
    >>> p.read_text()
    '{\\n  "n": 1\\n}\\n'
    """
    from ferclean._atomic import atomic_file

    text = dumps(payload, indent=indent, sort_keys=sort_keys)
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)
