"""Vectorised perceptual hashes against imagehash itself, and the bit helpers."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from PIL import Image

from ferclean.similarity.hashing import (
    METHODS,
    as_code_matrix,
    hash_bits,
    hash_images,
    pack_bits,
    popcount,
    resize_lanczos,
    unpack_bits,
)

REFERENCE = {
    "ahash": imagehash.average_hash,
    "dhash": imagehash.dhash,
    "phash": imagehash.phash,
    "whash": imagehash.whash,
}


def reference_codes(pixels: np.ndarray, method: str, hash_size: int = 8) -> list[int]:
    """imagehash's hashes as integers (its hex strings read as one number)."""
    fn = REFERENCE[method]
    return [int(str(fn(Image.fromarray(p), hash_size=hash_size)), 16) for p in pixels]


def bit_differences(codes: np.ndarray, reference: list[int]) -> np.ndarray:
    return np.array([bin(int(c) ^ r).count("1") for c, r in zip(codes, reference, strict=True)])


@pytest.fixture(scope="module")
def demo_pixels(small_demo) -> np.ndarray:
    return small_demo.dataset.pixels


@pytest.mark.parametrize("method", METHODS)
def test_agrees_with_imagehash_on_demo_faces(demo_pixels, method):
    diff = bit_differences(hash_images(demo_pixels, method), reference_codes(demo_pixels, method))
    assert (diff == 0).mean() >= 0.99
    assert diff.max() <= 2


@pytest.mark.realdata
@pytest.mark.parametrize("method", METHODS)
def test_agrees_with_imagehash_on_real_fer(real_dataset, method):
    rng = np.random.default_rng(0)
    pixels = real_dataset.pixels[np.sort(rng.choice(len(real_dataset), 3000, replace=False))]
    diff = bit_differences(hash_images(pixels, method), reference_codes(pixels, method))
    assert (diff == 0).mean() >= 0.99
    assert diff.max() <= 2


@pytest.mark.parametrize("method", ["phash", "dhash"])
def test_larger_hashes_are_wider_codes(demo_pixels, method):
    codes = hash_images(demo_pixels[:20], method, hash_size=16)
    assert codes.shape == (20, 4) and codes.dtype == np.uint64
    as_ints = [int("".join(f"{w:016x}" for w in row), 16) for row in codes]
    reference = reference_codes(demo_pixels[:20], method, 16)
    assert sum(a == b for a, b in zip(as_ints, reference, strict=True)) >= 19


@pytest.mark.parametrize("size", [(32, 32), (8, 8), (9, 8), (16, 16), (17, 13), (64, 64)])
def test_resize_is_pil_lanczos_pixel_for_pixel(size):
    rng = np.random.default_rng(sum(size))
    pixels = rng.integers(0, 256, (40, 48, 48), dtype=np.uint8)
    pixels[0] = 0
    pixels[1] = 255
    pixels[2, :, ::2] = 255  # hard edges: ringing clipped at both ends
    ours = resize_lanczos(pixels, *size)
    pil = np.stack([np.asarray(Image.fromarray(p).resize(size, Image.Resampling.LANCZOS))
                    for p in pixels])
    assert np.array_equal(ours, pil)


def test_shapes_edge_cases_and_threads(demo_pixels):
    assert hash_images(np.zeros((0, 48, 48), np.uint8)).shape == (0,)
    assert hash_bits(np.zeros((0, 48, 48), np.uint8)).shape == (0, 8, 8)
    one = hash_images(demo_pixels[:1])
    assert one.shape == (1,)
    assert hash_images(demo_pixels[0]).tolist() == one.tolist()  # a single 2-D image
    assert np.array_equal(hash_images(demo_pixels, n_jobs=1), hash_images(demo_pixels, n_jobs=2))
    flat = hash_images(np.full((2, 48, 48), 7, np.uint8), "ahash")
    assert flat.tolist() == [0, 0]  # no pixel above the mean


def test_bad_arguments():
    px = np.zeros((2, 48, 48), np.uint8)
    with pytest.raises(ValueError, match="method must be one of"):
        hash_images(px, "md5")
    with pytest.raises(ValueError, match="hash_size must be >= 2"):
        hash_images(px, hash_size=1)
    with pytest.raises(TypeError, match="hash_size must be an integer"):
        hash_images(px, hash_size=8.0)
    with pytest.raises(ValueError, match="power-of-two"):
        hash_images(px, "whash", hash_size=6)
    with pytest.raises(ValueError, match="shape"):
        hash_images(np.zeros((2, 2, 48, 48), np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        hash_images(np.full((1, 48, 48), 300))


def test_bit_helpers_round_trip():
    rng = np.random.default_rng(1)
    for n_bits in (4, 63, 64, 65, 256):
        bits = rng.random((5, n_bits)) < 0.5
        codes = pack_bits(bits)
        assert codes.dtype == np.uint64
        assert codes.shape == ((5,) if n_bits <= 64 else (5, -(-n_bits // 64)))
        assert np.array_equal(unpack_bits(codes, n_bits), bits)
    assert pack_bits([[1, 0, 1, 1]]).tolist() == [11]
    x = np.array([0, 1, 2**64 - 1, 2**63], np.uint64)
    assert popcount(x).tolist() == [0, 1, 64, 1]
    assert as_code_matrix([1, 2]).shape == (2, 1)
    with pytest.raises(TypeError, match="unsigned"):
        as_code_matrix(np.array([-1]))
