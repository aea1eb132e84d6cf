"""ferclean: data-centric auditing of face-expression datasets, FER-2013 first."""

from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError

__version__ = "0.1.0"

__all__ = [
    "EMOTIONS",
    "IMAGE_SIZE",
    "SPLITS",
    "UNLABELED",
    "BadInputError",
    "FaceDataset",
    "__version__",
]
