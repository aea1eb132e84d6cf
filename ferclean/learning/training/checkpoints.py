"""Checkpoints on disk: weights (``params.msgpack``), description (``checkpoint.json``) and
the run's history (``history.json``).

A run folder holds at most one run: :func:`_prepare_run_folder` refuses one that already
holds a checkpoint (unless asked to overwrite) and clears the files of an earlier run, so
files of two runs never mix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ferclean._atomic import atomic_file
from ferclean._json import write_json
from ferclean.dataset import EMOTIONS, IMAGE_SIZE
from ferclean.learning.training.config import _freeze, _jsonable
from ferclean.learning.training.model import TrainedModel

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.learning.training.config import TrainConfig

__all__ = ["CHECKPOINT_FORMAT", "HISTORY_FILE", "load_checkpoint", "save_checkpoint"]

#: Format tag written into ``checkpoint.json``.
CHECKPOINT_FORMAT = "ferclean-checkpoint/1"
PARAMS_FILE = "params.msgpack"
META_FILE = "checkpoint.json"
HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"
RUN_FILES = (PARAMS_FILE, META_FILE, HISTORY_FILE, CURVES_FILE)


def _sorted_tree(tree: Any) -> Any:
    """Nested dicts with keys sorted and leaves as numpy: a canonical byte encoding."""
    if isinstance(tree, Mapping):
        return {str(k): _sorted_tree(tree[k]) for k in sorted(tree, key=str)}
    return np.asarray(tree)


def _finite_or_none(value: Any) -> Any:
    """NaN (e.g. ``val_loss`` without validation data) as JSON null: strict JSON has no NaN."""
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def save_checkpoint(
    directory: str | os.PathLike,
    trained: TrainedModel,
    *,
    config: TrainConfig | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write weights (``params.msgpack``) and a JSON description (``checkpoint.json``).

    Both files are written atomically, the JSON last; it carries the SHA-256 of the
    weights, so :func:`load_checkpoint` notices a half-replaced pair. The same weights
    and arguments give byte-identical files.

    Parameters
    ----------
    directory : path
        Created if missing.
    trained : TrainedModel
    config : TrainConfig, default=None
        Recorded under ``"config"``.
    info : mapping, default=None
        JSON-ready entries recorded under ``"info"`` (epoch, monitored loss, ...).

    Returns
    -------
    Path
        ``directory``.

    Examples
    --------
    >>> import tempfile
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> d = save_checkpoint(tempfile.mkdtemp(), init_model("cnn_mha", **TINY["cnn_mha"]))
    >>> sorted(p.name for p in d.iterdir())
    ['checkpoint.json', 'params.msgpack']
    """
    from flax import serialization

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = serialization.msgpack_serialize(
        _sorted_tree({"params": trained.params, "batch_stats": trained.batch_stats or {}})
    )
    with atomic_file(directory / PARAMS_FILE) as tmp:
        tmp.write_bytes(payload)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "model": trained.model,
        "model_kwargs": _jsonable(dict(trained.model_kwargs)),
        "classes": list(EMOTIONS),
        "n_params": trained.n_params,
        "crop": trained.crop,
        "tta": trained.tta,
        "params_file": PARAMS_FILE,
        "params_sha256": hashlib.sha256(payload).hexdigest(),
        "config": config.to_dict() if config is not None else None,
        "info": {str(k): _finite_or_none(v) for k, v in _jsonable(dict(info or {})).items()},
        "versions": _versions(),
    }
    write_json(directory / META_FILE, meta, indent=1, sort_keys=True)
    return directory


def load_checkpoint(directory: str | os.PathLike) -> TrainedModel:
    """Read a checkpoint written by :func:`save_checkpoint` (or ``TrainResult.save``).

    The weights are checked against the SHA-256 in ``checkpoint.json`` and against the
    shapes the registered model expects.

    Parameters
    ----------
    directory : path

    Returns
    -------
    TrainedModel
        ``info`` holds the whole ``checkpoint.json``.

    Raises
    ------
    FileNotFoundError
        If ``directory`` holds no ``checkpoint.json``.
    ValueError
        On an unknown format, weights that do not match their hash, or shapes that do not
        fit the model.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> back = load_checkpoint(save_checkpoint(tempfile.mkdtemp(), tm))
    >>> bool(np.array_equal(back.params["logits"]["kernel"], tm.params["logits"]["kernel"]))
    True
    """
    from flax import serialization

    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{directory} holds no {META_FILE}; is it a ferclean checkpoint?")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: unknown checkpoint format {meta.get('format')!r}")
    payload = (directory / meta.get("params_file", PARAMS_FILE)).read_bytes()
    if hashlib.sha256(payload).hexdigest() != meta["params_sha256"]:
        raise ValueError(f"{directory}: the weights do not match {META_FILE} (sha256 differs)")
    restored = serialization.msgpack_restore(payload)
    # crop and tta: absent from checkpoints written before augmentation existed
    trained = TrainedModel(meta["model"], _freeze(meta["model_kwargs"]),
                           restored["params"], restored.get("batch_stats") or {}, info=meta,
                           crop=meta.get("crop"), tta=meta.get("tta"))
    _check_shapes(trained, directory)
    return trained


def _check_shapes(trained: TrainedModel, directory: Path) -> None:
    """Raise unless the weights have the shapes the registered model expects."""
    import jax
    import jax.numpy as jnp

    side = trained.crop or IMAGE_SIZE
    expected = jax.eval_shape(trained.module.init, jax.random.key(0),
                              jnp.zeros((1, side, side), jnp.float32))
    got = {"params": trained.params, "batch_stats": trained.batch_stats}
    want = {"params": expected["params"], "batch_stats": dict(expected.get("batch_stats", {}))}
    shapes = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), got)
    if shapes != jax.tree_util.tree_map(lambda a: tuple(a.shape), want):
        raise ValueError(
            f"{directory}: the weights do not fit model {trained.model!r} with "
            f"{dict(trained.model_kwargs)}"
        )


def _write_history(directory: Path, monitor: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """``history.json``: the monitored quantity and one entry per epoch (NaN as null)."""
    epochs = [{k: _finite_or_none(v) for k, v in row.items()} for row in rows]
    write_json(directory / HISTORY_FILE, {"epochs": epochs, "monitor": monitor},
               indent=1, sort_keys=True)


def read_history(directory: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The epochs of a run folder's ``history.json``, or None when it has none.

    Examples
    --------
    >>> import tempfile
    >>> read_history(tempfile.mkdtemp()) is None
    True
    """
    path = Path(directory) / HISTORY_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("epochs") or None


def _prepare_run_folder(out: Path, *, overwrite: bool,
                        inputs: Sequence[str | os.PathLike | None] = ()) -> None:
    """Make ``out`` ready for one run's files, through the output guard: never an input or
    inside one, never a folder ferclean did not write, an earlier run only with
    ``overwrite``; then clear the earlier run's files."""
    from ferclean._outputs import claim_dir

    claim_dir(out, what="ferclean training run", inputs=inputs, overwrite=overwrite,
              known=RUN_FILES)
    for stale in RUN_FILES:
        (out / stale).unlink(missing_ok=True)  # never mix files of two runs


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ferclean", "jax", "jaxlib", "flax", "optax"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out
