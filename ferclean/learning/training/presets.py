"""Named training recipes: :data:`TRAINING_PRESETS` and :func:`training_preset`.

Three recipes, each a complete :class:`~ferclean.learning.training.config.TrainConfig`:

* ``"study"`` -- the study's CNN-LSTM exactly as the study trained it: ``TrainConfig()``'s
  defaults (Adam 2e-3, batch 64, reduce-LR-on-plateau on the validation loss, factor 0.1,
  patience 2, early stopping patience 5 with the best weights restored, 50 epochs at most,
  no augmentation, no test-time augmentation).
* ``"vgg"`` -- the VGG-class net (``model="vgg"``) with the recipe of Khaireddin & Chen
  (2021, "Facial Emotion Recognition: State of the Art Performance on FER2013",
  arXiv:2105.03588; their code, github.com/usef-kh/fer, ``train.py`` and
  ``data/fer2013.py``): SGD with Nesterov momentum 0.9, learning rate 0.01, batch 64,
  reduce-on-plateau of the validation accuracy (factor 0.75, patience 5), up to 300
  epochs keeping the best-validation-accuracy weights; augmentation by random 40x40 crops
  with shifts, horizontal flips, rotation up to 10 degrees, zoom, random erasing with
  probability 0.5 (theirs approximated: see ``docs/models.md``); ten-crop test-time
  augmentation. Two choices differ from theirs:
  early stopping after 20 epochs without a better validation accuracy (they always ran
  300), and the weight decay. They used PyTorch's SGD ``weight_decay=1e-4``, an L2 term
  added to the gradient and so carried by the momentum; ours is decoupled (Optax's
  ``add_decayed_weights`` after the momentum), whose per-step shrinkage ``lr * wd`` equals
  the L2 term's steady-state ``lr * wd_l2 / (1 - momentum)`` for ``wd = 1e-4 / 0.1 =
  1e-3``.
* ``"study-augmented"`` -- the study's CNN-LSTM with the same recipe as ``"vgg"``, so that
  the two nets differ only in architecture, except for the crop (44: the CNN-LSTM's first
  convolutions are unpadded, and a 44 crop keeps its 5x5 grid of LSTM time steps) and
  flip-only test-time augmentation.

Examples
--------
>>> training_preset("vgg").optimizer, training_preset("vgg").tta
('sgd', 'ten_crop')
>>> training_preset("study") == TrainConfig()
True
>>> training_preset("vgg", epochs=2).epochs
2
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ferclean.learning.training.config import TrainConfig

__all__ = ["TRAINING_PRESETS", "training_preset"]

# The augmented recipe's optimisation, shared by "vgg" and "study-augmented".
_SGD_RECIPE: dict[str, Any] = {
    "optimizer": "sgd", "learning_rate": 0.01, "momentum": 0.9, "nesterov": True,
    "weight_decay": 1e-3, "schedule": "plateau", "monitor": "val_accuracy",
    "lr_factor": 0.75, "lr_patience": 5, "epochs": 300, "early_stopping_patience": 20,
    "restore_best": True, "batch_size": 64,
}
_AUGMENT: dict[str, Any] = {"flip": True, "rotation": 10.0, "scale": 0.2, "erasing": 0.5}

#: Named training recipes (see the module docstring for their sources). Use
#: :func:`training_preset` to get one, with fields overridden.
TRAINING_PRESETS: dict[str, TrainConfig] = {
    "study": TrainConfig(),
    "study-augmented": TrainConfig(model="cnn_lstm", **_SGD_RECIPE,
                                   augment={"crop": 44, **_AUGMENT}, tta="flip"),
    "vgg": TrainConfig(model="vgg", **_SGD_RECIPE, augment={"crop": 40, **_AUGMENT},
                       tta="ten_crop"),
}


def training_preset(name: str, **overrides: Any) -> TrainConfig:
    """The training preset ``name``, with some fields replaced.

    Parameters
    ----------
    name : str
        A key of :data:`TRAINING_PRESETS`: ``"study"``, ``"study-augmented"`` or ``"vgg"``.
    **overrides
        :class:`TrainConfig` fields to change, e.g. ``epochs=10`` or ``seed=3``.

    Returns
    -------
    TrainConfig
        A new config (the preset itself is never changed).

    Raises
    ------
    ValueError
        For an unknown preset name or field; the message lists the valid ones.

    Examples
    --------
    >>> cfg = training_preset("study-augmented", seed=2)
    >>> cfg.model, cfg.seed, dict(cfg.augment)["crop"]
    ('cnn_lstm', 2, 44)
    >>> training_preset("resnet")
    Traceback (most recent call last):
    ...
    ValueError: unknown training preset 'resnet'; expected one of: study, study-augmented, vgg
    """
    if name not in TRAINING_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; expected one of: "
                         f"{', '.join(sorted(TRAINING_PRESETS))}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; expected some "
                         f"of: {', '.join(sorted(fields))}")
    # replace() runs __post_init__ again, so the result has its own copies of the mappings.
    return dataclasses.replace(TRAINING_PRESETS[name], **overrides)
