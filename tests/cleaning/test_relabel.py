"""Cleaning that relabels: the ``relabel`` rule, its precedence, the manifest, restore."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import ferclean
from ferclean.auditors import REGISTRY, Auditor, register, unregister
from ferclean.cleaning import (
    PRESETS,
    CleaningPlan,
    Manifest,
    Rule,
    clean,
    publish,
    restore,
    restore_from,
    select_relabels,
    select_removals,
)
from ferclean.findings import concat_findings, make_findings
from ferclean.io import load, save
from helpers import file_digest, make_random_dataset

TRAIN, TEST = ("Training",), ("PublicTest", "PrivateTest")


@pytest.fixture(scope="module")
def ds():
    """30 distinct random images: rows 0-9 Training, 10-19 PublicTest, 20-29 PrivateTest;
    label = row % 7."""
    return make_random_dataset(30)


def label_issues(ds, index, suggested, *, score=0.9, signal="model"):
    """label_issue findings, as the auditor writes them (one per image and signal)."""
    return make_findings(ds, index, "label_issue", score=score, suggested=suggested,
                         signal=signal, detail="test")


def conflicts(ds, index, suggested, *, group=0, kind="exact"):
    """label_conflict findings: one group of copies, its majority suggested (-1 on ties)."""
    return make_findings(ds, index, "label_conflict", group=group, kind=kind,
                         suggested=suggested, signal="copies", detail="test")


def plan_of(*rules: Rule) -> CleaningPlan:
    return CleaningPlan("test", rules)


# ------------------------------------------------------------------ the relabel action
def test_relabel_gives_the_suggested_label_and_leaves_the_rest(ds):
    found = concat_findings([label_issues(ds, [1, 2, 3], [5, -1, 3]),
                             label_issues(ds, [4], [0], score=0.2)])
    result = clean(ds, plan_of(Rule("label_issue", "relabel")), found)
    # row 1 -> 5; row 2 has no suggestion; row 3's suggestion is its label already
    expected = ds.labels.copy()
    expected[[1, 4]] = [5, 0]
    assert np.array_equal(result.cleaned.labels, expected)
    assert result.cleaned.equals(ds) is False and len(result.cleaned) == len(ds)
    assert np.array_equal(result.cleaned.pixels, ds.pixels)  # nothing removed
    assert result.relabeled[["row", "old_label", "new_label"]].values.tolist() == [
        [1, 1, 5], [4, 4, 0]]
    assert {"row", "image_id", "split", "old_label", "new_label", "issue",
            "signal"} <= set(result.relabeled.columns)
    assert result.relabeled.signal.tolist() == ["model", "model"]
    assert result.manifest.info["relabel_counts"] == {
        "relabeled": 2, "no_suggestion": 1, "same_label": 1, "removed": 0, "disputed": 0}
    # removals ignore relabel rules
    assert select_removals(ds, plan_of(Rule("label_issue", "relabel")), found).empty


def test_relabel_threshold(ds):
    found = label_issues(ds, [1, 2, 3], [0, 0, 0], score=[0.95, 0.5, 0.49])
    result = clean(ds, plan_of(Rule("label_issue", "relabel", threshold=0.5)), found)
    assert result.relabeled.row.tolist() == [1, 2]
    assert result.cleaned.labels[3] == ds.labels[3]


def test_relabel_never_touches_test_splits_unless_the_plan_says_so(ds):
    found = label_issues(ds, [5, 12, 25], [0, 0, 0])  # Training, PublicTest, PrivateTest
    default = clean(ds, plan_of(Rule("label_issue", "relabel")), found)
    assert default.relabeled.row.tolist() == [5]
    test_mask = ~ds.split_mask("Training")
    assert np.array_equal(default.cleaned.labels[test_mask], ds.labels[test_mask])
    assert Rule("label_issue", "relabel").scope == TRAIN  # unlike removals: every split
    assert Rule("label_issue", "drop").scope == ("Training", *TEST)
    explicit = clean(ds, plan_of(Rule("label_issue", "relabel", splits=("Training",
                                                                          "PublicTest"))),
                     found)
    assert explicit.relabeled.row.tolist() == [5, 12]
    only_test = plan_of(Rule("label_issue", "relabel", splits=("PrivateTest",)))
    assert clean(ds, only_test, found).relabeled.row.tolist() == [25]
    # the presets keep to Training too
    preset = clean(ds, "relabel", found)
    assert preset.relabeled.row.tolist() == [5]
    assert set(clean(ds, "no-label-issues", found).manifest.removed.row) == {5}


def test_removal_wins_over_relabel(ds):
    found = concat_findings([conflicts(ds, [1, 2, 3], [2, -1, -1]),
                             label_issues(ds, [1, 4], [6, 6])])
    for rules in [(Rule("label_conflict", "drop"), Rule("label_issue", "relabel")),
                  (Rule("label_issue", "relabel"), Rule("label_conflict", "drop"))]:
        result = clean(ds, plan_of(*rules), found)
        assert result.manifest.removed.row.tolist() == [1, 2, 3]
        assert result.manifest.removed.label.tolist() == ds.labels[[1, 2, 3]].tolist()
        assert result.relabeled.row.tolist() == [4]  # row 1 went: removed, not relabeled
        assert result.manifest.info["relabel_counts"]["removed"] == 1
        considered = select_relabels(ds, plan_of(*rules), found)
        assert considered.set_index("row").outcome.to_dict() == {1: "removed",
                                                                 4: "relabeled"}


def test_first_relabel_rule_wins(ds):
    found = concat_findings([conflicts(ds, [1, 2], [3, 3]), label_issues(ds, [1], [6])])
    conflict_first = plan_of(Rule("label_conflict", "relabel"), Rule("label_issue", "relabel"))
    issue_first = plan_of(Rule("label_issue", "relabel"), Rule("label_conflict", "relabel"))
    a = clean(ds, conflict_first, found)
    b = clean(ds, issue_first, found)
    assert a.cleaned.labels[1] == 3 and a.relabeled.issue.tolist() == ["label_conflict"] * 2
    assert b.cleaned.labels[1] == 6
    assert b.relabeled.set_index("row").issue.to_dict() == {1: "label_issue",
                                                            2: "label_conflict"}
    assert a.manifest.info["relabel_counts"]["disputed"] == 1  # row 1: 3 or 6
    # a rule with no suggestion for an image leaves it to the next rule
    tie = concat_findings([conflicts(ds, [1, 2], [-1, -1]), label_issues(ds, [1], [6])])
    assert clean(ds, conflict_first, tie).cleaned.labels[1] == 6


def test_within_a_rule_the_strongest_signal_decides_whatever_the_order(ds):
    found = concat_findings([label_issues(ds, [1], [4], signal="model", score=0.99),
                             label_issues(ds, [1], [5], signal="ferplus", score=0.4),
                             label_issues(ds, [1], [6], signal="copies", score=0.5),
                             label_issues(ds, [2], [4], signal="model", score=0.9),
                             label_issues(ds, [2], [5], signal="copies", score=0.6)])
    plan = plan_of(Rule("label_issue", "relabel"))
    expected = {1: 5, 2: 5}  # FER+'s annotators, then the copies, then the model
    rng = np.random.default_rng(0)
    for _ in range(3):
        shuffled = found.iloc[rng.permutation(len(found))].reset_index(drop=True)
        relabeled = clean(ds, plan, shuffled).relabeled
        assert relabeled.set_index("row").new_label.to_dict() == expected
    assert relabeled.signal.tolist() == ["ferplus", "copies"]
    # signals narrow a rule to one signal
    model_only = plan_of(Rule("label_issue", "relabel", signals=("model",)))
    assert clean(ds, model_only, found).relabeled.new_label.tolist() == [4, 4]


def test_label_conflict_kinds_and_real_audit(small_demo):
    """The auditors' own findings: label_conflict's majority, label_issue's copies vote."""
    demo_ds = small_demo.dataset
    audited = ferclean.audit(demo_ds, only=["label_conflict", "label_issue"])
    for plan in (plan_of(Rule("label_conflict", "relabel", kinds=("exact",))), "relabel"):
        result = clean(demo_ds, plan, audited)
        back = restore(result.cleaned, result.manifest, demo_ds[[]])
        assert back.equals(demo_ds, ids=True)
        relabeled = result.relabeled
        assert (relabeled.split == "Training").all()
        assert (relabeled.old_label != relabeled.new_label).all()
        assert np.array_equal(result.cleaned.labels[relabeled.position], relabeled.new_label)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("rule, message", [
    (Rule("outlier", "relabel"), "rule action 'relabel' needs an issue whose findings "
                                 "suggest labels.*rule issue is 'outlier'"),
    (Rule("label_issue", "relabel", threshold=1.5), "rule threshold must be a number"),
    (Rule("label_issue", "relabel", threshold="high"), "rule threshold must be a number"),
    (Rule("label_issue", "relabel", splits=("Test",)), "rule split 'Test'"),
    (Rule("label_issue", "relabel", signals=("votes",)), "rule signal 'votes'"),
    (Rule("label_issue", "relabel", splits="Training"), "rule splits must be a list"),
    (Rule("label_issues", "relabel"), "rule issue 'label_issues' is not a registered"),
    (Rule("label_issue", "relabl"), "rule action 'relabl' is not one of"),
])
def test_validation_names_the_bad_field(rule, message):
    with pytest.raises(ValueError, match=message):
        rule.validate()


