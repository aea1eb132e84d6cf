"""Train the reference models (:mod:`ferclean.learning.models`) with JAX, and use them afterwards.

One loop trains every registered model, on CPU or GPU alike:

* the pure, jit-compiled :func:`train_step` and :func:`eval_step` do all the numerics:
  uint8 pixels become ``[0, 1]`` floats inside the step, the loss is cross-entropy
  (optionally class-weighted, as Keras' ``class_weight``: ``sum(w * ce) / batch``), the
  optimiser is Optax Adam with its learning rate held in the optimiser state, so
  callbacks change it without recompiling;
* the outer loop (:func:`train`) feeds batches by indexing one uint8 array with a seeded
  permutation per epoch (no per-image Python work), runs the callbacks
  (:class:`ReduceLROnPlateau`, :class:`EarlyStopping`), keeps the best weights, saves
  checkpoints and the history, and draws the progress bar.

Given a seed, a run is deterministic on one machine: the seed makes the JAX keys (weight
initialisation, dropout) and the numpy generator (batch order).

Defaults mirror the study's Keras setup: Adam with learning rate 2e-3 (betas 0.9/0.999,
epsilon 1e-7 as Keras), batch 64, reduce-LR-on-plateau on the validation loss (factor
0.1, patience 2, min_delta 1e-4), early stopping (patience 5) restoring the best weights.

JAX, Flax and Optax are imported only when a function here needs them, so this module can
be imported (e.g. by the CLI for :class:`TrainConfig`) without the ``bench`` extra.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from ferclean._atomic import atomic_file
from ferclean._progress import Progress
from ferclean._validation import check_dataset
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, FaceDataset, as_pixels
from ferclean.protocol.splits import honest_splits

__all__ = [
    "CHECKPOINT_FORMAT",
    "EarlyStopping",
    "ReduceLROnPlateau",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "create_train_state",
    "embed",
    "eval_step",
    "init_model",
    "load_checkpoint",
    "predict",
    "saliency",
    "save_checkpoint",
    "train",
    "train_step",
    "train_to",
]

logger = logging.getLogger(__name__)

#: Format tag written into ``checkpoint.json``.
CHECKPOINT_FORMAT = "ferclean-checkpoint/1"
PARAMS_FILE = "params.msgpack"
META_FILE = "checkpoint.json"
HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"
HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "time_s", "cpu_s",
)
_N_CLASSES = len(EMOTIONS)
#: JAX PRNG implementation for weight initialisation and dropout. XLA's RngBitGenerator
#: ("rbg") compiled 1.5-2x faster on a 2-core CPU than the default threefry; its bits
#: are deterministic for a given backend and JAX version.
PRNG_IMPL = "rbg"


# ---------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on, besides the data.

    Parameters
    ----------
    model : str, default="cnn_lstm"
        Registered model name (:func:`ferclean.learning.models.model_names`).
    model_kwargs : mapping, default={}
        Fields of the model class, e.g. ``{"kernel_sizes": (3, 3, 3, 3, 3)}``.
    epochs : int, default=50
        Most epochs to run; early stopping usually ends the run sooner.
    batch_size : int, default=64
    learning_rate : float, default=2e-3
        Initial Adam learning rate.
    adam_b1, adam_b2, adam_eps : float, default=0.9, 0.999, 1e-7
        Adam's decay rates and epsilon (Keras' defaults; Optax's epsilon is 1e-8).
    lr_factor : float, default=0.1
        Reduce-LR-on-plateau multiplies the learning rate by this.
    lr_patience : int, default=2
        Epochs without improvement of the monitored loss before reducing the rate.
    lr_min_delta : float, default=1e-4
        Least decrease that counts as an improvement for the reduction (Keras' default).
    min_lr : float, default=0.0
        The learning rate is never reduced below this.
    early_stopping_patience : int or None, default=5
        Epochs without improvement before stopping; ``None`` never stops early.
    restore_best : bool, default=True
        Return the weights of the best epoch (lowest monitored loss), not the last.
    class_weight : None, "balanced" or mapping of int to float, default=None
        Per-class loss weights. ``"balanced"`` uses
        :func:`ferclean.protocol.class_weights` on the training data.
    seed : int, default=0
        Seeds weight initialisation, dropout and the batch order.
    eval_batch_size : int, default=256
        Batch size for validation and prediction (no gradients, so it can be larger).
    drop_remainder : bool, default=False
        Skip each epoch's last, incomplete batch. Keeps one compiled step shape (a
        partial batch compiles a second one) at the cost of a few images per epoch.
    steps_per_call : int or None, default=None
        Optimisation steps fused into one compiled call: the training images are copied
        to the device once and a ``lax.scan`` gathers each batch there, so the host
        dispatches one call per ``steps_per_call`` steps instead of one per step. The
        results match those with 1 up to float rounding (XLA fuses the operations
        differently). On a GPU a step of these small models takes
        about a millisecond, less than dispatching it, so fusing makes training several
        times faster. ``None`` picks 1 on the CPU, where a step takes far longer than its
        dispatch and fused steps measured about 12 times slower (XLA's CPU backend
        compiles the loop poorly), and 50 on other backends.

    Examples
    --------
    >>> cfg = TrainConfig(epochs=3, class_weight="balanced")
    >>> cfg.batch_size, cfg.learning_rate
    (64, 0.002)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    model: str = "cnn_lstm"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 64
    learning_rate: float = 2e-3
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-7
    lr_factor: float = 0.1
    lr_patience: int = 2
    lr_min_delta: float = 1e-4
    min_lr: float = 0.0
    early_stopping_patience: int | None = 5
    restore_best: bool = True
    class_weight: str | Mapping[int, float] | None = None
    seed: int = 0
    eval_batch_size: int = 256
    drop_remainder: bool = False
    steps_per_call: int | None = None

    def __post_init__(self) -> None:
        # Copies, with lists made tuples: the config must not change under the caller's
        # feet, and model fields must be hashable for jit's static arguments.
        object.__setattr__(self, "model_kwargs", _freeze(dict(self.model_kwargs)))
        if isinstance(self.class_weight, Mapping):
            object.__setattr__(
                self, "class_weight", {int(k): float(v) for k, v in self.class_weight.items()}
            )

    def validate(self) -> TrainConfig:
        """Check every value; return ``self``. Called by :func:`train`.

        Examples
        --------
        >>> TrainConfig(batch_size=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: batch_size must be a positive integer; got 0
        """
        from ferclean.learning.models import MODELS, model_names

        if self.model not in MODELS:
            raise ValueError(
                f"unknown model {self.model!r}; expected one of: {', '.join(model_names())}"
            )
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _check_int(getattr(self, name), name, low=1)
        _check_int(self.lr_patience, "lr_patience", low=0)
        _check_int(self.seed, "seed", low=0)
        if self.steps_per_call is not None:
            _check_int(self.steps_per_call, "steps_per_call", low=1)
        if self.early_stopping_patience is not None:
            _check_int(self.early_stopping_patience, "early_stopping_patience", low=0)
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate!r}")
        if not 0 < self.lr_factor < 1:
            raise ValueError(f"lr_factor must be in (0, 1); got {self.lr_factor!r}")
        if self.min_lr < 0 or self.lr_min_delta < 0:
            raise ValueError("min_lr and lr_min_delta must be >= 0")
        cw = self.class_weight
        if isinstance(cw, str) and cw != "balanced":
            raise ValueError(f"class_weight must be None, 'balanced' or a mapping; got {cw!r}")
        if isinstance(cw, Mapping):
            bad = [k for k, v in cw.items() if not 0 <= k < _N_CLASSES or not v >= 0]
            if bad:
                raise ValueError(
                    f"class_weight keys must be label ids 0..{_N_CLASSES - 1} with weights "
                    f">= 0; got {cw!r}"
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists, class-weight keys strings)."""
        out = dataclasses.asdict(self)
        out["model_kwargs"] = _jsonable(dict(self.model_kwargs))
        if isinstance(self.class_weight, Mapping):
            out["class_weight"] = {str(k): v for k, v in self.class_weight.items()}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys raise ``TypeError``."""
        return cls(**dict(values))


def _check_int(value: Any, name: str, *, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {kind}; got {value!r}")


def _freeze(value: Any) -> Any:
    """Lists to tuples, recursively (dict values included)."""
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---------------------------------------------------------------------- callbacks
class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` when a loss stops improving (Keras rules).

    An epoch improves when its loss is below ``best - min_delta``. After ``patience``
    epochs in a row without improvement the rate is reduced (never below ``min_lr``) and
    the count starts again.

    Examples
    --------
    >>> cb = ReduceLROnPlateau(factor=0.1, patience=2)
    >>> [round(cb.update(loss, 1.0), 3) for loss in (1.0, 0.9, 0.95, 0.91)]
    [1.0, 1.0, 1.0, 0.1]
    """

    def __init__(
        self, *, factor: float = 0.1, patience: int = 2, min_delta: float = 1e-4,
        min_lr: float = 0.0,
    ) -> None:
        self.factor = factor
        self.patience = patience
        self.min_delta = min_delta
        self.min_lr = min_lr
        self.best = math.inf
        self.wait = 0

    def update(self, value: float, lr: float) -> float:
        """Record this epoch's loss; return the learning rate for the next epoch."""
        if value < self.best - self.min_delta:
            self.best, self.wait = value, 0
            return lr
        self.wait += 1
        if self.wait >= self.patience and lr > self.min_lr:
            self.wait = 0
            return max(lr * self.factor, self.min_lr)
        return lr


class EarlyStopping:
    """Stop after ``patience`` epochs without a new lowest loss; remember the best epoch.

    Examples
    --------
    >>> cb = EarlyStopping(patience=2)
    >>> [cb.update(loss, epoch) for epoch, loss in enumerate((1.0, 0.8, 0.9, 0.85), 1)]
    [True, True, False, False]
    >>> cb.should_stop, cb.best_epoch
    (True, 2)
    """

    def __init__(self, *, patience: int | None = 5, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best = math.inf
        self.best_epoch = 0
        self.wait = 0
        self.should_stop = False

    def update(self, value: float, epoch: int) -> bool:
        """Record this epoch's loss; return True when it is the best so far."""
        if value - self.min_delta < self.best:
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self.should_stop = True
        return False


# ---------------------------------------------------------------------- data
def _labelled(dataset: FaceDataset, role: str) -> FaceDataset:
    dataset = check_dataset(dataset, name=f"{role} dataset")
    unlabeled = int(np.count_nonzero(dataset.labels < 0))
    if unlabeled:
        raise ValueError(
            f"the {role} data has {unlabeled} unlabeled image(s) (label -1); "
            f"drop them first, e.g. ds.subset(ds.labels >= 0)"
        )
    return dataset


def _resolve_data(data: Any) -> tuple[FaceDataset, FaceDataset | None]:
    if isinstance(data, FaceDataset):
        train_ds, val_ds, _ = honest_splits(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        train_ds, val_ds = data
    else:
        raise TypeError(
            "data must be a FaceDataset (Training trains, PublicTest validates) or a pair "
            f"(train_ds, val_ds); got {type(data).__name__}"
        )
    train_ds = _labelled(train_ds, "training")
    if len(train_ds) == 0:
        raise ValueError("the training data is empty")
    if val_ds is not None:
        val_ds = _labelled(val_ds, "validation")
        if len(val_ds) == 0:
            val_ds = None
    return train_ds, val_ds


def _class_weight_vector(spec: Any, train_ds: FaceDataset) -> np.ndarray:
    weights = np.ones(_N_CLASSES, dtype=np.float32)
    if spec is None:
        return weights
    if spec == "balanced":
        from ferclean.protocol import class_weights

        spec = class_weights(train_ds)
    for label, weight in spec.items():
        weights[int(label)] = float(weight)
    return weights


# ---------------------------------------------------------------------- pure JAX steps
def _normalise(images: Any) -> Any:
    """uint8 pixels to float32 in [0, 1]; runs inside jit, so no host-side copy."""
    import jax.numpy as jnp

    return images.astype(jnp.float32) / 255.0


def _variables(params: Any, batch_stats: Any) -> dict[str, Any]:
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def _train_step_impl(state: Any, batch: Mapping[str, Any], rng: Any) -> tuple[Any, dict]:
    import jax
    import jax.numpy as jnp
    import optax

    x = _normalise(batch["image"])
    labels = batch["label"]
    has_bn = bool(state.batch_stats)  # static: the pytree's structure, not its values
    # One dropout key per step, derived from the step count: pure and reproducible.
    dropout_key = jax.random.fold_in(rng, state.step)

    def loss_fn(params: Any) -> tuple[Any, tuple[Any, Any]]:
        out = state.apply_fn(
            _variables(params, state.batch_stats), x, train=True,
            rngs={"dropout": dropout_key}, mutable=["batch_stats"] if has_bn else False,
        )
        logits, updates = out if has_bn else (out, {})
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        # Keras' class_weight semantics: weighted sum over the batch size.
        return jnp.sum(ce * batch["weight"]) / labels.shape[0], (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    state = state.apply_gradients(grads=grads)
    if has_bn:
        state = state.replace(batch_stats=updates["batch_stats"])
    metrics = {
        "loss_sum": loss * labels.shape[0],
        "correct": jnp.sum(jnp.argmax(logits, -1) == labels),
    }
    return state, metrics


def _train_steps_impl(state: Any, data: Mapping[str, Any], batch_index: Any,
                      rng: Any) -> tuple[Any, dict]:
    """``len(batch_index)`` steps in one call; batches are gathered from device arrays."""
    import jax

    def step(state: Any, index: Any) -> tuple[Any, dict]:
        batch = {key: value[index] for key, value in data.items()}
        return _train_step_impl(state, batch, rng)

    return jax.lax.scan(step, state, batch_index)


def _eval_step_impl(state: Any, batch: Mapping[str, Any]) -> dict:
    import jax.numpy as jnp
    import optax

    logits = state.apply_fn(
        _variables(state.params, state.batch_stats), _normalise(batch["image"]), train=False
    )
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    mask = batch["weight"]  # 0 for padding rows, so one compiled shape serves every batch
    return {
        "loss_sum": jnp.sum(ce * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "count": jnp.sum(mask),
    }


def _forward_impl(variables: Any, images: Any, *, module: Any, embedding: bool) -> Any:
    return module.apply(variables, _normalise(images), train=False, return_embedding=embedding)


def _saliency_impl(variables: Any, images: Any, targets: Any, *, module: Any) -> Any:
    import jax
    import jax.numpy as jnp

    def score(x: Any) -> Any:
        logits = module.apply(variables, x, train=False)
        cls = jnp.where(targets >= 0, targets, jnp.argmax(logits, -1))
        # Images are independent in eval mode, so the gradient of the summed scores
        # holds every image's own gradient.
        return jnp.sum(jnp.take_along_axis(logits, cls[:, None], axis=1))

    return jax.grad(score)(_normalise(images))


@functools.cache
def _jax() -> SimpleNamespace:
    """Import JAX once and build the jitted functions and the TrainState class."""
    try:
        import jax
        import optax  # noqa: F401 - fail here, with the hint, not mid-run
        from flax.training import train_state
    except ImportError as exc:
        raise ImportError(
            "training needs JAX, Flax and Optax; install them with "
            "pip install 'ferclean[bench]'"
        ) from exc

    class TrainState(train_state.TrainState):
        """Flax TrainState plus BatchNorm running statistics (empty dict without BN)."""

        batch_stats: Any = None

    # Donating the old state lets XLA update weights in place; the CPU backend cannot
    # use donated buffers and would only warn.
    donate = (0,) if jax.default_backend() != "cpu" else ()
    return SimpleNamespace(
        jax=jax,
        TrainState=TrainState,
        train_step=jax.jit(_train_step_impl, donate_argnums=donate),
        train_steps=jax.jit(_train_steps_impl, donate_argnums=donate),
        eval_step=jax.jit(_eval_step_impl),
        forward=jax.jit(_forward_impl, static_argnames=("module", "embedding")),
        saliency=jax.jit(_saliency_impl, static_argnames=("module",)),
    )


def train_step(state: Any, batch: Mapping[str, Any], rng: Any) -> tuple[Any, dict]:
    """One jitted optimisation step: ``(state, batch, rng) -> (state, metrics)``.

    Parameters
    ----------
    state : TrainState
        From :func:`create_train_state`: params, Adam state, BatchNorm statistics.
    batch : mapping
        ``"image"`` uint8 ``(B, 48, 48)``, ``"label"`` int32 ``(B,)``, ``"weight"``
        float32 ``(B,)`` (per-image loss weight: the class weight, or 1).
    rng : jax key
        Base dropout key; the step folds in its own step number.

    Returns
    -------
    state, metrics
        ``metrics`` holds ``loss_sum`` (weighted loss times B) and ``correct``.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ferclean.learning.models import TINY, get_model
    >>> state = create_train_state(get_model("cnn_mha", **TINY["cnn_mha"]), TrainConfig(), 0)
    >>> batch = {"image": np.zeros((2, 48, 48), np.uint8), "label": np.array([0, 3]),
    ...          "weight": np.ones(2, np.float32)}
    >>> state, metrics = train_step(state, batch, jax.random.key(1, impl=PRNG_IMPL))
    >>> int(state.step), sorted(metrics)
    (1, ['correct', 'loss_sum'])
    """
    return _jax().train_step(state, batch, rng)


def eval_step(state: Any, batch: Mapping[str, Any]) -> dict:
    """Jitted evaluation of one batch in inference mode (no dropout, running BN stats).

    ``batch`` is as for :func:`train_step`, with ``"weight"`` 1 for real images and 0 for
    padding. Returns sums: ``loss_sum`` (unweighted cross-entropy), ``correct``, ``count``.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning.models import TINY, get_model
    >>> state = create_train_state(get_model("cnn_mha", **TINY["cnn_mha"]), TrainConfig(), 0)
    >>> batch = {"image": np.zeros((3, 48, 48), np.uint8), "label": np.array([0, 3, 0]),
    ...          "weight": np.array([1, 1, 0], np.float32)}
    >>> float(eval_step(state, batch)["count"])
    2.0
    """
    return _jax().eval_step(state, batch)


def create_train_state(module: Any, config: TrainConfig, key: Any) -> Any:
    """Initialise a model's weights and an Adam optimiser state.

    The learning rate lives in the optimiser state (``optax.inject_hyperparams``), so
    reduce-LR-on-plateau changes it without recompiling the step.

    Parameters
    ----------
    module : flax.linen.Module
    config : TrainConfig
        Supplies the Adam settings.
    key : jax key or int
        Initialisation key; an int seeds a :data:`PRNG_IMPL` key.

    Examples
    --------
    >>> from ferclean.learning.models import TINY, get_model
    >>> state = create_train_state(get_model("cnn_mha", **TINY["cnn_mha"]), TrainConfig(), 0)
    >>> round(float(state.opt_state.hyperparams["learning_rate"]), 6), state.batch_stats
    (0.002, {})
    """
    parts = _jax()
    variables = _init_variables(module, key)
    tx = _optimizer(config.learning_rate, config.adam_b1, config.adam_b2, config.adam_eps)
    return parts.TrainState.create(
        apply_fn=module.apply, params=variables["params"], tx=tx,
        batch_stats=dict(variables.get("batch_stats", {})),
    )


# The optimiser, the module and its jitted init are cached so that a second run with the
# same settings finds jit's compiled steps: jit keys on the TrainState's static fields
# (apply_fn, tx), which compare by identity.
@functools.lru_cache(maxsize=16)
def _optimizer(learning_rate: float, b1: float, b2: float, eps: float) -> Any:
    import optax

    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=b1, b2=b2,
                                                eps=eps)


@functools.lru_cache(maxsize=16)
def _init_fn(module: Any) -> Callable[..., Any]:
    # jit: one compilation instead of one per primitive, much faster on CPU.
    return _jax().jax.jit(module.init)


def _init_variables(module: Any, key: Any) -> dict[str, Any]:
    import jax.numpy as jnp

    jax = _jax().jax
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key), impl=PRNG_IMPL)
    return _init_fn(module)(key, jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE), jnp.float32))


