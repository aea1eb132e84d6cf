"""Training and using the reference models, one job per module.

* :mod:`~ferclean.learning.training.config` -- :class:`TrainConfig` and the callbacks
  (:class:`ReduceLROnPlateau`, :class:`EarlyStopping`); no JAX;
* :mod:`~ferclean.learning.training.presets` -- named recipes (:data:`TRAINING_PRESETS`,
  :func:`training_preset`); no JAX;
* :mod:`~ferclean.learning.training.steps` -- the jitted pure steps, the optimiser and
  :func:`create_train_state`;
* :mod:`~ferclean.learning.training.model` -- :class:`TrainedModel` (a registered model
  with weights) and :func:`init_model`;
* :mod:`~ferclean.learning.training.checkpoints` -- :func:`save_checkpoint`,
  :func:`load_checkpoint` and the run folder's files;
* :mod:`~ferclean.learning.training.result` -- :class:`TrainResult` and its ``save``;
* :mod:`~ferclean.learning.training.loop` -- :func:`train`;
* :mod:`~ferclean.learning.training.inference` -- :func:`predict`, :func:`predict_proba`,
  :func:`predict_logits`, :func:`embed`, :func:`saliency`.

Each imports only from those above it. JAX, Flax and Optax are imported inside functions,
so importing this package needs none of them.
"""

from ferclean.learning.training.checkpoints import (
    CHECKPOINT_FORMAT,
    HISTORY_FILE,
    load_checkpoint,
    save_checkpoint,
)
from ferclean.learning.training.config import EarlyStopping, ReduceLROnPlateau, TrainConfig
from ferclean.learning.training.inference import (
    embed,
    predict,
    predict_logits,
    predict_proba,
    saliency,
)
from ferclean.learning.training.loop import train
from ferclean.learning.training.model import TrainedModel, init_model
from ferclean.learning.training.presets import TRAINING_PRESETS, training_preset
from ferclean.learning.training.result import TrainResult
from ferclean.learning.training.steps import (
    PRNG_IMPL,
    create_train_state,
    eval_step,
    train_step,
    train_steps,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "HISTORY_FILE",
    "PRNG_IMPL",
    "TRAINING_PRESETS",
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
    "predict_logits",
    "predict_proba",
    "saliency",
    "save_checkpoint",
    "train",
    "train_step",
    "train_steps",
    "training_preset",
]
