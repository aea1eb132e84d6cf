"""The self-contained HTML audit report: one file, images inline, no network.

The page holds everything it shows: CSS and JavaScript inline, the figures as PNG data
URIs, and every *flagged* image once, as a 48x48 PNG data URI in one JSON payload.
Galleries refer to images by index into that payload, so an image in several galleries
(an exact copy that also leaks across splits) is stored once, and the JavaScript builds
only the page of each gallery that is on screen. That keeps the full FER-2013 report
near 25 MB and quick to open, although it lists some 8,000 images.

A Content-Security-Policy in the page forbids every network request, so an opened
report cannot fetch anything, whatever an image id or a detail string contains.

Filters (split, label, minimum score), the sort order and the thumbnail size live in the
URL fragment, e.g. ``report.html#split=PrivateTest&label=happy&min=0.5&sort=row``, so a
filtered view can be bookmarked or shared, and scripts (or headless browsers) can open
the report pre-filtered.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

import ferclean
from ferclean._atomic import atomic_file
from ferclean._validation import check_dataset
from ferclean.auditors.runner import AuditResult
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.findings import ISSUE_TYPES
from ferclean.reporting.figures import (
    FIGURES,
    SPLIT_COLORS,
    _write_pngs,
    figure_png,
    mean_pixel_stats,
)

__all__ = ["GALLERIES", "render_html", "write_report"]

#: The galleries in page order: issue, layout (``"groups"`` or ``"items"``), heading and
#: the one-line explanation shown above it. Leaks come first: they are the problem that
#: changes published results.
GALLERIES: tuple[tuple[str, str, str, str], ...] = (
    ("cross_split_leak", "groups", "Cross-split leaks",
     "The same picture in more than one split. A test image with a copy in Training is "
     "scored on what the model memorised: this is the leak that inflates published "
     "FER-2013 accuracies. Drop the copies before you benchmark."),
    ("label_conflict", "groups", "Label conflicts",
     "The same picture under different emotions: at least one of the labels is wrong."),
    ("outlier", "items", "Outliers",
     "Images unlike the faces of this dataset (text, blank frames, charts, drawings), "
     "worst first."),
    ("near_duplicate", "groups", "Near duplicates",
     "Edited copies: re-encoded, re-lit, shifted, cropped or rotated. An image's score is "
     "its similarity to the closest member of its group."),
    ("exact_duplicate", "groups", "Exact duplicates",
     "Pixel-identical copies. All but the first of a group (lowest row) are removable."),
)
_ISSUE_TITLES = {issue: title for issue, _, title, _ in GALLERIES} | {
    "class_imbalance": "Class imbalance"}
_ITEMS_PER_PAGE = 60
_GROUPS_PER_PAGE = 30
_FIGURE_DPI = 110  # embedded figures: sharp on screen, ~50 kB each
_FIGURE_CAPTIONS = {
    "class_counts": "Images per emotion in each split.",
    "duplicates_per_emotion": "Images in duplicate groups per emotion; the lighter bars "
                              "count the copies a keep-one cleaning removes.",
    "mean_pixel_boxplot": "",  # written from the statistics, see _figure_caption
}


# ---------------------------------------------------------------------- public API
def write_report(
    dataset: FaceDataset,
    result: AuditResult,
    path: str | os.PathLike,
    *,
    figures_dir: str | os.PathLike | None = None,
    title: str | None = None,
    max_per_gallery: int | None = None,
) -> Path:
    """Write the self-contained HTML report of an audit, atomically.

    Parameters
    ----------
    dataset : FaceDataset
        The audited dataset; flagged images are taken from it.
    result : AuditResult
        What :func:`ferclean.audit` returned for ``dataset``.
    path : path
        The HTML file to write; an existing file is replaced once the new one is
        complete. Parent folders are created.
    figures_dir : path, default=None
        Also save the figures there as PNGs (see
        :func:`ferclean.reporting.figures.save_figures`).
    title : str, default=None
        Page title; default ``"ferclean audit: <file name of the dataset source>"``.
    max_per_gallery : int, default=None
        Keep at most this many outliers, or groups, per gallery (worst first), to make
        the file smaller; ``None`` keeps all. The page says how many were left out.

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
                       figures_dir=figures_dir)
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def render_html(
    dataset: FaceDataset,
    result: AuditResult,
    *,
    title: str | None = None,
    max_per_gallery: int | None = None,
    figures_dir: str | os.PathLike | None = None,
) -> str:
    """The report's HTML as a string (what :func:`write_report` writes).

    Parameters are those of :func:`write_report`.

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
    findings = result.findings
    positions = _positions(dataset, findings)
    ran = _issues_run(result)

    galleries, used = {}, set()
    for issue, kind, _, _ in GALLERIES:
        mask = (findings["issue"] == issue).to_numpy()
        part = findings[mask].assign(_pos=positions[mask])
        if kind == "items":
            gallery = _item_gallery(part, max_per_gallery)
        else:
            gallery = _group_gallery(part, issue, max_per_gallery)
        galleries[issue] = gallery
        used.update(gallery.pop("_positions"))

    # Galleries refer to flagged images by index into per-image arrays (row, id, ...).
    order = np.array(sorted(used), dtype=np.int64)
    index_of = {int(p): i for i, p in enumerate(order)}
    strings: dict[str, int] = {}
    for gallery in galleries.values():
        _finalise(gallery, index_of, strings)
    # Exact copies have identical PNGs: store each distinct one once (5 MB on FER-2013).
    uri_index: dict[str, int] = {}
    uri_of = [uri_index.setdefault(_png_uri(dataset.pixels[p]), len(uri_index)) for p in order]
    uris = list(uri_index)
    payload = {
        "emotions": list(EMOTIONS),
        "splits": list(SPLITS),
        "split_colors": list(SPLIT_COLORS),
        "items_per_page": _ITEMS_PER_PAGE,
        "groups_per_page": _GROUPS_PER_PAGE,
        "images": uris,
        "meta": {
            "img": uri_of,
            "row": dataset.rows[order].tolist(),
            "id": dataset.ids[order].tolist(),
            "split": dataset.splits[order].tolist(),
            "label": dataset.labels[order].tolist(),
        },
        "strings": list(strings),
        "galleries": galleries,
    }

    figures = {name: make(dataset, result) for name, make in FIGURES.items()}
    if figures_dir is not None:
        _write_pngs(figures, figures_dir)
    stats = mean_pixel_stats(dataset, result)
    figure_html = "\n".join(
        _figure_block(name, fig, _figure_caption(name, stats)) for name, fig in figures.items())

    if title is None:  # the file name of the source: its full path is shown below
        title = f"ferclean audit: {Path(dataset.source).name if dataset.source else 'dataset'}"
    body = "\n".join([
        _header(dataset, title),
        _cards(dataset, result, ran),
        _leak_callout(result, ran),
        '<section id="distribution"><h2>Class distribution per split</h2>',
        _class_table(dataset, result),
        "</section>",
        '<section id="figures"><h2>Exploratory figures</h2><div class="figures">',
        figure_html,
        "</div></section>",
        _toolbar(dataset),
        *(_gallery_section(issue, kind, heading, blurb, galleries[issue], ran)
          for issue, kind, heading, blurb in GALLERIES),
        _footer(),
        '<div id="lightbox" data-testid="lightbox" hidden><img alt="" class="face big">'
        "<div class=\"lb-caption\"></div></div>",
    ])
    return _PAGE.format(
        title=_esc(title),
        csp=_CSP,
        css=_CSS,
        body=body,
        data=_script_json(payload),
        js=_JS,
    )


# ---------------------------------------------------------------------- data
def _positions(dataset: FaceDataset, findings: pd.DataFrame) -> np.ndarray:
    """Dataset position of every finding (findings name images by input ``row``)."""
    if findings.empty:
        return np.zeros(0, np.int64)
    rows = pd.Index(dataset.rows)
    if rows.is_unique:
        pos = rows.get_indexer(findings["row"].to_numpy())
    else:  # e.g. concatenated datasets: rows repeat, (row, id) should not
        keys = pd.MultiIndex.from_arrays([dataset.rows, dataset.ids.astype(object)])
        if not keys.is_unique:
            raise ValueError("dataset rows and ids do not identify its images uniquely; "
                             "cannot match findings to images")
        pos = keys.get_indexer(pd.MultiIndex.from_arrays(
            [findings["row"].to_numpy(), findings["image_id"].to_numpy()]))
    bad = pos < 0
    # Rows alone could match by accident (a result of another dataset); ids must agree.
    ids = dataset.ids[np.where(bad, 0, pos)].astype(object) if len(dataset) else None
    if ids is not None:
        bad |= ids != findings["image_id"].to_numpy()
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"finding for row {findings['row'].iloc[i]} (image_id "
            f"{findings['image_id'].iloc[i]!r}) names no image of this dataset; was the "
            "audit result computed on another dataset?")
    return pos.astype(np.int64)


def _issues_run(result: AuditResult) -> set[str]:
    """Issue names the audit checked (found something or not)."""
    ran = {getattr(a, "issue_name", None) for a in result.auditors or ()}
    ran |= set(result.summary.get("issues", {}))
    ran |= set(result.findings["issue"].unique())
    return {name for name in ran if name in ISSUE_TYPES}


def _item_gallery(part: pd.DataFrame, limit: int | None) -> dict[str, Any]:
    """Outliers: one entry per image, worst first, then by row."""
    part = part.sort_values(["score", "row"], ascending=[False, True], kind="stable")
    total = len(part)
    if limit is not None:
        part = part.iloc[:limit]
    return {
        "kind": "items",
        "total": total,
        "_raw": list(zip(part["_pos"].tolist(), part["score"].tolist(),
                         part["detail"].tolist(), strict=True)),
        "_positions": set(part["_pos"].tolist()),
    }


def _group_text(issue: str, details: list[str], scores: list[float]) -> str:
    """One line for a group, from its members' details."""
    stripped = {d.replace("; removable", "") for d in details}
    if len(stripped) == 1:
        return stripped.pop()
    if issue == "near_duplicate":
        low, high = f"{min(scores):.3f}", f"{max(scores):.3f}"
        span = low if low == high else f"{low} to {high}"
        return f"near duplicate group of {len(details)}: similarity {span}"
    return details[0].replace("; removable", "")


