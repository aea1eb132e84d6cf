"""The training configuration and the two callbacks the loop runs after every epoch.

Nothing here imports JAX: the CLI builds a :class:`TrainConfig` before anything heavy loads.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.utils import check_scalar

from ferclean.dataset import EMOTIONS

__all__ = ["EarlyStopping", "ReduceLROnPlateau", "TrainConfig"]

_N_CLASSES = len(EMOTIONS)


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
        Initial learning rate (Adam or SGD).
    adam_b1, adam_b2, adam_eps : float, default=0.9, 0.999, 1e-7
        Adam's decay rates and epsilon (Keras' defaults; Optax's epsilon is 1e-8).
    lr_factor : float, default=0.1
        Reduce-LR-on-plateau multiplies the learning rate by this (``schedule="plateau"``).
    lr_patience : int, default=2
        Epochs without improvement of ``monitor`` before reducing the rate (``"plateau"``).
    lr_min_delta : float, default=1e-4
        Least change (a decrease of a loss, an increase of an accuracy) that counts as an
        improvement for the reduction (Keras' default).
    min_lr : float, default=0.0
        The learning rate is never reduced below this.
    early_stopping_patience : int or None, default=5
        Epochs without improvement before stopping; ``None`` never stops early.
    restore_best : bool, default=True
        Return the weights of the best epoch (best ``monitor`` value), not the last.
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
    optimizer : {"adam", "sgd"}, default="adam"
        Adam (``adam_b1``, ``adam_b2``, ``adam_eps``) or SGD with momentum.
    momentum : float, default=0.9
        SGD's momentum (ignored by Adam).
    nesterov : bool, default=True
        Nesterov momentum for SGD (ignored by Adam).
    weight_decay : float, default=0.0
        Decoupled weight decay (Loshchilov & Hutter): every step subtracts
        ``learning_rate * weight_decay * param`` beside the optimiser's update, outside
        Adam's moments and SGD's momentum (Adam becomes AdamW). PyTorch's SGD
        ``weight_decay`` is an L2 term inside the momentum; at momentum ``m`` it shrinks the
        weights about ``1 / (1 - m)`` times as much (10x at 0.9) as the same value here.
    schedule : {"plateau", "cosine", "constant"}, default="plateau"
        How the learning rate changes across epochs: reduce-on-plateau of ``monitor``
        (``lr_factor``, ``lr_patience``, ``lr_min_delta``, ``min_lr``); a cosine decay from
        ``learning_rate`` to ``min_lr`` over ``epochs`` (set per epoch); or constant.
    monitor : {"val_loss", "val_accuracy"}, default="val_loss"
        What the plateau schedule, early stopping and the best-weights choice watch. Without
        validation data the training ``loss`` or ``accuracy`` is watched instead.
    monitor_mode : {"min", "max"} or None, default=None
        Whether lower or higher is better; ``None``: ``"min"`` for a loss, ``"max"`` for an
        accuracy.
    warmup_epochs : int, default=0
        Epochs of linear warm-up before the schedule: epoch ``e <= warmup_epochs`` trains
        at ``learning_rate * e / (warmup_epochs + 1)``.
    augment : mapping, default={}
        Training-time augmentation inside the compiled step
        (:func:`ferclean.learning.augment.augment_batch`); empty: none. Keys, each optional:
        ``crop`` (int, output side: a random crop of the reflect-padded image while
        training, the centre crop for validation and prediction; the model then sees
        ``crop x crop`` images), ``flip`` (bool, random horizontal mirror), ``rotation``
        (largest angle in degrees), ``scale`` (largest relative zoom, e.g. 0.2 for 0.8x to
        1.2x), ``erasing`` (probability of random erasing per image).
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation of the trained model's predictions (not of the validation
        during training): ``"flip"`` averages the probabilities of each image and its
        mirror; ``"ten_crop"`` those of the four corner crops, the centre crop and their
        mirrors (with ``augment["crop"]``; without a crop it is ``"flip"``).
    compute_dtype : {"float32", "bfloat16"}, default="float32"
        Precision of the forward and backward passes while training. The weights, the
        optimiser state, the loss and the BatchNorm statistics stay float32; bfloat16 is
        for GPUs (on a CPU it is slower).

    See Also
    --------
    ferclean.learning.train : runs a config.

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
    optimizer: str = "adam"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    schedule: str = "plateau"
    monitor: str = "val_loss"
    monitor_mode: str | None = None
    warmup_epochs: int = 0
    augment: Mapping[str, Any] = field(default_factory=dict)
    tta: str | None = None
    compute_dtype: str = "float32"

    def __post_init__(self) -> None:
        # Copies, with lists made tuples: the config must not change under the caller's
        # feet, and model fields must be hashable for jit's static arguments.
        object.__setattr__(self, "model_kwargs", _freeze(dict(self.model_kwargs)))
        object.__setattr__(self, "augment", _freeze(dict(self.augment)))
        if isinstance(self.class_weight, Mapping):
            object.__setattr__(
                self, "class_weight", {int(k): float(v) for k, v in self.class_weight.items()}
            )

    def validate(self) -> TrainConfig:
        """Check every value; return ``self``. Called by :func:`ferclean.learning.train`.

        Returns
        -------
        TrainConfig
            ``self``, unchanged.

        Raises
        ------
        ValueError, TypeError
            Naming the field, the value received and the allowed range.

        Examples
        --------
        >>> TrainConfig(batch_size=0).validate()
        Traceback (most recent call last):
        ...
        ValueError: batch_size == 0, must be >= 1.
        """
        from ferclean.learning.models import MODELS, model_names

        if self.model not in MODELS:
            raise ValueError(
                f"unknown model {self.model!r}; expected one of: {', '.join(model_names())}"
            )
        integers = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "lr_patience": 0,
                    "seed": 0, "steps_per_call": 1, "early_stopping_patience": 0}
        optional = {"steps_per_call", "early_stopping_patience"}  # None: automatic / never
        for name, low in integers.items():
            if not (name in optional and getattr(self, name) is None):
                check_scalar(getattr(self, name), name, numbers.Integral, min_val=low)
        check_scalar(self.learning_rate, "learning_rate", numbers.Real, min_val=0,
                     include_boundaries="neither")
        if not math.isfinite(self.learning_rate):
            raise ValueError(f"learning_rate must be finite; got {self.learning_rate!r}")
        check_scalar(self.lr_factor, "lr_factor", numbers.Real, min_val=0, max_val=1,
                     include_boundaries="neither")
        check_scalar(self.min_lr, "min_lr", numbers.Real, min_val=0)
        check_scalar(self.lr_min_delta, "lr_min_delta", numbers.Real, min_val=0)
        self._validate_class_weight()
        self._validate_recipe()
        from ferclean.learning.augment import check_augment

        check_augment(self.augment)
        return self

    @property
    def mode(self) -> str:
        """``monitor_mode``, or the mode ``monitor`` implies: ``"min"`` for a loss.

        Examples
        --------
        >>> TrainConfig().mode, TrainConfig(monitor="val_accuracy").mode
        ('min', 'max')
        """
        if self.monitor_mode is not None:
            return self.monitor_mode
        return "max" if self.monitor.endswith("accuracy") else "min"

    def _validate_recipe(self) -> None:
        choices = {"optimizer": ("adam", "sgd"), "schedule": ("plateau", "cosine", "constant"),
                   "monitor": ("val_loss", "val_accuracy"), "monitor_mode": (None, "min", "max"),
                   "tta": (None, "flip", "ten_crop"),
                   "compute_dtype": ("float32", "bfloat16")}
        for name, allowed in choices.items():
            value = getattr(self, name)
            if not isinstance(value, str | None) or value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; "
                                 f"got {value!r}")
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be True or False; got {self.nesterov!r}")
        check_scalar(self.momentum, "momentum", numbers.Real, min_val=0, max_val=1,
                     include_boundaries="left")
        check_scalar(self.weight_decay, "weight_decay", numbers.Real, min_val=0)
        check_scalar(self.warmup_epochs, "warmup_epochs", numbers.Integral, min_val=0)
        for name in ("momentum", "weight_decay"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite; got {getattr(self, name)!r}")

    def _validate_class_weight(self) -> None:
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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists, class-weight keys strings).

        Examples
        --------
        >>> TrainConfig(model_kwargs={"kernel_sizes": (3, 1)}).to_dict()["model_kwargs"]
        {'kernel_sizes': [3, 1]}
        """
        out = dataclasses.asdict(self)
        out["model_kwargs"] = _jsonable(dict(self.model_kwargs))
        out["augment"] = _jsonable(dict(self.augment))
        if isinstance(self.class_weight, Mapping):
            out["class_weight"] = {str(k): v for k, v in self.class_weight.items()}
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys raise ``TypeError``.

        Examples
        --------
        >>> TrainConfig.from_dict({"epochs": 2}).epochs
        2
        """
        return cls(**dict(values))


def _freeze(value: Any) -> Any:
    """Lists to tuples, recursively (dict values included): hashable model arguments."""
    if isinstance(value, Mapping):
        return {str(k): _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    """Tuples to lists and numpy scalars to Python ones, recursively (``_freeze`` undone)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _improves(value: float, best: float, min_delta: float, mode: str) -> bool:
    """Keras' test: below ``best - min_delta`` (``"min"``) or above ``best + min_delta``."""
    if mode == "min":
        return value < best - min_delta
    return value > best + min_delta


