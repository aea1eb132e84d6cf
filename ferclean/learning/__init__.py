"""Learning: reference models (registered by name), training, inference, evaluation.

Layout, each part importing only from those listed before it:

* :mod:`ferclean.learning.models` -- the registry and the Flax modules;
* :mod:`ferclean.learning.training` -- config, steps, model, checkpoints, result, loop,
  inference;
* :mod:`ferclean.learning.metrics` -- scikit-learn metrics over the seven classes;
* :mod:`ferclean.learning.plots` -- training curves, confusion matrices, saliency grids;
* :mod:`ferclean.learning.evaluation` -- :func:`evaluate` and its result.

JAX, Flax and Optax (the ``bench`` extra) are imported only when a model is built or
trained, so importing this package stays light. Import public names from here.
"""

from ferclean.learning.crossval import CrossvalResult, crossval, read_crossval
from ferclean.learning.evaluation import EvaluationResult, evaluate
from ferclean.learning.metrics import (
    classification_metrics,
    classification_report,
    confusion_matrix,
    cross_entropy,
)
from ferclean.learning.plots import (
    plot_confusion_matrix,
    plot_saliency_grid,
    plot_training_curves,
)
from ferclean.learning.training import (
    CHECKPOINT_FORMAT,
    HISTORY_FILE,
    PRNG_IMPL,
    TRAINING_PRESETS,
    EarlyStopping,
    ReduceLROnPlateau,
    TrainConfig,
    TrainedModel,
    TrainResult,
    create_train_state,
    embed,
    eval_step,
    init_model,
    load_checkpoint,
    predict,
    predict_logits,
    predict_proba,
    saliency,
    save_checkpoint,
    train,
    train_step,
    train_steps,
    training_preset,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "EarlyStopping",
    "EvaluationResult",
    "HISTORY_FILE",
    "PRNG_IMPL",
    "ReduceLROnPlateau",
    "TRAINING_PRESETS",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "CrossvalResult",
    "classification_metrics",
    "classification_report",
    "confusion_matrix",
    "create_train_state",
    "cross_entropy",
    "crossval",
    "embed",
    "eval_step",
    "evaluate",
    "init_model",
    "load_checkpoint",
    "plot_confusion_matrix",
    "plot_saliency_grid",
    "plot_training_curves",
    "predict",
    "predict_logits",
    "predict_proba",
    "read_crossval",
    "saliency",
    "save_checkpoint",
    "train",
    "train_step",
    "train_steps",
    "training_preset",
]