def init_model(model: str, *, seed: int = 0, **kwargs: Any) -> TrainedModel:
    """A registered model with freshly initialised (untrained) weights.

    Parameters
    ----------
    model : str
        Registered name.
    seed : int, default=0
    **kwargs
        Model arguments.

    Examples
    --------
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> tm.n_params, sorted(tm.variables)
    (771, ['params'])
    """
    variables = _init_variables(_module(model, kwargs), seed)
    return TrainedModel(model, _freeze(dict(kwargs)), variables["params"],
                        dict(variables.get("batch_stats", {})))


@functools.lru_cache(maxsize=16)
def _cached_module(name: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    from ferclean.learning.models import get_model

    return get_model(name, **dict(kwargs))


def _module(name: str, kwargs: Mapping[str, Any]) -> Any:
    return _cached_module(name, tuple(sorted(_freeze(dict(kwargs)).items())))


def _with_learning_rate(state: Any, lr: float) -> Any:
    import jax.numpy as jnp

    hyper = dict(state.opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, dtype=hyper["learning_rate"].dtype)
    return state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))


def _evaluate_state(state: Any, pixels: np.ndarray, labels: np.ndarray, batch: int) -> tuple:
    """Mean loss and accuracy over a whole split, in padded fixed-size batches."""
    n = len(labels)
    batch = min(batch, n)
    totals = []
    for start in range(0, n, batch):
        idx = slice(start, start + batch)
        images, y = pixels[idx], labels[idx].astype(np.int32)
        weight = np.ones(len(y), np.float32)
        pad = batch - len(y)
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.uint8)])
            y = np.concatenate([y, np.zeros(pad, np.int32)])
            weight = np.concatenate([weight, np.zeros(pad, np.float32)])
        totals.append(eval_step(state, {"image": images, "label": y, "weight": weight}))
    sums = {k: float(sum(np.asarray(t[k]) for t in totals)) for k in totals[0]}
    return sums["loss_sum"] / sums["count"], sums["correct"] / sums["count"]


