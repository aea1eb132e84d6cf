"""Near duplicates on the demo's planted copies: found, verified, grouped, shared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import ferclean
from ferclean.auditors import (
    AuditContext,
    CrossSplitLeakAuditor,
    LabelConflictAuditor,
    NearDuplicateAuditor,
)
from ferclean.auditors.duplicates import groups_for
from ferclean.auditors.near import near_groups
from ferclean.dataset import FaceDataset
from ferclean.demo import NEAR_EDITS, make_demo
from ferclean.findings import COLUMNS
from ferclean.similarity.near import (
    DEFAULT_TRANSFORMS,
    SHIFTS,
    NearDuplicateIndex,
    Transform,
    near_hashes,
)
from ferclean.similarity.search import hamming_distance


@pytest.fixture(scope="module")
def demo():
    return make_demo()


@pytest.fixture(scope="module")
def mirrored(demo):
    """The mirror-aware auditor, run once on the demo with a shared context."""
    context = AuditContext(demo.dataset)
    auditor = NearDuplicateAuditor(mirror=True)
    findings = auditor.audit(demo.dataset, context)
    return auditor, findings, context


def row_pairs(demo, auditor) -> set[tuple[int, int]]:
    rows = demo.dataset.rows
    return {(int(rows[i]), int(rows[j])) for i, j in zip(auditor.pairs_.i, auditor.pairs_.j,
                                                        strict=True)}


@pytest.mark.parametrize("edit", NEAR_EDITS)
def test_every_planted_edit_kind_is_found(demo, mirrored, edit):
    auditor, findings, _ = mirrored
    pairs = row_pairs(demo, auditor)
    planted = demo.truth.near_groups(edit)
    assert planted
    for group in planted:
        assert tuple(sorted(group)) in pairs, f"{edit} copy {sorted(group)} not found"
    kinds = auditor.pairs_.set_index(["i", "j"]).kind
    if edit == "flip":
        assert {kinds[tuple(sorted(g))] for g in planted} == {"mirror"}


def test_mirrored_copies_need_mirror_mode(demo):
    auditor = NearDuplicateAuditor()
    auditor.audit(demo.dataset)
    pairs = row_pairs(demo, auditor)
    for edit in NEAR_EDITS:
        found = [tuple(sorted(g)) in pairs for g in demo.truth.near_groups(edit)]
        assert all(found) if edit != "flip" else not any(found)


def test_no_pair_between_different_faces(demo, mirrored):
    """Every verified pair of faces is a planted copy; only flat or smooth non-faces
    (gradients, blank frames) may look alike."""
    auditor, _, _ = mirrored
    planted = [set(g) for g in demo.truth.near_groups() + demo.truth.exact_groups()]
    non_faces = demo.truth.non_face_rows()
    for a, b in row_pairs(demo, auditor):
        if a in non_faces and b in non_faces:
            continue
        assert any({a, b} <= g for g in planted), f"rows {a} and {b} are different faces"


def test_findings_scores_and_groups(demo, mirrored):
    auditor, findings, context = mirrored
    assert list(findings.columns) == list(COLUMNS)
    assert set(findings.issue) == {"near_duplicate"}
    assert findings.score.between(0.97, 1.0).all()  # similarity of each image's best match
    first = findings.groupby("group").row.transform("min")
    assert findings.detail[findings.row != first].str.endswith("removable").all()
    assert not findings.detail[findings.row == first].str.endswith("removable").any()
    again = NearDuplicateAuditor(mirror=True)  # same settings, same context: no new search
    again.audit(demo.dataset, context)
    assert again.groups_ is auditor.groups_
    assert auditor.groups_.kind == "near"
    assert set(findings.kind) <= {"near", "mirror"}
    mirrored = auditor.link_kind_[auditor.groups_.group_of >= 0] == "mirror"
    assert (findings.sort_values("row").kind.eq("mirror").to_numpy() == mirrored).all()
    # every finding names its closest match, a member of its own group
    by_row = findings.set_index("row")
    assert by_row.related_row.isin(by_row.index).all()
    assert (by_row.group.to_numpy() == by_row.loc[by_row.related_row, "group"].to_numpy()).all()
    assert auditor.groups_.n_groups == findings.group.nunique()
    assert set(auditor.pairs_.kind) <= {"near", "mirror"}
    assert (auditor.pairs_.similarity >= 0.97).all()


def test_index_query_finds_the_planted_copy(demo):
    """A test set checked against a training set: the near leaks are found."""
    ds = demo.dataset
    train, test = ds.split("Training"), ds.split(["PublicTest", "PrivateTest"])
    index = NearDuplicateIndex(mirror=True).fit(train)
    found = index.query(test)
    hits = {(int(train.rows[i]), int(test.rows[q])) for q, i in zip(found.new, found.fitted,
                                                                    strict=True)}
    leaks = [g for g in demo.truth.leak_groups("near") if "Training" in
             set(ds.split_names[np.isin(ds.rows, sorted(g))])]
    assert leaks
    for group in leaks:
        rows = sorted(group)
        in_train = [r for r in rows if ds.split_names[r] == "Training"]
        in_test = [r for r in rows if ds.split_names[r] != "Training"]
        assert (in_train[0], in_test[0]) in hits
    # the same copy, queried alone
    q = int(np.flatnonzero(test.rows == in_test[0])[0])
    alone = index.query(test.pixels[q:q + 1])
    assert int(train.rows[alone.fitted.iloc[0]]) == in_train[0]


def test_conflicts_and_leaks_over_near_groups(demo):
    near = NearDuplicateAuditor(mirror=True)  # mirrored copies leak and conflict too
    context = AuditContext(demo.dataset, {"near_duplicate": near})
    near.audit(demo.dataset, context)
    conflicts = LabelConflictAuditor(duplicates="all").audit(demo.dataset, context)
    leaks = CrossSplitLeakAuditor(duplicates="all").audit(demo.dataset, context)
    assert context.dependency("near_duplicate") is near  # the audit's own groups, shared
    for findings, truth in ((conflicts, demo.truth.conflict_groups("near")),
                            (leaks, demo.truth.leak_groups("near"))):
        near = findings[findings.kind.isin(["near", "mirror"])]
        exact = findings[findings.kind == "exact"]
        groups = [set(p.row) for _, p in near.groupby("group")]
        for g in truth:
            assert any(set(g) <= h for h in groups)
        assert (near.score >= 0.97).all() and (exact.score == 1.0).all()
    # exact groups are reported exactly as with duplicates="exact"
    alone = LabelConflictAuditor(duplicates="exact").audit(demo.dataset)
    exact = conflicts[conflicts.kind == "exact"]
    assert {frozenset(p.row) for _, p in exact.groupby("group")} == {
        frozenset(p.row) for _, p in alone.groupby("group")}


def test_summary_counts_near_groups_apart(demo):
    result = ferclean.audit(demo.dataset, [
        "exact_duplicate", "near_duplicate",
        {"label_conflict": {"duplicates": "all"}}, {"cross_split_leak": {"duplicates": "all"}}])
    issues = result.summary["issues"]
    exact_only = ferclean.audit(demo.dataset, only=["label_conflict", "cross_split_leak"],
                                params={"label_conflict": {"duplicates": "exact"},
                                        "cross_split_leak": {"duplicates": "exact"}})
    for name in ("label_conflict", "cross_split_leak"):
        same = {k: exact_only.summary["issues"][name][k] for k in ("groups", "images", "removable")}
        assert {k: issues[name][k] for k in same} == same
        assert issues[name]["near_groups"] >= 1
        assert "near_groups" not in exact_only.summary["issues"][name]
    assert issues["near_duplicate"]["groups"] >= len(demo.truth.near_groups()) - len(
        demo.truth.near_groups("flip"))
    by_pair = issues["cross_split_leak"]["by_pair"]
    assert sum(v["near_groups"] for v in by_pair.values()) >= 1


def test_groups_for_computes_and_reuses_near_groups(demo):
    context = AuditContext(demo.dataset)
    exact, near = groups_for(context, "all")
    assert exact.kind == "exact" and near.kind == "near"
    assert groups_for(context, "near")[0] is near
    assert near_groups(context) is near


def test_hashes_exact_for_whole_pixel_shifts(demo):
    px = demo.dataset.pixels[:50]
    codes = near_hashes(px)
    assert codes.shape == (50, len(DEFAULT_TRANSFORMS))
    for k, (dy, dx) in enumerate(SHIFTS, start=1):
        shifted = np.pad(px, ((0, 0), (3, 3), (3, 3)), mode="edge")[:, 3 - dy:51 - dy,
                                                                     3 - dx:51 - dx]
        # the variant's hash of the image is the plain hash of the shifted image
        assert np.array_equal(codes[:, k], near_hashes(shifted)[:, 0])
    mirror = near_hashes(px[:, :, ::-1], (Transform(),))[:, 0]
    assert np.array_equal(near_hashes(px, (Transform(flip=True),))[:, 0], mirror)
    other = near_hashes(px, method="dhash")
    assert other.shape == codes.shape and not np.array_equal(other, codes)
    assert hamming_distance(codes[:1, 0], codes[1:2, 0]).tolist() != [0]


EMPTY = FaceDataset(np.zeros((0, 48, 48), np.uint8))
SINGLE = FaceDataset(np.full((1, 48, 48), 7, np.uint8), labels=[3])


@pytest.mark.parametrize("ds", [EMPTY, SINGLE], ids=["empty", "single"])
def test_empty_and_single(ds):
    auditor = NearDuplicateAuditor(mirror=True)
    assert auditor.audit(ds).empty
    assert auditor.pairs_.empty and list(auditor.pairs_.columns) == [
        "i", "j", "hamming", "similarity", "transform", "kind"]
    index = NearDuplicateIndex().fit(ds)
    assert index.pairs().empty
    assert index.query(EMPTY).empty and index.query(SINGLE).shape[1] == 6


def test_identical_and_flat_images():
    px = np.zeros((4, 48, 48), np.uint8)
    px[1] = 255
    px[2:, 10:30, 10:30] = 200  # two identical squares: exact, not near
    ds = FaceDataset(px)
    assert NearDuplicateAuditor().audit(ds).empty
    found = NearDuplicateIndex().fit(ds).pairs()
    assert found[["i", "j", "kind"]].values.tolist() == [[2, 3, "exact"]]


def test_parameters_are_validated_and_cloned(demo):
    auditor = NearDuplicateAuditor(radius=6, similarity=0.9, mirror=True, method="ahash")
    assert clone(auditor).get_params() == auditor.get_params()
    for params, error in (({"radius": 65}, ValueError), ({"radius": 1.5}, TypeError),
                          ({"similarity": 2}, ValueError), ({"method": "md5"}, ValueError),
                          ({"backend": "bktree"}, ValueError)):
        with pytest.raises(error):
            NearDuplicateAuditor(**params).audit(SINGLE)
    with pytest.raises(NotFittedError):
        NearDuplicateIndex().pairs()
    with pytest.raises(ValueError, match="shape"):
        NearDuplicateIndex().fit(np.zeros((2, 32, 32), np.uint8))


def test_brute_backend_gives_the_same_pairs(demo):
    sub = demo.dataset[:400]
    a = NearDuplicateIndex().fit(sub).pairs()
    b = NearDuplicateIndex(backend="brute").fit(sub).pairs()
    pd.testing.assert_frame_equal(a, b)
