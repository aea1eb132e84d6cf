"""Reference classifiers for FER-2013, registered by name.

The registry knows every built-in model by name without importing JAX: an entry holds
the dotted path of its Flax module class and is resolved only by :func:`get_model`. So
``import ferclean.learning.models`` (and a CLI that lists ``--model`` choices) stays light, and
the heavy imports happen only when a model is really built.

Built-in models (see ``docs/models.md``):

* ``cnn_lstm`` -- :class:`ferclean.learning.models.cnn_lstm.CNNLSTM`, the study's final CNN-LSTM;
* ``cnn_mha`` -- :class:`ferclean.learning.models.cnn_mha.CNNMHA`, the study's CNN with
  multi-head attention (called "ViT" there);
* ``vgg`` -- :class:`ferclean.learning.models.vgg.VGG`, a VGG-class reference net (four
  stages of two conv-BN-ReLU layers, 64 to 512 channels; Khaireddin & Chen, 2021).

Every model maps a batch of grayscale images in ``[0, 1]``, shape ``(B, S, S)`` or
``(B, S, S, 1)``, to ``(B, num_classes)`` logits; ``S`` is 48, or the crop side when the
model is trained on crops (``TrainConfig.augment["crop"]``, e.g. 40 or 44). ``train``
switches dropout (and batch statistics) on; ``return_embedding=True`` returns the
penultimate layer instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MODELS",
    "TINY",
    "ModelSpec",
    "count_params",
    "get_model",
    "model_names",
    "register_model",
]


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: a name and where its Flax module class lives.

    Parameters
    ----------
    name : str
        Registry key, as passed to :func:`get_model` and ``--model``.
    target : str or type
        The Flax ``nn.Module`` subclass, or its ``"package.module:ClassName"`` path,
        imported on first use so that the registry itself never imports JAX.
    description : str, default=""
        One line for ``--help`` texts and listings.
    study_params : int, default=None
        Trainable parameter count the original study reports, for comparison.

    Examples
    --------
    >>> spec = MODELS["cnn_lstm"]
    >>> spec.name, spec.target
    ('cnn_lstm', 'ferclean.learning.models.cnn_lstm:CNNLSTM')
    """

    name: str
    target: str | type
    description: str = ""
    study_params: int | None = None

    def resolve(self) -> type:
        """Import (if needed) and return the module class.

        Examples
        --------
        >>> MODELS["cnn_mha"].resolve().__name__
        'CNNMHA'
        """
        if not isinstance(self.target, str):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name in ("jax", "jaxlib", "flax", "optax"):
                raise ImportError(
                    f"model {self.name!r} needs JAX, Flax and Optax; install them with "
                    f"pip install 'ferclean[bench]'"
                ) from exc
            raise
        return getattr(module, attr)


#: Registered models by name. Add one with :func:`register_model`.
MODELS: dict[str, ModelSpec] = {}

#: Miniature settings of the built-in models, for examples and smoke tests: the same
#: layers with a few channels each, so they compile and run in seconds on a CPU.
TINY: dict[str, dict[str, Any]] = {
    "cnn_lstm": {"filters": (8, 8, 8, 16, 16), "lstm_units": (16, 16), "dense_units": 32},
    "cnn_mha": {"filters": (4, 4, 4, 8), "num_heads": 2, "key_dim": 2, "dense_units": 6,
                "head_units": 5},
    "vgg": {"filters": (4, 4, 8, 8), "dense_units": (16, 16)},
}


def register_model(
    name: str,
    target: str | type | None = None,
    *,
    description: str = "",
    study_params: int | None = None,
) -> Any:
    """Register a Flax module class under ``name``; use directly or as a class decorator.

    Parameters
    ----------
    name : str
        New registry key; registering a name twice raises ``ValueError``.
    target : type or str, default=None
        The ``nn.Module`` subclass or its ``"package.module:ClassName"`` path. ``None``
        returns a decorator that registers the class it decorates.
    description : str, default=""
    study_params : int, default=None
        Parameter count reported by the paper the model comes from, if any.

    Returns
    -------
    ModelSpec or callable
        The new entry, or the decorator when ``target`` is ``None``.

    Examples
    --------
    >>> spec = register_model("my_net", "mypackage.nets:MyNet", description="mine")
    >>> "my_net" in model_names()
    True
    >>> register_model("my_net", "elsewhere:Other")
    Traceback (most recent call last):
    ...
    ValueError: model 'my_net' is already registered (mypackage.nets:MyNet)
    >>> del MODELS["my_net"]
    """
    if target is None:

        def decorator(cls: type) -> type:
            register_model(name, cls, description=description, study_params=study_params)
            return cls

        return decorator
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string; got {name!r}")
    if name in MODELS:
        raise ValueError(f"model {name!r} is already registered ({MODELS[name].target})")
    spec = ModelSpec(name, target, description, study_params)
    MODELS[name] = spec
    return spec


def model_names() -> list[str]:
    """Registered model names, sorted.

    Examples
    --------
    >>> model_names()
    ['cnn_lstm', 'cnn_mha', 'vgg']
    """
    return sorted(MODELS)


def get_model(name: str, **kwargs: Any) -> Any:
    """Build the registered Flax module ``name`` with keyword arguments ``kwargs``.

    Parameters
    ----------
    name : str
        A registered name (see :func:`model_names`).
    **kwargs
        Fields of the module class (e.g. ``num_classes``, ``kernel_sizes``).

    Returns
    -------
    flax.linen.Module
        An unbound module: call ``.init`` / ``.apply`` on it.

    Raises
    ------
    KeyError
        For an unknown name; the message lists the valid ones.

    Examples
    --------
    >>> get_model("cnn_lstm").num_classes
    7
    >>> get_model("resnet")
    Traceback (most recent call last):
    ...
    KeyError: "unknown model 'resnet'; expected one of: cnn_lstm, cnn_mha, vgg"
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; expected one of: {', '.join(model_names())}")
    cls: Callable[..., Any] = MODELS[name].resolve()
    return cls(**kwargs)


def count_params(tree: Any) -> int:
    """Number of scalars in a pytree of arrays (e.g. a model's ``params``).

    Only the ``params`` collection is trainable; BatchNorm's running mean and variance
    live in ``batch_stats`` (Keras lists them as "non-trainable params").

    Examples
    --------
    >>> import numpy as np
    >>> count_params({"dense": {"kernel": np.zeros((3, 2)), "bias": np.zeros(2)}})
    8
    """
    import jax  # lazy: the registry itself must not import JAX

    return int(sum(int(np.size(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


register_model(
    "cnn_lstm",
    "ferclean.learning.models.cnn_lstm:CNNLSTM",
    description="the study's CNN-LSTM: 5 conv+BN blocks, LSTM 128 -> LSTM 64, dense 200",
    study_params=457_031,
)
register_model(
    "cnn_mha",
    "ferclean.learning.models.cnn_mha:CNNMHA",
    description="the study's CNN + multi-head attention ('ViT'): convs, LayerNorm, 2 MHA",
    study_params=197_799,
)
register_model(
    "vgg",
    "ferclean.learning.models.vgg:VGG",
    description="VGG-class net (Khaireddin & Chen 2021): 4 x [2 conv-BN-ReLU + pool] 64->512, "
    "dense 4096 x 2",
)