def test_plan_files_with_relabel_and_drop(tmp_path, ds):
    plan = plan_of(Rule("label_conflict", "drop", kinds=("exact",)),
                   Rule("label_issue", "relabel", threshold=0.5, signals=("model", "copies"),
                        splits=("Training", "PublicTest")))
    for name in ("plan.json", "plan.yaml"):
        assert CleaningPlan.load(plan.save(tmp_path / name)) == plan
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "rules": [
        {"issue": "label_issue", "action": "relabel", "splits": "Training"}]}))
    with pytest.raises(ValueError, match="bad.json: rule splits must be a list"):
        CleaningPlan.load(bad)
    bad.write_text(json.dumps({"name": "x", "rules": [{"issue": "outlier",
                                                       "action": "relabel"}]}))
    with pytest.raises(ValueError, match="bad.json: rule action 'relabel' needs"):
        CleaningPlan.load(bad)
    # drop is drop_all's documented name: old plan files keep working, and act alike
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"name": "x", "rules": [{"issue": "label_issue",
                                                       "action": "drop_all"}]}))
    found = label_issues(ds, [1, 12], [0, 0])
    dropped = [select_removals(ds, p, found).position.tolist()
               for p in (CleaningPlan.load(old), plan_of(Rule("label_issue", "drop")))]
    assert dropped[0] == dropped[1] == [1, 12]


