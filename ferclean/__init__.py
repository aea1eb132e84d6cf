"""ferclean: data-centric auditing of face-expression datasets, FER-2013 first."""

from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError
from ferclean.io import convert, load, save

__version__ = "0.1.0"


def audit(*args, **kwargs):  # noqa: D103 - documented in ferclean.auditors.runner.audit
    from ferclean.auditors.runner import audit as _audit

    return _audit(*args, **kwargs)


audit.__doc__ = "Run auditors over a dataset; see :func:`ferclean.auditors.runner.audit`."


def report(*args, **kwargs):  # noqa: D103 - documented in ferclean.reporting.report
    from ferclean.reporting import report as _report

    return _report(*args, **kwargs)


report.__doc__ = "Write the self-contained HTML audit report; see ferclean.reporting.report."

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
