"""Data augmentation inside the compiled training step, and test-time augmentation views.

Every function here works on a whole batch of ``[0, 1]`` float images ``(B, H, W)`` with
JAX operations (one gather, a few element-wise ops), so it runs inside the jitted step
with no per-image Python. Random draws come from the key given, which the training step
derives from its step number as it does dropout's, so a run stays reproducible.

The transforms, each off unless its key is in the ``augment`` mapping of
:class:`~ferclean.learning.TrainConfig`:

* ``crop`` (int): a ``crop x crop`` window at a random integer offset of up to
  ``H - crop`` pixels from the centre in each direction, read from the image extended by
  reflection (``numpy.pad``'s ``"reflect"``: mirrored about the edge pixels), i.e. a
  random crop of the image reflect-padded by ``(H - crop) // 2`` ... ``H - crop`` pixels.
  Validation and prediction take the centre crop (:func:`centre_crop`);
* ``flip`` (bool): a horizontal mirror with probability 1/2;
* ``rotation`` (degrees): a rotation by an angle drawn uniformly from ``[-r, r]``;
* ``scale`` (fraction): a zoom by a factor drawn uniformly from ``[1 - s, 1 + s]``;
* ``erasing`` (probability): random erasing (Zhong et al., 2020): with this probability
  a rectangle of 2-33 % of the image, aspect ratio 0.3-3.3 (log-uniform), is filled with
  uniform noise.

Crop, flip, rotation and zoom are composed into one affine map about the crop's centre
and sampled once, bilinearly; without rotation and zoom the sampling points are whole
pixels, and one gather copies them exactly.

JAX is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["AUGMENT_KEYS", "augment_batch", "centre_crop", "check_augment", "tta_views"]

#: The keys an ``augment`` mapping may hold.
AUGMENT_KEYS = ("crop", "flip", "rotation", "scale", "erasing")
_ERASE_AREA = (0.02, 0.33)  # torchvision's RandomErasing defaults (Zhong et al.)
_ERASE_RATIO = (0.3, 3.3)


@dataclass(frozen=True)
class AugmentSpec:
    """A checked, hashable ``augment`` mapping (a static argument of the jitted step).

    Examples
    --------
    >>> AugmentSpec.of({"crop": 40, "flip": True})
    AugmentSpec(crop=40, flip=True, rotation=0.0, scale=0.0, erasing=0.0)
    >>> AugmentSpec.of({}).is_identity
    True
    """

    crop: int | None = None
    flip: bool = False
    rotation: float = 0.0
    scale: float = 0.0
    erasing: float = 0.0

    @classmethod
    def of(cls, augment: Mapping[str, Any] | AugmentSpec | None) -> AugmentSpec:
        """The spec of a mapping (checked by :func:`check_augment`), or ``augment`` itself."""
        if isinstance(augment, AugmentSpec):
            return augment
        augment = dict(augment or {})
        check_augment(augment)
        crop = augment.get("crop")
        return cls(crop=None if crop is None else int(crop), flip=bool(augment.get("flip")),
                   rotation=float(augment.get("rotation", 0.0)),
                   scale=float(augment.get("scale", 0.0)),
                   erasing=float(augment.get("erasing", 0.0)))

    @property
    def is_identity(self) -> bool:
        """True when no transform is on (training images pass through unchanged)."""
        return (self.crop is None and not self.flip and not self.rotation and not self.scale
                and not self.erasing)


def check_augment(augment: Mapping[str, Any], *, image_size: int = 48) -> None:
    """Raise ``ValueError`` naming the entry unless ``augment`` is a valid mapping.

    Parameters
    ----------
    augment : mapping
        Keys among :data:`AUGMENT_KEYS`.
    image_size : int, default=48
        The side of the images, the largest crop.

    Examples
    --------
    >>> check_augment({"crop": 40, "flip": True, "rotation": 10})
    >>> check_augment({"crop": 50})
    Traceback (most recent call last):
    ...
    ValueError: augment['crop'] must be an int in 8..48; got 50
    """
    if not isinstance(augment, Mapping):
        raise ValueError(f"augment must be a mapping; got {type(augment).__name__}")
    unknown = sorted(set(augment) - set(AUGMENT_KEYS))
    if unknown:
        raise ValueError(f"augment has unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"expected some of: {', '.join(AUGMENT_KEYS)}")
    crop = augment.get("crop")
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, numbers.Integral)
                             or not 8 <= crop <= image_size):
        raise ValueError(f"augment['crop'] must be an int in 8..{image_size}; got {crop!r}")
    flip = augment.get("flip", False)
    if not isinstance(flip, bool):
        raise ValueError(f"augment['flip'] must be True or False; got {flip!r}")
    limits = {"rotation": (0.0, 180.0), "scale": (0.0, 0.9), "erasing": (0.0, 1.0)}
    for name, (low, high) in limits.items():
        value = augment.get(name, 0.0)
        if (isinstance(value, bool) or not isinstance(value, numbers.Real)
                or not math.isfinite(value) or not low <= value <= high):
            raise ValueError(f"augment[{name!r}] must be a number in [{low:g}, {high:g}]; "
                             f"got {value!r}")


def _reflect(index: Any, size: int) -> Any:
    """Integer indices folded into ``0..size-1`` by mirroring about the edge pixels."""
    import jax.numpy as jnp

    period = 2 * (size - 1)
    folded = jnp.abs(index) % period
    return jnp.where(folded > size - 1, period - folded, folded)


def _sample(images: Any, ys: Any, xs: Any, *, whole: bool) -> Any:
    """Bilinear samples of ``images`` (B, H, W) at float coordinates (B, h, w), reflected.

    ``whole``: the coordinates are whole pixels, so one gather copies them.
    """
    import jax.numpy as jnp

    batch, height, width = images.shape
    flat = images.reshape(batch, height * width)
    if whole:
        index = (_reflect(jnp.round(ys).astype(jnp.int32), height) * width
                 + _reflect(jnp.round(xs).astype(jnp.int32), width))
        return jnp.take_along_axis(flat, index.reshape(batch, -1), axis=1).reshape(ys.shape)
    y0, x0 = jnp.floor(ys), jnp.floor(xs)
    fy, fx = ys - y0, xs - x0
    y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
    out = 0.0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        rows = _reflect(y0 + dy, height) * width
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            index = (rows + _reflect(x0 + dx, width)).reshape(batch, -1)
            values = jnp.take_along_axis(flat, index, axis=1).reshape(ys.shape)
            out = out + wy * wx * values
    return out.astype(images.dtype)


def _warp(images: Any, key: Any, spec: AugmentSpec) -> Any:
    """Random crop offset, flip, rotation and zoom, as one affine map sampled once."""
    import jax
    import jax.numpy as jnp

    batch, height, width = images.shape
    side = spec.crop or height
    # One draw for every random choice (row shift, column shift, flip, angle, zoom): one
    # random-bits operation compiles and runs faster than five.
    draws = jax.random.uniform(key, (batch, 5))[:, :, None, None]
    # The crop's top-left corner: the centre crop's, moved by a random whole shift.
    corner = jnp.full((batch, 2, 1, 1), (height - side) // 2, jnp.float32)
    if spec.crop is not None and side < height:
        reach = height - side
        corner = corner + jnp.minimum(jnp.floor(draws[:, :2] * (2 * reach + 1)), 2 * reach) - reach
    half = (side - 1) / 2.0
    grid = jnp.arange(side, dtype=jnp.float32) - half
    v, u = grid[None, :, None], grid[None, None, :]  # output row / column about the centre
    if spec.flip:
        u = jnp.where(draws[:, 2] < 0.5, -u, u)
    if spec.rotation or spec.scale:
        angle = jnp.deg2rad((2 * draws[:, 3] - 1) * spec.rotation)
        zoom = 1.0 + (2 * draws[:, 4] - 1) * spec.scale
        cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom
        u, v = cos * u - sin * v, sin * u + cos * v
    ys = corner[:, 0] + half + v
    xs = corner[:, 1] + half + u
    ys, xs = jnp.broadcast_to(ys, (batch, side, side)), jnp.broadcast_to(xs, (batch, side, side))
    return _sample(images, ys, xs, whole=not (spec.rotation or spec.scale))


def _erase(images: Any, key: Any, probability: float) -> Any:
    """Random erasing: a random rectangle per chosen image, filled with uniform noise."""
    import jax
    import jax.numpy as jnp

    batch, height, width = images.shape
    k_draws, k_fill = jax.random.split(key)
    # One draw per image for: erase or not, area, aspect ratio, top, left.
    on, area, ratio, top, left = jax.random.uniform(k_draws, (5, batch))
    on = on < probability
    area = (_ERASE_AREA[0] + area * (_ERASE_AREA[1] - _ERASE_AREA[0])) * height * width
    log_low, log_high = math.log(_ERASE_RATIO[0]), math.log(_ERASE_RATIO[1])
    ratio = jnp.exp(log_low + ratio * (log_high - log_low))
    rect_h = jnp.clip(jnp.round(jnp.sqrt(area * ratio)), 1, height).astype(jnp.int32)
    rect_w = jnp.clip(jnp.round(jnp.sqrt(area / ratio)), 1, width).astype(jnp.int32)
    top = jnp.minimum(jnp.floor(top * (height - rect_h + 1)), height - rect_h).astype(jnp.int32)
    left = jnp.minimum(jnp.floor(left * (width - rect_w + 1)), width - rect_w).astype(jnp.int32)
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = ((rows >= top[:, None, None]) & (rows < (top + rect_h)[:, None, None])
              & (cols >= left[:, None, None]) & (cols < (left + rect_w)[:, None, None])
              & on[:, None, None])
    noise = jax.random.uniform(k_fill, images.shape, images.dtype)
    return jnp.where(inside, noise, images)


def augment_batch(images: Any, key: Any, augment: Mapping[str, Any] | AugmentSpec) -> Any:
    """Randomly transformed copies of a batch of images (traceable inside ``jax.jit``).

    Parameters
    ----------
    images : array, shape (B, H, W)
        Floats, e.g. pixels scaled to ``[0, 1]``.
    key : jax key
        All random draws come from it: the same key gives the same batch.
    augment : mapping or AugmentSpec
        Which transforms to apply (keys :data:`AUGMENT_KEYS`; see the module docstring).

    Returns
    -------
    array, shape (B, crop, crop), or (B, H, W) without a crop
        ``images`` itself when no transform is on.

    Examples
    --------
    >>> import jax, numpy as np
    >>> x = np.random.default_rng(0).random((4, 48, 48), np.float32)
    >>> augment_batch(x, jax.random.key(0), {"crop": 40, "flip": True}).shape
    (4, 40, 40)
    >>> augment_batch(x, jax.random.key(0), {}) is x
    True
    """
    spec = AugmentSpec.of(augment)
    if spec.is_identity:
        return images
    import jax

    k_warp, k_erase = jax.random.split(key)
    if spec.crop is not None or spec.flip or spec.rotation or spec.scale:
        images = _warp(images, k_warp, spec)
    if spec.erasing:
        images = _erase(images, k_erase, spec.erasing)
    return images


def centre_crop(images: Any, crop: int | None) -> Any:
    """The centre ``crop x crop`` window of each image (the images themselves for None).

    With an odd margin the window sits half a pixel up and left of the centre, as the
    crops :func:`augment_batch` draws are centred.

    Examples
    --------
    >>> import numpy as np
    >>> centre_crop(np.zeros((2, 48, 48)), 44).shape
    (2, 44, 44)
    """
    if crop is None or crop == images.shape[-1]:
        return images
    top = (images.shape[1] - crop) // 2
    left = (images.shape[2] - crop) // 2
    return images[:, top:top + crop, left:left + crop]


def tta_views(images: Any, crop: int | None, tta: str | None) -> Any:
    """The views test-time augmentation averages, stacked: shape (V, B, side, side).

    ``None``: the centre crop only (V = 1); ``"flip"``: it and its mirror (V = 2);
    ``"ten_crop"``: the four corner crops, the centre crop and their mirrors (V = 10),
    or, without a crop, the image and its mirror (V = 2).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((3, 48, 48), np.float32)
    >>> tta_views(x, 40, "ten_crop").shape, tta_views(x, None, "flip").shape
    ((10, 3, 40, 40), (2, 3, 48, 48))
    """
    import jax.numpy as jnp

    if tta not in (None, "flip", "ten_crop"):
        raise ValueError(f"tta must be None, 'flip' or 'ten_crop'; got {tta!r}")
    views = [centre_crop(images, crop)]
    if tta == "ten_crop" and crop is not None and crop < images.shape[-1]:
        far_y, far_x = images.shape[1] - crop, images.shape[2] - crop
        views += [images[:, y:y + crop, x:x + crop]
                  for y, x in ((0, 0), (0, far_x), (far_y, 0), (far_y, far_x))]
    if tta is not None:
        views += [view[:, :, ::-1] for view in views]
    return jnp.stack(views)
