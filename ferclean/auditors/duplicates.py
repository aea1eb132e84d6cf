"""Exact duplicates, label conflicts and cross-split leakage: three views of one grouping.

All three read the exact groups from the shared :class:`AuditContext`, so the pixels are
hashed and grouped once. Label conflicts and leaks examine exact and near-duplicate groups
by default (``duplicates="all"``; ``"exact"`` restricts them to identical copies); near
groups come from the near-duplicate auditor as the audit configured it
(:meth:`Auditor.requires`), mirrored copies included when it runs with ``mirror=True``.
With both, every exact group is
reported as before, and so is every near group that is more than an exact group; an image
in both appears once under each, told apart by the ``kind`` column, and ``summary.json``
counts them separately.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ferclean.auditors.base import Auditor, register
from ferclean.auditors.context import AuditContext
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.findings import empty_findings, group_counts, make_findings
from ferclean.similarity.exact import DuplicateGroups

DUPLICATE_KINDS: tuple[str, ...] = ("exact", "near", "all")


def _check_kind(kind: str) -> str:
    if kind not in DUPLICATE_KINDS:
        raise ValueError(f"duplicates must be one of {', '.join(DUPLICATE_KINDS)}; got {kind!r}")
    return kind


def groups_for(context: AuditContext, kind: str) -> list[DuplicateGroups]:
    """The duplicate groupings an auditor should look at (exact, near or both).

    Near groups are those of the context's near-duplicate auditor, run with the settings
    the context holds for it.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> context = AuditContext(demo_dataset(n_faces=300))
    >>> [groups.kind for groups in groups_for(context, "all")]
    ['exact', 'near']
    """
    out = []
    if _check_kind(kind) in ("exact", "all"):
        out.append(context.exact_groups)
    if kind in ("near", "all"):
        out.append(context.dependency("near_duplicate").groups_)
    return out


def _label_multiset(labels: np.ndarray) -> str:
    counts = Counter(int(v) for v in labels if v >= 0)
    return ", ".join(f"{EMOTIONS[k]} x{v}" for k, v in sorted(counts.items()))


def _split_multiset(splits: np.ndarray) -> str:
    counts = Counter(int(v) for v in splits)
    return ", ".join(f"{SPLITS[k]} x{v}" for k, v in sorted(counts.items()))


@register
class ExactDuplicateAuditor(Auditor):
    """Groups of pixel-identical images.

    Every member of a group is reported (score 1); the first image of each group (lowest
    input position) is the one a ``keep one`` cleaning plan keeps, so a group of ``k``
    has ``k - 1`` removable images.

    Attributes
    ----------
    groups_ : DuplicateGroups
        The exact groups found.
    counts_ : DataFrame
        Images in duplicate groups and removable images, per split and per emotion.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> found = ExactDuplicateAuditor().audit(demo.dataset)
    >>> found.group.nunique() == len(demo.truth.exact_groups())
    True
    """

    issue_name: ClassVar[str] = "exact_duplicate"
    order: ClassVar[int] = 10
    title: ClassVar[str] = "Exact duplicates"
    description: ClassVar[str] = (
        "Pixel-identical copies. All but the first of a group (lowest row) are removable.")
    grouped: ClassVar[bool] = True
    gallery: ClassVar[str | None] = "groups"

    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        groups = context.exact_groups
        self.groups_ = groups
        in_group = groups.group_of >= 0
        removable = in_group & ~groups.first()
        rows = []
        for name, codes, values in (
            ("split", SPLITS, dataset.splits),
            ("emotion", EMOTIONS, dataset.labels),
        ):
            for code, label in enumerate(codes):
                sel = values == code
                rows.append({"by": name, "value": label,
                             "images": int((in_group & sel).sum()),
                             "removable": int((removable & sel).sum())})
        self.counts_ = pd.DataFrame(rows)
        if not in_group.any():
            return empty_findings()
        index = np.flatnonzero(in_group)
        sizes = groups.sizes()
        first_mask = groups.first()
        gid = groups.group_of[index]
        related = groups.related()[index]
        first_row = dataset.rows[groups.first_positions()]
        detail = [
            f"identical pixels, group of {sizes[g]}; first is row {first_row[g]}"
            + ("" if first_mask[i] else "; removable")
            for i, g in zip(index, gid, strict=True)
        ]
        return make_findings(dataset, index, self.issue_name, group=gid, score=1.0,
                             kind="exact", related=related, detail=detail)

    def summary_extra(self) -> dict[str, Any]:
        counts = self.counts_
        return {
            by: {r.value: {"images": r.images, "removable": r.removable}
                 for r in counts[counts.by == key].itertuples()}
            for by, key in (("by_split", "split"), ("by_emotion", "emotion"))
        }


class _GroupPropertyAuditor(Auditor):
    """Shared machinery: keep the duplicate groups that have some property."""

    grouped: ClassVar[bool] = True
    gallery: ClassVar[str | None] = "groups"

    def __init__(self, *, duplicates: str = "all") -> None:
        self.duplicates = duplicates

    def requires(self) -> tuple[str, ...]:
        """``("near_duplicate",)`` when near groups are examined."""
        return ("near_duplicate",) if _check_kind(self.duplicates) != "exact" else ()

    def summarize(self, findings: pd.DataFrame) -> dict[str, Any]:
        """Exact groups as ``groups``/``images``/``removable``; near ones as ``near_*``."""
        near = findings["kind"].ne("exact").to_numpy()
        entry: dict[str, Any] = group_counts(findings[~near])
        if self.duplicates != "exact":
            entry.update({f"near_{k}": v for k, v in group_counts(findings[near]).items()})
        entry.update(self.summary_extra())
        return entry

    def _flag(self, dataset: FaceDataset, members: np.ndarray) -> bool:
        raise NotImplementedError

    def _describe(self, dataset: FaceDataset, members: np.ndarray) -> str:
        raise NotImplementedError

    def _suggest(self, dataset: FaceDataset, members: np.ndarray) -> int:
        """The label a group's members should carry; -1 for none (not a label issue)."""
        return -1

    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        kind = _check_kind(self.duplicates)
        flagged_groups: list[tuple[str, np.ndarray]] = []
        exact_sets = {tuple(m.tolist()) for m in context.exact_groups.members()}
        for groups in groups_for(context, kind):
            for members in groups.members():
                # a near group that is just an exact group is reported as exact only
                if groups.kind == "near" and kind == "all" and tuple(
                        members.tolist()) in exact_sets:
                    continue
                if self._flag(dataset, members):
                    flagged_groups.append((groups.kind, members))
        # number groups by their first image, whatever grouping they came from
        flagged_groups.sort(key=lambda item: (int(item[1][0]), item[0]))
        self.groups_ = flagged_groups
        near = context.dependency("near_duplicate") if kind != "exact" else None
        exact_related = context.exact_groups.related()
        index, group, score, gkind, related, detail, suggested = [], [], [], [], [], [], []
        for g, (source, members) in enumerate(flagged_groups):
            if source == "near":
                # each image's similarity to its closest copy in the group (1 if exact)
                s = near.scores_[members]
                link = near.group_kind_[near.groups_.group_of[members[0]]]
                rel = near.closest_[members]
                head = (f"near duplicate group of {len(members)} (similarity "
                        f"{s.min():.3f}-{s.max():.3f}): ")
            else:
                s, link, rel = np.ones(len(members)), "exact", exact_related[members]
                head = f"exact duplicate group of {len(members)}: "
            text = head + self._describe(dataset, members)
            index.extend(members.tolist())
            group.extend([g] * len(members))
            score.extend(s.tolist())
            gkind.extend([link] * len(members))
            related.extend(np.asarray(rel).tolist())
            detail.extend([text] * len(members))
            suggested.extend([self._suggest(dataset, members)] * len(members))
        if not index:
            return empty_findings()
        return make_findings(dataset, index, self.issue_name, group=group, score=score,
                             kind=gkind, related=related, suggested=suggested,
                             signal=self._signal, detail=detail)

    _signal: ClassVar[str] = ""