def _group_gallery(part: pd.DataFrame, issue: str, limit: int | None) -> dict[str, Any]:
    """Grouped issues: one entry per group, members by row; groups worst first."""
    groups = []
    part = part.sort_values(["group", "row"], kind="stable")
    for _, g in part.groupby("group", sort=False):
        rows = g["row"].to_numpy()
        scores = g["score"].tolist()
        first = rows.min()
        groups.append({
            "score": max(scores),
            "first_row": int(first),
            "text": _group_text(issue, g["detail"].tolist(), scores),
            "members": list(zip(g["_pos"].tolist(), scores, (rows != first).tolist(),
                                g["detail"].tolist(), strict=True)),
        })
    groups.sort(key=lambda gr: (-gr["score"], gr["first_row"]))
    total = len(groups)
    if limit is not None:
        groups = groups[:limit]
    return {
        "kind": "groups",
        "total": total,
        "_raw": groups,
        "_positions": {m[0] for gr in groups for m in gr["members"]},
    }


def _finalise(gallery: dict[str, Any], index_of: dict[int, int],
              strings: dict[str, int]) -> None:
    """Turn a gallery's raw entries into compact JSON arrays (image and string indices).

    Items: ``[image, score, detail]``; groups: ``[score, text, members]`` with members
    ``[image, score, removable, detail]``. Strings are stored once in a shared table:
    group members share their detail line, so this saves megabytes on FER-2013.
    """
    def sid(text: str) -> int:
        return strings.setdefault(text, len(strings))

    raw = gallery.pop("_raw")
    if gallery["kind"] == "items":
        gallery["items"] = [[index_of[p], round(s, 4), sid(d)] for p, s, d in raw]
    else:
        gallery["groups"] = [
            [round(gr["score"], 4), sid(gr["text"]),
             [[index_of[p], round(s, 4), int(r), sid(d)] for p, s, r, d in gr["members"]]]
            for gr in raw
        ]


