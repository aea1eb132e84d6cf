"""Errors for bad input, and the ``on_bad`` policy every reader shares."""

from __future__ import annotations

import warnings
from typing import Literal

import pandas as pd

OnBad = Literal["raise", "skip", "report"]
ON_BAD_CHOICES: tuple[str, ...] = ("raise", "skip", "report")


class FercleanError(Exception):
    """Base class of ferclean's own errors.

    Examples
    --------
    >>> issubclass(BadInputError, FercleanError) and issubclass(LeakageError, FercleanError)
    True
    """


class LeakageError(FercleanError, ValueError):
    """Raised when a step would let test images, or copies of them, into training.

    Examples
    --------
    >>> issubclass(LeakageError, ValueError)
    True
    """


class LeakageWarning(UserWarning):
    """Warned when a leaky step runs anyway because the caller explicitly allowed it.

    Examples
    --------
    >>> issubclass(LeakageWarning, UserWarning)
    True
    """


class BadInputError(FercleanError, ValueError):
    """Input that ferclean cannot read, with the file and the row or image at fault.

    Examples
    --------
    >>> str(BadInputError("data.csv", "row 3 (line 5)", "expected 2304 pixel values, found 2303"))
    'data.csv: row 3 (line 5): expected 2304 pixel values, found 2303'
    """

    def __init__(self, source: str, location: str | None, reason: str) -> None:
        self.source = str(source)
        self.location = location
        self.reason = reason
        where = f"{self.source}: {location}: " if location else f"{self.source}: "
        super().__init__(where + reason)


class BadRecords:
    """Collects bad input records under an ``on_bad`` policy.

    ``raise`` raises :class:`BadInputError` at the first bad record; ``skip`` keeps a list
    of what was dropped; ``report`` does the same and also warns with a summary when the
    reader finishes (:meth:`finish`).

    Examples
    --------
    >>> bad = BadRecords("data.csv", "skip")
    >>> bad.add("row 2", "label 9 is not in 0..6")
    >>> bad.frame().location.tolist()
    ['row 2']
    """

    def __init__(self, source: str, on_bad: str = "raise") -> None:
        check_on_bad(on_bad)
        self.source = str(source)
        self.on_bad = on_bad
        self.records: list[tuple[str, str]] = []

    def add(self, location: str, reason: str) -> None:
        """Record one bad record, or raise if the policy is ``raise``."""
        if self.on_bad == "raise":
            raise BadInputError(self.source, location, reason)
        self.records.append((location, reason))

    def __len__(self) -> int:
        return len(self.records)

    def frame(self) -> pd.DataFrame:
        """The dropped records as a table with ``source``, ``location``, ``reason``."""
        return pd.DataFrame(
            {
                "source": [self.source] * len(self.records),
                "location": [r[0] for r in self.records],
                "reason": [r[1] for r in self.records],
            },
            dtype=object,
        )

    def finish(self) -> pd.DataFrame:
        """Warn under ``report`` when anything was dropped; return :meth:`frame`."""
        if self.records and self.on_bad == "report":
            shown = "; ".join(f"{loc}: {why}" for loc, why in self.records[:5])
            more = f" (and {len(self.records) - 5} more)" if len(self.records) > 5 else ""
            warnings.warn(
                f"{self.source}: dropped {len(self.records)} bad record(s): {shown}{more}",
                BadInputWarning,
                stacklevel=3,
            )
        return self.frame()


class LossyOutputWarning(UserWarning):
    """Warning that an output format changes pixel values (JPEG).

    Examples
    --------
    >>> issubclass(LossyOutputWarning, UserWarning)
    True
    """


class BadInputWarning(UserWarning):
    """Warning issued when ``on_bad="report"`` dropped records.

    Examples
    --------
    >>> issubclass(BadInputWarning, UserWarning)
    True
    """


def check_on_bad(on_bad: str) -> str:
    """Validate an ``on_bad`` value.

    Examples
    --------
    >>> check_on_bad("skip")
    'skip'
    """
    if on_bad not in ON_BAD_CHOICES:
        raise ValueError(f"on_bad must be one of {', '.join(ON_BAD_CHOICES)}; got {on_bad!r}")
    return on_bad
