"""Procedurally drawn FER-like faces: one expression per label, every face its own image.

:func:`_draw_faces` paints all faces at once on an ``(n, 48, 48)`` grid: pose, lit
background, hair, face, brows, eyes, nose and mouth shaped by the label's expression
(:data:`_EXPRESSIONS`), then per-image texture and sensor noise.

Examples
--------
>>> import numpy as np
>>> from ferclean.demo.faces import _draw_faces
>>> faces = _draw_faces(np.random.default_rng(0), np.arange(7, dtype=np.int8))
>>> faces.shape, faces.dtype.name
((7, 48, 48), 'uint8')
"""

from __future__ import annotations

import numpy as np

from ferclean.dataset import IMAGE_SIZE

__all__: list[str] = []

_S = IMAGE_SIZE

# Expression geometry per label, in FER order. Brow heights are in units of the face
# half-height (negative = up), mouth width in units of the face half-width, other mouth
# values in pixels (curve > 0 smiles, < 0 frowns; tilt raises one corner, the sneer).
_EXPRESSION_PARAMS = (
    "eye_open",
    "brow_in",
    "brow_out",
    "mouth_w",
    "curve",
    "open_up",
    "open_dn",
    "tilt",
    "teeth",
)
# fmt: off
_EXPRESSIONS = np.array(
    [
        # eye_open brow_in brow_out mouth_w curve open_up open_dn tilt  teeth
        [0.55, -0.24, -0.44, 0.30, -1.8, 0.0, 0.0, 0.0, 0.0],  # angry: inner brows down
        [0.35, -0.27, -0.37, 0.30, -0.8, 0.0, 0.5, 2.6, 0.0],  # disgust: sneer, squint
        [1.05, -0.50, -0.38, 0.34, -0.8, 1.0, 1.6, 0.0, 0.0],  # fear: wide eyes, raised inner
        [0.40, -0.40, -0.41, 0.42, 3.2, 0.0, 2.6, 0.0, 1.0],  # happy: smile, narrow eyes
        [0.55, -0.49, -0.33, 0.30, -3.0, 0.0, 0.0, 0.0, 0.0],  # sad: raised inner, frown
        [1.20, -0.56, -0.53, 0.17, 0.0, 3.2, 3.2, 0.0, 0.0],  # surprise: high brows, 'O'
        [0.75, -0.40, -0.41, 0.30, 0.0, 0.0, 0.0, 0.0, 0.0],  # neutral: flat mouth
    ],
    dtype=np.float32,
)
# fmt: on