def test_suggested_labels_out_of_range_are_refused(ds):
    found = label_issues(ds, [1], [7])
    with pytest.raises(ValueError, match="row 1 .label_issue. suggests label 7"):
        clean(ds, plan_of(Rule("label_issue", "relabel")), found)


class _VoteAuditor(Auditor):
    """A user's auditor whose findings suggest labels, and says so."""

    issue_name = "test_vote"
    suggests_labels = True

    def _audit(self, dataset, context):
        return make_findings(dataset, [0], self.issue_name, suggested=6, signal="copies")


class _MarkAuditor(Auditor):
    issue_name = "test_mark"

    def _audit(self, dataset, context):
        return make_findings(dataset, [0], self.issue_name)


@pytest.fixture
def user_auditors():
    for cls in (_VoteAuditor, _MarkAuditor):
        register(cls)
    yield
    for name in ("test_vote", "test_mark"):
        unregister(name)


def test_a_users_auditor_declares_that_it_suggests_labels(ds, user_auditors):
    audited = ferclean.audit(ds, only=["test_vote"])
    assert clean(ds, plan_of(Rule("test_vote", "relabel")), audited).cleaned.labels[0] == 6
    with pytest.raises(ValueError, match="suggest labels .*test_vote.*rule issue is 'test_mark'"):
        Rule("test_mark", "relabel").validate()


