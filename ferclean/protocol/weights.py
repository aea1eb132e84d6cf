"""Per-class loss weights, computed on Training images only."""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

from ferclean.dataset import FaceDataset
from ferclean.protocol._checks import check_training_only

__all__ = ["class_weights"]


def class_weights(dataset: FaceDataset, *, strategy: str | None = "balanced") -> dict[int, float]:
    """Per-class loss weights computed on a Training-only dataset.

    ``"balanced"`` is scikit-learn's ``compute_class_weight("balanced")``:
    ``n_images / (n_classes * n_images_of_class)``, so every class contributes equally to
    the loss. Test images are refused: weights computed on them would leak the test label
    distribution into training.

    Parameters
    ----------
    dataset : FaceDataset
        Training images only, all labelled.
    strategy : {"balanced", None}, default="balanced"
        ``None`` gives every class weight 1.0.

    Returns
    -------
    dict of int to float
        Weight per label id present, keys sorted.

    Raises
    ------
    LeakageError
        If the dataset holds test images.

    See Also
    --------
    ferclean.protocol.resample : rebalance by adding images instead.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> w = class_weights(demo_dataset(n_faces=300).split("Training"))
    >>> w[1] > 1 > w[3]  # disgust is rare, happy common
    True
    """
    if strategy not in ("balanced", None):
        raise ValueError(f"strategy must be 'balanced' or None; got {strategy!r}")
    dataset = check_training_only(dataset, "compute class weights for")
    classes = np.unique(dataset.labels)
    weights = compute_class_weight(strategy, classes=classes, y=dataset.labels)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}
