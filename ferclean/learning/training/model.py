"""A registered model together with its weights: :class:`TrainedModel`, :func:`init_model`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ferclean.learning.training.config import TrainConfig, _freeze
from ferclean.learning.training.steps import _init_variables, _variables, input_size

__all__ = ["TrainedModel", "init_model"]


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
    crop : int, default=None
        The side of the centre crop the model sees (it was trained on ``crop x crop``
        crops, :attr:`TrainConfig.augment`); None: the whole 48x48 image.
    tta : {None, "flip", "ten_crop"}, default=None
        The test-time augmentation :func:`~ferclean.learning.predict_proba` and
        :func:`~ferclean.learning.evaluate` apply by default (:attr:`TrainConfig.tta`).

    See Also
    --------
    init_model, ferclean.learning.load_checkpoint, ferclean.learning.train

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
    crop: int | None = None
    tta: str | None = None

    @property
    def module(self) -> Any:
        """The unbound Flax module (one object per name and arguments, so jit caches hit)."""
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


def init_model(model: str, *, seed: int = 0, crop: int | None = None,
               tta: str | None = None, **kwargs: Any) -> TrainedModel:
    """A registered model with freshly initialised (untrained) weights.

    Parameters
    ----------
    model : str
        Registered name.
    seed : int, default=0
    crop : int, default=None
        Initialise for ``crop x crop`` inputs (centre crops at prediction time).
    tta : {None, "flip", "ten_crop"}, default=None
        Test-time augmentation for predictions (:attr:`TrainedModel.tta`).
    **kwargs
        Model arguments.

    Returns
    -------
    TrainedModel

    Examples
    --------
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> tm.n_params, sorted(tm.variables)
    (771, ['params'])
    """
    variables = _init_variables(_module(model, kwargs), seed, input_size({"crop": crop}))
    return TrainedModel(model, _freeze(dict(kwargs)), variables["params"],
                        dict(variables.get("batch_stats", {})), crop=crop, tta=tta)


@functools.lru_cache(maxsize=16)
def _cached_module(name: str, kwargs: tuple[tuple[str, Any], ...]) -> Any:
    from ferclean.learning.models import get_model

    return get_model(name, **dict(kwargs))


def _module(name: str, kwargs: Mapping[str, Any]) -> Any:
    """The Flax module for a name and arguments, cached: jit keys on its identity."""
    return _cached_module(name, tuple(sorted(_freeze(dict(kwargs)).items())))


def _trained(config: TrainConfig, params: Any, batch_stats: Any,
             info: Mapping[str, Any] | None = None) -> TrainedModel:
    """The model a config describes, with these weights."""
    crop = dict(config.augment).get("crop")
    return TrainedModel(config.model, dict(config.model_kwargs), params, batch_stats,
                        info=dict(info or {}), crop=None if crop is None else int(crop),
                        tta=config.tta)