# ---------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A registered model's name and arguments together with its weights.

    Parameters
    ----------
    model : str
        Registry name.
    model_kwargs : mapping
        Arguments the module was built with.
    params : pytree
        Trainable weights.
    batch_stats : pytree
        BatchNorm running statistics (an empty dict for models without BatchNorm).
    info : mapping, default={}
        What the checkpoint recorded: epoch, validation loss, training config, versions.

    Examples
    --------
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_lstm", **TINY["cnn_lstm"])
    >>> tm.model, sorted(tm.variables)
    ('cnn_lstm', ['batch_stats', 'params'])
    """

    model: str
    model_kwargs: Mapping[str, Any]
    params: Any
    batch_stats: Any
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> Any:
        """The unbound Flax module."""
        return _module(self.model, self.model_kwargs)

    @property
    def variables(self) -> dict[str, Any]:
        """``{"params": ..., "batch_stats": ...}`` as ``module.apply`` wants it."""
        return _variables(self.params, self.batch_stats)

    @property
    def n_params(self) -> int:
        """Number of trainable parameters."""
        from ferclean.learning.models import count_params

        return count_params(self.params)


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    model : TrainedModel
        The best epoch's weights (``restore_best=True``) or the last epoch's.
    history : DataFrame
        One row per epoch: ``epoch``, ``loss``, ``accuracy`` (training, dropout on, as
        Keras reports them), ``val_loss``, ``val_accuracy`` (NaN without validation
        data), ``learning_rate`` (used in that epoch), ``time_s`` (wall) and ``cpu_s``
        (process CPU time; the first epoch includes compilation).
    config : TrainConfig
    best_epoch : int
        Epoch with the lowest monitored loss (``val_loss``, else ``loss``).
    stopped_early : bool
    first_step_s : float
        Wall time of the first step, i.e. mostly XLA compilation.
    out_dir : Path or None
        Where checkpoint and history were written.
    """

    model: TrainedModel
    history: pd.DataFrame
    config: TrainConfig
    best_epoch: int
    stopped_early: bool
    first_step_s: float
    out_dir: Path | None = None


