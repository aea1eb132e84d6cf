"""See the audit: a self-contained HTML report, and the figures as PNGs for papers.

``ferclean.report(ds)`` audits a dataset and writes ``report.html``; :func:`write_report`
renders an audit you already have. The package's modules:

============== ==========================================================================
module         what it holds
============== ==========================================================================
``html``       :func:`write_report` and :func:`render_html`: the page, assembled
``galleries``  :func:`report_issues` (which galleries and cards, from the auditor
               registry) and :func:`gallery_payload` (the JSON the page's script renders)
``figures``    the figures, as matplotlib Figures and as PNG files for papers
``_sections``  the page parts: summary cards, leak box, class table, gallery frames
``static/``    ``report.css`` and ``report.js``, inlined into every page
============== ==========================================================================

Examples
--------
>>> import tempfile, pathlib
>>> import ferclean
>>> from ferclean.demo import make_demo
>>> ds = make_demo(n_faces=300).dataset
>>> out = ferclean.report(ds, path=pathlib.Path(tempfile.mkdtemp()) / "report.html",
...                       only=["exact_duplicate", "cross_split_leak"])
>>> out.name, out.stat().st_size > 10_000
('report.html', True)
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ferclean.auditors import audit
from ferclean.dataset import FaceDataset
from ferclean.findings import AuditResult
from ferclean.reporting.figures import (
    FIGURES,
    class_counts,
    duplicates_per_emotion,
    mean_pixel_boxplot,
    mean_pixel_stats,
    save_figures,
)
from ferclean.reporting.galleries import (
    ReportIssue,
    gallery_payload,
    plan_removals,
    report_issues,
)
from ferclean.reporting.html import render_html, write_report

__all__ = [
    "FIGURES",
    "ReportIssue",
    "class_counts",
    "duplicates_per_emotion",
    "gallery_payload",
    "mean_pixel_boxplot",
    "mean_pixel_stats",
    "plan_removals",
    "render_html",
    "report",
    "report_issues",
    "save_figures",
    "write_report",
]


def report(
    dataset: FaceDataset,
    result: AuditResult | None = None,
    path: str | os.PathLike = "report.html",
    *,
    only: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    **kwargs: Any,
) -> Path:
    """Audit ``dataset`` (unless ``result`` is given) and write its HTML report.

    Parameters
    ----------
    dataset : FaceDataset
    result : AuditResult, default=None
        An audit of ``dataset``; ``None`` runs :func:`ferclean.audit` with every
        registered auditor (or those chosen by ``only`` / ``skip``).
    path : path, default="report.html"
        The HTML file to write.
    only, skip : list of str, default=None
        Passed to :func:`ferclean.audit` when ``result`` is None.
    **kwargs
        ``figures_dir``, ``title``, ``max_per_gallery``, ``plan``: see
        :func:`write_report`.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import make_demo
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> out = report(make_demo(n_faces=300).dataset, path=folder / "r.html",
    ...              figures_dir=folder / "figures")
    >>> sorted(p.name for p in (folder / "figures").iterdir())
    ['class_counts.png', 'duplicates_per_emotion.png', 'mean_pixel_boxplot.png']
    """
    if result is None:
        result = audit(dataset, only=only, skip=skip)
    elif only is not None or skip is not None:
        raise ValueError("only= and skip= choose auditors to run; with result= given "
                         "nothing is run")
    return write_report(dataset, result, path, **kwargs)
