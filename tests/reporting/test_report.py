"""The HTML audit report: self-contained, small, complete, and working in a real browser.

The browser tests drive headless Chromium through its command line only (``--dump-dom``
prints the DOM after the page's JavaScript ran, ``--screenshot`` saves a PNG), so they
need no Python browser driver. The page reads its filters from the URL fragment, which
is how a test applies one. Without a ``chromium`` binary they are skipped; CI installs
it with ``apt-get install -y chromium``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ferclean
from ferclean.auditors import REGISTRY, Auditor, register, unregister
from ferclean.demo import make_demo
from ferclean.findings import make_findings, read_findings
from ferclean.reporting import report, save_figures, write_report
from ferclean.reporting.figures import mean_pixel_boxplot, mean_pixel_stats
from ferclean.reporting.galleries import gallery_payload, report_issues
from helpers import make_random_dataset

# The built-in galleries in page order (derived from the auditor registry).
GALLERY_ISSUES = [s.issue for s in report_issues() if s.layout is not None]
GROUP_ISSUES = [s.issue for s in report_issues() if s.layout == "groups"]
ITEM_ISSUES = [s.issue for s in report_issues() if s.layout == "items"]
ITEMS_PER_PAGE, GROUPS_PER_PAGE = 60, 30


# ---------------------------------------------------------------------- helpers
class Dom(HTMLParser):
    """The elements the tests look at, with their attributes and nesting."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "source", "track", "wbr"}

    def __init__(self, text: str) -> None:
        super().__init__()
        self.stack: list[object] = []
        self.body: dict[str, str] = {}
        self.sections: dict[str, dict[str, str]] = {}
        self.items: list[dict] = []  # {"attrs", "issue", "group", "thumbs"}
        self.groups: list[dict] = []  # {"attrs", "members"}
        self.urls: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.tags: list[str] = []
        self.feed(text)
        self.close()

    def _open(self, kind: str) -> dict | None:
        return next((x for x in reversed(self.stack) if isinstance(x, dict)
                     and x.get("kind") == kind), None)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.urls += [(tag, k, a[k]) for k in ("src", "href", "action", "srcset") if k in a]
        tid = a.get("data-testid", "")
        marker: object = tag
        if tag == "body":
            self.body = a
        if tid.startswith("gallery-"):
            self.sections[tid.removeprefix("gallery-")] = a
        if tid == "group":
            marker = {"kind": "group", "attrs": a, "members": []}
            self.groups.append(marker)
        elif tid == "item":
            group = self._open("group")
            marker = {"kind": "item", "attrs": a, "thumbs": [], "group": group}
            self.items.append(marker)
            if group is not None:
                group["members"].append(marker)
        elif tid == "thumb":
            item = self._open("item")
            if item is not None:
                item["thumbs"].append(a)
        if tag not in self.VOID:
            self.stack.append(marker)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def items_of(self, issue: str, *, grouped: bool | None = None) -> list[dict]:
        return [i for i in self.items if i["attrs"].get("data-issue") == issue
                and (grouped is None or (i["group"] is not None) == grouped)]

    def groups_of(self, issue: str) -> list[dict]:
        return [g for g in self.groups if g["attrs"].get("data-issue") == issue]


def payload(text: str) -> dict:
    match = re.search(r'<script type="application/json" id="ferclean-data">(.*?)</script>',
                      text, re.S)
    assert match, "report has no data payload"
    return json.loads(match.group(1))


def chromium_binary() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def run_chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    binary = chromium_binary()
    if binary is None:
        pytest.skip("headless browser test needs chromium (apt-get install -y chromium)")
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done


def dump_dom(tmp: Path, page: Path, fragment: str = "") -> Dom:
    done = run_chromium(tmp, "--dump-dom", page.as_uri() + fragment)
    dom = Dom(done.stdout)
    assert dom.body.get("data-ready") == "1", "the page's script did not finish"
    return dom


