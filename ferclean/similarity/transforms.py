"""Small geometric transforms of a 48x48 image, and their warps of the 16x16 hash grid.

The near-duplicate search hashes every image under a few variants
(:data:`DEFAULT_TRANSFORMS`: the identity, the whole-pixel :data:`SHIFTS`, two zooms and
two rotations), so that a shifted, re-cropped or rotated copy has one variant whose hash
lies near the plain hash of its original. A :class:`Transform` says where each output
point samples the input (:meth:`Transform.source`); :func:`_warp_1d` and :func:`_warp_2d`
turn that into linear maps of the hash grid (cubic spline), so all variants of all images
come out of a few matrix products (:func:`ferclean.similarity.near_hash.near_hashes`).

Examples
--------
>>> len(DEFAULT_TRANSFORMS), DEFAULT_TRANSFORMS[0].describe()
(17, 'identity')
>>> _warp_1d(0.0, 1.0, False).shape  # the identity warp of one grid axis
(16, 16)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ferclean.dataset import IMAGE_SIZE

__all__ = ["DEFAULT_TRANSFORMS", "SHIFTS", "Transform"]

_S = IMAGE_SIZE  # 48
_GRID = 16  # hash grid: 16x16 cells of 3x3 pixels
_CELL = _S // _GRID


@dataclass(frozen=True)
class Transform:
    """A small similarity transform of a 48x48 image about its centre.

    The transformed image shows the content moved by ``(dy, dx)`` pixels, scaled by
    ``scale`` (``> 1`` zooms in, as a crop rescaled back does), rotated by ``angle``
    degrees (counter-clockwise on screen), and mirrored left-right first if ``flip``.

    Examples
    --------
    >>> Transform(dx=2).describe(), Transform(scale=1.1, flip=True).describe()
    ('shift 0,+2', 'mirror + zoom 1.10')
    """

    dy: float = 0.0
    dx: float = 0.0
    scale: float = 1.0
    angle: float = 0.0
    flip: bool = False

    def describe(self) -> str:
        """A short human-readable name (``"identity"``, ``"shift -2,0"``, ...).

        Examples
        --------
        >>> Transform(angle=-4).describe()
        'rotate -4'
        """
        parts = []
        if self.dy or self.dx:
            parts.append(f"shift {self.dy:+g},{self.dx:+g}".replace("+0,", "0,").replace(
                ",+0", ",0"))
        if self.scale != 1.0:
            parts.append(f"zoom {self.scale:.2f}")
        if self.angle:
            parts.append(f"rotate {self.angle:+g}")
        text = " + ".join(parts) if parts else "identity"
        return ("mirror + " + text if parts else "mirror") if self.flip else text

    @property
    def is_shift(self) -> bool:
        """True when the transform is a whole-pixel shift (possibly mirrored).

        Examples
        --------
        >>> Transform(dy=1, dx=-2).is_shift, Transform(scale=1.1).is_shift
        (True, False)
        """
        return (self.scale == 1.0 and self.angle == 0.0 and float(self.dy).is_integer()
                and float(self.dx).is_integer())

    def source(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where output points ``(y, x)`` (px from the centre) sample the input.

        Examples
        --------
        >>> import numpy as np
        >>> ys, xs = Transform(dx=2).source(np.array([0.0]), np.array([5.0]))
        >>> float(ys[0]), float(xs[0])  # content moved right: sampled from the left
        (0.0, 3.0)
        """
        a = np.deg2rad(self.angle)
        y0, x0 = (y - self.dy) / self.scale, (x - self.dx) / self.scale
        # the inverse rotation; with y pointing down the screen, this turns the content
        # counter-clockwise for a positive angle (as PIL and scipy.ndimage.rotate do)
        ys = np.cos(a) * y0 + np.sin(a) * x0
        xs = -np.sin(a) * y0 + np.cos(a) * x0
        return ys, (-xs if self.flip else xs)


