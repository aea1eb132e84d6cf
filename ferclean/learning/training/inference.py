"""Using a trained model: labels, probabilities, logits, embeddings, saliency maps.

Names follow scikit-learn: :func:`predict` gives class ids, :func:`predict_proba`
probabilities. Every function takes a :class:`TrainedModel` (or a :class:`TrainResult`)
and images as a :class:`~ferclean.dataset.FaceDataset` or an array of 0..255 pixels,
runs in inference mode (no dropout, BatchNorm running statistics) and batches the images
into a few fixed shapes, so one compiled function serves calls of many sizes.

A model trained on crops (:attr:`TrainedModel.crop`) sees the centre crop. Test-time
augmentation (``tta``, by default the model's own :attr:`TrainedModel.tta`) averages the
class probabilities over views of each image: ``"flip"`` the image and its mirror,
``"ten_crop"`` the four corner crops, the centre crop and their mirrors. Without it the
functions return exactly what the network computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import softmax

from ferclean.dataset import as_pixels
from ferclean.learning.training.model import TrainedModel
from ferclean.learning.training.result import TrainResult
from ferclean.learning.training.steps import _jax

__all__ = ["embed", "predict", "predict_logits", "predict_proba", "saliency"]

#: ``tta=MODEL_TTA``: use the model's own test-time augmentation (:attr:`TrainedModel.tta`).
MODEL_TTA = "model"


def _batched(fn: Callable[[int, int, int], Any], n: int, batch_size: int) -> np.ndarray:
    """Run ``fn(start, stop, padded_size)`` over fixed-size batches; stack the results."""
    if n == 0:
        raise ValueError("no images given")
    # Every batch is padded to one size, so one compiled function serves them all; a
    # call with fewer images than batch_size pads to a power of two (at least 8), so
    # small calls of different sizes share a few compiled shapes.
    batch = min(batch_size, max(8, 1 << (n - 1).bit_length()))
    outs = [np.asarray(fn(start, min(start + batch, n), batch)) for start in range(0, n, batch)]
    return np.concatenate([o[: min(batch, n - i * batch)] for i, o in enumerate(outs)])


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if len(array) == size:
        return array
    pad = np.zeros((size - len(array), *array.shape[1:]), array.dtype)
    return np.concatenate([array, pad])


def _as_trained(trained: Any) -> TrainedModel:
    """Accept a TrainResult wherever a TrainedModel is wanted."""
    if isinstance(trained, TrainResult):
        return trained.model
    if not isinstance(trained, TrainedModel):
        raise TypeError(f"expected a TrainedModel or TrainResult; got {type(trained).__name__}")
    return trained


def _resolve_tta(trained: TrainedModel, tta: str | None) -> str | None:
    tta = trained.tta if tta == MODEL_TTA else tta
    if tta not in (None, "flip", "ten_crop"):
        raise ValueError(f"tta must be None, 'flip', 'ten_crop' or {MODEL_TTA!r}; got {tta!r}")
    return tta


def _apply(trained: Any, images: Any, batch_size: int, *, embedding: bool,
           tta: str | None = None) -> np.ndarray:
    trained = _as_trained(trained)
    tta = None if embedding else _resolve_tta(trained, tta)
    pixels = as_pixels(images)
    forward = _jax().forward
    variables = trained.variables
    module = trained.module
    # Test-time views multiply the images per forward pass: fewer per batch.
    batch_size = max(1, batch_size // {None: 1, "flip": 2, "ten_crop": 10}[tta])

    def run(start: int, stop: int, size: int) -> Any:
        return forward(variables, _pad(pixels[start:stop], size), module=module,
                       embedding=embedding, crop=trained.crop, tta=tta)

    return _batched(run, len(pixels), batch_size).astype(np.float32)


def predict_logits(trained: TrainedModel | TrainResult, images: Any, *,
                   batch_size: int = 256, tta: str | None = MODEL_TTA) -> np.ndarray:
    """Raw class scores (logits), before the softmax.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
        Pixel values 0..255.
    batch_size : int, default=256
    tta : {"model", None, "flip", "ten_crop"}, default="model"
        Test-time augmentation; ``"model"`` uses :attr:`TrainedModel.tta`.

    Returns
    -------
    ndarray of float32, shape (N, n_classes)
        The network's logits; with test-time augmentation the log of the averaged
        probabilities (whose softmax is that average).

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> predict_logits(tm, np.zeros((3, 48, 48), np.uint8)).shape
    (3, 7)
    """
    return _apply(trained, images, batch_size, embedding=False, tta=tta)


def predict_proba(trained: TrainedModel | TrainResult, images: Any, *,
                  batch_size: int = 256, tta: str | None = MODEL_TTA) -> np.ndarray:
    """Class probabilities: the softmax of :func:`predict_logits`; rows sum to 1.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
        Pixel values 0..255.
    batch_size : int, default=256
    tta : {"model", None, "flip", "ten_crop"}, default="model"
        Test-time augmentation (the probabilities averaged over the views);
        ``"model"`` uses :attr:`TrainedModel.tta`.

    Returns
    -------
    ndarray of float32, shape (N, n_classes)
        Columns in :data:`ferclean.dataset.EMOTIONS` order.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> p = predict_proba(tm, np.zeros((3, 48, 48), np.uint8))
    >>> p.shape, bool(np.allclose(p.sum(axis=1), 1, atol=1e-5))
    ((3, 7), True)
    """
    # In float32, as the logits: the same numbers predict() gave before it returned labels.
    return softmax(predict_logits(trained, images, batch_size=batch_size, tta=tta), axis=1)


def predict(trained: TrainedModel | TrainResult, images: Any, *,
            batch_size: int = 256, tta: str | None = MODEL_TTA) -> np.ndarray:
    """Predicted class ids: the argmax of :func:`predict_proba`.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
        Pixel values 0..255.
    batch_size : int, default=256
    tta : {"model", None, "flip", "ten_crop"}, default="model"
        As for :func:`predict_proba`.

    Returns
    -------
    ndarray of int64, shape (N,)
        Indices into :data:`ferclean.dataset.EMOTIONS`.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> labels = predict(tm, np.zeros((3, 48, 48), np.uint8))
    >>> labels.shape, labels.dtype.kind
    ((3,), 'i')
    """
    # The argmax of the logits is the argmax of the probabilities (softmax is monotonic).
    logits = predict_logits(trained, images, batch_size=batch_size, tta=tta)
    return logits.argmax(axis=1).astype(np.int64)


def embed(trained: TrainedModel | TrainResult, images: Any, *,
          batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features, e.g. for nearest-neighbour or outlier auditors.

    ``cnn_lstm`` gives the 200-d ReLU dense layer, ``cnn_mha`` the 128-d pooled features,
    ``vgg`` the last hidden dense layer. Of the centre crop, without test-time augmentation.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
    batch_size : int, default=256

    Returns
    -------
    ndarray of float32, shape (N, embedding_dim)

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> embed(tm, np.zeros((3, 48, 48), np.uint8)).shape
    (3, 5)
    """
    return _apply(trained, images, batch_size, embedding=True)


