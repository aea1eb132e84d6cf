"""The self-contained HTML audit report: one file, images inline, no network.

The page holds everything it shows: CSS and JavaScript inline, the figures as PNG data
URIs, and every *flagged* image once, as a 48x48 PNG data URI in one JSON payload
(:func:`ferclean.reporting.galleries.gallery_payload`). Galleries refer to images by
index into that payload, and the JavaScript builds only the page of each gallery that is
on screen. That keeps the full FER-2013 report near 25 MB and quick to open, although it
lists some 8,000 images.

The CSS and JavaScript are package files (``ferclean/reporting/static/report.css`` and
``report.js``), read with :mod:`importlib.resources` and inlined into the page. A
Content-Security-Policy in the page forbids every network request, so an opened report
cannot fetch anything, whatever an image id or a detail string contains.

Which galleries the page has, their headings and layouts, come from the auditor registry
(see :func:`ferclean.reporting.galleries.report_issues`).

Filters (split, label, minimum score), the sort order and the thumbnail size live in the
URL fragment, e.g. ``report.html#split=PrivateTest&label=happy&min=0.5&sort=row``, so a
filtered view can be bookmarked or shared, and scripts (or headless browsers) can open
the report pre-filtered.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ferclean._json import to_plain
from ferclean._progress import Progress
from ferclean._validation import check_dataset
from ferclean.cleaning import CleaningPlan
from ferclean.dataset import FaceDataset
from ferclean.findings import AuditResult
from ferclean.reporting import _sections as sec
from ferclean.reporting.figures import FIGURES, _write_pngs, mean_pixel_stats
from ferclean.reporting.galleries import (
    gallery_payload,
    image_positions,
    plan_removals,
    report_issues,
)

__all__ = ["render_html", "write_report"]

# Nothing may load from the network: no fonts, no scripts, images only from data: URIs.
_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="ferclean">
<title>{title}</title>
<style>{css}</style>
</head>
<body data-ready="0">
{body}
<script type="application/json" id="ferclean-data">{data}</script>
<script>{js}</script>
</body>
</html>
"""


