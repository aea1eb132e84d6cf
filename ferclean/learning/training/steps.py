"""The numerics: pure, jit-compiled steps, the optimiser and the initial train state.

* uint8 pixels become ``[0, 1]`` floats inside the step (no host-side copy);
* the loss is cross-entropy, optionally class-weighted as Keras' ``class_weight``:
  ``sum(w * ce) / batch``;
* the optimiser is Optax Adam with its learning rate held in the optimiser state
  (``optax.inject_hyperparams``), so callbacks change it without recompiling.

JAX, Flax and Optax are imported on the first call of :func:`_jax`, never at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ferclean.dataset import IMAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.learning.training.config import TrainConfig

__all__ = ["PRNG_IMPL", "create_train_state", "eval_step", "train_step", "train_steps"]

#: JAX PRNG implementation for weight initialisation and dropout. XLA's RngBitGenerator
#: ("rbg") compiled 1.5-2x faster on a 2-core CPU than the default threefry; its bits
#: are deterministic for a given backend and JAX version.
PRNG_IMPL = "rbg"


def _normalise(images: Any) -> Any:
    """uint8 pixels to float32 in [0, 1]; runs inside jit, so no host-side copy."""
    import jax.numpy as jnp

    return images.astype(jnp.float32) / 255.0


def _variables(params: Any, batch_stats: Any) -> dict[str, Any]:
    """What ``module.apply`` wants; models without BatchNorm have no ``batch_stats``."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


# ---------------------------------------------------------------------- pure functions
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


# ---------------------------------------------------------------------- public steps
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
    >>> from ferclean.learning import TrainConfig
    >>> from ferclean.learning.models import TINY, get_model
    >>> state = create_train_state(get_model("cnn_mha", **TINY["cnn_mha"]), TrainConfig(), 0)
    >>> batch = {"image": np.zeros((2, 48, 48), np.uint8), "label": np.array([0, 3]),
    ...          "weight": np.ones(2, np.float32)}
    >>> state, metrics = train_step(state, batch, jax.random.key(1, impl=PRNG_IMPL))
    >>> int(state.step), sorted(metrics)
    (1, ['correct', 'loss_sum'])
    """
    return _jax().train_step(state, batch, rng)


def train_steps(state: Any, data: Mapping[str, Any], batch_index: Any,
                rng: Any) -> tuple[Any, dict]:
    """Several optimisation steps fused into one jitted call (a ``lax.scan``).

    Parameters
    ----------
    state : TrainState
    data : mapping
        ``"image"``, ``"label"``, ``"weight"`` for the whole training set, already on the
        device (``jax.device_put``); each step gathers its batch there.
    batch_index : int32 array, shape (n_steps, B)
        Row numbers into ``data``, one row per step.
    rng : jax key
        As for :func:`train_step`.

    Returns
    -------
    state, metrics
        As :func:`train_step`, each metric with a leading ``n_steps`` axis.

    Examples
    --------
    >>> import jax, numpy as np
    >>> from ferclean.learning import TrainConfig
    >>> from ferclean.learning.models import TINY, get_model
    >>> state = create_train_state(get_model("cnn_mha", **TINY["cnn_mha"]), TrainConfig(), 0)
    >>> data = jax.device_put({"image": np.zeros((4, 48, 48), np.uint8),
    ...                        "label": np.zeros(4, np.int32), "weight": np.ones(4, np.float32)})
    >>> index = np.array([[0, 1], [2, 3]], np.int32)
    >>> state, metrics = train_steps(state, data, index, jax.random.key(1, impl=PRNG_IMPL))
    >>> int(state.step), metrics["correct"].shape
    (2, (2,))
    """
    return _jax().train_steps(state, data, batch_index, rng)


def eval_step(state: Any, batch: Mapping[str, Any]) -> dict:
    """Jitted evaluation of one batch in inference mode (no dropout, running BN stats).

    Parameters
    ----------
    state : TrainState
    batch : mapping
        As for :func:`train_step`, with ``"weight"`` 1 for real images and 0 for padding.

    Returns
    -------
    dict
        Sums over the batch: ``loss_sum`` (unweighted cross-entropy), ``correct``, ``count``.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning import TrainConfig
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

    Returns
    -------
    TrainState
        Flax's ``TrainState`` with a ``batch_stats`` field (an empty dict without BatchNorm).

    Examples
    --------
    >>> from ferclean.learning import TrainConfig
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


# The optimiser and the jitted init are cached so that a second run with the same
# settings finds jit's compiled steps: jit keys on the TrainState's static fields
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


def _with_learning_rate(state: Any, lr: float) -> Any:
    """The state with another learning rate in Adam's hyperparameters (no recompilation)."""
    import jax.numpy as jnp

    hyper = dict(state.opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, dtype=hyper["learning_rate"].dtype)
    return state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))
