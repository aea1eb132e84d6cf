"""Near-copy edits of a demo face, and the check that an edited copy is still near.

Each edit in :data:`NEAR_EDITS` is a function ``(image, rng) -> image`` on one 48x48 uint8
image, drawing its strength from ``rng``; :class:`_Nearness` rejects a copy that lands as
far from its source as from some other drawn face.

Examples
--------
>>> import numpy as np
>>> from ferclean.demo.edits import NEAR_EDITS, _EDITS
>>> face = np.full((48, 48), 100, np.uint8)
>>> sorted(_EDITS) == sorted(NEAR_EDITS)
True
>>> _EDITS["flip"](face, np.random.default_rng(0)).shape
(48, 48)
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from ferclean.dataset import IMAGE_SIZE

__all__ = ["NEAR_EDITS"]

#: Edit kinds used to make near-duplicate copies, in the order they are planted.
NEAR_EDITS: tuple[str, ...] = (
    "jpeg",
    "brightness",
    "contrast",
    "gamma",
    "noise",
    "blur",
    "shift",
    "crop",
    "rotate",
    "flip",
)

_S = IMAGE_SIZE


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))


def _edit_jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(30, 71)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), dtype=np.uint8)


def _edit_brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(img.astype(np.float32) + _signed(rng, 15, 30))


def _edit_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Factors near 1 would be a no-op; draw from 0.75..0.9 or 1.1..1.3.
    factor = float(rng.choice([rng.uniform(0.75, 0.9), rng.uniform(1.1, 1.3)]))
    x = img.astype(np.float32)
    return _to_u8((x - x.mean()) * factor + x.mean())


def _edit_gamma(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = float(rng.choice([rng.uniform(0.7, 0.87), rng.uniform(1.15, 1.4)]))
    return _to_u8(255.0 * (img.astype(np.float64) / 255.0) ** gamma)


def _edit_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(4, 8)
    return _to_u8(img.astype(np.float32) + rng.normal(0, sigma, img.shape))


def _edit_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.6, 1.0)
    return _to_u8(ndimage.gaussian_filter(img.astype(np.float32), sigma, mode="nearest"))


def _edit_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    while True:
        dy, dx = (int(v) for v in rng.integers(-3, 4, size=2))
        if dx or dy:
            break
    padded = np.pad(img, 3, mode="edge")  # replicate edges into the uncovered strip
    return padded[3 - dy : 3 - dy + _S, 3 - dx : 3 - dx + _S].copy()


def _edit_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # The same margin on every side: a zoom about the centre, as a re-crop would do.
    top = bottom = left = right = int(rng.integers(2, 5))
    crop = Image.fromarray(img[top : _S - bottom, left : _S - right])
    return np.asarray(crop.resize((_S, _S), Image.Resampling.BILINEAR), dtype=np.uint8)


def _edit_rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = _signed(rng, 3, 6)
    out = ndimage.rotate(img.astype(np.float32), angle, reshape=False, order=1, mode="nearest")
    return _to_u8(out)


def _edit_flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img[:, ::-1].copy()


_EDITS = {
    "jpeg": _edit_jpeg,
    "brightness": _edit_brightness,
    "contrast": _edit_contrast,
    "gamma": _edit_gamma,
    "noise": _edit_noise,
    "blur": _edit_blur,
    "shift": _edit_shift,
    "crop": _edit_crop,
    "rotate": _edit_rotate,
    "flip": _edit_flip,
}


class _Nearness:
    """Checks that an edited copy is nearer to its source than to any other base face.

    Distances are mean absolute pixel differences (MAD). The edit ranges are fixed by
    what real duplicates look like, and a few strong edits (a 4 px re-crop of a
    high-contrast face, +30 brightness) can land as far from the source as the closest
    *other* drawn face; such a copy would be no near duplicate at all, so it is redrawn.
    """

    #: A copy must be this much nearer to its source than to every other face.
    margin = 0.9

    def __init__(self, faces: np.ndarray) -> None:
        self.flat = faces.reshape(len(faces), -1)
        self.means = self.flat.mean(axis=1)

    def ok(self, source: int, copy: np.ndarray, edit: str) -> bool:
        if np.array_equal(copy.reshape(-1), self.flat[source]):
            return False  # an exact duplicate, not a near one
        # A mirror copy is compared unmirrored (then it is its source: trivially near).
        probe = (copy[:, ::-1] if edit == "flip" else copy).reshape(-1).astype(np.int16)
        to_source = float(np.abs(probe - self.flat[source]).mean())
        # MAD >= |difference of means|, so only faces with close means can be nearer.
        close = np.flatnonzero(np.abs(self.means - probe.mean()) < to_source / self.margin)
        close = close[close != source]
        if close.size == 0:
            return True
        return bool(np.abs(self.flat[close] - probe).mean(axis=1).min() * self.margin > to_source)

