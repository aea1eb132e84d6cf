"""The one figure helper: matplotlib ``Figure`` objects without pyplot.

Library code never calls ``matplotlib.use`` or ``pyplot``: a notebook user's backend
must survive, and ``Figure`` objects keep no global registry to leak memory into. Figures
are drawn on their own Agg canvas and saved as PNG without software metadata, so equal
figures give equal files.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# PNG metadata without the matplotlib version, so equal figures give equal files.
PNG_METADATA = {"Software": None}


def new_figure(*, figsize: tuple[float, float] = (8.0, 4.0), dpi: float = 100,
               layout: str | None = "constrained", **kwargs: Any) -> Figure:
    """A new ``Figure`` on its own Agg canvas (no pyplot, no backend switch).

    Examples
    --------
    >>> fig = new_figure(figsize=(2, 1))
    >>> ax = fig.subplots()
    >>> type(fig.canvas).__name__
    'FigureCanvasAgg'
    """
    fig = Figure(figsize=figsize, dpi=dpi, layout=layout, **kwargs)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure, *, dpi: float = 150) -> bytes:
    """The PNG bytes of ``fig`` (tight bounding box, no software metadata).

    Examples
    --------
    >>> figure_png(new_figure(figsize=(1, 1)))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=PNG_METADATA)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: float = 150) -> Path:
    """Write ``fig`` as a PNG to ``path``, atomically.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = save_figure(new_figure(figsize=(1, 1)), pathlib.Path(tempfile.mkdtemp()) / "f.png")
    >>> p.read_bytes()[:4]
    b'\\x89PNG'
    """
    from ferclean._atomic import atomic_file

    data = figure_png(fig, dpi=dpi)
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
