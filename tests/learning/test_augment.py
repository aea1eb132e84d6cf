"""Augmentation inside the compiled step and test-time augmentation views.

Every check runs the batch functions of :mod:`ferclean.learning.augment` on small float
arrays, jitted once per setting (the setting is static, as in the training step), with
the training step's PRNG implementation; few settings, since each compiles once.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

pytest.importorskip("jax")

import jax  # noqa: E402

from ferclean.learning import TrainConfig  # noqa: E402
from ferclean.learning.augment import (  # noqa: E402
    AugmentSpec,
    augment_batch,
    centre_crop,
    check_augment,
    tta_views,
)
from ferclean.learning.training.steps import PRNG_IMPL  # noqa: E402

SIDE = 48
BATCH = 16


@functools.cache
def _jitted(spec: AugmentSpec):
    return jax.jit(lambda images, key: augment_batch(images, key, spec))


def augment(images: np.ndarray, seed: int, **settings) -> np.ndarray:
    key = jax.random.key(seed, impl=PRNG_IMPL)
    return np.asarray(_jitted(AugmentSpec.of(settings))(images, key))


EVERYTHING = {"crop": 40, "flip": True, "rotation": 10.0, "scale": 0.2, "erasing": 0.5}


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return np.random.default_rng(0).random((BATCH, SIDE, SIDE), dtype=np.float32)


def marked(row: int, col: int) -> np.ndarray:
    """A batch of black images with one white pixel."""
    images = np.zeros((BATCH, SIDE, SIDE), np.float32)
    images[:, row, col] = 1.0
    return images


# ---------------------------------------------------------------------- shapes, seeds
def test_shapes_dtype_and_range(noise):
    out = augment(noise, 0, **EVERYTHING)
    assert out.shape == (BATCH, 40, 40) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert augment(noise, 0, crop=40).shape == (BATCH, 40, 40)
    assert augment(noise, 0, flip=True).shape == noise.shape


def test_same_key_same_batch_other_key_other_batch(noise):
    first, again = augment(noise, 3, **EVERYTHING), augment(noise, 3, **EVERYTHING)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, augment(noise, 4, **EVERYTHING))


def test_identity_when_disabled(noise):
    key = jax.random.key(0, impl=PRNG_IMPL)
    assert augment_batch(noise, key, {}) is noise
    off = {"flip": False, "rotation": 0.0, "scale": 0.0, "erasing": 0.0}
    assert AugmentSpec.of(off).is_identity and augment_batch(noise, key, off) is noise
    assert not AugmentSpec.of({"crop": 40}).is_identity


# ---------------------------------------------------------------------- each transform
def test_flip_mirrors_some_images_exactly():
    out = augment(marked(10, 5), 0, flip=True)
    where = [tuple(np.argwhere(image)[0]) for image in out]
    assert set(where) == {(10, 5), (10, SIDE - 1 - 5)}  # the pixel moved in some images
    assert all(image.sum() == 1.0 for image in out)  # whole pixels copied, not blurred


def test_crop_takes_shifted_windows_of_the_reflected_image(noise):
    crop = 40
    reach = SIDE - crop  # the largest shift from the centre crop
    out = augment(noise, 2, crop=crop)
    padded = np.pad(noise, ((0, 0), (reach, reach), (reach, reach)), mode="reflect")
    top = reach + (SIDE - crop) // 2  # the centre crop's corner in the padded image
    offsets = set()
    for image, source in zip(out, padded, strict=True):
        hits = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)
                if np.array_equal(image, source[top + dy:top + dy + crop,
                                                top + dx:top + dx + crop])]
        assert len(hits) == 1, "each crop is one window of the reflect-padded image"
        offsets.add(hits[0])
    assert len(offsets) > 4  # the offsets vary across the batch


def test_crop_moves_a_marked_pixel_by_its_offset():
    out = augment(marked(24, 24), 5, crop=40)
    positions = set()
    for image in out:
        (row, col), = np.argwhere(image > 0)  # exactly one copy of the pixel
        assert image.sum() == 1.0 and 20 - 8 <= row <= 20 + 8 and 20 - 8 <= col <= 20 + 8
        positions.add((int(row), int(col)))
    assert len(positions) > 4  # the same pixel lands in different places
    # The centre crop (validation, prediction): 24 lands at 24 - (48 - 40) // 2.
    assert np.argwhere(centre_crop(marked(24, 24), 40)[0]).tolist() == [[20, 20]]


def test_rotation_and_zoom_move_a_dot_about_the_centre():
    images = np.zeros((BATCH, SIDE, SIDE), np.float32)
    images[:, 22:26, 34:38] = 1.0  # a 4x4 dot 12 px right of the centre (23.5, 23.5)
    out = augment(images, 0, rotation=30.0, scale=0.2)
    ys, xs = np.mgrid[:SIDE, :SIDE]
    mass = out.sum(axis=(1, 2))
    cy = (out * ys).sum(axis=(1, 2)) / mass - 23.5
    cx = (out * xs).sum(axis=(1, 2)) / mass - 23.5
    radius, angle = np.hypot(cy, cx), np.degrees(np.arctan2(cy, cx))
    # Zoom by 0.8..1.2 about the centre: the dot's distance becomes 12 * zoom.
    assert (radius >= 12 * 0.8 - 0.3).all() and (radius <= 12 * 1.2 + 0.3).all()
    assert np.ptp(radius) > 1
    # Rotation by up to 30 degrees: the dot's direction turns by as much.
    assert np.abs(angle).max() <= 30.5 and np.ptp(angle) > 10


def test_erasing_fills_one_rectangle_per_chosen_image():
    out = augment(np.zeros((BATCH, SIDE, SIDE), np.float32), 1, erasing=0.5)
    erased = out.reshape(BATCH, -1).max(axis=1) > 0
    assert 2 <= erased.sum() <= BATCH - 2  # about half the images
    for image in out[erased]:
        rows, cols = np.nonzero(image)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert box * 0.95 <= len(rows) <= box  # a filled rectangle (noise is rarely 0)
        assert 0.015 * SIDE * SIDE <= box <= 0.34 * SIDE * SIDE


# ---------------------------------------------------------------------- test-time views
def test_tta_views_are_the_crops_and_their_mirrors(noise):
    crop, far = 40, SIDE - 40
    views = np.asarray(tta_views(noise, crop, "ten_crop"))
    assert views.shape == (10, BATCH, crop, crop)
    windows = [(4, 4), (0, 0), (0, far), (far, 0), (far, far)]
    for i, (y, x) in enumerate(windows):
        np.testing.assert_array_equal(views[i], noise[:, y:y + crop, x:x + crop])
        np.testing.assert_array_equal(views[5 + i], views[i][:, :, ::-1])
    flips = np.asarray(tta_views(noise, None, "flip"))
    np.testing.assert_array_equal(flips[1], noise[:, :, ::-1])
    assert np.asarray(tta_views(noise, None, "ten_crop")).shape == (2, BATCH, SIDE, SIDE)
    np.testing.assert_array_equal(np.asarray(tta_views(noise, None, None))[0], noise)


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize(("augment_setting", "match"), [
    ({"crop": 50}, r"augment\['crop'\]"),
    ({"crop": 40.5}, r"augment\['crop'\]"),
    ({"flip": 1}, r"augment\['flip'\]"),
    ({"rotation": -3}, r"augment\['rotation'\]"),
    ({"scale": 2.0}, r"augment\['scale'\]"),
    ({"erasing": 1.5}, r"augment\['erasing'\]"),
    ({"mixup": 0.2}, "unknown key.*mixup"),
])
def test_bad_settings_name_the_entry(augment_setting, match):
    with pytest.raises(ValueError, match=match):
        check_augment(augment_setting)
    with pytest.raises(ValueError, match=match):
        TrainConfig(augment=augment_setting).validate()