def saliency(
    trained: TrainedModel | TrainResult,
    images: Any,
    *,
    targets: Sequence[int] | np.ndarray | None = None,
    absolute: bool = True,
    batch_size: int = 128,
) -> np.ndarray:
    """Gradient of a class score (logit) with respect to the input pixels.

    The saliency map of Simonyan et al. (2014): where a small change of the image would
    change the class score most. Gradients are taken with respect to the ``[0, 1]``
    input the network sees; a model trained on crops sees the centre crop, and the
    pixels outside it get zero.

    Parameters
    ----------
    trained : TrainedModel or TrainResult
    images : FaceDataset or array of shape (N, 48, 48)
    targets : sequence of int, default=None
        Class per image whose score is differentiated; ``None`` (or -1 entries) uses the
        predicted class.
    absolute : bool, default=True
        Return ``|gradient|`` (the saliency map); False returns the signed gradient.
    batch_size : int, default=128

    Returns
    -------
    ndarray of float32, shape (N, 48, 48)

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> images = np.random.default_rng(0).integers(0, 256, (2, 48, 48), dtype=np.uint8)
    >>> s = saliency(tm, images)
    >>> s.shape, bool(s.max() > 0)
    ((2, 48, 48), True)
    """
    trained = _as_trained(trained)
    pixels = as_pixels(images)
    n = len(pixels)
    tgt = np.full(n, -1, np.int32) if targets is None else np.asarray(targets, np.int32)
    if tgt.shape != (n,):
        raise ValueError(f"targets must have shape ({n},); got {tgt.shape}")
    grad_fn = _jax().saliency
    variables = trained.variables
    module = trained.module

    def run(start: int, stop: int, size: int) -> Any:
        return grad_fn(variables, _pad(pixels[start:stop], size),
                       _pad(tgt[start:stop], size), module=module, crop=trained.crop)

    grads = _batched(run, n, batch_size).astype(np.float32)
    return np.abs(grads) if absolute else grads
