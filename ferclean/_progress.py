"""A dependency-free progress bar on stderr, for work longer than about a second.

The library never shows one unless asked (``progress=True``); the CLI asks.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Count work done and redraw one status line at most ten times a second.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(10, "decode", enabled=True, stream=out) as bar:
    ...     bar.update(10)
    >>> "decode" in out.getvalue() and "10/10" in out.getvalue()
    True
    """

    def __init__(
        self, total: int, desc: str, *, enabled: bool = False, stream: TextIO | None = None
    ) -> None:
        self.total = max(int(total), 0)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0

    def update(self, n: int = 1) -> None:
        """Add ``n`` units of finished work."""
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw > 0.1 or self.done >= self.total):
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        self.stream.write(
            f"\r{self.desc}: [{bar:<24}] {self.done}/{self.total} {now - self._start:5.1f}s"
        )
        self.stream.flush()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
