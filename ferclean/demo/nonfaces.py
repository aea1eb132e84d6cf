"""Non-face images for the demo: text, blank frames, charts, gradients, noise, drawings.

FER-2013 holds a few hundred images that are no face at all; the demo plants some of
each kind in :data:`NON_FACE_KINDS`. Each maker draws one 48x48 uint8 image from ``rng``.

Examples
--------
>>> import numpy as np
>>> from ferclean.demo.nonfaces import NON_FACE_KINDS, _NON_FACES
>>> rng = np.random.default_rng(0)
>>> {kind: _NON_FACES[kind](rng).shape for kind in ("text", "chart")}
{'text': (48, 48), 'chart': (48, 48)}
>>> set(_NON_FACES) | {"blank"} == set(NON_FACE_KINDS)  # blank frames take a grey level
True
"""

from __future__ import annotations

import string

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ferclean.dataset import IMAGE_SIZE
from ferclean.demo.edits import _to_u8

__all__ = ["NON_FACE_KINDS"]

#: Kinds of planted non-face images.
NON_FACE_KINDS: tuple[str, ...] = ("text", "blank", "chart", "gradient", "noise", "drawing")

_S = IMAGE_SIZE


def _canvas(rng: np.random.Generator, light: bool) -> tuple[Image.Image, int, int]:
    """A blank PIL canvas and a contrasting ink level."""
    if light:
        paper, ink = int(rng.integers(200, 256)), int(rng.integers(0, 70))
    else:
        paper, ink = int(rng.integers(0, 60)), int(rng.integers(190, 256))
    return Image.new("L", (_S, _S), paper), paper, ink


def _text(rng: np.random.Generator) -> np.ndarray:
    # The bitmap default font renders identically everywhere (no FreeType involved).
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    img, _, ink = _canvas(rng, light=bool(rng.integers(2)))
    draw = ImageDraw.Draw(img)
    alphabet = string.ascii_letters + string.digits + "  .,:-"
    y = int(rng.integers(-2, 5))
    while y < _S - 4:
        line = "".join(rng.choice(list(alphabet), size=int(rng.integers(5, 10))))
        draw.text((int(rng.integers(-3, 4)), y), line, fill=ink, font=font)
        y += int(rng.integers(9, 13))
    if rng.integers(2):  # an underline or margin stroke, as on scanned pages
        x = int(rng.integers(0, _S))
        draw.line([(x, 0), (x + int(rng.integers(-5, 6)), _S)], fill=ink, width=1)
    return np.asarray(img, dtype=np.uint8)


