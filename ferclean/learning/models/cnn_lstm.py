"""The study's final CNN-LSTM for 48x48 grayscale faces, in Flax.

Architecture (Keras defaults mirrored where Flax's differ: Glorot-uniform kernels, zero
biases, BatchNorm momentum 0.99 and epsilon 1e-3, 2x2 max pooling with stride 2)::

    input 48x48x1
    Conv 32  3x3 valid -> BN -> ReLU                                  46x46x32
    Conv 64  1x1 valid -> BN -> ReLU -> MaxPool -> Dropout 0.1        23x23x64
    Conv 64  3x3 same  -> BN -> ReLU                                  23x23x64
    Conv 128 3x3 same  -> BN -> ReLU -> MaxPool -> Dropout 0.1        11x11x128
    Conv 128 3x3 same  -> BN -> ReLU -> MaxPool                       5x5x128
    reshape: the 25 spatial positions become a sequence of 128-d vectors
    LSTM 128 (whole sequence) -> Dropout 0.3 -> LSTM 64 (last step)
    Dense 200 ReLU -> Dropout 0.3 (the embedding) -> Dense 7 (logits)

The description of the study's model gives the first kernel (3x3) only. The second
convolution's 1x1 kernel is inferred from the study's parameter count: with it the model
has exactly the 457,031 trainable parameters the study reports; with 3x3 everywhere it
would have 473,415, i.e. 16,384 = 3*3*32*64 - 1*1*32*64 more. Pass
``kernel_sizes=(3, 3, 3, 3, 3)`` for that reading. Flax's LSTM cells have one bias per
gate, on the hidden-state side, as Keras has one bias per gate, so the LSTM counts match
Keras's ``4 * (in*units + units**2 + units)``.

Keras' LSTM starts its forget-gate biases at 1 (``unit_forget_bias=True``, the study's
default), the others at 0; Flax's cell has one initialiser for every gate, so
:meth:`CNNLSTM.init` sets the forget-gate biases (``lstm*/hf/bias``) to 1 after Flax's
initialisation. The network accepts crops as well as whole images (e.g. 44x44: 42 -> 21
-> 10 -> 5, the same 5x5 grid of time steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["CNNLSTM"]

_glorot = nn.initializers.glorot_uniform()  # Keras' default kernel initialiser


class CNNLSTM(nn.Module):
    """CNN-LSTM classifier: five conv blocks, the spatial grid read as a sequence.

    Parameters
    ----------
    num_classes : int, default=7
    filters : sequence of 5 int, default=(32, 64, 64, 128, 128)
    kernel_sizes : sequence of 5 int, default=(3, 1, 3, 3, 3)
        Square kernel side per convolution; the default reproduces the study's count.
    lstm_units : pair of int, default=(128, 64)
    dense_units : int, default=200
    conv_dropout, lstm_dropout, dense_dropout : float, default=0.1, 0.3, 0.3
    bn_momentum : float, default=0.99
        BatchNorm running-average momentum (Keras' default). Inference uses the running
        averages, which need a few hundred steps to settle at 0.99: on a small dataset
        (the demo) validation accuracy lags training accuracy until then; a lower value
        such as 0.9 settles faster.
    lstm_unroll : int, default=1
        Time steps per iteration of the LSTMs' scan loops. The same weights and
        arithmetic either way; unrolling (25 = the whole sequence) trades compile time
        for fewer loop iterations, which matters on a GPU, where each of the 25 steps is
        a few tiny kernels.

    Examples
    --------
    Shapes only (``jax.eval_shape`` traces without computing, so this is instant):

    >>> import jax, jax.numpy as jnp
    >>> from ferclean.learning.models import count_params
    >>> model, x = CNNLSTM(), jnp.zeros((2, 48, 48))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)
    >>> count_params(variables["params"]), count_params(variables["batch_stats"])
    (457031, 832)
    >>> jax.eval_shape(model.apply, variables, x).shape
    (2, 7)
    >>> jax.eval_shape(lambda v, x: model.apply(v, x, return_embedding=True), variables, x).shape
    (2, 200)
    """

    num_classes: int = 7
    filters: Sequence[int] = (32, 64, 64, 128, 128)
    kernel_sizes: Sequence[int] = (3, 1, 3, 3, 3)
    lstm_units: Sequence[int] = (128, 64)
    dense_units: int = 200
    conv_dropout: float = 0.1
    lstm_dropout: float = 0.3
    dense_dropout: float = 0.3
    bn_momentum: float = 0.99
    lstm_unroll: int = 1

    @nn.nowrap
    def init(self, *args: Any, **kwargs: Any) -> Any:
        """Flax's ``init``, then Keras' ``unit_forget_bias``: forget-gate biases 1.

        Takes what :meth:`flax.linen.Module.init` takes; returns its variables.
        """
        variables = super().init(*args, **kwargs)
        if "params" not in variables:
            return variables
        params = dict(variables["params"])
        for name in ("lstm1", "lstm2"):
            if name in params and "hf" in params[name]:
                cell = dict(params[name])
                cell["hf"] = {**cell["hf"], "bias": jnp.ones_like(cell["hf"]["bias"])}
                params[name] = cell
        return {**variables, "params": params}

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, train: bool = False, *, return_embedding: bool = False
    ) -> jnp.ndarray:
        """Logits ``(B, num_classes)`` for images ``(B, 48, 48[, 1])`` in ``[0, 1]``.

        ``train=True`` uses batch statistics (apply with ``mutable=["batch_stats"]``) and
        dropout (pass ``rngs={"dropout": key}``). ``return_embedding=True`` returns the
        ``dense_units``-d output of the ReLU dense layer instead of the logits.
        """
        if len(self.filters) != 5 or len(self.kernel_sizes) != 5:
            raise ValueError("filters and kernel_sizes must have 5 entries each")
        if x.ndim == 3:
            x = x[..., None]
        # (padding, pool after, dropout after) per conv block, as in the study.
        blocks = (
            ("VALID", False, False),
            ("VALID", True, True),
            ("SAME", False, False),
            ("SAME", True, True),
            ("SAME", True, False),
        )
        for i, (padding, pool, drop) in enumerate(blocks):
            k = int(self.kernel_sizes[i])
            x = nn.Conv(self.filters[i], (k, k), padding=padding, kernel_init=_glorot,
                        name=f"conv{i + 1}")(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                             epsilon=1e-3, name=f"bn{i + 1}")(x)
            x = nn.relu(x)
            if pool:
                x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
            if drop:
                x = nn.Dropout(self.conv_dropout, deterministic=not train)(x)
        batch, height, width, channels = x.shape
        # Keras' Reshape((-1, 128)): row-major spatial positions become time steps.
        x = x.reshape(batch, height * width, channels)
        # The cell, created here, owns the parameters (nn.RNN only scans it).
        x = nn.RNN(nn.OptimizedLSTMCell(self.lstm_units[0], name="lstm1"),
                   unroll=self.lstm_unroll)(x)
        x = nn.Dropout(self.lstm_dropout, deterministic=not train)(x)
        x = nn.RNN(nn.OptimizedLSTMCell(self.lstm_units[1], name="lstm2"),
                   unroll=self.lstm_unroll)(x)[:, -1]
        x = nn.relu(nn.Dense(self.dense_units, kernel_init=_glorot, name="dense")(x))
        if return_embedding:
            return x
        x = nn.Dropout(self.dense_dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=_glorot, name="logits")(x)
