"""The numerics: pure, jit-compiled steps, the optimiser and the initial train state.

* uint8 pixels become ``[0, 1]`` floats inside the step (no host-side copy);
* the loss is cross-entropy, optionally class-weighted as Keras' ``class_weight``:
  ``sum(w * ce) / batch``;
* training images are augmented inside the step (:mod:`ferclean.learning.augment`),
  with a key derived from the step count as dropout's; evaluation takes the centre crop;
* the optimiser is Optax Adam (AdamW with weight decay) or SGD with (Nesterov) momentum
  and decoupled weight decay, its learning rate held in the optimiser state
  (``optax.inject_hyperparams``), so callbacks and schedules change it without recompiling;
* ``compute_dtype="bfloat16"`` casts a copy of the weights and the images to bfloat16 for
  the forward and backward passes; the weights, the optimiser and the loss stay float32.

JAX, Flax and Optax are imported on the first call of :func:`_jax`, never at import time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np

from ferclean.dataset import IMAGE_SIZE
from ferclean.learning.augment import AugmentSpec, augment_batch, centre_crop, tta_views

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.learning.training.config import TrainConfig

__all__ = ["PRNG_IMPL", "create_train_state", "eval_step", "train_step", "train_steps"]

#: JAX PRNG implementation for weight initialisation and dropout. XLA's RngBitGenerator
#: ("rbg") compiled 1.5-2x faster on a 2-core CPU than the default threefry; its bits
#: are deterministic for a given backend and JAX version.
PRNG_IMPL = "rbg"
# Folded into the base key before the step count: augmentation draws from another stream
# than dropout, which folds in the step count only.
_AUGMENT_STREAM = 0x61756700
NO_AUGMENT = AugmentSpec()  # the default: images pass through unchanged


def _normalise(images: Any) -> Any:
    """uint8 pixels to float32 in [0, 1]; runs inside jit, so no host-side copy."""
    import jax.numpy as jnp

    return images.astype(jnp.float32) / 255.0


def _cast_floats(tree: Any, dtype: Any) -> Any:
    """Floating leaves of a pytree cast to ``dtype`` (integer leaves untouched)."""
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(
        lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def _variables(params: Any, batch_stats: Any) -> dict[str, Any]:
    """What ``module.apply`` wants; models without BatchNorm have no ``batch_stats``."""
    return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


# ---------------------------------------------------------------------- pure functions
def _train_step_impl(state: Any, batch: Mapping[str, Any], rng: Any, *,
                     augment: AugmentSpec = NO_AUGMENT,
                     compute_dtype: str = "float32") -> tuple[Any, dict]:
    import jax
    import jax.numpy as jnp
    import optax

    x = _normalise(batch["image"])
    labels = batch["label"]
    has_bn = bool(state.batch_stats)  # static: the pytree's structure, not its values
    # One dropout key per step, derived from the step count: pure and reproducible.
    dropout_key = jax.random.fold_in(rng, state.step)
    if not augment.is_identity:
        augment_key = jax.random.fold_in(jax.random.fold_in(rng, _AUGMENT_STREAM), state.step)
        x = augment_batch(x, augment_key, augment)
    low = compute_dtype != "float32"
    if low:
        x = x.astype(compute_dtype)

    def loss_fn(params: Any) -> tuple[Any, tuple[Any, Any]]:
        # bfloat16: the gradient flows back through the cast to the float32 weights.
        weights = _cast_floats(params, compute_dtype) if low else params
        out = state.apply_fn(
            _variables(weights, state.batch_stats), x, train=True,
            rngs={"dropout": dropout_key}, mutable=["batch_stats"] if has_bn else False,
        )
        logits, updates = out if has_bn else (out, {})
        logits = logits.astype(jnp.float32)
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


def _train_steps_impl(state: Any, data: Mapping[str, Any], batch_index: Any, rng: Any, *,
                      augment: AugmentSpec = NO_AUGMENT,
                      compute_dtype: str = "float32") -> tuple[Any, dict]:
    """``len(batch_index)`` steps in one call; batches are gathered from device arrays."""
    import jax

    def step(state: Any, index: Any) -> tuple[Any, dict]:
        batch = {key: value[index] for key, value in data.items()}
        return _train_step_impl(state, batch, rng, augment=augment,
                                compute_dtype=compute_dtype)

    return jax.lax.scan(step, state, batch_index)


def _eval_step_impl(state: Any, batch: Mapping[str, Any], *, crop: int | None = None) -> dict:
    import jax.numpy as jnp
    import optax

    logits = state.apply_fn(
        _variables(state.params, state.batch_stats),
        centre_crop(_normalise(batch["image"]), crop), train=False,
    )
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
    mask = batch["weight"]  # 0 for padding rows, so one compiled shape serves every batch
    return {
        "loss_sum": jnp.sum(ce * mask),
        "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
        "count": jnp.sum(mask),
    }


def _forward_impl(variables: Any, images: Any, *, module: Any, embedding: bool,
                  crop: int | None = None, tta: str | None = None) -> Any:
    import jax
    import jax.numpy as jnp

    x = _normalise(images)
    if embedding or tta is None:
        return module.apply(variables, centre_crop(x, crop), train=False,
                            return_embedding=embedding)
    views = tta_views(x, crop, tta)  # (V, B, side, side), one forward pass for all
    n_views, batch = views.shape[:2]
    logits = module.apply(variables, views.reshape(n_views * batch, *views.shape[2:]),
                          train=False).reshape(n_views, batch, -1)
    # The log of the mean probability (softmax of it gives the averaged probabilities),
    # through logsumexp so that a vanishing probability stays finite.
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jax.scipy.special.logsumexp(log_probs, axis=0) - jnp.log(n_views)


def _saliency_impl(variables: Any, images: Any, targets: Any, *, module: Any,
                   crop: int | None = None) -> Any:
    import jax
    import jax.numpy as jnp

    def score(x: Any) -> Any:
        # Through the centre crop: pixels outside it get a zero gradient.
        logits = module.apply(variables, centre_crop(x, crop), train=False)
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
        train_step=jax.jit(_train_step_impl, donate_argnums=donate,
                           static_argnames=("augment", "compute_dtype")),
        train_steps=jax.jit(_train_steps_impl, donate_argnums=donate,
                            static_argnames=("augment", "compute_dtype")),
        eval_step=jax.jit(_eval_step_impl, static_argnames=("crop",)),
        forward=jax.jit(_forward_impl,
                        static_argnames=("module", "embedding", "crop", "tta")),
        saliency=jax.jit(_saliency_impl, static_argnames=("module", "crop")),
    )


# ---------------------------------------------------------------------- public steps
def train_step(state: Any, batch: Mapping[str, Any], rng: Any, *,
               augment: Mapping[str, Any] | None = None,
               compute_dtype: str = "float32") -> tuple[Any, dict]:
    """One jitted optimisation step: ``(state, batch, rng) -> (state, metrics)``.

    Parameters
    ----------
    state : TrainState
        From :func:`create_train_state`: params, Adam state, BatchNorm statistics.
    batch : mapping
        ``"image"`` uint8 ``(B, 48, 48)``, ``"label"`` int32 ``(B,)``, ``"weight"``
        float32 ``(B,)`` (per-image loss weight: the class weight, or 1).
    rng : jax key
        Base dropout key; the step folds in its own step number (and, for the
        augmentation's draws, a constant first).
    augment : mapping, default=None
        :attr:`TrainConfig.augment`: transforms applied to the batch inside the step
        (:func:`ferclean.learning.augment.augment_batch`); None or empty for none.
    compute_dtype : {"float32", "bfloat16"}, default="float32"
        Precision of the forward and backward passes (the weights stay float32).

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
    return _jax().train_step(state, batch, rng, augment=AugmentSpec.of(augment),
                             compute_dtype=compute_dtype)


def train_steps(state: Any, data: Mapping[str, Any], batch_index: Any, rng: Any, *,
                augment: Mapping[str, Any] | None = None,
                compute_dtype: str = "float32") -> tuple[Any, dict]:
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
    augment, compute_dtype
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
    return _jax().train_steps(state, data, batch_index, rng, augment=AugmentSpec.of(augment),
                              compute_dtype=compute_dtype)


def eval_step(state: Any, batch: Mapping[str, Any], *, crop: int | None = None) -> dict:
    """Jitted evaluation of one batch in inference mode (no dropout, running BN stats).

    Parameters
    ----------
    state : TrainState
    batch : mapping
        As for :func:`train_step`, with ``"weight"`` 1 for real images and 0 for padding.
    crop : int, default=None
        Evaluate the centre ``crop x crop`` window (a model trained on crops).

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
    return _jax().eval_step(state, batch, crop=crop)


def create_train_state(module: Any, config: TrainConfig, key: Any) -> Any:
    """Initialise a model's weights and its optimiser's state (Adam or SGD).

    The learning rate lives in the optimiser state (``optax.inject_hyperparams``), so
    reduce-LR-on-plateau and the schedules change it without recompiling the step.

    Parameters
    ----------
    module : flax.linen.Module
    config : TrainConfig
        Supplies the optimiser's settings and, with ``augment["crop"]``, the input side
        the weights are initialised for.
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
    variables = _init_variables(module, key, input_size(config.augment))
    if config.optimizer == "sgd":
        tx = _sgd(config.learning_rate, config.momentum, config.nesterov, config.weight_decay)
    else:
        tx = _optimizer(config.learning_rate, config.adam_b1, config.adam_b2, config.adam_eps,
                        config.weight_decay)
    return parts.TrainState.create(
        apply_fn=module.apply, params=variables["params"], tx=tx,
        batch_stats=dict(variables.get("batch_stats", {})),
    )


# The optimiser and the jitted init are cached so that a second run with the same
# settings finds jit's compiled steps: jit keys on the TrainState's static fields
# (apply_fn, tx), which compare by identity.
@functools.lru_cache(maxsize=16)
def _optimizer(learning_rate: float, b1: float, b2: float, eps: float,
               weight_decay: float = 0.0) -> Any:
    import optax

    if weight_decay:  # decoupled: AdamW (optax decays every parameter)
        return optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate, b1=b1, b2=b2,
                                                     eps=eps, weight_decay=weight_decay)
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate, b1=b1, b2=b2,
                                                eps=eps)