#: Whole-pixel shifts hashed: with the identity, every shift of up to 3 px on each axis
#: lies within 1 px along one axis of one of them (or of its negative, which the other
#: image of a pair supplies): the points of the lattice ``dy + 2 dx = 0 (mod 5)`` in
#: [-3, 3]^2, a perfect covering by "plus" shapes, and the four corners it leaves out.
#: A 3x3 grid with 2 px steps needs 8 shifts but leaves diagonal 1 px misses, which cost
#: ~2% of shifted copies at radius 8.
SHIFTS: tuple[tuple[int, int], ...] = (
    (1, 2), (-1, -2), (2, -1), (-2, 1), (3, 1), (-3, -1), (1, -3), (-1, 3),
    (3, 3), (-3, -3), (3, -3), (-3, 3),
)
#: The variants hashed for every image: identity, the shifts above, zooms for 2-4 px
#: crops rescaled back (scale 1.09-1.2), and +-4 degree rotations.
DEFAULT_TRANSFORMS: tuple[Transform, ...] = (
    Transform(),
    *(Transform(dy=float(dy), dx=float(dx)) for dy, dx in SHIFTS),
    Transform(scale=1.1),
    Transform(scale=1.18),
    Transform(angle=-4.0),
    Transform(angle=4.0),
)


def _neighbours(t: Transform) -> tuple[Transform, ...]:
    """Transforms tried around a hash match when verifying: the match itself, and for a
    zoom or rotation its neighbours half a step away (shifts are refined by +-1 px)."""
    out = [t]
    if t.scale != 1.0:
        out += [Transform(t.dy, t.dx, t.scale * f, t.angle, t.flip) for f in (1 / 1.035, 1.035)]
    if t.angle != 0.0:
        out += [Transform(t.dy, t.dx, t.scale, t.angle + d, t.flip) for d in (-2.0, 2.0)]
    return tuple(out)


def _with_mirror(transforms: tuple[Transform, ...]) -> tuple[Transform, ...]:
    """The transforms followed by their mirrored versions."""
    return transforms + tuple(
        Transform(t.dy, t.dx, t.scale, t.angle, not t.flip) for t in transforms)


# --------------------------------------------------------------------------- grid warps
def _cell_centres() -> np.ndarray:
    return (np.arange(_GRID) + 0.5) * _CELL - _S / 2


@lru_cache(maxsize=256)
def _warp_1d(shift: float, scale: float, flip: bool) -> np.ndarray:
    """(16, 16) cubic-spline resampling matrix along one axis of the hash grid."""
    from scipy import ndimage

    src = (_cell_centres() - shift) / scale
    if flip:
        src = -src
    index = (src + _S / 2) / _CELL - 0.5
    basis = np.eye(_GRID)
    # the spline (prefilter + cubic) is linear: resample each unit vector once
    out = ndimage.map_coordinates(
        basis, [np.repeat(np.arange(_GRID), _GRID), np.tile(index, _GRID)],
        order=3, mode="nearest").reshape(_GRID, _GRID)
    return out.T  # row = output cell, column = input cell


@lru_cache(maxsize=256)
def _warp_2d(transform: Transform) -> np.ndarray:
    """(256, 256) cubic-spline resampling matrix of the hash grid (any transform)."""
    from scipy import ndimage

    c = _cell_centres()
    yy, xx = np.meshgrid(c, c, indexing="ij")
    ys, xs = transform.source(yy, xx)
    gy = (ys + _S / 2) / _CELL - 0.5
    gx = (xs + _S / 2) / _CELL - 0.5
    n = _GRID * _GRID
    basis = np.eye(n).reshape(n, _GRID, _GRID)
    coords = [np.broadcast_to(np.arange(n)[:, None], (n, n)).astype(float),
              np.broadcast_to(gy.ravel(), (n, n)), np.broadcast_to(gx.ravel(), (n, n))]
    out = ndimage.map_coordinates(basis, coords, order=3, mode="nearest")
    return out.T  # (output cell, input cell)