@register
class LabelConflictAuditor(_GroupPropertyAuditor):
    """Duplicate groups whose members carry different labels.

    The same picture under two emotions cannot be right twice; at least one label is
    noise. The ``detail`` says whether the group is exact or near and gives its label
    multiset; ``score`` is 1 for an exact group; in a near group each image's similarity
    to its closest copy (1 for an identical one). ``suggested_label`` is the group's
    majority label (``-1`` on a tie), which a ``relabel`` rule can apply; ``signal`` is
    ``copies``.

    Parameters
    ----------
    duplicates : {"all", "exact", "near"}, default="all"
        Which duplicate groups to examine: both pixel-identical and near-duplicate groups
        (:class:`~ferclean.auditors.near.NearDuplicateAuditor`, with the audit's settings
        for it), or only one kind. With both, an image can appear in an exact and in a
        near group, told apart by ``kind``; ``summary.json`` keeps ``groups``, ``images``
        and ``removable`` for the exact groups and counts the near ones under
        ``near_groups``, ``near_images``, ``near_removable``. ``"exact"`` is the study's
        view (and cheaper: no near-duplicate search).

    Attributes
    ----------
    groups_ : list of (kind, ndarray)
        The conflicting groups, as image positions.

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> found = LabelConflictAuditor().audit(demo.dataset)
    >>> exact = found[found.kind == "exact"]
    >>> exact.group.nunique() == len(demo.truth.conflict_groups("exact"))
    True
    >>> sorted(set(found.kind))  # near copies under other labels too
    ['exact', 'near']
    """

    issue_name: ClassVar[str] = "label_conflict"
    suggests_labels: ClassVar[bool] = True  # findings carry suggested_label: relabel applies
    order: ClassVar[int] = 30
    title: ClassVar[str] = "Label conflicts"
    description: ClassVar[str] = (
        "The same picture under different emotions: at least one of the labels is wrong.")

    def _flag(self, dataset: FaceDataset, members: np.ndarray) -> bool:
        labels = dataset.labels[members]
        return len(np.unique(labels[labels >= 0])) > 1

    def _describe(self, dataset: FaceDataset, members: np.ndarray) -> str:
        return "labels " + _label_multiset(dataset.labels[members])

    _signal: ClassVar[str] = "copies"

    def _suggest(self, dataset: FaceDataset, members: np.ndarray) -> int:
        """The group's majority label (``suggested_label``); -1 on a tie."""
        labels = dataset.labels[members]
        counts = np.bincount(labels[labels >= 0], minlength=len(EMOTIONS))
        top = counts.max()
        return int(counts.argmax()) if (counts == top).sum() == 1 else -1