def expected_matches(result, issue: str, *, split: str | None = None,
                     label: int | None = None, min_score: float = 0.0) -> int:
    """How many entries (images, or groups) of a gallery a filter should leave."""
    part = result.of(issue)
    hit = np.ones(len(part), bool)
    if split is not None:
        hit &= (part["split"] == split).to_numpy()
    if label is not None:
        hit &= (part["label"] == label).to_numpy()
    if issue in ITEM_ISSUES:
        return int((hit & (part["score"] >= min_score).to_numpy()).sum())
    best = part.groupby("group")["score"].transform("max").to_numpy()
    return int(part.loc[hit & (best >= min_score), "group"].nunique())


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo():
    demo = make_demo(n_faces=300)
    return demo.dataset, ferclean.audit(demo.dataset)


@pytest.fixture(scope="module")
def built(demo, tmp_path_factory):
    ds, result = demo
    out = tmp_path_factory.mktemp("report")
    path = write_report(ds, result, out / "report.html", figures_dir=out / "figures")
    return ds, result, path


# ---------------------------------------------------------------------- file tests
def test_report_is_self_contained(built):
    _, _, path = built
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    # ':' and '/' are not base64 characters, so no data URI can hide a URL either.
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    dom = Dom(text)
    assert dom.urls, "expected inline images"
    for tag, attr, value in dom.urls:
        assert value.startswith(("data:image/png;base64,", "#")), (tag, attr, value[:60])
    assert "link" not in dom.tags and "iframe" not in dom.tags
    assert "@import" not in text and "url(" not in text
    scripts = re.findall(r"<script([^>]*)>", text)
    assert all("src" not in s for s in scripts)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_report_size_and_images(built):
    ds, result, path = built
    size = path.stat().st_size
    assert 50_000 < size < 3_000_000
    data = payload(path.read_text(encoding="utf-8"))
    flagged = result.findings[result.findings["issue"].isin(GALLERY_ISSUES)]
    # every flagged image is listed once; class-imbalance images are not embedded
    assert sorted(data["meta"]["row"]) == sorted(set(flagged["row"]))
    # identical pictures share one encoded PNG
    assert len(data["images"]) == len(set(data["images"]))
    distinct = {ds.pixels[r].tobytes() for r in set(flagged["row"])}
    assert len(data["images"]) == len(distinct)
    for uri in data["images"][:20]:
        assert uri.startswith("data:image/png;base64,")
    # each gallery holds all its findings
    for issue in GALLERY_ISSUES:
        gallery, part = data["galleries"][issue], result.of(issue)
        if issue in ITEM_ISSUES:
            assert len(gallery["items"]) == len(part) == gallery["total"]
        else:
            assert len(gallery["groups"]) == part["group"].nunique() == gallery["total"]
            assert sum(len(g[2]) for g in gallery["groups"]) == len(part)


def test_report_sections_and_cards(built):
    ds, result, path = built
    text = path.read_text(encoding="utf-8")
    for testid in ("summary-cards", "card-images", "card-issues", "card-affected",
                   "class-table", "leak-callout", "filter-split", "filter-label",
                   "filter-min-score", "filter-sort", "figure-class_counts",
                   "figure-duplicates_per_emotion", "figure-mean_pixel_boxplot"):
        assert f'data-testid="{testid}"' in text, testid
    for issue in GALLERY_ISSUES:
        assert f'data-testid="gallery-{issue}"' in text
    assert f"{len(ds):,}" in text
    leak = result.summary["issues"]["cross_split_leak"]
    assert f"{leak['images']} images in {leak['groups']} groups" in text
    # the leak gallery comes before the other galleries
    assert text.index('data-testid="gallery-cross_split_leak"') < min(
        text.index(f'data-testid="gallery-{i}"') for i in GALLERY_ISSUES[1:])


def test_figures_saved_as_png(built):
    _, _, path = built
    names = sorted(p.name for p in (path.parent / "figures").iterdir())
    assert names == ["class_counts.png", "duplicates_per_emotion.png",
                     "mean_pixel_boxplot.png"]
    for name in names:
        with Image.open(path.parent / "figures" / name) as im:
            assert im.format == "PNG" and im.width > 800