def _soft(d: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance in px (negative inside)."""
    return np.clip(0.5 - d / width, 0.0, 1.0)


def _blend(img: np.ndarray, value: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    return img + alpha * (value - img)


def _col(x: np.ndarray) -> np.ndarray:
    """Per-image parameters as (n, 1, 1) float32 so they broadcast over the grid."""
    return np.asarray(x, dtype=np.float32)[:, None, None]


def _smooth_basis(nodes: int) -> np.ndarray:
    """(48, nodes) Gaussian interpolation matrix: B @ G @ B.T turns a nodes x nodes grid
    of random values into a smooth 48x48 field far cheaper than filtering 48x48 noise."""
    pos = np.linspace(-0.5, nodes - 0.5, _S)
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(nodes)[None, :]) / 0.7) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-image low-frequency texture, unit std, at two scales.

    This is what makes every drawn face a different *image*: two faces with the same
    expression and similar geometry still differ by tens of grey levels of smooth
    structure, so near-duplicate detectors must not match them. The texture is coarse
    (node spacing 6-12 px) so that a shifted or re-cropped copy keeps most of it and
    stays close to its original.
    """
    out = np.zeros((n, _S, _S), np.float32)
    for nodes, weight in ((4, 1.0), (9, 0.8)):
        basis = _smooth_basis(nodes)
        grid = rng.standard_normal((n, nodes, nodes), dtype=np.float32)
        out += weight * (basis @ grid @ basis.T)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-6
    return out


def _expression(
    rng: np.random.Generator, labels: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-face expression geometry (each ``(n, 1, 1)``) and sneer side (+-1).

    The label's row of :data:`_EXPRESSIONS`, varied a little per face.
    """
    n = labels.size
    expr = _EXPRESSIONS[labels.astype(np.int64)]
    jitter = rng.normal(0.0, 1.0, size=expr.shape).astype(np.float32)
    p = {name: _col(expr[:, i]) for i, name in enumerate(_EXPRESSION_PARAMS)}
    # Individual variation within an expression (kept smaller than the between-
    # expression differences so expressions stay readable).
    p["eye_open"] = p["eye_open"] * (1 + 0.12 * _col(jitter[:, 0]))
    p["brow_in"] = p["brow_in"] + 0.025 * _col(jitter[:, 1])
    p["brow_out"] = p["brow_out"] + 0.025 * _col(jitter[:, 2])
    p["mouth_w"] = p["mouth_w"] * (1 + 0.08 * _col(jitter[:, 3]))
    p["curve"] = p["curve"] * (1 + 0.2 * _col(jitter[:, 4]))
    happy_open = _col(rng.uniform(0.0, 1.0, n) < 0.6)  # some smiles closed, some grins
    p["open_dn"] = (
        p["open_dn"] * np.where(p["teeth"] > 0, happy_open, 1.0) * (1 + 0.15 * _col(jitter[:, 5]))
    )
    p["open_up"] = p["open_up"] * (1 + 0.15 * _col(jitter[:, 6]))
    sneer_side = _col(rng.choice([-1.0, 1.0], n))
    return p, sneer_side


# One painter's pass, kept whole (about 100 lines): every feature is placed in the face
# frame (u, v, a, b) and shaded from the skin, hair and light levels drawn for the pose,
# so splitting it would pass a dozen arrays between helpers without making a step
# clearer. The order of the random draws is the order of the statements: reordering any
# of them changes every demo image.
def _draw_faces(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Draw one face per label, all at once on an (n, 48, 48) grid."""
    n = labels.size
    u01 = lambda lo, hi: _col(rng.uniform(lo, hi, n))  # noqa: E731 - terse per-face draws
    p, sneer_side = _expression(rng, labels)

    # ---- pose: face centre, size and in-plane rotation
    yy, xx = np.mgrid[0:_S, 0:_S].astype(np.float32)
    cx, cy = 23.5 + u01(-3.0, 3.0), 25.0 + u01(-2.5, 2.5)
    a = u01(14.5, 18.5)  # face half-width
    b = a * u01(1.18, 1.34)  # face half-height
    theta = np.deg2rad(u01(-9.0, 9.0))
    cos, sin = np.cos(theta), np.sin(theta)
    dx, dy = xx - cx, yy - cy
    u = cos * dx + sin * dy  # face frame: u to the right, v down
    v = cos * dy - sin * dx
    au = np.abs(u)  # eyes and brows are mirror images: draw one side, reflect

    # ---- background with a linear lighting ramp
    skin = u01(95, 205)
    # Background relative to the skin: never a huge step at the face outline, which
    # would make a shifted or re-cropped copy as far from its original as another face.
    bg = np.clip(skin + u01(-65, 65), 35, 225)
    img = bg + u01(-1.6, 1.6) * (xx - 23.5) + u01(-1.2, 1.2) * (yy - 23.5)
    # A wall corner or door frame behind most faces: a soft vertical step at a random x.
    step = u01(-45, 45) * _col(rng.random(n) < 0.7)
    img += step * np.clip((xx - u01(0, 48)) / 2 + 0.5, 0, 1)

    hair = np.clip(skin - u01(35, 95), 5, 255)
    light = u01(-18, 18)  # side light across the face

    # ---- hair behind the head, then the face, then the fringe on the forehead
    r_head = np.sqrt((u / (a * 1.12)) ** 2 + ((v + 0.08 * b) / (b * 1.1)) ** 2)
    hair_low = b * u01(-0.1, 0.9)  # short to shoulder-length hair at the sides
    img = _blend(img, hair, _soft((r_head - 1) * a) * _soft(v - hair_low, 2.0))
    shoulders = np.sqrt((u / (2.1 * a)) ** 2 + ((v - 1.5 * b) / (0.62 * b)) ** 2)
    img = _blend(img, bg + u01(-60, 60), _soft((shoulders - 1) * b, 1.5))  # clothing
    neck = _soft(au - 0.55 * a) * _soft(0.6 * b - v)
    img = _blend(img, skin * 0.78, neck)
    r_face = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    shade = skin * (1 - 0.28 * r_face**2) + light * (u / a)  # rounded, side-lit face
    face = _soft((r_face - 1) * a, 1.2)
    img = _blend(img, shade, face)
    hairline = b * u01(-0.75, -0.5) + 2.5 * u01(-1, 1) * (u / a)  # slanted parting
    img = _blend(img, hair, face * _soft(v - hairline, 1.5))

    # ---- brows: thick segments from the inner end to the outer end
    bi = np.stack(np.broadcast_arrays(0.1 * a, p["brow_in"] * b))
    bo = np.stack(np.broadcast_arrays(0.6 * a, p["brow_out"] * b))
    d_brow = _segment_distance(au, v, bi, bo)
    brow_dark = np.minimum(hair, skin - 60)
    img = _blend(img, brow_dark, _soft(d_brow - u01(0.9, 1.4)))

    # ---- eyes: socket shadow, white, dark iris; openness is the expression cue
    ex, ey = 0.37 * a, -0.1 * b
    ew = 0.17 * a
    eh = ew * np.clip(p["eye_open"], 0.2, 1.5) * 0.75
    socket = np.sqrt(((au - ex) / (ew * 1.5)) ** 2 + ((v - ey) / (ew * 1.0)) ** 2)
    img = _blend(img, skin * 0.72, 0.7 * _soft((socket - 1) * ew, 2.0))
    eye = np.sqrt(((au - ex) / ew) ** 2 + ((v - ey) / eh) ** 2)
    eye_mask = _soft((eye - 1) * eh, 0.8)
    img = _blend(img, np.minimum(skin + 35, 235), eye_mask)
    gaze = 0.25 * ew * u01(-1, 1)
    iris = np.sqrt((au - ex - gaze * np.sign(u)) ** 2 + (v - ey) ** 2)
    img = _blend(img, u01(10, 45), eye_mask * _soft(iris - 0.6 * ew, 0.8))

    # ---- nose: shadow on the lit side's opposite, nostrils
    nose_side = u - 0.09 * a * np.sign(light)
    nose = _soft(np.abs(nose_side) - 0.8) * _soft(np.abs(v - 0.12 * b) - 0.13 * b)
    img = _blend(img, skin * 0.8, 0.45 * nose)
    nostril = np.sqrt(((au - 0.11 * a) / 1.3) ** 2 + ((v - 0.27 * b) / 0.9) ** 2)
    img = _blend(img, skin * 0.5, 0.8 * _soft(nostril - 1))
    wrinkle = (p["tilt"] > 0) * _soft(np.abs(v - 0.02 * b) - 0.5) * _soft(au - 0.12 * a)
    img = _blend(img, skin * 0.7, 0.6 * wrinkle)  # disgust: wrinkled nose bridge

    # ---- mouth: a centre line curved by the expression, opened above/below it
    my = 0.52 * b
    mw = p["mouth_w"] * a
    t = u / mw
    inside_w = _soft((np.abs(t) - 1) * mw)
    t = np.clip(t, -1, 1)
    centre = my + p["curve"] * (0.5 - t**2) - p["tilt"] * np.clip(sneer_side * t, 0, 1) ** 2
    span = np.sqrt(1 - t**2)
    top = centre - p["open_up"] * span
    bottom = centre + p["open_dn"] * span
    lip = u01(0.8, 1.3)
    lips = inside_w * _soft(top - lip - v) * _soft(v - bottom - lip)
    img = _blend(img, skin * u01(0.45, 0.65), lips)
    opening = inside_w * _soft(top - v) * _soft(v - bottom)
    img = _blend(img, u01(10, 35), opening)
    teeth = opening * (p["teeth"] > 0) * _soft(v - top - 0.45 * (bottom - top))
    img = _blend(img, np.minimum(skin + 40, 240), teeth)

    # ---- per-image texture and sensor noise: every base face a distinct image.
    # Strong (std ~45) outside the inner face, where real photos differ most (rooms,
    # hair, clothes), milder (std ~18) over the features so expressions stay readable.
    inner = _soft((r_face - 0.8) * a, 3.0)
    strength = u01(28, 32) * (1.5 - 0.9 * inner)
    img += strength * _texture(rng, n)
    img += u01(3, 5) * rng.standard_normal((n, _S, _S), dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _segment_distance(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Distance from each (x, y) to the segment start->end (arrays of shape (2, n, 1, 1))."""
    sx, sy = start
    ex, ey = end
    vx, vy = ex - sx, ey - sy
    h = np.clip(((x - sx) * vx + (y - sy) * vy) / (vx * vx + vy * vy), 0, 1)
    return np.hypot(x - sx - h * vx, y - sy - h * vy)