@register
class CrossSplitLeakAuditor(_GroupPropertyAuditor):
    """Duplicate groups that span splits: the same image in train and test.

    A test image with a copy in Training is scored on what the model memorised; this is
    the leak that inflates published FER-2013 accuracies. Findings list every member;
    ``pairs_`` counts groups and images per split pair.

    Parameters
    ----------
    duplicates : {"all", "exact", "near"}, default="all"
        Which duplicate groups to examine (see :class:`LabelConflictAuditor`). Mirrored
        copies count too when the near-duplicate auditor runs with ``mirror=True`` (CLI
        ``--mirror``; ``strict`` cleaning needs it); such groups are typed ``"mirror"``.

    Attributes
    ----------
    groups_ : list of (kind, ndarray)
    pairs_ : DataFrame
        Columns ``pair`` (e.g. ``Training-PublicTest``), ``groups``, ``images`` (members
        of those groups in either split of the pair; exact groups) and ``near_groups``,
        ``near_images`` (the same for near groups).

    Examples
    --------
    >>> from ferclean.demo import make_demo
    >>> demo = make_demo(n_faces=300)
    >>> found = CrossSplitLeakAuditor().audit(demo.dataset)
    >>> found[found.kind == "exact"].group.nunique() == len(demo.truth.leak_groups("exact"))
    True
    """

    issue_name: ClassVar[str] = "cross_split_leak"
    order: ClassVar[int] = 40
    title: ClassVar[str] = "Cross-split leaks"
    description: ClassVar[str] = (
        "The same picture in more than one split. A test image with a copy in Training is "
        "scored on what the model memorised: this is the leak that inflates published "
        "FER-2013 accuracies. Drop the copies before you benchmark.")

    def _flag(self, dataset: FaceDataset, members: np.ndarray) -> bool:
        return len(np.unique(dataset.splits[members])) > 1

    def _describe(self, dataset: FaceDataset, members: np.ndarray) -> str:
        return "splits " + _split_multiset(dataset.splits[members])

    def _audit(self, dataset: FaceDataset, context: AuditContext) -> pd.DataFrame:
        findings = super()._audit(dataset, context)
        rows = []
        for a, b in combinations(range(len(SPLITS)), 2):
            counts = {"groups": 0, "images": 0, "near_groups": 0, "near_images": 0}
            for gkind, members in self.groups_:
                s = dataset.splits[members]
                if (s == a).any() and (s == b).any():
                    prefix = "near_" if gkind == "near" else ""
                    counts[prefix + "groups"] += 1
                    counts[prefix + "images"] += int(((s == a) | (s == b)).sum())
            rows.append({"pair": f"{SPLITS[a]}-{SPLITS[b]}", **counts})
        self.pairs_ = pd.DataFrame(rows)
        return findings

    def summary_extra(self) -> dict[str, Any]:
        near = self.duplicates != "exact"
        return {"by_pair": {
            r.pair: {"groups": r.groups, "images": r.images,
                     **({"near_groups": r.near_groups, "near_images": r.near_images}
                        if near else {})}
            for r in self.pairs_.itertuples()}}