def test_presets_build_before_their_auditor_registers(ds):
    """The label presets name label_issue; they are checked when used, not when built."""
    assert PRESETS["no-label-issues"].rules == (Rule("label_issue", "drop", splits=TRAIN),)
    assert PRESETS["relabel"].rules == (Rule("label_issue", "relabel", splits=TRAIN),)
    cls = unregister("label_issue")
    try:
        later = CleaningPlan("later", (Rule("label_issue", "relabel"),))  # builds
        assert later.issues == ["label_issue"]  # not dropped because it is unknown
        with pytest.raises(ValueError, match="rule issue 'label_issue' is not a registered"):
            CleaningPlan.resolve("relabel")
        with pytest.raises(ValueError, match="rule issue 'label_issue' is not a registered"):
            clean(ds, later, label_issues(ds, [1], [0]))
    finally:
        register(cls)
    assert "label_issue" in REGISTRY
    assert CleaningPlan.resolve("relabel") is PRESETS["relabel"]


# ------------------------------------------------------------------ manifest and restore
@pytest.mark.parametrize("form", ["csv", "npz", "zip", "folder"])
def test_relabel_save_restore_round_trip(tmp_path, ds, form):
    """Findings -> clean with relabel and removal -> save -> restore: the original exactly
    (pixels, labels, splits, order, ids, rows), the input untouched."""
    name = {"csv": "in.csv", "npz": "in.npz", "zip": "in.zip", "folder": "in_dir"}[form]
    src = save(ds, tmp_path / name, image_format="jpg") if form in ("zip", "folder") \
        else save(ds, tmp_path / name)
    before = file_digest(src) if src.is_file() else None
    original = load(src)  # image forms read in path order: positions are not rows
    train = np.flatnonzero(original.split_mask("Training"))
    public = np.flatnonzero(original.split_mask("PublicTest"))
    private = np.flatnonzero(original.split_mask("PrivateTest"))
    relabel = np.sort(np.concatenate([train[3:6], public[:2]]))
    new = (original.labels[relabel] + 1) % 7
    found = concat_findings([
        conflicts(original, train[:3], [-1, -1, -1]),
        label_issues(original, relabel, new),
        label_issues(original, private[:2], [0, 0])])  # a test split the plan leaves alone
    plan = plan_of(Rule("label_conflict", "drop", kinds=("exact",)),
                   Rule("label_issue", "relabel", splits=("Training", "PublicTest")))
    result = clean(original, plan, found)
    assert result.relabeled.position.tolist() == relabel.tolist()
    out = result.save(tmp_path / "out")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 2
    assert [(r["row"], r["image_id"], r["old_label"], r["new_label"], r["issue"], r["signal"])
            for r in manifest["relabeled"]] == [
        (int(original.rows[p]), str(original.ids[p]), int(original.labels[p]), int(label),
         "label_issue", "model") for p, label in zip(relabel, new, strict=True)]
    assert all("label_issue" in r["reason"] and "model" in r["reason"]
               for r in manifest["relabeled"])
    cleaned_back = load(out / manifest["files"]["cleaned"])
    assert sorted(cleaned_back.labels.tolist()) == sorted(result.cleaned.labels.tolist())
    back = restore_from(out)
    assert back.equals(original, ids=True)
    assert np.array_equal(back.rows, original.rows)
    assert back.checksum() == original.checksum() == manifest["checksum_before"]
    if before:
        assert file_digest(src) == before
    if form == "csv":  # byte for byte: the restored data writes the input file again
        assert file_digest(save(back, tmp_path / "back.csv")) == before