def test_save_figures_returns_paths(demo, tmp_path):
    ds, result = demo
    paths = save_figures(ds, result, tmp_path / "new" / "folder")
    assert [p.name for p in paths] == ["class_counts.png", "duplicates_per_emotion.png",
                                       "mean_pixel_boxplot.png"]
    assert not list((tmp_path / "new" / "folder").glob(".ferclean-tmp-*"))


def test_mean_iqr_thresholds_in_figure_and_caption(demo, tmp_path):
    ds, _ = demo
    result = ferclean.audit(ds, [{"outlier": {"method": "mean_iqr", "whisker": 1.0}}])
    auditor = result.auditors[0]
    stats = mean_pixel_stats(ds, result)
    assert stats["thresholds"] == (auditor.lower_, auditor.upper_)
    assert stats["whisker"] == 1.0
    assert np.isclose(stats["fence_low"], auditor.lower_)
    lines = {ln.get_label(): ln.get_ydata()[0] for ln in mean_pixel_boxplot(ds, result)
             .axes[0].lines if ln.get_label().startswith("threshold")}
    assert np.isclose(lines["threshold low"], auditor.lower_)
    assert np.isclose(lines["threshold high"], auditor.upper_)
    text = write_report(ds, result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"below {auditor.lower_:.1f} or above {auditor.upper_:.1f}" in text
    # without mean_iqr: Tukey's 1.5 x IQR on the context's mean pixel, no thresholds
    plain = mean_pixel_stats(ds, ferclean.audit(ds, only=["outlier"]))
    means = ferclean.auditors.AuditContext(ds).mean_pixel
    q1, q3 = np.percentile(means, [25, 75])
    assert plain["thresholds"] is None and plain["whisker"] == 1.5
    assert np.isclose(plain["fence_high"], q3 + 1.5 * (q3 - q1))


def test_issues_with_no_findings(tmp_path):
    ds = make_random_dataset(40)  # random noise: no duplicates
    result = ferclean.audit(ds, only=["exact_duplicate", "cross_split_leak",
                                      "class_imbalance"])
    text = write_report(ds, result, tmp_path / "r.html").read_text(encoding="utf-8")
    for issue in ("exact_duplicate", "cross_split_leak"):
        assert re.search(f'data-testid="gallery-{issue}"[^>]*data-state="none"', text)
    for issue in ("outlier", "near_duplicate", "label_conflict"):
        assert re.search(f'data-testid="gallery-{issue}"[^>]*data-state="not-run"', text)
    assert "None found." in text and "Not checked in this audit." in text
    assert "No cross-split leaks" in text
    assert payload(text)["images"] == []


def test_unlabeled_and_empty_findings(tmp_path):
    ds = ferclean.FaceDataset(np.zeros((3, 48, 48), np.uint8))
    result = ferclean.audit(ds, only=["exact_duplicate"])
    text = write_report(ds, result, tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<option value="-1">unlabeled</option>' in text
    assert len(payload(text)["images"]) == 1  # three copies of one picture


def test_exact_and_near_groups_side_by_side(demo, tmp_path):
    ds, _ = demo
    both = {"duplicates": "all"}
    result = ferclean.audit(ds, ["exact_duplicate", "near_duplicate",
                                 {"label_conflict": both}, {"cross_split_leak": both}])
    text = write_report(ds, result, tmp_path / "r.html").read_text(encoding="utf-8")
    data = payload(text)
    for issue in ("label_conflict", "cross_split_leak"):
        part = result.of(issue)
        assert set(part["kind"]) == {"exact", "near"}
        groups = data["galleries"][issue]["groups"]
        assert len(groups) == part["group"].nunique()
        assert sum(len(g[2]) for g in groups) == len(part)
        # each group carries its kind, read from the findings' kind column
        want = part.groupby("group").agg(first=("row", "min"), kind=("kind", "first"))
        got = {data["meta"]["row"][min(m[0] for m in g[2])]: g[3] for g in groups}
        assert got == dict(zip(want["first"], want["kind"], strict=True))
    assert "near-duplicate groups" in text  # the leak callout counts near groups apart


def test_max_per_gallery(demo, tmp_path):
    ds, result = demo
    text = write_report(ds, result, tmp_path / "r.html", max_per_gallery=2,
                        title="Small <report>").read_text(encoding="utf-8")
    data = payload(text)
    assert len(data["galleries"]["outlier"]["items"]) == 2
    assert all(len(data["galleries"][i].get("groups", [])) <= 2 for i in GALLERY_ISSUES)
    scores = result.of("outlier")["score"].sort_values(ascending=False).tolist()
    assert [it[1] for it in data["galleries"]["outlier"]["items"]] == pytest.approx(
        scores[:2], abs=1e-4)
    assert "(max_per_gallery)" in text
    assert "<title>Small &lt;report&gt;</title>" in text
    with pytest.raises(ValueError, match="max_per_gallery"):
        write_report(ds, result, tmp_path / "x.html", max_per_gallery=0)


def test_result_of_another_dataset_is_refused(demo, tmp_path):
    ds, result = demo
    other = ds.subset(np.arange(10))
    with pytest.raises(ValueError, match="another dataset"):
        write_report(other, result, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_overwrites_atomically(demo, tmp_path):
    ds, result = demo
    path = tmp_path / "r.html"
    path.write_text("old")
    with pytest.raises(Exception, match="overwrite"):  # the output guard: not without asking
        write_report(ds, result, path)
    assert path.read_text() == "old"
    write_report(ds, result, path, overwrite=True)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_report_runs_the_audit_and_stays_callable(demo, tmp_path):
    ds, _ = demo
    out = report(ds, path=tmp_path / "a.html", only=["exact_duplicate"])
    assert 'data-testid="gallery-exact_duplicate" data-kind="groups" data-state="found"' in (
        out.read_text(encoding="utf-8"))
    import ferclean
    import ferclean.reporting  # the package is named apart from the function ...

    out = ferclean.report(ds, path=tmp_path / "b.html", only=["outlier"])  # ... so no clash
    assert out.exists()
    with pytest.raises(ValueError, match="nothing is run"):
        report(ds, ferclean.audit(ds, only=["outlier"]), tmp_path / "c.html", only=["x"])


# ---------------------------------------------------------------------- registry-driven
class DarkImageAuditor(Auditor):
    """A user's auditor, as in the docs: images darker than ``level``, worst first."""

    issue_name = "dark_image"
    title = "Dark images"
    description = "Images whose mean grey level is below the level."
    gallery = "items"
    order = 110

    def __init__(self, *, level: float = 80.0) -> None:
        self.level = level

    def _audit(self, dataset, context):
        mean = context.mean_pixel
        index = np.flatnonzero(mean < self.level)
        return make_findings(dataset, index, self.issue_name, score=1 - mean[index] / 255,
                             detail=[f"mean grey {m:.1f}" for m in mean[index]])


class DarkShareAuditor(DarkImageAuditor):
    """The same finding shown as a summary card only (``gallery=None``)."""

    issue_name = "dark_share"
    title = "Dark share"
    gallery = None
    order = 120


@pytest.fixture
def custom_auditors():
    for cls in (DarkImageAuditor, DarkShareAuditor):
        register(cls)
    try:
        yield
    finally:
        for name in ("dark_image", "dark_share"):
            if name in REGISTRY:
                unregister(name)


def test_custom_auditor_gets_a_gallery(demo, tmp_path, custom_auditors):
    ds, _ = demo
    result = ferclean.audit(ds, only=["exact_duplicate", "dark_image", "dark_share"])
    n_dark = len(result.of("dark_image"))
    assert n_dark > 0, "the demo should have dark images"
    specs = {s.issue: s for s in report_issues()}
    assert specs["dark_image"].layout == "items" and specs["dark_share"].layout is None
    path = write_report(ds, result, tmp_path / "r.html")
    text = path.read_text(encoding="utf-8")
    assert re.search(r'data-testid="gallery-dark_image" data-kind="items" '
                     r'data-state="found"', text)
    assert "<h2>Dark images</h2>" in text and 'href="#g-dark_image"' in text
    assert 'data-testid="gallery-dark_share"' not in text  # a card only
    assert 'data-testid="tile-dark_share"' in text and 'data-testid="tile-dark_image"' in text
    gallery = payload(text)["galleries"]["dark_image"]
    assert gallery["layout"] == "items" and len(gallery["items"]) == n_dark
    # after the built-in galleries, in registry order
    assert text.index('data-testid="gallery-exact_duplicate"') < text.index(
        'data-testid="gallery-dark_image"')
    if chromium_binary() is not None:
        dom = dump_dom(tmp_path, path)
        assert len(dom.items_of("dark_image", grouped=False)) == min(n_dark, ITEMS_PER_PAGE)
        assert dom.sections["dark_image"]["data-matching"] == str(n_dark)


def test_custom_auditor_read_back_unregistered(demo, tmp_path, custom_auditors):
    """Findings of an auditor this session does not know still get a gallery."""
    ds, _ = demo
    saved = ferclean.audit(ds, only=["dark_image"]).save(tmp_path / "audit")
    unregister("dark_image")
    back = read_findings(saved)
    text = write_report(ds, back, tmp_path / "r.html").read_text(encoding="utf-8")
    assert re.search(r'data-testid="gallery-dark_image" data-kind="items" '
                     r'data-state="found"', text)
    assert "<h2>Dark image</h2>" in text  # a heading made from the issue name


def test_groups_come_from_columns_not_detail(demo):
    """Kinds, similarity and related images come from typed columns: blanking every
    ``detail`` changes nothing but the captions."""
    ds, _ = demo
    both = {"duplicates": "all"}
    result = ferclean.audit(ds, ["exact_duplicate", {"near_duplicate": {"mirror": True}},
                                 {"cross_split_leak": both}])
    blank = ferclean.findings.AuditResult(result.findings.assign(detail=""), result.summary,
                                          result.auditors)
    a = ferclean.reporting.gallery_payload(ds, result)
    b = ferclean.reporting.gallery_payload(ds, blank)
    strip = {issue: [[g[0], g[3], [[m[0], m[1], m[2], m[4]] for m in g[2]]]
                     for g in gallery.get("groups", [])]
             for issue, gallery in a["galleries"].items()}
    assert strip == {issue: [[g[0], g[3], [[m[0], m[1], m[2], m[4]] for m in g[2]]]
                             for g in gallery.get("groups", [])]
                     for issue, gallery in b["galleries"].items()}
    assert b["strings"] == [""]
    rows = a["meta"]["row"]
    for issue in ("near_duplicate", "cross_split_leak"):
        part = result.of(issue).set_index("row")
        kinds = {g[3] for g in a["galleries"][issue]["groups"]}
        assert kinds == set(part["kind"]) and kinds <= {"exact", "near", "mirror"}
        for g in a["galleries"][issue]["groups"]:
            for m in g[2]:
                related = part.loc[rows[m[0]], "related_row"]
                assert (rows[m[4]] if m[4] >= 0 else -1) == related
    assert "mirror" in {g[3] for g in a["galleries"]["near_duplicate"]["groups"]}


def test_static_files_are_inlined(built):
    from importlib import resources

    _, _, path = built
    text = path.read_text(encoding="utf-8")
    static = resources.files("ferclean.reporting").joinpath("static")
    for name in ("report.css", "report.js"):
        body = static.joinpath(name).read_text(encoding="utf-8")
        assert body.strip() and body in text, name


def test_no_pyplot_in_reporting():
    """Figures come from ferclean._figures: no pyplot import, no backend switch."""
    import ast

    folder = Path(ferclean.reporting.__file__).parent
    for src in folder.rglob("*.py"):
        tree = ast.parse(src.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("pyplot" in n for n in names), (src.name, node.lineno)
            if isinstance(node, ast.Attribute) and node.attr == "use":
                assert ast.unparse(node.value) != "matplotlib", (src.name, node.lineno)


# ---------------------------------------------------------------------- plan marks, order
@pytest.fixture(scope="module")
def by_class():
    """The small demo sorted by class, as FER-2013's image folders are, with fresh rows
    and the long ids of a folder dataset."""
    ds = make_demo(n_faces=300).dataset
    order = np.argsort(ds.labels, kind="stable")
    names = np.asarray(ferclean.dataset.EMOTIONS)[ds.labels[order]]
    ids = [f"train/{e}/Training_{10_000_000 + i}.jpg" for i, e in enumerate(names)]
    ds = ferclean.FaceDataset(ds.pixels[order], ds.labels[order], ds.splits[order], ids)
    return ds, ferclean.audit(ds)


def _removed_rows(ds, result, plan: str) -> set[int]:
    from ferclean.cleaning import CleaningPlan, select_removals

    chosen = select_removals(ds, CleaningPlan.resolve(plan), result.findings)
    return set(ds.rows[chosen["position"].to_numpy()].tolist())


@pytest.mark.parametrize("plan", ["strict", "dedup"])
def test_marks_are_what_the_plan_removes(by_class, plan):
    ds, result = by_class
    data = ferclean.reporting.gallery_payload(ds, result, plan=plan)
    assert data["plan"] == plan
    want = _removed_rows(ds, result, plan)
    rows, splits = data["meta"]["row"], data["meta"]["split"]
    marks = {}
    for gallery in data["galleries"].values():
        entries = gallery.get("items", [])
        entries = [[it[0], it[3]] for it in entries] + [
            [m[0], m[2]] for g in gallery.get("groups", []) for m in g[2]]
        for image, removed in entries:
            marks.setdefault(rows[image], set()).add(removed)
    assert all(len(v) == 1 for v in marks.values())  # one mark per image, in every gallery
    assert {r for r, v in marks.items() if v == {1}} == want & set(marks)
    test_rows = {rows[i] for i in range(len(rows)) if splits[i] != 0}
    leaking_tests = {rows[m[0]] for g in data["galleries"]["cross_split_leak"]["groups"]
                     for m in g[2]} & test_rows
    assert leaking_tests
    if plan == "strict":  # strict removes from Training only: test copies are kept
        assert not any(marks[r] == {1} for r in test_rows)
    else:  # dedup keeps the first copy of each group, wherever it is
        assert any(marks[r] == {1} for r in test_rows)


def test_equal_scores_are_dealt_out_by_class(by_class):
    """With the input sorted by class, the first entries of a gallery are not all of one
    class: among equal scores the classes take turns."""
    ds, result = by_class
    data = ferclean.reporting.gallery_payload(ds, result)
    labels = data["meta"]["label"]
    for issue, gallery in data["galleries"].items():
        entries = ([(g[0], labels[g[2][0][0]]) for g in gallery.get("groups", [])]
                   or [(it[1], labels[it[0]]) for it in gallery.get("items", [])])
        if not entries:
            continue
        scores = [score for score, _ in entries]
        assert scores == sorted(scores, reverse=True), issue
        tied = [label for score, label in entries if score == scores[0]]
        n_classes = len(set(tied))
        assert len(set(tied[:n_classes])) == n_classes, (issue, tied)
    leak = [labels[g[2][0][0]] for g in data["galleries"]["cross_split_leak"]["groups"]]
    assert len(set(leak[:6])) >= 5


# ---------------------------------------------------------------------- browser tests
def test_browser_renders_real_images(built, tmp_path):
    _, result, path = built
    dom = dump_dom(tmp_path, path)
    assert dom.body.get("data-images-failed") == "0"
    thumbs = [t for item in dom.items for t in item["thumbs"]]
    assert thumbs and all(t.get("data-loaded") == "48x48" for t in thumbs)
    assert int(dom.body["data-images-loaded"]) == len(thumbs)
    n_out = len(result.of("outlier"))
    assert len(dom.items_of("outlier", grouped=False)) == min(n_out, ITEMS_PER_PAGE)
    for issue in GROUP_ISSUES:
        n_groups = result.of(issue)["group"].nunique()
        assert len(dom.groups_of(issue)) == min(n_groups, GROUPS_PER_PAGE), issue
        assert dom.sections[issue]["data-matching"] == str(n_groups)
    # each group is marked with its kind
    assert {g["attrs"]["data-kind"] for g in dom.groups_of("exact_duplicate")} == {"exact"}
    assert {g["attrs"]["data-kind"] for g in dom.groups_of("near_duplicate")} <= {
        "near", "mirror"}
    # outliers worst first; every leak group spans more than one split
    scores = [float(i["attrs"]["data-score"]) for i in dom.items_of("outlier")]
    assert scores == sorted(scores, reverse=True)
    for group in dom.groups_of("cross_split_leak"):
        assert len({m["attrs"]["data-split"] for m in group["members"]}) > 1


def test_browser_split_filter(built, tmp_path):
    _, result, path = built
    unfiltered = dump_dom(tmp_path, path)
    assert {i["attrs"]["data-split"] for i in unfiltered.items} > {"PrivateTest"}
    dom = dump_dom(tmp_path, path, "#split=PrivateTest")
    outliers = dom.items_of("outlier", grouped=False)
    assert len(outliers) == min(expected_matches(result, "outlier", split="PrivateTest"),
                                ITEMS_PER_PAGE)
    assert all(i["attrs"]["data-split"] == "PrivateTest" for i in outliers)
    shown = 0
    for issue in GALLERY_ISSUES:
        want = expected_matches(result, issue, split="PrivateTest")
        assert dom.sections[issue]["data-matching"] == str(want), issue
        for group in dom.groups_of(issue):
            matching = [m for m in group["members"] if m["attrs"]["data-match"] == "1"]
            assert matching, f"{issue} group shown without a PrivateTest image"
            assert all(m["attrs"]["data-split"] == "PrivateTest" for m in matching)
        shown += want
    assert shown > 0, "the demo should have PrivateTest findings to filter to"


def test_browser_label_and_score_filter(built, tmp_path):
    _, result, path = built
    dom = dump_dom(tmp_path, path, "#label=happy&min=0.8&sort=row")
    outliers = dom.items_of("outlier", grouped=False)
    want = expected_matches(result, "outlier", label=3, min_score=0.8)
    assert len(outliers) == min(want, ITEMS_PER_PAGE)
    assert all(i["attrs"]["data-label"] == "3" for i in outliers)
    assert all(float(i["attrs"]["data-score"]) >= 0.8 for i in outliers)
    rows = [int(i["attrs"]["data-row"]) for i in outliers]
    assert rows == sorted(rows)


def test_browser_controls(built, tmp_path):
    """The toolbar and pager work when used: a script clicks them as a user would."""
    _, result, path = built
    n_near = result.of("near_duplicate")["group"].nunique()
    assert n_near > GROUPS_PER_PAGE, "the demo should need two pages of near duplicates"
    clicks = """<script>
    var b = document.body;
    document.querySelector('[data-testid="next-near_duplicate"]').click();
    b.setAttribute("data-t-page", document.querySelector(
      '[data-testid="page-near_duplicate"]').textContent);
    var split = document.getElementById("f-split");
    split.value = "PublicTest";
    split.dispatchEvent(new Event("change"));
    var label = document.getElementById("f-label");
    label.value = "4";
    label.dispatchEvent(new Event("change"));
    b.setAttribute("data-t-hash", location.hash);
    </script>"""
    page = tmp_path / "clicked.html"
    page.write_text(path.read_text(encoding="utf-8").replace("</body>", clicks + "</body>"),
                    encoding="utf-8")
    dom = dump_dom(tmp_path, page)
    assert dom.body["data-t-page"] == "page 2 of 2"
    assert dom.body["data-t-hash"] == "#split=PublicTest&label=sad"
    for issue in GALLERY_ISSUES:
        want = expected_matches(result, issue, split="PublicTest", label=4)
        assert dom.sections[issue].get("data-matching", "0") == str(want), issue
    matching = [i["attrs"] for i in dom.items if i["attrs"]["data-match"] == "1"]
    assert matching, "the demo should have sad PublicTest findings"
    assert all(a["data-split"] == "PublicTest" and a["data-label"] == "4" for a in matching)


def test_browser_screenshot(built, tmp_path):
    _, _, path = built
    shot = tmp_path / "report.png"
    run_chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,3000",
                 path.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as im:
        assert im.size == (1280, 3000)
        grey = np.asarray(im.convert("L"), dtype=np.float64)
    assert grey.std() > 20, "the screenshot looks blank"


def test_browser_marks_order_figures_and_captions(by_class, tmp_path):
    """In the browser, at 1280 px: each image is marked as plan strict treats it, the
    leak gallery's first page follows the payload's class-mixed order, the figures are
    shown at their full width and open enlarged on a click, and no caption is cut."""
    ds, result = by_class
    path = write_report(ds, result, tmp_path / "report.html")
    probe = """<script>
    window.addEventListener("load", function () {
      var b = document.body, figs = document.querySelectorAll("figure.plot img");
      b.setAttribute("data-t-figures", figs.length);
      b.setAttribute("data-t-fig-width", Math.min.apply(null, Array.prototype.map.call(
        figs, function (i) { return i.getBoundingClientRect().width; })));
      figs[0].click();
      var box = document.getElementById("lightbox");
      b.setAttribute("data-t-lightbox", box.hidden ? "hidden" :
                     box.querySelector("img").className);
      var cut = [];
      document.querySelectorAll(".item figcaption, .item figcaption *").forEach(
        function (e) {
          if (e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1)
            cut.push(e.className + ": " + e.textContent);
        });
      b.setAttribute("data-t-cut", JSON.stringify(cut.slice(0, 5)));
    });
    </script>"""
    page = tmp_path / "probed.html"
    page.write_text(path.read_text(encoding="utf-8").replace("</body>", probe + "</body>"),
                    encoding="utf-8")
    done = run_chromium(tmp_path, "--window-size=1280,2000", "--dump-dom", page.as_uri())
    dom = Dom(done.stdout)
    assert dom.body.get("data-ready") == "1"
    removed = _removed_rows(ds, result, "strict")
    assert dom.items
    for item in dom.items:
        a = item["attrs"]
        assert a["data-removed"] == ("1" if int(a["data-row"]) in removed else "0"), a
        if a["data-split"] != "Training":
            assert a["data-removed"] == "0"
    data = payload(page.read_text(encoding="utf-8"))
    want = [data["meta"]["row"][g[2][0][0]]
            for g in data["galleries"]["cross_split_leak"]["groups"][:GROUPS_PER_PAGE]]
    shown = [min(int(m["attrs"]["data-row"]) for m in g["members"])
             for g in dom.groups_of("cross_split_leak")]
    assert shown == want
    assert dom.body["data-t-figures"] == "3"
    assert float(dom.body["data-t-fig-width"]) >= 880  # was 590 px, three to a row
    assert dom.body["data-t-lightbox"] == "plot-big"
    assert json.loads(dom.body["data-t-cut"]) == []


def test_label_issue_gallery_shows_suggestion_and_probability_bars(demo, tmp_path):
    """Worst first, each card with its given label, the suggested label and a bar per
    class of the model's probabilities (in the payload and as drawn by the browser)."""
    ds, _ = demo
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(7, 0.3), len(ds))  # a confident, often wrong "model"
    result = ferclean.audit(ds, only=["label_issue"],
                            params={"label_issue": {"pred_probs": probs}})
    model = result.findings[result.findings.signal == "model"]
    assert len(model) > 0
    payload = gallery_payload(ds, result)["galleries"]["label_issue"]
    items = payload["items"]
    assert [it[1] for it in items] == sorted((it[1] for it in items), reverse=True)
    with_bars = [it for it in items if it[5] is not None]
    assert len(with_bars) == len(model)
    assert all(len(it[5]) == 7 and it[4] >= 0 for it in with_bars)
    path = write_report(ds, result, tmp_path / "report.html")
    if chromium_binary() is None:
        pytest.skip("headless browser test needs chromium (apt-get install -y chromium)")
    done = run_chromium(tmp_path, "--dump-dom", path.as_uri())
    shown = min(len(items), ITEMS_PER_PAGE)
    assert done.stdout.count('data-testid="suggested"') == shown
    assert done.stdout.count('data-testid="probs"') == min(len(with_bars), shown)
