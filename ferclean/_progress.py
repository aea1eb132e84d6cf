"""A dependency-free progress bar on stderr, for work longer than about a second.

The library never shows one unless asked (``progress=True``); the CLI asks.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """Count work done and redraw one status line at most ten times a second.

    Parameters
    ----------
    total : int or None
        Units of work; ``None`` for work that cannot be counted: the line then shows
        only what runs and for how long.
    desc : str
        What runs, shown first on the line; :meth:`set_description` changes it.
    enabled : bool, default=False
        Draw anything at all.
    stream : text stream, default=sys.stderr
    tick : float, default=0
        Also redraw every ``tick`` seconds from a background thread, so the elapsed time
        moves while one long unit of work runs (``0``: redraw on updates only).

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(10, "decode", enabled=True, stream=out) as bar:
    ...     bar.update(10)
    >>> "decode" in out.getvalue() and "10/10" in out.getvalue()
    True
    >>> out = io.StringIO()
    >>> with Progress(None, "write c/", enabled=True, stream=out, tick=0.01) as status:
    ...     time.sleep(0.05)
    >>> out.getvalue().count("write c/: ") > 1, out.getvalue().endswith("s\\n")
    (True, True)
    """

    def __init__(
        self, total: int | None, desc: str, *, enabled: bool = False,
        stream: TextIO | None = None, tick: float = 0.0,
    ) -> None:
        self.total = None if total is None else max(int(total), 0)
        self.desc = desc
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._width = 0  # of the last line drawn, to blank what a shorter one leaves
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if enabled and tick > 0:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True,
                                            name=f"progress: {desc}")
            self._ticker.start()

    def update(self, n: int = 1) -> None:
        """Add ``n`` units of finished work."""
        self.done += n
        now = time.perf_counter()
        total = self.total or 0
        if self.enabled and (now - self._last_draw > 0.1 or self.done >= total):
            self._last_draw = now
            self._draw(now)

    def set_description(self, desc: str) -> None:
        """Say what runs now (e.g. the step a counted bar has reached)."""
        self.desc = desc
        if self.enabled:
            self._draw(time.perf_counter())

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            self._draw(time.perf_counter())

    def _draw(self, now: float) -> None:
        elapsed = f"{now - self._start:5.1f}s"
        if self.total is None:
            line = f"{self.desc}: {elapsed}"
        else:
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(min(frac, 1.0) * 24)
            line = f"{self.desc}: [{bar:<24}] {self.done}/{self.total} {elapsed}"
        with self._lock:
            self.stream.write(f"\r{line:<{self._width}}")
            self.stream.flush()
            self._width = len(line)

    def close(self) -> None:
        """Finish the line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.enabled:
            self._draw(time.perf_counter())
            with self._lock:
                self.stream.write("\n")
                self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