def _blank(rng: np.random.Generator, level: int) -> np.ndarray:
    img = np.full((_S, _S), level, dtype=np.int16)
    if rng.integers(2):  # tiny sensor noise on some frames
        img += rng.integers(-1, 2, size=img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _chart(rng: np.random.Generator) -> np.ndarray:
    img, paper, ink = _canvas(rng, light=True)
    draw = ImageDraw.Draw(img)
    x0, y0 = int(rng.integers(4, 9)), int(rng.integers(39, 45))
    if rng.integers(2):  # bar chart over horizontal grid lines
        for g in range(y0 - 8, 2, -8):
            draw.line([(x0, g), (_S - 2, g)], fill=(paper + ink) // 2 + 40)
        n_bars = int(rng.integers(4, 10))
        width = (_S - x0 - 3) // n_bars
        for i in range(n_bars):
            h = int(rng.integers(4, y0 - 3))
            left = x0 + 2 + i * width
            fill = int(rng.integers(40, 170))
            draw.rectangle([left, y0 - h, left + max(width - 2, 1), y0], fill=fill, outline=ink)
    else:  # grid and one to three series with markers
        grid = (paper + ink) // 2 + 40
        step = int(rng.integers(6, 11))
        for g in range(y0 - step, 2, -step):
            draw.line([(x0, g), (_S - 2, g)], fill=grid)
        for g in range(x0 + step, _S - 2, step):
            draw.line([(g, 2), (g, y0)], fill=grid)
        n_pts = int(rng.integers(6, 11))
        xs = np.linspace(x0 + 2, _S - 3, n_pts)
        for _ in range(int(rng.integers(1, 4))):
            start = rng.uniform(8, y0 - 8)
            ys = np.clip(start + np.cumsum(rng.normal(0, 5, n_pts)), 3, y0 - 2)
            pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
            colour = int(rng.integers(0, 120))
            draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
            for x, y in pts:
                draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=colour)
    draw.line([(x0, 2), (x0, y0)], fill=ink, width=1)  # axes
    draw.line([(x0, y0), (_S - 2, y0)], fill=ink, width=1)
    for tick in range(x0 + 6, _S - 2, 8):
        draw.line([(tick, y0), (tick, y0 + 2)], fill=ink)
    return np.asarray(img, dtype=np.uint8)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:_S, 0:_S].astype(np.float64)
    lo, hi = sorted(rng.choice(256, size=2, replace=False).tolist())
    if hi - lo < 60:
        hi = min(255, lo + 60 + int(rng.integers(0, 60)))
    if rng.integers(2):  # linear ramp in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * (xx - 23.5) + np.sin(angle) * (yy - 23.5)
    else:  # radial ramp around a random centre
        ramp = np.hypot(xx - rng.uniform(5, 43), yy - rng.uniform(5, 43))
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    if rng.integers(2):
        ramp = 1 - ramp
    return _to_u8(lo + (hi - lo) * ramp)


def _noise(rng: np.random.Generator) -> np.ndarray:
    if rng.integers(2):
        return rng.integers(0, 256, size=(_S, _S), dtype=np.uint8)
    img = np.full((_S, _S), int(rng.integers(60, 200)), dtype=np.uint8)  # salt and pepper
    hit = rng.random((_S, _S)) < rng.uniform(0.15, 0.4)
    img[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    return img


def _drawing(rng: np.random.Generator) -> np.ndarray:
    img, _, ink = _canvas(rng, light=bool(rng.random() < 0.8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 10))):  # busy enough to be unlike any face
        shape = int(rng.integers(5))
        x1, y1 = (int(v) for v in rng.integers(0, 36, size=2))
        w, h = (int(v) for v in rng.integers(8, 22, size=2))
        box = [x1, y1, min(x1 + w, _S - 1), min(y1 + h, _S - 1)]
        fill = int(rng.integers(60, 230)) if rng.random() < 0.6 else None
        width = int(rng.integers(1, 4))
        if shape == 0:
            draw.rectangle(box, outline=ink, fill=fill, width=width)
        elif shape == 1:
            draw.ellipse(box, outline=ink, fill=fill, width=width)
        elif shape == 2:  # triangle / roof
            draw.polygon(
                [(x1, box[3]), (box[2], box[3]), ((x1 + box[2]) // 2, y1)], outline=ink, fill=fill
            )
        elif shape == 3:  # star
            cx, cy, r = x1 + w / 2, y1 + h / 2, min(w, h) / 2
            ang = np.arange(10) * np.pi / 5 + rng.uniform(0, np.pi)
            rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
            draw.polygon(
                [
                    (float(cx + q * np.cos(t)), float(cy + q * np.sin(t)))
                    for q, t in zip(rad, ang, strict=True)
                ],
                outline=ink,
                fill=fill,
            )
        else:  # zig-zag line
            xs = np.linspace(x1, box[2], int(rng.integers(3, 7)))
            ys = y1 + rng.integers(0, h + 1, size=xs.size)
            draw.line(
                [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)], fill=ink, width=width
            )
    return np.asarray(img, dtype=np.uint8)


_NON_FACES = {
    "text": _text,
    "chart": _chart,
    "gradient": _gradient,
    "noise": _noise,
    "drawing": _drawing,
}
