"""Per-image predictions of the suite's runs: one ``.npz`` per run in ``<out>/predictions/``.

A run's record in ``results.json`` names its file; workers of a sharded run write theirs
side by side, so a merge has nothing to move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ferclean._atomic import atomic_file

__all__ = ["PREDICTIONS_DIR", "load_predictions", "predictions_path", "write_predictions"]

PREDICTIONS_DIR = "predictions"


def _safe_name(key: str) -> str:
    """A run key as a portable file name: ``|`` becomes ``__`` and ``+`` ``plus``."""
    return key.replace("+", "plus").replace("|", "__")


def predictions_path(out: Path, key: str) -> Path:
    """Where the run ``key`` keeps its per-image predictions.

    Examples
    --------
    >>> predictions_path(Path("out"), "honest|C+D|none|cnn_lstm|0").as_posix()
    'out/predictions/honest__CplusD__none__cnn_lstm__0.npz'
    """
    return out / PREDICTIONS_DIR / f"{_safe_name(key)}.npz"


def write_predictions(out: Path, key: str, tests: dict[str, Any],
                      probabilities: dict[str, np.ndarray]) -> Path:
    """Write one run's per-image predictions on each evaluation set, atomically.

    Per set ``NAME`` the file holds ``NAME__rows`` (int64, the images' dataset rows),
    ``NAME__labels`` (int8), ``NAME__pred`` (int8, the class with the highest
    probability, taken before rounding) and ``NAME__proba`` (float16, one column per
    class), plus ``key`` and ``sets`` (the set names).

    Parameters
    ----------
    out : Path
        The results folder.
    key : str
        The run's key, ``"<cell key>|<seed>"``.
    tests : dict of str to FaceDataset
        The evaluation sets.
    probabilities : dict of str to ndarray
        Per set, the class probabilities, shape (n, n_classes).

    Returns
    -------
    Path
        :func:`predictions_path` of ``key``.

    Examples
    --------
    >>> import tempfile
    >>> from ferclean.demo import demo_dataset
    >>> test = demo_dataset(n_faces=100).split("PrivateTest")
    >>> proba = np.full((len(test), 7), 1 / 7)
    >>> path = write_predictions(Path(tempfile.mkdtemp()), "r|0", {"T": test}, {"T": proba})
    >>> load_predictions(path)["T"]["proba"].dtype
    dtype('float16')
    """
    arrays: dict[str, np.ndarray] = {"key": np.array(key), "sets": np.array(list(tests))}
    for name, test in tests.items():
        proba = np.asarray(probabilities[name])
        if proba.shape[0] != len(test):
            raise ValueError(f"run {key}: {proba.shape[0]} predictions for the {len(test)} "
                             f"images of {name}")
        arrays.update({f"{name}__rows": np.asarray(test.rows, np.int64),
                       f"{name}__labels": np.asarray(test.labels, np.int8),
                       f"{name}__pred": proba.argmax(axis=1).astype(np.int8),
                       f"{name}__proba": proba.astype(np.float16)})
    path = predictions_path(out, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def load_predictions(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """A run's predictions file (:func:`write_predictions`): per set ``rows``, ``labels``,
    ``pred`` and ``proba``.

    Examples
    --------
    See :func:`write_predictions`.
    """
    with np.load(path, allow_pickle=False) as data:
        return {str(name): {field: data[f"{name}__{field}"]
                            for field in ("rows", "labels", "pred", "proba")}
                for name in data["sets"]}
