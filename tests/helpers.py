"""Helpers the tests share: small synthetic datasets and file digests (importable anywhere
under tests/, which pytest puts on ``sys.path``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ferclean.dataset import FaceDataset


def make_random_dataset(n: int = 30, seed: int = 0) -> FaceDataset:
    """Random images with every label and split present, in FER's split order."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    pixels[0, :3, :3] = [[0, 255, 9], [10, 99, 100], [254, 1, 0]]  # every digit count
    labels = np.arange(n) % 7
    splits = np.sort(np.arange(n) % 3)
    return FaceDataset(pixels, labels=labels, splits=splits)


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