# ---------------------------------------------------------------------- the loop
def train(
    data: FaceDataset | tuple[FaceDataset, FaceDataset | None],
    config: TrainConfig | None = None,
    *,
    out_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> TrainResult:
    """Train a registered model; return the best weights and the per-epoch history.

    Parameters
    ----------
    data : FaceDataset or (train_ds, val_ds)
        A whole dataset trains on Training and validates on PublicTest
        (:func:`~ferclean.protocol.honest_splits`); PrivateTest is not touched. A pair is
        used as given;
        ``val_ds=None`` monitors the training loss instead (not recommended). All images
        must be labelled.
    config : TrainConfig, default=None
        ``TrainConfig()`` when None.
    out_dir : path, default=None
        If given, the best checkpoint (:func:`save_checkpoint`) is written there whenever
        the monitored loss improves, and ``history.json`` after every epoch.
    progress : bool, default=False
        Draw a progress bar per epoch and an epoch summary line on stderr.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning.models import TINY
    >>> ds = demo_dataset(n_faces=100)
    >>> cfg = TrainConfig(model="cnn_mha", model_kwargs=TINY["cnn_mha"], epochs=1,
    ...                   batch_size=32)
    >>> result = train((ds.split("Training")[:64], ds.split("PublicTest")), cfg)
    >>> list(result.history.columns)[:5]
    ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy']
    >>> result.best_epoch
    1
    """
    config = (config or TrainConfig()).validate()
    train_ds, val_ds = _resolve_data(data)
    parts = _jax()
    jax = parts.jax

    pixels = train_ds.pixels  # one uint8 array; batches are gathered from it by index
    labels = train_ds.labels.astype(np.int32)
    sample_weight = _class_weight_vector(config.class_weight, train_ds)[labels]
    n = len(labels)
    batch_size = min(config.batch_size, n)
    n_steps = n // batch_size if config.drop_remainder else math.ceil(n / batch_size)

    module = _module(config.model, config.model_kwargs)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed, impl=PRNG_IMPL))
    state = create_train_state(module, config, init_key)
    order_rng = np.random.default_rng(config.seed)
    reduce_lr = ReduceLROnPlateau(factor=config.lr_factor, patience=config.lr_patience,
                                  min_delta=config.lr_min_delta, min_lr=config.min_lr)
    stopper = EarlyStopping(patience=config.early_stopping_patience)
    steps_per_call = config.steps_per_call or (1 if jax.default_backend() == "cpu" else 50)
    device_data = (_device_training_data(pixels, labels, sample_weight)
                   if steps_per_call > 1 and n >= batch_size else None)
    # Each epoch's calls, as (first step, number of steps): fused chunks over the full
    # batches, then single steps (the last, partial batch; every batch when not fusing).
    n_fused = (n // batch_size) if device_data is not None else 0
    calls = [(s, min(steps_per_call, n_fused - s)) for s in range(0, n_fused, steps_per_call)]
    calls += [(s, 1) for s in range(n_fused, n_steps)]
    out = Path(out_dir) if out_dir is not None else None
    monitor = "val_loss" if val_ds is not None else "loss"
    history: list[dict[str, float]] = []
    # Host copies: on GPU the step donates (reuses) the old state's buffers.
    best = jax.device_get((state.params, state.batch_stats))
    first_step_s = math.nan
    lr = config.learning_rate  # kept in Python too: the state holds it in float32
    for epoch in range(1, config.epochs + 1):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        perm = order_rng.permutation(n)
        step_metrics = []
        with Progress(n_steps, f"epoch {epoch}/{config.epochs}", enabled=progress) as bar:
            for i, (step, count) in enumerate(calls):
                idx = perm[step * batch_size:(step + count) * batch_size]
                if device_data is not None and count * batch_size == len(idx):
                    state, metrics = parts.train_steps(
                        state, device_data, idx.reshape(count, batch_size).astype(np.int32),
                        dropout_key)
                else:
                    batch = {"image": pixels[idx], "label": labels[idx],
                             "weight": sample_weight[idx]}
                    state, metrics = train_step(state, batch, dropout_key)
                if epoch == 1 and i == 0:
                    jax.block_until_ready(state)  # time compile + first call once
                    first_step_s = time.perf_counter() - wall0
                step_metrics.append(metrics)
                if progress and i >= 2:
                    # Count steps when they have run, not when they were queued; staying
                    # two calls behind keeps the device busy while the host waits.
                    jax.block_until_ready(step_metrics[i - 2])
                    bar.update(calls[i - 2][1])
            # One host transfer per epoch, so steps dispatch asynchronously.
            sums = jax.device_get(step_metrics)
            bar.update(n_steps - bar.done)
            n_seen = min(n_steps * batch_size, n)
            row = {
                "epoch": epoch,
                "loss": float(sum(np.sum(m["loss_sum"]) for m in sums)) / n_seen,
                "accuracy": float(sum(np.sum(m["correct"]) for m in sums)) / n_seen,
                "val_loss": math.nan,
                "val_accuracy": math.nan,
                "learning_rate": lr,
            }
            if val_ds is not None:
                row["val_loss"], row["val_accuracy"] = _evaluate_state(
                    state, val_ds.pixels, val_ds.labels, config.eval_batch_size
                )
            row["time_s"] = time.perf_counter() - wall0
            row["cpu_s"] = time.process_time() - cpu0
            bar.desc = _epoch_line(row, config.epochs)
        history.append(row)
        logger.info("%s", _epoch_line(row, config.epochs))

        value = row[monitor]
        if not math.isfinite(value):
            logger.warning("epoch %d: %s is %s; stopping", epoch, monitor, value)
            break
        if stopper.update(value, epoch):
            best = jax.device_get((state.params, state.batch_stats))
            if out is not None:
                save_checkpoint(
                    out, _trained(config, *best), config=config,
                    info={"epoch": epoch, "monitor": monitor, monitor: value,
                          "val_accuracy": row["val_accuracy"]},
                )
        if out is not None:
            _write_json(out / HISTORY_FILE, {"monitor": monitor, "epochs": history})
        if stopper.should_stop:
            break
        new_lr = reduce_lr.update(value, lr)
        if new_lr != lr:
            logger.info("epoch %d: reducing learning rate to %.3g", epoch, new_lr)
            state, lr = _with_learning_rate(state, new_lr), new_lr

    weights = best if config.restore_best else (state.params, state.batch_stats)
    return TrainResult(
        model=_trained(config, *weights,
                       info={"epoch": stopper.best_epoch if config.restore_best else epoch}),
        history=pd.DataFrame(history, columns=list(HISTORY_COLUMNS)),
        config=config,
        best_epoch=stopper.best_epoch,
        stopped_early=stopper.should_stop,
        first_step_s=first_step_s,
        out_dir=out,
    )


def _device_training_data(pixels: np.ndarray, labels: np.ndarray,
                          weights: np.ndarray) -> dict[str, Any]:
    """The training arrays on the device, for fused steps to gather batches from.

    Padded to the next power of two, so that runs on datasets of similar size share one
    compiled call (the padding rows are never indexed).
    """
    import jax

    n = len(labels)
    pad = (1 << max(n - 1, 1).bit_length()) - n
    arrays = {"image": pixels, "label": labels.astype(np.int32),
              "weight": weights.astype(np.float32)}
    return jax.device_put({key: np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])
                           for key, a in arrays.items()})


