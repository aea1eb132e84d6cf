"""ferclean: data-centric auditing of face-expression datasets, FER-2013 first."""

from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError
from ferclean.io import convert, load, save

__version__ = "0.1.0"


# The auditors and the report pull in scipy, scikit-learn and matplotlib: import them
# when first used (PEP 562), so ``import ferclean`` stays fast, and hand out the real
# functions, with their own signatures and docstrings.
_LAZY = {"audit": "ferclean.auditors.runner", "report": "ferclean.reporting"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ferclean' has no attribute {name!r}")


__all__ = [
    "EMOTIONS",
    "IMAGE_SIZE",
    "SPLITS",
    "UNLABELED",
    "BadInputError",
    "FaceDataset",
    "__version__",
    "audit",
    "convert",
    "load",
    "report",
    "save",
]