def _check_mode(mode: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
    return mode


class ReduceLROnPlateau:
    """Multiply the learning rate by ``factor`` when a quantity stops improving (Keras rules).

    An epoch improves when its value is below ``best - min_delta`` (mode ``"min"``, a
    loss) or above ``best + min_delta`` (mode ``"max"``, an accuracy). After ``patience``
    epochs in a row without improvement the rate is reduced (never below ``min_lr``) and
    the count starts again.

    Parameters
    ----------
    factor : float, default=0.1
    patience : int, default=2
    min_delta : float, default=1e-4
    min_lr : float, default=0.0
    mode : {"min", "max"}, default="min"

    Attributes
    ----------
    best : float
        Best value seen so far.
    wait : int
        Epochs since the last improvement (or reduction).

    Examples
    --------
    >>> cb = ReduceLROnPlateau(factor=0.1, patience=2)
    >>> [round(cb.update(loss, 1.0), 3) for loss in (1.0, 0.9, 0.95, 0.91)]
    [1.0, 1.0, 1.0, 0.1]
    >>> cb = ReduceLROnPlateau(factor=0.5, patience=1, mode="max")
    >>> [cb.update(acc, 1.0) for acc in (0.5, 0.6, 0.6)]
    [1.0, 1.0, 0.5]
    """

    def __init__(
        self, *, factor: float = 0.1, patience: int = 2, min_delta: float = 1e-4,
        min_lr: float = 0.0, mode: str = "min",
    ) -> None:
        self.factor = factor
        self.patience = patience
        self.min_delta = min_delta
        self.min_lr = min_lr
        self.mode = _check_mode(mode)
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0

    def update(self, value: float, lr: float) -> float:
        """Record this epoch's value; return the learning rate for the next epoch.

        Examples
        --------
        >>> ReduceLROnPlateau(patience=0).update(1.0, 0.5)  # the first epoch improves
        0.5
        """
        if _improves(value, self.best, self.min_delta, self.mode):
            self.best, self.wait = value, 0
            return lr
        self.wait += 1
        if self.wait >= self.patience and lr > self.min_lr:
            self.wait = 0
            return max(lr * self.factor, self.min_lr)
        return lr


class EarlyStopping:
    """Stop after ``patience`` epochs without a new best value; remember the best epoch.

    Keras' rule: an epoch improves when its value is below ``best - min_delta`` (mode
    ``"min"``) or above ``best + min_delta`` (mode ``"max"``), so a larger ``min_delta``
    asks for a larger improvement.

    Parameters
    ----------
    patience : int or None, default=5
        ``None`` never stops.
    min_delta : float, default=0.0
    mode : {"min", "max"}, default="min"

    Attributes
    ----------
    best, best_epoch : float, int
        Best value so far and its epoch.
    should_stop : bool
        Set once ``patience`` epochs in a row failed to improve.

    Examples
    --------
    >>> cb = EarlyStopping(patience=2)
    >>> [cb.update(loss, epoch) for epoch, loss in enumerate((1.0, 0.8, 0.9, 0.85), 1)]
    [True, True, False, False]
    >>> cb.should_stop, cb.best_epoch
    (True, 2)
    >>> cb = EarlyStopping(patience=None, min_delta=0.05)
    >>> [cb.update(loss, epoch) for epoch, loss in enumerate((1.0, 0.97, 0.9), 1)]
    [True, False, True]
    """

    def __init__(self, *, patience: int | None = 5, min_delta: float = 0.0,
                 mode: str = "min") -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.mode = _check_mode(mode)
        self.best = math.inf if mode == "min" else -math.inf
        self.best_epoch = 0
        self.wait = 0
        self.should_stop = False

    def update(self, value: float, epoch: int) -> bool:
        """Record this epoch's value; return True when it is the best so far.

        Examples
        --------
        >>> EarlyStopping().update(0.5, 1)
        True
        """
        if _improves(value, self.best, self.min_delta, self.mode):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True
        self.wait += 1
        if self.patience is not None and self.wait >= self.patience:
            self.should_stop = True
        return False