def _trained(config: TrainConfig, params: Any, batch_stats: Any, info: Any = None) -> TrainedModel:
    return TrainedModel(config.model, dict(config.model_kwargs), params, batch_stats,
                        info=dict(info or {}))


def _epoch_line(row: Mapping[str, float], epochs: int) -> str:
    val = (f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f}"
           if math.isfinite(row["val_loss"]) else "")
    return (f"epoch {row['epoch']}/{epochs} loss {row['loss']:.4f} acc {row['accuracy']:.3f}"
            f"{val} lr {row['learning_rate']:.2g}")


def train_to(
    dataset: FaceDataset,
    out_dir: str | os.PathLike,
    *,
    model: str | None = None,
    config: TrainConfig | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train on Training, validate on PublicTest, and write the run into ``out_dir``.

    ``out_dir`` receives the best checkpoint (``params.msgpack`` + ``checkpoint.json``,
    rewritten whenever the validation loss improves, each file atomically), the history
    (``history.json``, after every epoch) and ``training_curves.png`` at the end. An
    interrupted run therefore leaves its best checkpoint so far behind.

    Parameters
    ----------
    dataset : FaceDataset
        Whole dataset; PrivateTest is left for :func:`ferclean.learning.evaluate_checkpoint`.
    out_dir : path
    model : str, default=None
        Registered model name; overrides ``config.model`` (default ``"cnn_lstm"``).
    config : TrainConfig, default=None
    progress : bool, default=False
    overwrite : bool, default=False
        Allow ``out_dir`` to hold an earlier checkpoint, which is replaced.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning.models import TINY
    >>> ds = demo_dataset(n_faces=100)
    >>> ds = ds.subset(ds.split_mask("PublicTest") | (ds.rows < 64))  # 64 Training images
    >>> cfg = TrainConfig(model="cnn_mha", model_kwargs=TINY["cnn_mha"], epochs=1,
    ...                   batch_size=32)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> _ = train_to(ds, out, config=cfg)
    >>> sorted(p.name for p in out.iterdir())
    ['checkpoint.json', 'history.json', 'params.msgpack', 'training_curves.png']
    """
    config = config or TrainConfig()
    if model is not None and model != config.model:
        if config.model_kwargs:
            raise ValueError(
                f"config.model_kwargs were given for {config.model!r}, not for {model!r}"
            )
        config = dataclasses.replace(config, model=model)
    config.validate()
    out = Path(out_dir)
    if (out / META_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a checkpoint; pass overwrite=True")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    for stale in (PARAMS_FILE, META_FILE, HISTORY_FILE, CURVES_FILE):
        (out / stale).unlink(missing_ok=True)  # never mix files of two runs
    result = train(dataset, config, out_dir=out, progress=progress)

    from ferclean.learning import plot_training_curves

    with atomic_file(out / CURVES_FILE) as tmp:
        plot_training_curves(result.history, path=tmp)
    return result


# ---------------------------------------------------------------------- checkpoints
def _sorted_tree(tree: Any) -> Any:
    """Nested dicts with keys sorted and leaves as numpy: a canonical byte encoding."""
    if isinstance(tree, Mapping):
        return {str(k): _sorted_tree(tree[k]) for k in sorted(tree, key=str)}
    return np.asarray(tree)


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

    Examples
    --------
    >>> import tempfile
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
        "params_file": PARAMS_FILE,
        "params_sha256": hashlib.sha256(payload).hexdigest(),
        "config": config.to_dict() if config is not None else None,
        "info": _jsonable(dict(info or {})),
        "versions": _versions(),
    }
    _write_json(directory / META_FILE, meta)
    return directory


def load_checkpoint(directory: str | os.PathLike) -> TrainedModel:
    """Read a checkpoint written by :func:`save_checkpoint` (or :func:`train_to`).

    The weights are checked against the SHA-256 in ``checkpoint.json`` and against the
    shapes the registered model expects.

    Returns
    -------
    TrainedModel
        ``info`` holds the whole ``checkpoint.json``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> back = load_checkpoint(save_checkpoint(tempfile.mkdtemp(), tm))
    >>> bool(np.array_equal(back.params["logits"]["kernel"], tm.params["logits"]["kernel"]))
    True
    """
    import jax
    import jax.numpy as jnp
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
    trained = TrainedModel(meta["model"], _freeze(meta["model_kwargs"]),
                           restored["params"], restored.get("batch_stats") or {}, info=meta)
    expected = jax.eval_shape(trained.module.init, jax.random.key(0),
                              jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE), jnp.float32))
    got = {"params": trained.params, "batch_stats": trained.batch_stats}
    want = {"params": expected["params"], "batch_stats": dict(expected.get("batch_stats", {}))}
    shapes = jax.tree_util.tree_map(lambda a: tuple(np.shape(a)), got)
    if shapes != jax.tree_util.tree_map(lambda a: tuple(a.shape), want):
        raise ValueError(
            f"{directory}: the weights do not fit model {meta['model']!r} with "
            f"{meta['model_kwargs']}"
        )
    return trained


def _write_json(path: Path, payload: Any) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(payload), indent=1, sort_keys=True) + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("ferclean", "jax", "jaxlib", "flax", "optax"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    return out


# ---------------------------------------------------------------------- inference
def _batched(fn: Callable[[int, int, int], Any], n: int, batch_size: int) -> np.ndarray:
    """Run ``fn(start, stop, padded_size)`` over fixed-size batches; stack the results."""
    if n == 0:
        raise ValueError("no images given")
    # Every batch is padded to one size, so one compiled function serves them all; a
    # call with fewer images than batch_size pads to a power of two (at least 8), so
    # small calls of different sizes share a few compiled shapes.
    batch = min(batch_size, max(8, 1 << (n - 1).bit_length()))
    outs = [np.asarray(fn(start, min(start + batch, n), batch)) for start in range(0, n, batch)]
    return np.concatenate([o[: min(batch, n - i * batch)] for i, o in enumerate(outs)])


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if len(array) == size:
        return array
    pad = np.zeros((size - len(array), *array.shape[1:]), array.dtype)
    return np.concatenate([array, pad])


def predict(
    trained: TrainedModel, images: Any, *, batch_size: int = 256, logits: bool = False
) -> np.ndarray:
    """Class probabilities (or logits) for images, in inference mode.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
        Pixel values 0..255.
    batch_size : int, default=256
    logits : bool, default=False
        Return raw logits instead of softmax probabilities.

    Returns
    -------
    ndarray of float32, shape (N, n_classes)

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> p = predict(tm, np.zeros((3, 48, 48), np.uint8))
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1, atol=1e-5))
    ((3, 7), True)
    """
    out = _apply(trained, images, batch_size, embedding=False)
    if logits:
        return out
    shifted = out - out.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def embed(trained: TrainedModel, images: Any, *, batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features, e.g. for nearest-neighbour or outlier auditors.

    ``cnn_lstm`` gives the 200-d ReLU dense layer, ``cnn_mha`` the 128-d pooled features.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> embed(tm, np.zeros((3, 48, 48), np.uint8)).shape
    (3, 5)
    """
    return _apply(trained, images, batch_size, embedding=True)


