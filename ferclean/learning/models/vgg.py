"""A VGG-class reference net for 48x48 grayscale faces, in Flax.

The VGGNet variant of Khaireddin & Chen (2021, "Facial Emotion Recognition: State of the
Art Performance on FER2013", arXiv:2105.03588), 73.28 % on FER-2013's PrivateTest
without extra data, as their code defines it (github.com/usef-kh/fer, ``models/vgg.py``)::

    input 40x40x1 (random 40x40 crops while training, see the "vgg" training preset)
    2 x [Conv 64  3x3 same -> BN -> ReLU] -> MaxPool 2x2             20x20x64
    2 x [Conv 128 3x3 same -> BN -> ReLU] -> MaxPool 2x2             10x10x128
    2 x [Conv 256 3x3 same -> BN -> ReLU] -> MaxPool 2x2              5x5x256
    2 x [Conv 512 3x3 same -> BN -> ReLU] -> MaxPool 2x2              2x2x512
    flatten -> Dense 4096 ReLU -> Dropout 0.2 -> Dense 4096 ReLU -> Dropout 0.2
    Dense 7 (logits)

The dense head is theirs (two layers of 4096 with dropout 0.2, their class's default): it
holds 25 of the net's 30 million weights; ``dense_units=(1024, 1024)`` gives a lighter
variant of 7.8 million. The flattened width depends on the input side (2x2x512 for 40 or
44, 3x3x512 for 48), so the weights fit one input side: train and predict with the same
``augment["crop"]``. BatchNorm follows PyTorch's defaults as their code does (running
averages with momentum 0.9 in Flax's convention, epsilon 1e-5); kernels are He-normal
(fan-in), as suits ReLU, and biases zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

__all__ = ["VGG"]

_he = nn.initializers.kaiming_normal()


class VGG(nn.Module):
    """VGG-style classifier: stages of ``convs_per_stage`` conv-BN-ReLU, max pooling each.

    Parameters
    ----------
    num_classes : int, default=7
    filters : sequence of int, default=(64, 128, 256, 512)
        Channels per stage.
    convs_per_stage : int, default=2
    dense_units : sequence of int, default=(4096, 4096)
        Hidden dense layers of the head.
    dropout : float, default=0.2
        After each hidden dense layer.
    bn_momentum : float, default=0.9
        BatchNorm running-average momentum (PyTorch's 0.1 in its convention).

    Examples
    --------
    Shapes only (``jax.eval_shape`` traces without computing, so this is instant):

    >>> import jax, jax.numpy as jnp
    >>> from ferclean.learning.models import count_params
    >>> model, x = VGG(), jnp.zeros((2, 40, 40))
    >>> variables = jax.eval_shape(model.init, jax.random.key(0), x)
    >>> count_params(variables["params"])
    29890759
    >>> jax.eval_shape(model.apply, variables, x).shape
    (2, 7)
    >>> jax.eval_shape(lambda v, x: model.apply(v, x, return_embedding=True), variables, x).shape
    (2, 4096)
    """

    num_classes: int = 7
    filters: Sequence[int] = (64, 128, 256, 512)
    convs_per_stage: int = 2
    dense_units: Sequence[int] = (4096, 4096)
    dropout: float = 0.2
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(
        self, x: jnp.ndarray, train: bool = False, *, return_embedding: bool = False
    ) -> jnp.ndarray:
        """Logits ``(B, num_classes)`` for images ``(B, H, W[, 1])`` in ``[0, 1]``.

        ``train=True`` uses batch statistics (apply with ``mutable=["batch_stats"]``) and
        dropout (pass ``rngs={"dropout": key}``). ``return_embedding=True`` returns the
        last hidden dense layer's output instead of the logits.
        """
        if x.ndim == 3:
            x = x[..., None]
        if min(x.shape[1:3]) < 2 ** len(self.filters):
            raise ValueError(f"images of {x.shape[1]}x{x.shape[2]} are too small for "
                             f"{len(self.filters)} pooling stages")
        for stage, channels in enumerate(self.filters, 1):
            for i in range(self.convs_per_stage):
                name = f"{stage}{'abcdefgh'[i]}"
                x = nn.Conv(channels, (3, 3), padding="SAME", kernel_init=_he,
                            name=f"conv{name}")(x)
                x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                                 epsilon=1e-5, name=f"bn{name}")(x)
                x = nn.relu(x)
            x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        x = x.reshape(x.shape[0], -1)
        for i, units in enumerate(self.dense_units, 1):
            x = nn.relu(nn.Dense(units, kernel_init=_he, name=f"dense{i}")(x))
            if return_embedding and i == len(self.dense_units):
                return x
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=_he, name="logits")(x)
