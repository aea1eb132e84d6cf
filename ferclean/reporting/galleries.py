"""What the report shows per issue type, and the gallery data its JavaScript renders.

Which issue types get a gallery, under which heading, and in which layout comes from the
auditor registry (:data:`ferclean.auditors.REGISTRY`): each auditor class declares its
``title``, ``description``, ``gallery`` (``"groups"``, ``"items"`` or ``None`` for a
summary card only) and ``order``. A user's ``@register``-ed auditor therefore gets its
own gallery, or card, without any change here.

The gallery data is one JSON payload (see :func:`gallery_payload`). Every flagged image
is stored once and galleries refer to it by index, so an image in several galleries (an
exact copy that also leaks across splits) is embedded once. Which copies match how
(``exact``, ``near``, ``mirror``) is read from the findings' typed ``kind`` column and
the closest copy from ``related_row``; the ``detail`` text is only shown, never parsed.

Examples
--------
>>> import ferclean
>>> from ferclean.demo import make_demo
>>> ds = make_demo(n_faces=300).dataset
>>> data = gallery_payload(ds, ferclean.audit(ds, only=["near_duplicate"]))
>>> score, text, members, kind = data["galleries"]["near_duplicate"]["groups"][0]
>>> kind in ("near", "mirror"), len(members) >= 2
(True, True)
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from ferclean.auditors import REGISTRY
from ferclean.cleaning import CleaningPlan, select_removals
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.findings import AuditResult
from ferclean.reporting.figures import SPLIT_COLORS

__all__ = ["FIRST_ISSUES", "ReportIssue", "gallery_payload", "image_positions",
           "plan_removals", "report_issues"]

#: Issue types the report puts first, before the registry order. The report leads with
#: the cross-split leak because it is the problem that changes published results (test
#: images a model has seen). This is a choice of the report's presentation, not a fact
#: about the auditor, so it lives here and not as a class attribute of the auditor.
FIRST_ISSUES: tuple[str, ...] = ("cross_split_leak",)
ITEMS_PER_PAGE = 60
GROUPS_PER_PAGE = 30


@dataclass(frozen=True)
class ReportIssue:
    """How the report shows one issue type.

    Attributes
    ----------
    issue : str
        The issue name (an auditor's ``issue_name``).
    title, description : str
        Gallery heading and the line under it (the auditor's ``title``/``description``).
    layout : {"groups", "items"} or None
        ``"groups"``: one box per group of copies; ``"items"``: one card per image, worst
        first; ``None``: no gallery, a summary card only.
    grouped : bool
        Whether the findings come in groups (the auditor's ``grouped``).
    registered : bool
        False for an issue found in the findings whose auditor is not registered in this
        session (e.g. a user's auditor, read back with ``read_findings``).

    Examples
    --------
    >>> [(r.issue, r.layout) for r in report_issues()][:2]
    [('cross_split_leak', 'groups'), ('exact_duplicate', 'groups')]
    """

    issue: str
    title: str
    description: str
    layout: str | None
    grouped: bool
    registered: bool = True


def report_issues(findings: pd.DataFrame | None = None) -> list[ReportIssue]:
    """The issue types the report shows, in page order.

    Page order: the issues of :data:`FIRST_ISSUES` (the cross-split leak), then the
    registry's order (the auditors' ``order``), then issues in ``findings`` that no
    registered auditor owns (shown with a generic heading, grouped when their findings
    have groups).

    Parameters
    ----------
    findings : DataFrame, default=None
        A findings table; only used to find unregistered issue names.

    Returns
    -------
    list of ReportIssue

    Examples
    --------
    >>> [(s.issue, s.layout) for s in report_issues()][:3]
    [('cross_split_leak', 'groups'), ('exact_duplicate', 'groups'), ('near_duplicate', 'groups')]
    >>> report_issues()[-1].layout is None  # class imbalance: a card, no gallery
    True
    """
    names = [n for n in FIRST_ISSUES if n in REGISTRY]
    names += [n for n in REGISTRY if n not in FIRST_ISSUES]
    specs = [ReportIssue(issue=n, title=REGISTRY[n].title or _titled(n),
                         description=REGISTRY[n].description, layout=REGISTRY[n].gallery,
                         grouped=bool(REGISTRY[n].grouped)) for n in names]
    if findings is not None and len(findings):
        for name in dict.fromkeys(findings["issue"]):
            if name not in REGISTRY:
                grouped = bool((findings.loc[findings["issue"] == name, "group"] >= 0).any())
                specs.append(ReportIssue(issue=name, title=_titled(name), description="",
                                         layout="groups" if grouped else "items",
                                         grouped=grouped, registered=False))
    return specs


def _titled(name: str) -> str:
    return name.replace("_", " ").capitalize()


def gallery_payload(dataset: FaceDataset, result: AuditResult, *,
                    max_per_gallery: int | None = None,
                    plan: CleaningPlan | str = "strict") -> dict[str, Any]:
    """The JSON payload the report's JavaScript renders its galleries from.

    Parameters
    ----------
    dataset : FaceDataset
        The audited dataset (the flagged images are taken from it).
    result : AuditResult
        The audit of ``dataset``.
    max_per_gallery : int, default=None
        Keep at most this many images, or groups, per gallery (worst first).
    plan : CleaningPlan or str, default="strict"
        The plan whose removals the galleries mark (a preset name or a plan file): an
        image is marked ``removed`` when the plan removes it, for any reason, and
        ``kept`` otherwise (see :func:`plan_removals`).

    Returns
    -------
    dict
        ``images`` (distinct PNG data URIs), ``meta`` (per flagged image: ``img`` index
        into ``images``, ``row``, ``id``, ``split`` code, ``label``), ``strings`` (the
        shared text table), page sizes, names, ``plan`` (the plan's name) and
        ``galleries`` by issue, one for every issue of :func:`report_issues` that has a
        layout (empty when not run). Each gallery has ``layout``, ``total`` (before
        ``max_per_gallery``) and either ``items``, rows ``[image, score, detail,
        removed]``, or ``groups``, rows ``[score, text, members, kind]`` with ``kind``
        the group's ``kind`` column value (``"exact"``, ``"near"``, ``"mirror"`` or
        ``""``), ``text`` the members' common detail (or ``""`` when their details
        differ) and members ``[image, score, removed, detail, related]``, ``related``
        being the image index of the member's ``related_row`` (its closest copy) or -1.
        ``removed`` is 1 when ``plan`` removes the image. ``image`` indexes ``meta``;
        ``detail`` and ``text`` index ``strings``. Entries come in the page's default
        order: worst first, and among equal scores one class after another (a group's
        class is that of its first image), so a first page shows a mix of classes even
        when the input is sorted by class.

    Raises
    ------
    ValueError
        When a finding names an image that ``dataset`` does not hold.

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> data = gallery_payload(ds, ferclean.audit(ds, only=["exact_duplicate", "outlier"]))
    >>> list(data["galleries"])[:3]  # every gallery of the page, leaks first; not run: empty
    ['cross_split_leak', 'exact_duplicate', 'near_duplicate']
    >>> data["galleries"]["outlier"]["layout"], data["galleries"]["near_duplicate"]["total"]
    ('items', 0)
    >>> {g[3] for g in data["galleries"]["exact_duplicate"]["groups"]}
    {'exact'}
    """
    findings = result.findings
    positions = image_positions(dataset, findings)
    plan = CleaningPlan.resolve(plan)
    removed = np.zeros(len(dataset), bool)
    removed[plan_removals(dataset, findings, plan, positions)] = True
    galleries, used = {}, set()
    for spec in report_issues(findings):
        if spec.layout is None:
            continue
        mask = (findings["issue"] == spec.issue).to_numpy()
        part = findings[mask].assign(_pos=positions[mask], _removed=removed[positions[mask]],
                                     _label=dataset.labels[positions[mask]])
        if spec.layout == "items":
            gallery = _item_gallery(part, max_per_gallery)
        else:
            gallery = _group_gallery(part, max_per_gallery)
        galleries[spec.issue] = gallery
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
    return {
        "emotions": list(EMOTIONS),
        "splits": list(SPLITS),
        "split_colors": list(SPLIT_COLORS),
        "items_per_page": ITEMS_PER_PAGE,
        "groups_per_page": GROUPS_PER_PAGE,
        "plan": plan.name,
        "images": list(uri_index),
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


def image_positions(dataset: FaceDataset, findings: pd.DataFrame) -> np.ndarray:
    """Dataset position of every finding (findings name images by input ``row``).

    Raises
    ------
    ValueError
        When a finding's row and image id match no image of ``dataset``.

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> f = ferclean.audit(ds, only=["exact_duplicate"]).findings
    >>> bool((ds.rows[image_positions(ds, f)] == f["row"]).all())
    True
    """
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


def plan_removals(dataset: FaceDataset, findings: pd.DataFrame,
                  plan: CleaningPlan | str = "strict",
                  positions: np.ndarray | None = None) -> np.ndarray:
    """Dataset positions of the images ``plan`` removes given ``findings``, sorted.

    What :func:`ferclean.cleaning.select_removals` selects (so the report's marks agree
    with ``ferclean clean``), with findings matched to images as :func:`image_positions`
    matches them (``positions``, when already computed).

    Examples
    --------
    >>> import ferclean
    >>> from ferclean.demo import make_demo
    >>> ds = make_demo(n_faces=300).dataset
    >>> found = ferclean.audit(ds, only=["exact_duplicate", "cross_split_leak"]).findings
    >>> removed = plan_removals(ds, found, "strict")
    >>> len(removed) > 0, set(ds.split_names[removed])  # strict keeps every test image
    (True, {'Training'})
    """
    plan = CleaningPlan.resolve(plan)
    if positions is None:
        positions = image_positions(dataset, findings)
    # select_removals names images by row, which may repeat (concatenated datasets):
    # give it positions as rows instead.
    by_position = FaceDataset(dataset.pixels, rows=np.arange(len(dataset)))
    chosen = select_removals(by_position, plan, findings.assign(row=positions))
    return np.unique(chosen["position"].to_numpy(np.int64))


def _class_turns(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """For entries in score order: how many earlier entries share score and class.

    Sorting by (score, turn, class) deals equal scores out one class at a time.
    """
    frame = pd.DataFrame({"score": scores, "label": labels})
    return frame.groupby(["score", "label"], sort=False).cumcount().to_numpy()


def _item_gallery(part: pd.DataFrame, limit: int | None) -> dict[str, Any]:
    """One entry per image, worst first; equal scores one class after another, by row."""
    part = part.assign(_score=part["score"].round(4))
    part = part.sort_values(["_score", "row"], ascending=[False, True], kind="stable")
    part = part.assign(_turn=_class_turns(part["_score"].to_numpy(), part["_label"].to_numpy()))
    part = part.sort_values(["_score", "_turn", "_label", "row"],
                            ascending=[False, True, True, True], kind="stable")
    total = len(part)
    if limit is not None:
        part = part.iloc[:limit]
    return {
        "layout": "items",
        "total": total,
        "_raw": list(zip(part["_pos"].tolist(), part["score"].tolist(),
                         part["detail"].tolist(), part["_removed"].tolist(),
                         part["suggested_label"].tolist(), part["probabilities"].tolist(),
                         strict=True)),
        "_positions": set(part["_pos"].tolist()),
    }


def _group_gallery(part: pd.DataFrame, limit: int | None) -> dict[str, Any]:
    """One entry per group, members by row; groups worst first, equal scores one class
    (of the group's first image) after another, then by first row."""
    groups = []
    part = part.sort_values(["group", "row"], kind="stable")
    for _, g in part.groupby("group", sort=False):
        rows = g["row"].to_numpy()
        pos = g["_pos"].tolist()
        scores = g["score"].tolist()
        details = g["detail"].tolist()
        # the related row is another member of the group (the closest copy, or the
        # group's first image); map it to that member's image
        pos_of_row = dict(zip(rows.tolist(), pos, strict=True))
        related = [pos_of_row.get(r, -1) for r in g["related_row"].tolist()]
        # one kind per group (a near group holding a flipped copy is "mirror" throughout)
        kinds = [k for k in dict.fromkeys(g["kind"]) if k]
        first = rows.min()
        groups.append({
            "score": max(scores),
            "first_row": int(first),
            "label": int(g["_label"].iloc[0]),  # members are in row order
            "kind": kinds[0] if kinds else "",
            "text": details[0] if len(set(details)) == 1 else "",
            "members": list(zip(pos, scores, g["_removed"].tolist(), details, related,
                                strict=True)),
        })
    groups.sort(key=lambda gr: (-round(gr["score"], 4), gr["first_row"]))
    turns = _class_turns(np.array([round(gr["score"], 4) for gr in groups]),
                         np.array([gr["label"] for gr in groups], np.int64))
    order = sorted(range(len(groups)), key=lambda i: (
        -round(groups[i]["score"], 4), turns[i], groups[i]["label"], groups[i]["first_row"]))
    groups = [groups[i] for i in order]
    total = len(groups)
    if limit is not None:
        groups = groups[:limit]
    return {
        "layout": "groups",
        "total": total,
        "_raw": groups,
        "_positions": {m[0] for gr in groups for m in gr["members"]},
    }


def _finalise(gallery: dict[str, Any], index_of: dict[int, int],
              strings: dict[str, int]) -> None:
    """Turn a gallery's raw entries into compact JSON arrays (image and string indices).

    Strings are stored once in a shared table: group members share their detail line,
    so this saves megabytes on FER-2013.
    """
    def sid(text: str) -> int:
        return strings.setdefault(text, len(strings))

    raw = gallery.pop("_raw")
    if gallery["layout"] == "items":
        # label findings add their suggested label and the model's probabilities (as
        # percentages, for the card's small bar chart); -1 / null elsewhere
        gallery["items"] = [
            [index_of[p], round(s, 4), sid(d), int(r), int(sug),
             [round(float(v) * 100) for v in probs.split()] if probs else None]
            for p, s, d, r, sug, probs in raw]
        return
    gallery["groups"] = [
        [round(gr["score"], 4), sid(gr["text"]),
         [[index_of[p], round(s, 4), int(r), sid(d), index_of.get(rel, -1)]
          for p, s, r, d, rel in gr["members"]],
         gr["kind"]]
        for gr in raw
    ]


def _png_uri(pixels: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