@pytest.mark.parametrize("out_format", ["zip", "folder"])
def test_image_folder_output_of_a_csv_restores(tmp_path, ds, out_format):
    """Written anew (from a CSV, or relabeled), an image folder reads back in path order:
    the manifest records that order, so restore still gives the original."""
    original = load(save(ds, tmp_path / "in.csv"))
    result = clean(original, plan_of(Rule("label_conflict", "drop"),
                                     Rule("label_issue", "relabel")),
                   concat_findings([conflicts(original, [12, 13], [-1, -1]),
                                    label_issues(original, [3], [0])]))
    out = result.save(tmp_path / "out", format=out_format)
    assert restore_from(out).equals(original, ids=True)


def test_restore_refuses_cleaned_data_whose_relabels_changed(ds):
    found = label_issues(ds, [3], [0])
    result = clean(ds, plan_of(Rule("label_issue", "relabel")), found)
    assert restore(result.cleaned, result.manifest, ds[[]]).equals(ds, ids=True)
    tampered = result.cleaned[np.arange(len(ds))]
    tampered.labels[3] = 5
    with pytest.raises(ValueError, match="cleaned image '3' .row 3. has label 5, not the 0"):
        restore(tampered, result.manifest, ds[[]])


def test_manifest_version_1_still_reads_and_unknown_versions_are_refused(ds):
    result = clean(ds, plan_of(Rule("label_conflict", "drop")), conflicts(ds, [1, 2], [-1, -1]))
    data = json.loads(result.manifest.to_json())
    assert data["version"] == 2 and data["relabeled"] == []
    v1 = {k: v for k, v in data.items() if k not in ("relabeled", "relabel_counts")}
    v1["version"] = 1
    old = Manifest.from_dict(v1)
    assert old.relabeled.empty and list(old.relabeled.columns) == list(
        result.manifest.relabeled.columns)
    assert restore(result.cleaned, old, ds[[1, 2]]).equals(ds, ids=True)
    with pytest.raises(ValueError, match="manifest version 3 is not one this ferclean reads"):
        Manifest.from_dict({**data, "version": 3})
    # relabels survive the JSON round trip with their dtypes
    relabel = clean(ds, plan_of(Rule("label_issue", "relabel")), label_issues(ds, [3], [0]))
    again = Manifest.from_dict(json.loads(relabel.manifest.to_json()))
    pd.testing.assert_frame_equal(again.relabeled, relabel.manifest.relabeled)
    assert again.relabel_summary().values.tolist() == [["label_issue", "model", "Training", 1]]


def test_publish_with_relabels_restores_exactly(tmp_path, ds):
    src = save(ds, tmp_path / "in.zip", image_format="jpg")
    original = load(src)
    train = np.flatnonzero(original.split_mask("Training"))[:2]
    result = clean(original, plan_of(Rule("label_issue", "relabel")),
                   label_issues(original, train, (original.labels[train] + 1) % 7))
    release = publish(result, tmp_path / "release")
    assert len(json.loads((release / "manifest.json").read_text())["relabeled"]) == 2
    assert restore_from(release).equals(original, ids=True)


def test_plan_save_never_replaces_a_file_without_overwrite(tmp_path):
    """CleaningPlan.save goes through the output guard like every other output."""
    plan = CleaningPlan.preset("relabel")
    target = tmp_path / "plan.json"
    target.write_text("not mine")
    with pytest.raises(Exception, match="overwrite"):
        plan.save(target)
    assert target.read_text() == "not mine"
    assert CleaningPlan.load(plan.save(target, overwrite=True)) == plan