def _png_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _script_json(payload: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no ``</script>`` or ``<!--`` can appear."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# ---------------------------------------------------------------------- page parts
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    return f"{int(value):,}"


def _header(dataset: FaceDataset, title: str) -> str:
    source = f"<p class=\"source\">Source: <code>{_esc(dataset.source)}</code></p>" \
        if dataset.source else ""
    nav = " ".join(
        f'<a href="#{anchor}">{_esc(text)}</a>' for anchor, text in (
            ("summary", "Summary"), ("distribution", "Classes"), ("figures", "Figures"),
            *((f"g-{issue}", heading) for issue, _, heading, _ in GALLERIES)))
    return (f'<header><h1>{_esc(title)}</h1>{source}'
            f'<nav data-testid="nav">{nav}</nav></header>')


def _issue_entry(result: AuditResult, issue: str) -> dict[str, Any]:
    return result.summary.get("issues", {}).get(issue, {})


def _cards(dataset: FaceDataset, result: AuditResult, ran: set[str]) -> str:
    findings = result.findings
    # Class imbalance flags whole classes, not images with a problem of their own: it
    # is shown in the class table, and left out of the per-image counts here.
    per_image = findings[findings["issue"] != "class_imbalance"]
    n = len(dataset)
    affected = int(per_image["row"].nunique())
    kinds = per_image["issue"].nunique()
    splits = " · ".join(f"{k} {_num(v)}" for k, v in dataset.split_counts().items())
    share = f"{affected / n:.1%} of the images" if n else "no images"
    cards = [
        ("images", "Images", _num(n), splits),
        ("issues", "Issues", _num(len(per_image)),
         f"findings in {kinds} issue type{'s' if kinds != 1 else ''}"),
        ("affected", "Images affected", _num(affected), share),
    ]
    big = "".join(
        f'<div class="card" data-testid="card-{key}"><div class="card-title">{_esc(t)}</div>'
        f'<div class="card-value">{v}</div><div class="card-sub">{_esc(s)}</div></div>'
        for key, t, v, s in cards)

    tiles = []
    for issue in (*(g[0] for g in GALLERIES), "class_imbalance"):
        entry = _issue_entry(result, issue)
        part = findings[findings["issue"] == issue]
        if issue not in ran:
            value, sub, state = "–", "not checked in this audit", "off"
        elif issue == "class_imbalance":
            under = entry.get("under_represented", {})
            names = sorted({e for v in under.values() for e in v})
            value = str(len(names))
            sub = ("under-represented: " + ", ".join(names)) if names else "balanced enough"
            state = "warn" if names else "ok"
        elif issue == "outlier":
            k = int(part["row"].nunique())
            method = entry.get("method")
            value, sub = _num(k), "images" + (f" ({method})" if method else "")
            state = "warn" if k else "ok"
        else:
            groups, images, removable = _group_counts(part)
            value = _num(groups)
            sub = f"groups · {_num(images)} images · {_num(removable)} removable"
            state = ("bad" if issue == "cross_split_leak" else "warn") if groups else "ok"
        anchor = "distribution" if issue == "class_imbalance" else f"g-{issue}"
        tiles.append(
            f'<a class="tile {state}" href="#{anchor}" data-testid="tile-{issue}">'
            f'<span class="tile-title">{_esc(_ISSUE_TITLES[issue])}</span>'
            f'<span class="tile-value">{value}</span>'
            f'<span class="tile-sub">{_esc(sub)}</span></a>')
    return (f'<section id="summary"><div class="cards" data-testid="summary-cards">{big}'
            f'</div><div class="tiles">{"".join(tiles)}</div></section>')


def _group_counts(part: pd.DataFrame) -> tuple[int, int, int]:
    """Groups, distinct images, and distinct images beyond the first of some group.

    Counted on the findings themselves, so that an image in both an exact and a near
    group (``duplicates="all"``) counts once.
    """
    if part.empty:
        return 0, 0, 0
    first = part.groupby("group")["row"].transform("min")
    removable = part.loc[part["row"] != first, "row"].nunique()
    return int(part["group"].nunique()), int(part["row"].nunique()), int(removable)


def _leak_callout(result: AuditResult, ran: set[str]) -> str:
    if "cross_split_leak" not in ran:
        return ""
    part = result.findings[result.findings["issue"] == "cross_split_leak"]
    if part.empty:
        return ('<div class="callout ok" data-testid="leak-callout">No cross-split leaks: '
                "no image of one split has a duplicate in another.</div>")
    groups, images, _ = _group_counts(part)
    test = int(part.loc[part["split"] != "Training", "row"].nunique())
    by_pair = _issue_entry(result, "cross_split_leak").get("by_pair", {})
    lines = []
    for pair, v in by_pair.items():
        line = [f"{_num(v[g])} {kind}groups, {_num(v[i])} images"
                for g, i, kind in (("groups", "images", ""),
                                   ("near_groups", "near_images", "near-duplicate "))
                if v.get(g)]
        if line:
            lines.append(f"<li><b>{_esc(pair)}</b>: {'; '.join(line)}</li>")
    return (
        '<div class="callout bad" data-testid="leak-callout">'
        f"<h2>Train/test leakage: {_num(images)} images in {_num(groups)} groups appear "
        "in more than one split</h2>"
        f"<p>{_num(test)} of them are test images (PublicTest or PrivateTest) with a copy "
        "elsewhere: a model is scored on pictures it has seen, which inflates reported "
        f'accuracy. <a href="#g-cross_split_leak">See the leak gallery</a>.</p>'
        f"<ul>{''.join(lines)}</ul></div>")


def _class_table(dataset: FaceDataset, result: AuditResult) -> str:
    under: set[tuple[str, str]] = set()
    for auditor in result.auditors or ():
        table = getattr(auditor, "table_", None)
        if getattr(auditor, "issue_name", None) == "class_imbalance" and table is not None:
            hits = table[table["under_represented"]]
            under = set(zip(hits["split"], hits["emotion"], strict=True))
    counts = dataset.counts()
    if counts.empty:
        return "<p>No images.</p>"
    columns = [c for c in (*EMOTIONS, "unlabeled") if c in counts.columns]
    ratios = _issue_entry(result, "class_imbalance").get("imbalance_ratio", {})
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    rows = []
    for split, row in counts.iterrows():
        total = int(row.sum())
        cells = []
        for c in columns:
            value = int(row[c])
            share = value / total if total else 0.0
            cls = ' class="under"' if (split, c) in under else ""
            cells.append(
                f'<td{cls}><span class="n">{_num(value)}</span>'
                f'<span class="bar" style="width:{share * 100:.1f}%"></span>'
                f'<span class="pct">{share:.1%}</span></td>')
        ratio = ratios.get(split)
        ratio_cell = f"{ratio:.1f}×" if ratio is not None else "–"
        colour = SPLIT_COLORS[SPLITS.index(split)]
        rows.append(
            f'<tr><th><span class="dot" style="background:{colour}"></span>{_esc(split)}</th>'
            f'{"".join(cells)}<td class="total">{_num(total)}</td>'
            f'<td class="total">{ratio_cell}</td></tr>')
    note = ('<p class="note">Shaded cells: classes the imbalance audit found '
            "under-represented in their split. Ratio: largest over smallest class.</p>"
            if under else "")
    return (f'<table class="classes" data-testid="class-table"><thead><tr><th>split</th>'
            f'{head}<th>total</th><th>ratio</th></tr></thead><tbody>{"".join(rows)}'
            f"</tbody></table>{note}")


def _figure_caption(name: str, stats: dict[str, Any]) -> str:
    if name != "mean_pixel_boxplot":
        return _FIGURE_CAPTIONS[name]
    if not len(stats["means"]):
        return "No images."
    text = (f"Mean grey level per image. Q1 {stats['q1']:.1f}, median {stats['median']:.1f}, "
            f"Q3 {stats['q3']:.1f}; whiskers at {stats['whisker']:g} × IQR "
            f"({stats['fence_low']:.1f} to {stats['fence_high']:.1f}), "
            f"{_num(stats['beyond'])} images beyond them.")
    if stats["thresholds"] is not None:
        low, high = stats["thresholds"]
        text += f" Outlier thresholds (mean_iqr): below {low:.1f} or above {high:.1f}."
    elif stats["method"]:
        text += f" The outlier audit used {stats['method']}, not this rule."
    return text


def _figure_block(name: str, fig: Any, caption: str) -> str:
    uri = "data:image/png;base64," + base64.b64encode(
        figure_png(fig, dpi=_FIGURE_DPI)).decode("ascii")
    return (f'<figure class="plot" data-testid="figure-{name}"><img src="{uri}" '
            f'alt="{_esc(name.replace("_", " "))}"><figcaption>{_esc(caption)}'
            f"</figcaption></figure>")


def _toolbar(dataset: FaceDataset) -> str:
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
images matches.</span>
</div>"""


def _gallery_section(issue: str, kind: str, heading: str, blurb: str,
                     gallery: dict[str, Any], ran: set[str]) -> str:
    cls = "gallery leak" if issue == "cross_split_leak" else "gallery"
    start = (f'<section id="g-{issue}" class="{cls}" data-testid="gallery-{issue}" '
             f'data-kind="{kind}"')
    title = f"<h2>{_esc(heading)}</h2><p class=\"blurb\">{_esc(blurb)}</p>"
    if issue not in ran:
        return (f'{start} data-state="not-run">{title}<p class="empty" '
                f'data-testid="empty-{issue}">Not checked in this audit.</p></section>')
    if not gallery["total"]:
        return (f'{start} data-state="none">{title}<p class="empty" '
                f'data-testid="empty-{issue}">None found.</p></section>')
    shown = len(gallery.get("items", gallery.get("groups", [])))
    cut = ""
    if shown < gallery["total"]:
        unit = "images" if kind == "items" else "groups"
        cut = (f'<p class="note">Showing the worst {_num(shown)} of {_num(gallery["total"])} '
               f"{unit} (max_per_gallery).</p>")
    pager = (f'<div class="pager"><button type="button" data-testid="prev-{issue}" '
             f'data-dir="-1">‹ prev</button><span data-testid="page-{issue}" class="page">'
             f'</span><button type="button" data-testid="next-{issue}" data-dir="1">next ›'
             f'</button><span class="count" data-testid="count-{issue}"></span></div>')
    return (f'{start} data-state="found" data-issue="{issue}">{title}{cut}{pager}'
            f'<div class="{kind}" data-testid="items-{issue}"></div>{pager}</section>')


def _footer() -> str:
    return (f"<footer>Written by ferclean {_esc(ferclean.__version__)}. This file is "
            "self-contained: it loads nothing from the network. Scores run from 0 to 1, "
            "higher is worse (for near duplicates: more similar).</footer>")


# ---------------------------------------------------------------------- static assets
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

_CSS = """
:root { --face: 96px; --ink: #1d2430; --muted: #5f6b7a; --line: #dde3ea; --bg: #f6f8fa;
  --bad: #c0392b; --warn: #b9770e; --ok: #1e8449; --s0: #4c72b0; --s1: #dd8452;
  --s2: #c44e52; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1400px; padding: 0 24px 48px; color: var(--ink);
  background: #fff; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", sans-serif; }
header { padding: 20px 0 8px; border-bottom: 1px solid var(--line); }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 28px 0 6px; }
.source { margin: 0; color: var(--muted); }
nav { margin-top: 8px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
nav a, .callout a { color: #2057a7; text-decoration: none; }
nav a:hover { text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(3, 1fr); gap: 14px; margin-top: 18px; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 10px;
  padding: 14px 18px; }
.card-title { color: var(--muted); font-size: 13px; text-transform: uppercase;
  letter-spacing: .04em; }
.card-value { font-size: 34px; font-weight: 700; line-height: 1.2; }
.card-sub { color: var(--muted); font-size: 13px; }
.tiles { display: grid; grid-template-columns: repeat(6, 1fr); gap: 10px; margin-top: 12px; }
.tile { display: flex; flex-direction: column; border: 1px solid var(--line);
  border-left: 5px solid var(--muted); border-radius: 8px; padding: 8px 10px;
  color: inherit; text-decoration: none; background: #fff; }
.tile:hover { background: var(--bg); }
.tile.bad { border-left-color: var(--bad); background: #fdf0ee; }
.tile.warn { border-left-color: var(--warn); }
.tile.ok { border-left-color: var(--ok); }
.tile.off { opacity: .6; }
.tile-title { font-size: 12px; color: var(--muted); }
.tile-value { font-size: 22px; font-weight: 700; }
.tile-sub { font-size: 12px; color: var(--muted); }
.callout { margin: 18px 0 0; padding: 12px 18px; border-radius: 10px; }
.callout.bad { background: #fdecea; border: 2px solid var(--bad); }
.callout.bad h2 { margin: 0 0 4px; color: var(--bad); font-size: 18px; }
.callout.ok { background: #eaf6ee; border: 1px solid var(--ok); }
.callout p, .callout ul { margin: 4px 0; }
table.classes { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
table.classes th, table.classes td { border-bottom: 1px solid var(--line); padding: 5px 8px;
  text-align: right; vertical-align: top; }
table.classes th:first-child { text-align: left; white-space: nowrap; }
table.classes td .n { display: block; font-weight: 600; }
table.classes td .pct { display: block; color: var(--muted); font-size: 12px; }
table.classes td .bar { display: block; height: 4px; background: #9fb4d6; margin-left: auto;
  border-radius: 2px; }
table.classes td.under { background: #fdf0ee; }
table.classes td.under .bar { background: var(--bad); }
table.classes td.total { font-weight: 600; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 6px; }
.note, .blurb, .hint { color: var(--muted); font-size: 13px; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr));
  gap: 16px; }
figure.plot { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
figure.plot img { width: 100%; height: auto; }
figure.plot figcaption { color: var(--muted); font-size: 13px; }
.toolbar { position: sticky; top: 0; z-index: 5; display: flex; flex-wrap: wrap;
  align-items: center; gap: 8px 18px; margin: 28px 0 0; padding: 10px 14px;
  background: rgba(246, 248, 250, .97); border: 1px solid var(--line); border-radius: 10px; }
.toolbar label { display: flex; align-items: center; gap: 6px; font-weight: 600; }
.toolbar select, .toolbar button { font: inherit; padding: 2px 6px; }
.toolbar output { font-variant-numeric: tabular-nums; width: 3em; }
.gallery { border-top: 1px solid var(--line); margin-top: 18px; }
.gallery.leak { border: 2px solid var(--bad); border-radius: 12px; padding: 0 16px 12px;
  background: #fffafa; }
.gallery.leak h2 { color: var(--bad); }
.empty { font-style: italic; color: var(--muted); }
.pager { display: flex; align-items: center; gap: 10px; margin: 8px 0; }
.pager button { font: inherit; padding: 2px 10px; }
.pager .count { color: var(--muted); }
.items { display: flex; flex-wrap: wrap; gap: 10px; }
.groups { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 12px; }
.group { display: inline-flex; flex-direction: column; border: 1px solid var(--line);
  border-radius: 10px; padding: 8px 10px; background: #fff; }
/* width 0 + min-width 100%: the caption wraps to the members' width, never widens it */
.group-head { font-size: 12px; margin-bottom: 6px; width: 0; min-width: 100%; }
.group-head b { margin-right: 6px; }
.group-head .detail { color: var(--muted); }
.members { display: flex; flex-wrap: wrap; gap: 10px; }
.item { margin: 0; width: calc(var(--face) + 12px); min-width: 108px; padding: 5px;
  border: 1px solid var(--line); border-radius: 8px; background: #fff; font-size: 12px; }
.item.dim { opacity: .35; }
.item .face { display: block; margin: 0 auto; }
.face { width: var(--face); height: var(--face); image-rendering: pixelated;
  image-rendering: crisp-edges; background: #eee; cursor: zoom-in; }
.item .l1 { display: flex; justify-content: space-between; margin-top: 3px; }
.item .id { color: var(--muted); overflow: hidden; overflow-wrap: anywhere;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; }
.item .detail { color: var(--muted); font-size: 11px; display: -webkit-box;
  -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden; }
.badge { display: inline-block; padding: 0 5px; border-radius: 4px; font-size: 11px;
  color: #fff; margin: 2px 2px 0 0; }
.badge.s0 { background: var(--s0); } .badge.s1 { background: var(--s1); }
.badge.s2 { background: var(--s2); }
.badge.lab { background: #566573; }
.badge.rm { background: #fff; color: var(--muted); border: 1px solid var(--line); }
.leak .badge.s1, .leak .badge.s2 { font-weight: 700; }
.conflict .badge.lab { background: #7d3c98; font-weight: 700; }
.score { font-variant-numeric: tabular-nums; font-weight: 600; }
#lightbox { position: fixed; inset: 0; z-index: 10; background: rgba(0, 0, 0, .8);
  display: flex; flex-direction: column; align-items: center; justify-content: center;
  color: #fff; cursor: zoom-out; }
#lightbox[hidden] { display: none; }
#lightbox .big { width: 384px; height: 384px; }
.lb-caption { margin-top: 10px; max-width: 600px; text-align: center; }
footer { margin-top: 36px; color: var(--muted); font-size: 12px;
  border-top: 1px solid var(--line); padding-top: 10px; }
@media (max-width: 900px) { .cards { grid-template-columns: 1fr; }
  .tiles { grid-template-columns: repeat(2, 1fr); } }
"""

_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("ferclean-data").textContent);
  var IMG = D.images, M = D.meta, S = D.strings, EMO = D.emotions, SPL = D.splits;
  var DEFAULT = {split: "", label: "", min: 0, sort: "score", size: "96"};
  var state = Object.assign({}, DEFAULT);
  var views = {};  // issue -> {list: filtered entries, page: index}
  var stats = {rendered: 0, loaded: 0, failed: 0};

  function labelName(l) { return l >= 0 ? EMO[l] : "unlabeled"; }
  function matches(i) {
    if (state.split !== "" && SPL[M.split[i]] !== state.split) return false;
    if (state.label !== "" && String(M.label[i]) !== state.label) return false;
    return true;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x) { return Number(x).toFixed(3); }
  function status() {
    var b = document.body.dataset;
    b.imagesRendered = stats.rendered; b.imagesLoaded = stats.loaded;
    b.imagesFailed = stats.failed;
  }

  // ------------------------------------------------------------- state <-> URL hash
  function parseHash() {
    var s = Object.assign({}, DEFAULT);
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var p = kv.split("="), k = decodeURIComponent(p[0]);
      var v = decodeURIComponent((p[1] || "").replace(/\+/g, " "));
      if (k === "split") {
        SPL.forEach(function (n) { if (n.toLowerCase() === v.toLowerCase()) s.split = n; });
      } else if (k === "label") {
        var i = EMO.indexOf(v.toLowerCase());
        if (i >= 0) s.label = String(i);
        else if (v === "unlabeled" || v === "-1") s.label = "-1";
        else if (/^[0-6]$/.test(v)) s.label = v;
      } else if (k === "min") {
        var x = parseFloat(v);
        if (isFinite(x)) s.min = Math.min(1, Math.max(0, x));
      } else if (k === "sort" && (v === "score" || v === "row")) {
        s.sort = v;
      } else if (k === "size" && ["96", "144", "192"].indexOf(v) >= 0) {
        s.size = v;
      }
    });
    return s;
  }
  function toHash(s) {
    var parts = [];
    Object.keys(DEFAULT).forEach(function (k) {
      if (String(s[k]) !== String(DEFAULT[k])) {
        var v = k === "label" ? labelName(Number(s[k])) : s[k];
        parts.push(k + "=" + encodeURIComponent(v));
      }
    });
    return parts.length ? "#" + parts.join("&") : "";
  }
  function writeHash() {
    var h = toHash(state);
    if (h === location.hash || (h === "" && location.hash === "")) return;
    try { history.replaceState(null, "", h || location.pathname + location.search); }
    catch (e) { location.hash = h; }  // file: pages may refuse replaceState
  }

  // ------------------------------------------------------------- filtering
  function byRow(a, b) { return M.row[a] - M.row[b]; }
  function filter(issue) {
    var g = D.galleries[issue], list;
    if (g.kind === "items") {
      list = g.items.filter(function (it) { return it[1] >= state.min && matches(it[0]); });
      list.sort(state.sort === "row"
        ? function (a, b) { return byRow(a[0], b[0]); }
        : function (a, b) { return b[1] - a[1] || byRow(a[0], b[0]); });
    } else {
      list = g.groups.filter(function (gr) {
        return gr[0] >= state.min && gr[2].some(function (m) { return matches(m[0]); });
      });
      list.sort(state.sort === "row"
        ? function (a, b) { return byRow(a[2][0][0], b[2][0][0]); }
        : function (a, b) { return b[0] - a[0] || byRow(a[2][0][0], b[2][0][0]); });
    }
    return list;
  }

  // ------------------------------------------------------------- rendering
  function thumb(i) {
    var img = el("img", "face");
    img.alt = "row " + M.row[i];
    img.setAttribute("data-testid", "thumb");
    img.onload = function () {
      img.setAttribute("data-loaded", img.naturalWidth + "x" + img.naturalHeight);
      stats.loaded++; status();
    };
    img.onerror = function () {
      img.setAttribute("data-loaded", "error"); stats.failed++; status();
    };
    img.src = IMG[M.img[i]];  // set only when the page is shown: lazy by construction
    img.addEventListener("click", function () { openLightbox(i); });
    stats.rendered++;
    return img;
  }
  function card(issue, i, score, detail, extra) {
    var f = el("figure", "item");
    f.setAttribute("data-testid", "item");
    f.setAttribute("data-issue", issue);
    f.setAttribute("data-row", M.row[i]);
    f.setAttribute("data-split", SPL[M.split[i]]);
    f.setAttribute("data-label", M.label[i]);
    f.setAttribute("data-score", score);
    f.setAttribute("data-match", matches(i) ? "1" : "0");
    if (!matches(i)) f.classList.add("dim");
    f.appendChild(thumb(i));
    var c = el("figcaption");
    var l1 = el("div", "l1");
    l1.appendChild(el("b", null, "#" + M.row[i]));
    var sc = el("span", "score", fmt(score));
    sc.title = issue === "near_duplicate" ? "similarity to the closest member of its group"
                                          : "score (higher is worse)";
    l1.appendChild(sc);
    c.appendChild(l1);
    var id = el("div", "id", M.id[i]);
    id.title = M.id[i];
    c.appendChild(id);
    var badges = el("div");
    badges.appendChild(el("span", "badge s" + M.split[i], SPL[M.split[i]]));
    badges.appendChild(el("span", "badge lab", labelName(M.label[i])));
    if (extra) badges.appendChild(el("span", "badge rm", extra));
    c.appendChild(badges);
    if (detail !== null) {
      // the group caption already says "near duplicate group of N"
      var d = el("div", "detail", S[detail].replace(/^near duplicate group of \d+: /, ""));
      d.title = S[detail];
      c.appendChild(d);
    }
    f.appendChild(c);
    return f;
  }
  function tally(members, key) {  // "Training ×2, PublicTest ×1", in code order
    var counts = {};
    members.forEach(function (m) {
      var v = M[key][m[0]];
      counts[v] = (counts[v] || 0) + 1;
    });
    return Object.keys(counts).map(Number).sort(function (a, b) {
      return (a < 0 ? 99 : a) - (b < 0 ? 99 : b);  // unlabeled (-1) last
    }).map(function (v) {
      return (key === "label" ? labelName(v) : SPL[v]) + " ×" + counts[v];
    }).join(", ");
  }
  function group(issue, gr) {
    var box = el("div", "group" + (issue === "label_conflict" ? " conflict" : ""));
    box.setAttribute("data-testid", "group");
    box.setAttribute("data-issue", issue);
    box.setAttribute("data-score", gr[0]);
    var head = el("div", "group-head");
    head.appendChild(el("b", null, gr[2].length + " images"));
    head.appendChild(el("span", null, tally(gr[2], "split") + " · " +
                                       tally(gr[2], "label")));
    if (/^near duplicate group/.test(S[gr[1]])) {  // near copies: say how similar
      head.appendChild(el("div", "detail", issue === "near_duplicate"
        ? S[gr[1]].replace(/^near duplicate /, "") : S[gr[1]]));
    }
    head.title = S[gr[1]];
    box.appendChild(head);
    var row = el("div", "members");
    gr[2].forEach(function (m) {
      var showDetail = issue === "near_duplicate" ? m[3] : null;
      var it = card(issue, m[0], m[1], showDetail, m[2] ? "removable" : "kept");
      it.title = S[m[3]];
      row.appendChild(it);
    });
    box.appendChild(row);
    return box;
  }
  function render(issue) {
    var sec = document.querySelector('[data-testid="items-' + issue + '"]');
    if (!sec) return;
    var v = views[issue], g = D.galleries[issue];
    var per = g.kind === "items" ? D.items_per_page : D.groups_per_page;
    var pages = Math.max(1, Math.ceil(v.list.length / per));
    v.page = Math.min(Math.max(0, v.page), pages - 1);
    var start = v.page * per, slice = v.list.slice(start, start + per);
    sec.textContent = "";
    if (!slice.length) {
      sec.appendChild(el("p", "empty", "Nothing matches the filters."));
    }
    var frag = document.createDocumentFragment();
    slice.forEach(function (e) {
      frag.appendChild(g.kind === "items" ? card(issue, e[0], e[1], e[2]) : group(issue, e));
    });
    sec.appendChild(frag);
    var unit = g.kind === "items" ? "images" : "groups";
    var total = g.kind === "items" ? g.items.length : g.groups.length;
    var text = v.list.length
      ? (start + 1) + "–" + (start + slice.length) + " of " + v.list.length + " " + unit
      : "0 " + unit;
    if (v.list.length < total) text += " matching (" + total + " in all)";
    var root = sec.closest("section");
    root.querySelectorAll('[data-testid="count-' + issue + '"]').forEach(function (n) {
      n.textContent = text;
    });
    root.querySelectorAll('[data-testid="page-' + issue + '"]').forEach(function (n) {
      n.textContent = "page " + (v.page + 1) + " of " + pages;
    });
    root.querySelectorAll(".pager button").forEach(function (b) {
      var d = Number(b.getAttribute("data-dir"));
      b.disabled = d < 0 ? v.page === 0 : v.page >= pages - 1;
    });
    root.setAttribute("data-visible", slice.length);
    root.setAttribute("data-matching", v.list.length);
  }
  function applyState(s) {
    var same = ["split", "label", "min", "sort"].every(function (k) {
      return String(s[k]) === String(state[k]);
    });
    state = s;
    document.documentElement.style.setProperty("--face", state.size + "px");
    document.getElementById("f-split").value = state.split;
    document.getElementById("f-label").value = state.label;
    document.getElementById("f-min").value = state.min;
    document.getElementById("f-min-out").textContent = Number(state.min).toFixed(2);
    document.getElementById("f-sort").value = state.sort;
    document.getElementById("f-size").value = state.size;
    if (same && Object.keys(views).length) return;  // only the size changed
    Object.keys(D.galleries).forEach(function (issue) {
      views[issue] = {list: filter(issue), page: 0};
      render(issue);
    });
    status();
  }
  function fromControls() {
    var s = {
      split: document.getElementById("f-split").value,
      label: document.getElementById("f-label").value,
      min: parseFloat(document.getElementById("f-min").value) || 0,
      sort: document.getElementById("f-sort").value,
      size: document.getElementById("f-size").value
    };
    applyState(s);
    writeHash();
  }

  // ------------------------------------------------------------- lightbox
  var box = document.getElementById("lightbox");
  function openLightbox(i) {
    box.querySelector("img").src = IMG[M.img[i]];
    box.querySelector(".lb-caption").textContent = "row " + M.row[i] + " · " + M.id[i] +
      " · " + SPL[M.split[i]] + " · " + labelName(M.label[i]);
    box.hidden = false;
  }
  box.addEventListener("click", function () { box.hidden = true; });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") box.hidden = true;
  });

  // ------------------------------------------------------------- wiring
  ["f-split", "f-label", "f-sort", "f-size"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", fromControls);
  });
  document.getElementById("f-min").addEventListener("input", fromControls);
  document.getElementById("f-reset").addEventListener("click", function () {
    applyState(Object.assign({}, DEFAULT)); writeHash();
  });
  document.querySelectorAll(".pager button").forEach(function (b) {
    b.addEventListener("click", function () {
      var issue = b.closest("section").getAttribute("data-issue");
      views[issue].page += Number(b.getAttribute("data-dir"));
      render(issue);
      status();
    });
  });
  window.addEventListener("hashchange", function () { applyState(parseHash()); });
  applyState(parseHash());
  document.body.setAttribute("data-ready", "1");
})();
"""