# ---------------------------------------------------------------------- public API
def write_report(
    dataset: FaceDataset,
    result: AuditResult,
    path: str | os.PathLike,
    *,
    figures_dir: str | os.PathLike | None = None,
    title: str | None = None,
    max_per_gallery: int | None = None,
    plan: CleaningPlan | str = "strict",
    progress: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the self-contained HTML report of an audit, atomically.

    Parameters
    ----------
    dataset : FaceDataset
        The audited dataset; flagged images are taken from it.
    result : AuditResult
        What :func:`ferclean.audit` returned for ``dataset`` (or
        :func:`ferclean.findings.read_findings` read back).
    path : path
        The HTML file to write (never the audited data); an existing file is replaced,
        once the new one is complete, only with ``overwrite=True``. Parent folders are
        created.
    figures_dir : path, default=None
        Also save the figures there as PNGs (see
        :func:`ferclean.reporting.figures.save_figures`).
    title : str, default=None
        Page title; default ``"ferclean audit: <file name of the dataset source>"``.
    max_per_gallery : int, default=None
        Keep at most this many images, or groups, per gallery (worst first), to make
        the file smaller; ``None`` keeps all. The page says how many were left out.
    plan : CleaningPlan or str, default="strict"
        The cleaning plan (preset name or plan file) whose removals the galleries and
        tiles show: every image is marked ``removed`` or ``kept`` as
        :func:`ferclean.cleaning.clean` with this plan and these findings would treat it.
    progress : bool, default=False
        Show a progress bar on stderr (the full FER-2013 report takes some seconds).
    overwrite : bool, default=False
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        When a finding names an image that ``dataset`` does not hold (the result of
        another dataset), or ``max_per_gallery`` is not a positive integer.

    See Also
    --------
    ferclean.reporting.report : audit and write in one call.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> out = write_report(ds, ferclean.audit(ds), pathlib.Path(tempfile.mkdtemp()) / "r.html")
    >>> text = out.read_text()
    >>> text.startswith("<!DOCTYPE html>"), "http://" in text, "https://" in text
    (True, False, False)
    """
    page = render_html(dataset, result, title=title, max_per_gallery=max_per_gallery,
                       figures_dir=figures_dir, plan=plan, progress=progress)
    from ferclean._outputs import output_file

    path = Path(path)
    source = dataset.source if dataset.source and dataset.source != "demo" else None
    with output_file(path, inputs=[source], overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render_html(
    dataset: FaceDataset,
    result: AuditResult,
    *,
    title: str | None = None,
    max_per_gallery: int | None = None,
    figures_dir: str | os.PathLike | None = None,
    plan: CleaningPlan | str = "strict",
    progress: bool = False,
) -> str:
    """The report's HTML as a string (what :func:`write_report` writes).

    Parameters are those of :func:`write_report`.

    Returns
    -------
    str
        The whole page.

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> page = render_html(ds, ferclean.audit(ds, only=["exact_duplicate"]))
    >>> 'data-testid="gallery-exact_duplicate"' in page
    True
    """
    check_dataset(dataset)
    if max_per_gallery is not None and (
            isinstance(max_per_gallery, bool) or not isinstance(max_per_gallery, int | np.integer)
            or max_per_gallery < 1):
        raise ValueError(f"max_per_gallery must be None or a positive integer; "
                         f"got {max_per_gallery!r}")
    plan = CleaningPlan.resolve(plan)
    bar = Progress(3, "report: galleries", enabled=progress, tick=0.5)
    with bar:
        payload = gallery_payload(dataset, result, max_per_gallery=max_per_gallery, plan=plan)
        bar.update()
        bar.set_description("report: figures")
        figures = _figures_html(dataset, result, figures_dir)
        bar.update()
        bar.set_description("report: page")
        page = _page(dataset, result, payload, plan, figures, title)
        bar.update()
    return page


def _page(dataset: FaceDataset, result: AuditResult, payload: dict[str, Any],
          plan: CleaningPlan, figures: str, title: str | None) -> str:
    """The page around the gallery payload and the figures' HTML."""
    positions = image_positions(dataset, result.findings)
    removed = np.isin(positions, plan_removals(dataset, result.findings, plan, positions))
    specs = report_issues(result.findings)
    ran = _issues_run(result, {s.issue for s in specs})
    if title is None:  # the file name of the source: its full path is shown below
        title = f"ferclean audit: {Path(dataset.source).name if dataset.source else 'dataset'}"
    body = "\n".join([
        sec.header(dataset, title, specs),
        sec.cards(dataset, result, ran, specs, removed, plan.name),
        sec.leak_callout(result, ran),
        '<section id="distribution"><h2>Class distribution per split</h2>',
        sec.class_table(dataset, result),
        "</section>",
        '<section id="figures"><h2>Exploratory figures</h2><div class="figures">',
        figures,
        "</div></section>",
        sec.toolbar(dataset, plan.name),
        *(sec.gallery_section(spec, payload["galleries"][spec.issue], ran)
          for spec in specs if spec.layout is not None),
        sec.footer(),
        '<div id="lightbox" data-testid="lightbox" hidden><img alt="" class="face big">'
        "<div class=\"lb-caption\"></div></div>",
    ])
    css, js = _static()
    return _PAGE.format(title=sec.esc(title), csp=_CSP, css=css, body=body,
                        data=_script_json(payload), js=js)


# ---------------------------------------------------------------------- helpers
def _issues_run(result: AuditResult, shown: set[str]) -> set[str]:
    """Issue names the audit checked (found something or not), among those shown."""
    ran = {getattr(a, "issue_name", None) for a in result.auditors or ()}
    ran |= set(result.summary.get("issues", {}))
    ran |= set(result.findings["issue"].unique())
    return ran & shown


def _figures_html(dataset: FaceDataset, result: AuditResult,
                  figures_dir: str | os.PathLike | None) -> str:
    """The figures as inline PNGs (also saved to ``figures_dir`` when given)."""
    figures = {name: make(dataset, result) for name, make in FIGURES.items()}
    if figures_dir is not None:
        _write_pngs(figures, figures_dir)
    stats = mean_pixel_stats(dataset, result)
    return "\n".join(sec.figure_block(name, fig, sec.figure_caption(name, stats))
                     for name, fig in figures.items())


@functools.cache
def _static() -> tuple[str, str]:
    """The page's CSS and JavaScript, read from the package's ``static`` folder."""
    folder = resources.files("ferclean.reporting").joinpath("static")
    css = folder.joinpath("report.css").read_text(encoding="utf-8")
    js = folder.joinpath("report.js").read_text(encoding="utf-8")
    # Inlined as they are: a closing tag inside would end the element early.
    for name, text, tag in (("report.css", css, "</style"), ("report.js", js, "</script")):
        if tag in text.lower():
            raise RuntimeError(f"ferclean/reporting/static/{name} contains {tag!r}")
    return css, js


def _script_json(payload: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no ``</script>`` or ``<!--`` can appear."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=to_plain)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