def _sgd_chain(learning_rate: Any, momentum: float, nesterov: bool,
               weight_decay: float) -> Any:
    import optax

    parts = []
    if momentum:
        parts.append(optax.trace(decay=momentum, nesterov=nesterov))
    if weight_decay:
        # After the momentum, so the decay is decoupled from it (as AdamW's from Adam).
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optax.scale_by_learning_rate(learning_rate))
    return optax.chain(*parts)


@functools.lru_cache(maxsize=16)
def _sgd(learning_rate: float, momentum: float, nesterov: bool, weight_decay: float) -> Any:
    import optax

    return optax.inject_hyperparams(
        _sgd_chain, static_args=("momentum", "nesterov", "weight_decay"))(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay)


def input_size(augment: Mapping[str, Any] | None) -> int:
    """The side of the images a model sees: ``augment["crop"]``, else 48.

    Examples
    --------
    >>> input_size({"crop": 40}), input_size({})
    (40, 48)
    """
    crop = (augment or {}).get("crop")
    return IMAGE_SIZE if crop is None else int(crop)


@functools.lru_cache(maxsize=16)
def _init_fn(module: Any) -> Callable[..., Any]:
    # jit: one compilation instead of one per primitive, much faster on CPU.
    return _jax().jax.jit(module.init)


def _init_variables(module: Any, key: Any, size: int = IMAGE_SIZE) -> dict[str, Any]:
    import jax.numpy as jnp

    jax = _jax().jax
    if isinstance(key, (int, np.integer)):
        key = jax.random.key(int(key), impl=PRNG_IMPL)
    return _init_fn(module)(key, jnp.zeros((1, size, size), jnp.float32))


def _with_learning_rate(state: Any, lr: float) -> Any:
    """The state with another learning rate in Adam's hyperparameters (no recompilation)."""
    import jax.numpy as jnp

    hyper = dict(state.opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, dtype=hyper["learning_rate"].dtype)
    return state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))
