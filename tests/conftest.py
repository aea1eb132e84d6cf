"""Shared fixtures: small synthetic datasets built by the tests themselves, and demos."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ferclean.dataset import FaceDataset
from ferclean.demo import Demo, make_demo
from helpers import file_digest, make_random_dataset  # noqa: F401,E402  (re-exported)


@pytest.fixture
def random_dataset() -> FaceDataset:
    return make_random_dataset()


@pytest.fixture(scope="session")
def demo() -> Demo:
    """The default demo (seed 0, 1500 faces), shared by the whole session.

    Read it, do not change it: a test that writes into a demo takes its own with
    ``make_demo()``, which is cheap (the build is cached; each call copies the arrays).
    Test modules may define their own ``demo`` fixture; theirs wins in that module.
    """
    return make_demo()


@pytest.fixture(scope="session")
def small_demo() -> Demo:
    """The 300-face demo of the doctests (seed 0), shared by the whole session; read only."""
    return make_demo(n_faces=300)


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """The real FER-2013 zip named by FERCLEAN_DATA; tests using it skip without it."""
    value = os.environ.get("FERCLEAN_DATA")
    if not value or not Path(value).exists():
        pytest.skip("FERCLEAN_DATA is not set to the FER-2013 zip")
    return Path(value)


@pytest.fixture(scope="session")
def real_dataset(real_data_path):
    """The real FER-2013, read once per test session."""
    from ferclean.io import load

    return load(real_data_path)
