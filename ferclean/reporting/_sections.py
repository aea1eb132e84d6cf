"""The report's static page parts: header, summary cards, leak box, class table, figures,
toolbar, gallery sections and footer, each an HTML string.

Private: :mod:`ferclean.reporting.html` assembles them. Everything interpolated is escaped
with :func:`esc`; the galleries' contents are built in the browser from the JSON payload
(:mod:`ferclean.reporting.galleries`), so these functions only lay out their frames.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ferclean._figures import figure_png
from ferclean._version import __version__
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.findings import AuditResult
from ferclean.reporting.figures import SPLIT_COLORS
from ferclean.reporting.galleries import FIRST_ISSUES, ReportIssue

# The leak box and the class table present two issue types in sections of their own:
# the leak box reads the leak auditor's per-split-pair counts, the class table shades
# the classes the imbalance auditor flagged (which is why that issue has no gallery).
LEAK_ISSUE = "cross_split_leak"
CLASS_TABLE_ISSUE = "class_imbalance"
# Embedded figures are shown up to 900 px wide (8 inch figures: 8 pt text at 12.5 px)
# and open at full size on a click: 165 dpi keeps them sharp there, ~100 kB each.
_FIGURE_DPI = 165
_FIGURE_CAPTIONS = {
    "class_counts": "Images per emotion in each split.",
    "duplicates_per_emotion": "Images in duplicate groups per emotion; the lighter bars "
                              "count the copies a keep-one cleaning removes.",
}


def esc(value: Any) -> str:
    """``value`` as text escaped for HTML text and attributes.

    >>> esc('<a href="x">')
    '&lt;a href=&quot;x&quot;&gt;'
    """
    return html.escape(str(value), quote=True)


def num(value: Any) -> str:
    """An integer with thousands separators.

    >>> num(28709)
    '28,709'
    """
    return f"{int(value):,}"


def issue_entry(result: AuditResult, issue: str) -> dict[str, Any]:
    """The issue's entry of the audit summary (``{}`` when absent)."""
    return result.summary.get("issues", {}).get(issue, {})


def group_counts(part: pd.DataFrame) -> tuple[int, int, int]:
    """Groups, distinct images, and distinct images beyond the first of some group.

    Counted on the findings themselves, so that an image in both an exact and a near
    group (``duplicates="all"``) counts once.
    """
    if part.empty:
        return 0, 0, 0
    first = part.groupby("group")["row"].transform("min")
    removable = part.loc[part["row"] != first, "row"].nunique()
    return int(part["group"].nunique()), int(part["row"].nunique()), int(removable)


# ---------------------------------------------------------------------- header, cards
def header(dataset: FaceDataset, title: str, specs: Sequence[ReportIssue]) -> str:
    """Title, source and the navigation bar (one link per gallery)."""
    source = f"<p class=\"source\">Source: <code>{esc(dataset.source)}</code></p>" \
        if dataset.source else ""
    nav = " ".join(
        f'<a href="#{anchor}">{esc(text)}</a>' for anchor, text in (
            ("summary", "Summary"), ("distribution", "Classes"), ("figures", "Figures"),
            *((f"g-{s.issue}", s.title) for s in specs if s.layout is not None)))
    return (f'<header><h1>{esc(title)}</h1>{source}'
            f'<nav data-testid="nav">{nav}</nav></header>')