def _as_trained(trained: Any) -> TrainedModel:
    """Accept a TrainResult wherever a TrainedModel is wanted."""
    if isinstance(trained, TrainResult):
        return trained.model
    if not isinstance(trained, TrainedModel):
        raise TypeError(f"expected a TrainedModel or TrainResult; got {type(trained).__name__}")
    return trained


def _apply(trained: TrainedModel, images: Any, batch_size: int, *, embedding: bool) -> np.ndarray:
    trained = _as_trained(trained)
    pixels = as_pixels(images)
    forward = _jax().forward
    variables = trained.variables
    module = trained.module

    def run(start: int, stop: int, size: int) -> Any:
        return forward(variables, _pad(pixels[start:stop], size), module=module,
                       embedding=embedding)

    return _batched(run, len(pixels), batch_size).astype(np.float32)


def saliency(
    trained: TrainedModel,
    images: Any,
    *,
    targets: Sequence[int] | np.ndarray | None = None,
    absolute: bool = True,
    batch_size: int = 128,
) -> np.ndarray:
    """Gradient of a class score (logit) with respect to the input pixels.

    The saliency map of Simonyan et al. (2014): where a small change of the image would
    change the class score most. Gradients are taken with respect to the ``[0, 1]``
    input the network sees.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
    targets : sequence of int, default=None
        Class per image whose score is differentiated; ``None`` (or -1 entries) uses the
        predicted class.
    absolute : bool, default=True
        Return ``|gradient|`` (the saliency map); False returns the signed gradient.
    batch_size : int, default=128

    Returns
    -------
    ndarray of float32, shape (N, 48, 48)

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    >>> s = saliency(tm, images)
    >>> s.shape, bool(s.max() > 0)
    ((2, 48, 48), True)
    """
    trained = _as_trained(trained)
    pixels = as_pixels(images)
    n = len(pixels)
    tgt = np.full(n, -1, np.int32) if targets is None else np.asarray(targets, np.int32)
    if tgt.shape != (n,):
        raise ValueError(f"targets must have shape ({n},); got {tgt.shape}")
    grad_fn = _jax().saliency
    variables = trained.variables
    module = trained.module

    def run(start: int, stop: int, size: int) -> Any:
        return grad_fn(variables, _pad(pixels[start:stop], size),
                       _pad(tgt[start:stop], size), module=module)

    grads = _batched(run, n, batch_size).astype(np.float32)
    return np.abs(grads) if absolute else grads
