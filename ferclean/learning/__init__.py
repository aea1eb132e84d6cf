"""Learning: reference models (registered by name), training, inference, evaluation.

JAX, Flax and Optax (the ``bench`` extra) are imported only when a model is built or
trained, so importing this package stays light.
"""

from ferclean.learning._evaluation import (
    classification_metrics,
    classification_report,
    confusion_matrix,
    cross_entropy,
    evaluate,
    evaluate_checkpoint,
    plot_confusion_matrix,
    plot_saliency_grid,
    plot_training_curves,
)
from ferclean.learning._training import (
    CHECKPOINT_FORMAT,
    HISTORY_FILE,
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
    saliency,
    save_checkpoint,
    train,
    train_step,
    train_to,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "EarlyStopping",
    "HISTORY_FILE",
    "ReduceLROnPlateau",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "classification_metrics",
    "classification_report",
    "confusion_matrix",
    "create_train_state",
    "cross_entropy",
    "embed",
    "eval_step",
    "evaluate",
    "evaluate_checkpoint",
    "init_model",
    "load_checkpoint",
    "plot_confusion_matrix",
    "plot_saliency_grid",
    "plot_training_curves",
    "predict",
    "saliency",
    "save_checkpoint",
    "train",
    "train_step",
    "train_to",
]