def cards(dataset: FaceDataset, result: AuditResult, ran: set[str],
          specs: Sequence[ReportIssue], removed: np.ndarray, plan: str) -> str:
    """The three big summary cards, then one tile per issue type.

    ``removed`` flags the findings (rows of ``result.findings``) whose image ``plan``
    removes; the tiles count them.
    """
    findings = result.findings
    # Issues without a gallery (class imbalance flags whole classes, not images with a
    # problem of their own) are left out of the per-image counts: they count what the
    # galleries show.
    shown = [s.issue for s in specs if s.layout is not None]
    per_image = findings[findings["issue"].isin(shown)]
    n = len(dataset)
    affected = int(per_image["row"].nunique())
    kinds = per_image["issue"].nunique()
    splits = " · ".join(f"{k} {num(v)}" for k, v in dataset.split_counts().items())
    share = f"{affected / n:.1%} of the images" if n else "no images"
    big = [
        ("images", "Images", num(n), splits),
        ("issues", "Issues", num(len(per_image)),
         f"findings in {kinds} issue type{'s' if kinds != 1 else ''}"),
        ("affected", "Images affected", num(affected), share),
    ]
    html_cards = "".join(
        f'<div class="card" data-testid="card-{key}"><div class="card-title">{esc(t)}</div>'
        f'<div class="card-value">{v}</div><div class="card-sub">{esc(s)}</div></div>'
        for key, t, v, s in big)
    tiles = "".join(_tile(spec, result, ran, removed, plan) for spec in specs)
    return (f'<section id="summary"><div class="cards" data-testid="summary-cards">'
            f'{html_cards}</div><div class="tiles">{tiles}</div></section>')


def _tile(spec: ReportIssue, result: AuditResult, ran: set[str], removed: np.ndarray,
          plan: str) -> str:
    issue = spec.issue
    entry = issue_entry(result, issue)
    mask = (result.findings["issue"] == issue).to_numpy()
    part = result.findings[mask]
    gone = f" · {num(part.loc[removed[mask], 'row'].nunique())} removed by {plan}"
    if issue not in ran:
        value, sub, state = "–", "not checked in this audit", "off"
    elif issue == CLASS_TABLE_ISSUE:
        under = entry.get("under_represented", {})
        names = sorted({e for v in under.values() for e in v})
        value = str(len(names))
        sub = ("under-represented: " + ", ".join(names)) if names else "balanced enough"
        state = "warn" if names else "ok"
    elif spec.grouped:
        # exact and near copies side by side when the summary counts them apart
        exact = part[part["kind"] == "exact"] if "near_groups" in entry else part
        groups, images, _ = group_counts(exact)
        value = num(groups)
        sub = f"groups · {num(images)} images{gone}"
        if "near_groups" in entry:
            value = f"{num(groups)} + {num(entry['near_groups'])} near"
            sub = (f"exact groups ({num(images)} images) + near-copy groups "
                   f"({num(entry.get('near_images', 0))} images){gone}")
        state = ("bad" if issue in FIRST_ISSUES else "warn") if len(part) else "ok"
    else:
        k = int(part["row"].nunique())
        method = entry.get("method")
        value, sub = num(k), "images" + (f" ({method})" if method else "") + gone
        state = "warn" if k else "ok"
    if issue == CLASS_TABLE_ISSUE:
        anchor = "distribution"
    else:
        anchor = f"g-{issue}" if spec.layout is not None else "summary"
    return (f'<a class="tile {state}" href="#{anchor}" data-testid="tile-{esc(issue)}">'
            f'<span class="tile-title">{esc(spec.title)}</span>'
            f'<span class="tile-value">{value}</span>'
            f'<span class="tile-sub">{esc(sub)}</span></a>')


def leak_callout(result: AuditResult, ran: set[str]) -> str:
    """The red box on cross-split leakage, per split pair ("" when leaks were not audited)."""
    if LEAK_ISSUE not in ran:
        return ""
    part = result.findings[result.findings["issue"] == LEAK_ISSUE]
    if part.empty:
        return ('<div class="callout ok" data-testid="leak-callout">No cross-split leaks: '
                "no image of one split has a duplicate in another.</div>")
    exact = part[part["kind"] == "exact"]
    groups, images, _ = group_counts(exact)
    near_groups, near_images, _ = group_counts(part[part["kind"] != "exact"])
    near = (f", and {num(near_images)} images in {num(near_groups)} groups of near or "
            "mirrored copies" if near_groups else "")
    test = int(part.loc[part["split"] != "Training", "row"].nunique())
    by_pair = issue_entry(result, LEAK_ISSUE).get("by_pair", {})
    lines = []
    for pair, v in by_pair.items():
        line = [f"{num(v[g])} {kind}groups, {num(v[i])} images"
                for g, i, kind in (("groups", "images", ""),
                                   ("near_groups", "near_images", "near-duplicate "))
                if v.get(g)]
        if line:
            lines.append(f"<li><b>{esc(pair)}</b>: {'; '.join(line)}</li>")
    return (
        '<div class="callout bad" data-testid="leak-callout">'
        f"<h2>Train/test leakage: {num(images)} images in {num(groups)} groups of "
        f"identical copies{near} appear in more than one split</h2>"
        f"<p>{num(test)} of them are test images (PublicTest or PrivateTest) with a copy "
        "elsewhere: a model is scored on pictures it has seen, which inflates reported "
        f'accuracy. <a href="#g-{LEAK_ISSUE}">See the leak gallery</a>.</p>'
        f"<ul>{''.join(lines)}</ul></div>")


# ---------------------------------------------------------------------- class table
def class_table(dataset: FaceDataset, result: AuditResult) -> str:
    """Counts and shares per split and emotion; under-represented classes shaded."""
    under: set[tuple[str, str]] = set()
    for auditor in result.auditors or ():
        table = getattr(auditor, "table_", None)
        if getattr(auditor, "issue_name", None) == CLASS_TABLE_ISSUE and table is not None:
            hits = table[table["under_represented"]]
            under = set(zip(hits["split"], hits["emotion"], strict=True))
    counts = dataset.counts()
    if counts.empty:
        return "<p>No images.</p>"
    columns = [c for c in (*EMOTIONS, "unlabeled") if c in counts.columns]
    ratios = issue_entry(result, CLASS_TABLE_ISSUE).get("imbalance_ratio", {})
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    rows = []
    for split, row in counts.iterrows():
        total = int(row.sum())
        cells = []
        for c in columns:
            value = int(row[c])
            share = value / total if total else 0.0
            cls = ' class="under"' if (split, c) in under else ""
            cells.append(
                f'<td{cls}><span class="n">{num(value)}</span>'
                f'<span class="bar" style="width:{share * 100:.1f}%"></span>'
                f'<span class="pct">{share:.1%}</span></td>')
        ratio = ratios.get(split)
        ratio_cell = f"{ratio:.1f}×" if ratio is not None else "–"
        colour = SPLIT_COLORS[SPLITS.index(split)]
        rows.append(
            f'<tr><th><span class="dot" style="background:{colour}"></span>{esc(split)}</th>'
            f'{"".join(cells)}<td class="total">{num(total)}</td>'
            f'<td class="total">{ratio_cell}</td></tr>')
    note = ('<p class="note">Shaded cells: classes the imbalance audit found '
            "under-represented in their split. Ratio: largest over smallest class.</p>"
            if under else "")
    return (f'<table class="classes" data-testid="class-table"><thead><tr><th>split</th>'
            f'{head}<th>total</th><th>ratio</th></tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table>{note}")


# ---------------------------------------------------------------------- figures
def figure_caption(name: str, stats: dict[str, Any]) -> str:
    """The caption under figure ``name``; the box plot's is written from ``stats``."""
    if name != "mean_pixel_boxplot":
        return _FIGURE_CAPTIONS.get(name, "")
    if not len(stats["means"]):
        return "No images."
    text = (f"Mean grey level per image. Q1 {stats['q1']:.1f}, median {stats['median']:.1f}, "
            f"Q3 {stats['q3']:.1f}; whiskers at {stats['whisker']:g} × IQR "
            f"({stats['fence_low']:.1f} to {stats['fence_high']:.1f}), "
            f"{num(stats['beyond'])} images beyond them.")
    if stats["thresholds"] is not None:
        low, high = stats["thresholds"]
        text += f" Outlier thresholds (mean_iqr): below {low:.1f} or above {high:.1f}."
    elif stats["method"]:
        text += f" The outlier audit used {stats['method']}, not this rule."
    return text


def figure_block(name: str, fig: Any, caption: str) -> str:
    """A figure as an inline PNG with its caption."""
    uri = "data:image/png;base64," + base64.b64encode(
        figure_png(fig, dpi=_FIGURE_DPI)).decode("ascii")
    return (f'<figure class="plot" data-testid="figure-{name}"><img src="{uri}" '
            f'alt="{esc(name.replace("_", " "))}"><figcaption>{esc(caption)}'
            f"</figcaption></figure>")


# ---------------------------------------------------------------------- galleries
def toolbar(dataset: FaceDataset, plan: str) -> str:
    """The sticky filter bar (split, label, minimum score, sort, thumbnail size)."""
    splits = "".join(f'<option value="{s}">{s}</option>' for s in SPLITS)
    labels = "".join(f'<option value="{i}">{e}</option>' for i, e in enumerate(EMOTIONS))
    if not dataset.has_labels or np.any(dataset.labels < 0):
        labels += '<option value="-1">unlabeled</option>'
    return f"""<div class="toolbar" data-testid="toolbar">
<label>Split <select id="f-split" data-testid="filter-split"><option value="">all</option>
{splits}</select></label>
<label>Label <select id="f-label" data-testid="filter-label"><option value="">all</option>
{labels}</select></label>
<label>Min score <input id="f-min" data-testid="filter-min-score" type="range" min="0"
max="1" step="0.01" value="0"><output id="f-min-out">0.00</output></label>
<label>Sort <select id="f-sort" data-testid="filter-sort">
<option value="score">score, worst first</option><option value="row">row</option>
</select></label>
<label>Size <select id="f-size" data-testid="filter-size"><option value="96">96 px</option>
<option value="144">144 px</option><option value="192">192 px</option></select></label>
<button id="f-reset" type="button" data-testid="filter-reset">Reset</button>
<span class="hint">Filters apply to every gallery; a group is shown when one of its
images matches. <b>removed</b> / <b>kept</b>: what cleaning plan {esc(plan)} does with
each image.</span>
</div>"""


def gallery_section(spec: ReportIssue, gallery: dict[str, Any], ran: set[str]) -> str:
    """A gallery's frame: heading, blurb, pagers and the container the script fills."""
    issue, layout = esc(spec.issue), spec.layout
    cls = "gallery leak" if spec.issue in FIRST_ISSUES else "gallery"
    start = (f'<section id="g-{issue}" class="{cls}" data-testid="gallery-{issue}" '
             f'data-kind="{layout}"')
    blurb = f'<p class="blurb">{esc(spec.description)}</p>' if spec.description else ""
    title = f"<h2>{esc(spec.title)}</h2>{blurb}"
    if spec.issue not in ran:
        return (f'{start} data-state="not-run">{title}<p class="empty" '
                f'data-testid="empty-{issue}">Not checked in this audit.</p></section>')
    if not gallery["total"]:
        return (f'{start} data-state="none">{title}<p class="empty" '
                f'data-testid="empty-{issue}">None found.</p></section>')
    shown = len(gallery.get("items", gallery.get("groups", [])))
    cut = ""
    if shown < gallery["total"]:
        unit = "images" if layout == "items" else "groups"
        cut = (f'<p class="note">Showing the worst {num(shown)} of {num(gallery["total"])} '
               f"{unit} (max_per_gallery).</p>")
    pager = (f'<div class="pager"><button type="button" data-testid="prev-{issue}" '
             f'data-dir="-1">‹ prev</button><span data-testid="page-{issue}" class="page">'
             f'</span><button type="button" data-testid="next-{issue}" data-dir="1">next ›'
             f'</button><span class="count" data-testid="count-{issue}"></span></div>')
    return (f'{start} data-state="found" data-issue="{issue}">{title}{cut}{pager}'
            f'<div class="{layout}" data-testid="items-{issue}"></div>{pager}</section>')


def footer() -> str:
    """The page footer: version and what the scores mean."""
    return (f"<footer>Written by ferclean {esc(__version__)}. This file is "
            "self-contained: it loads nothing from the network. Scores run from 0 to 1, "
            "higher is worse (for near duplicates: more similar).</footer>")
