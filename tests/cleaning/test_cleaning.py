"""Cleaning plans, the manifest, restore, clean/publish outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ferclean
from ferclean.cleaning import (
    PRESETS,
    CleaningPlan,
    Rule,
    audit_and_clean,
    clean,
    publish,
    restore,
    restore_from,
    select_removals,
)
from ferclean.demo import make_demo
from ferclean.findings import read_findings
from ferclean.io import load, save
from ferclean.protocol import check_leakage
from helpers import file_digest

EXACT = {"label_conflict": {"duplicates": "exact"}, "cross_split_leak": {"duplicates": "exact"}}


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_faces=400, seed=1)


@pytest.fixture(scope="module")
def exact_audit(demo):
    """Findings whose duplicate-type issues look at exact groups only (as the truth does)."""
    return ferclean.audit(demo.dataset, params=EXACT)


def rows_removed(manifest) -> set[int]:
    return set(manifest.removed.row.tolist())


def test_raw_removes_nothing(demo, exact_audit):
    cleaned, manifest = clean(demo.dataset, "raw", exact_audit)
    assert cleaned.equals(demo.dataset) and manifest.removed.empty


def test_dedup_keeps_first_of_every_exact_group(demo, exact_audit):
    _, manifest = clean(demo.dataset, "dedup", exact_audit)
    expected = {r for g in demo.truth.exact_groups() for r in sorted(g)[1:]}
    assert rows_removed(manifest) == expected


def test_no_conflicts_drops_every_member(demo, exact_audit):
    _, manifest = clean(demo.dataset, "no-conflicts", exact_audit)
    assert rows_removed(manifest) == set().union(*demo.truth.conflict_groups("exact"))


def test_no_outliers_and_seed_final_follow_the_findings(demo, exact_audit):
    outliers = ferclean.audit(demo.dataset, only=["outlier"]).findings
    _, manifest = clean(demo.dataset, "no-outliers", exact_audit)
    assert rows_removed(manifest) == set(outliers.row)
    assert set(outliers.row) & set(demo.truth.non_face_rows())  # it does find non-faces
    _, manifest = clean(demo.dataset, "seed-final", exact_audit)
    conflicts = set().union(*demo.truth.conflict_groups("exact"))
    assert rows_removed(manifest) == conflicts | set(outliers.row)


@pytest.fixture(scope="module")
def full_audit(demo):
    """Exact, near and mirrored copies: what strict needs."""
    return ferclean.audit(demo.dataset, params={"near_duplicate": {"mirror": True}})


def test_study_presets_act_on_exact_groups_whatever_the_audit_saw(demo, exact_audit,
                                                                   full_audit):
    for preset in ("dedup", "no-conflicts", "seed-final"):
        _, exact = clean(demo.dataset, preset, exact_audit)
        _, full = clean(demo.dataset, preset, full_audit)
        assert exact.removed.row.tolist() == full.removed.row.tolist(), preset


def test_strict_leaves_training_no_copy_of_a_test_image(demo, full_audit):
    ds = demo.dataset
    cleaned, manifest = clean(ds, "strict", full_audit)
    assert set(manifest.removed.split) <= {"Training"}  # the test splits stay untouched
    assert cleaned.split(["PublicTest", "PrivateTest"]).equals(
        ds.split(["PublicTest", "PrivateTest"]))
    train = set(np.flatnonzero(ds.split_mask("Training")).tolist())
    removed = rows_removed(manifest)
    # every planted copy, exact or near, of a test image and every conflicting copy
    for group in demo.truth.conflict_groups("all") + demo.truth.leak_groups("all"):
        assert set(group) & train <= removed
    # no exact, near or mirrored copy of a test image is left in Training
    tests = cleaned.split(["PublicTest", "PrivateTest"])
    assert check_leakage(cleaned.split("Training"), tests, near=True, mirror=True).empty
    # no label conflict inside Training among exact or near copies
    assert ferclean.audit(cleaned.split("Training"), only=["label_conflict"]).findings.empty
    # findings that would miss some copies are refused: exact only, or no mirrored copies
    with pytest.raises(ValueError, match="duplicates='all'"):
        clean(ds, "strict", ferclean.audit(ds, params=EXACT))
    with pytest.raises(ValueError, match="near_duplicate.mirror=True"):
        clean(ds, "strict", ferclean.audit(ds))
    assert rows_removed(audit_and_clean(ds, "strict").manifest) == removed  # audits for it


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_restore_is_exact_for_every_preset(demo, full_audit, preset):
    cleaned, manifest = clean(demo.dataset, preset, full_audit)
    removed = demo.dataset[manifest.removed.position.to_numpy()]
    back = restore(cleaned, manifest, removed)
    assert back.equals(demo.dataset, ids=True)
    assert np.array_equal(back.rows, demo.dataset.rows)
    assert manifest.info["checksum_before"] == demo.dataset.checksum()
    assert manifest.info["checksum_after"] == cleaned.checksum()


@pytest.mark.parametrize("form", ["csv", "zip", "folder", "npz"])
@pytest.mark.parametrize("preset", ["dedup", "strict"])
def test_restore_round_trip_through_files(tmp_path, demo, form, preset):
    name = {"csv": "in.csv", "zip": "in.zip", "folder": "in_dir", "npz": "in.npz"}[form]
    # image forms written as JPEG, like the real download: cleaning copies the files
    src = save(demo.dataset, tmp_path / name, image_format="jpg") if form in (
        "zip", "folder") else save(demo.dataset, tmp_path / name)
    original = load(src)
    before = file_digest(src) if src.is_file() else None
    out = tmp_path / "out"
    result = audit_and_clean(original, preset)
    result.save(out)
    manifest = result.manifest
    assert (out / manifest.info["files"]["cleaned"]).exists()
    back = restore_from(out)
    assert back.equals(original, ids=True)
    assert np.array_equal(back.rows, original.rows)
    if before:
        assert file_digest(src) == before  # the input is never modified


def test_refuses_to_write_over_input(tmp_path, demo):
    folder = save(demo.dataset, tmp_path / "data", image_format="png")
    with pytest.raises(ValueError, match="refusing to write"):
        audit_and_clean(load(folder), "dedup").save(folder / "clean")
    csv = save(demo.dataset, tmp_path / "d.csv")
    with pytest.raises(ValueError, match="refusing to write"):
        publish(audit_and_clean(load(csv), "raw"), csv)


def test_crash_leaves_no_output(tmp_path, demo, monkeypatch):
    import ferclean.cleaning.outputs as pub

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pub, "write_npz", boom)
    result = audit_and_clean(demo.dataset, "dedup")
    with pytest.raises(RuntimeError):
        result.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no output, no temp folder left


def test_publish_is_deterministic_and_complete(tmp_path, demo, exact_audit):
    a = publish(clean(demo.dataset, "seed-final", exact_audit), tmp_path / "a")
    b = publish(clean(demo.dataset, "seed-final", exact_audit), tmp_path / "b")
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert {"README.md", "metadata.json", "SHA256SUMS", "manifest.json",
            "removed/removed.npz", "removed/removed.csv",
            "data/fer2013-seed-final.csv", "data/fer2013-seed-final.zip"} <= set(files_a)
    sums = dict(line.split("  ")[::-1] for line in (a / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(files_a) - {"SHA256SUMS"}
    card = (a / "README.md").read_text()
    assert "ferclean restore" in card and "label_conflict" in card
    meta = json.loads((a / "metadata.json").read_text())
    assert meta["n_after"] == len(load(a / "data/fer2013-seed-final.csv"))
    assert restore_from(a).equals(demo.dataset)


def test_publish_refuses_resampled_or_synthetic(tmp_path, demo):
    ds = demo.dataset
    from ferclean.dataset import FaceDataset

    synthetic = FaceDataset(ds.pixels, ds.labels, ds.splits, synthetic=np.ones(len(ds), bool))
    with pytest.raises(ValueError, match="synthetic"):
        audit_and_clean(synthetic, "raw")


def test_plan_files_round_trip_and_validate(tmp_path):
    plan = CleaningPlan("mine", (Rule("outlier", "drop_above", threshold=0.8),
                                 Rule("exact_duplicate", "keep_one", keep="prefer_training")))
    path = plan.save(tmp_path / "plan.json")
    assert CleaningPlan.load(path) == plan
    assert CleaningPlan.resolve(str(path)) == plan
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "rules": [{"issue": "outlier",
                                                       "action": "shred"}]}))
    with pytest.raises(ValueError, match="bad.json: rule action 'shred'"):
        CleaningPlan.load(bad)
    with pytest.raises(ValueError, match="keep_one needs a grouped issue"):
        Rule("outlier", "keep_one").validate()
    with pytest.raises(ValueError, match="unknown preset"):
        CleaningPlan.preset("tidy")

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"name": "x", "rules": [], "auditors": {"outlier": {}}}))
    with pytest.raises(ValueError, match="no longer carry audit settings"):
        CleaningPlan.load(old)


def test_drop_above_threshold(demo):
    found = ferclean.audit(demo.dataset, only=["class_imbalance"]).findings
    plan = CleaningPlan("t", (Rule("class_imbalance", "drop_above", threshold=0.7),))
    removed = select_removals(demo.dataset, plan, found)
    assert set(demo.dataset.rows[removed.position]) == set(found[found.score >= 0.7].row)


def test_clean_needs_findings_of_the_issues_it_acts_on(demo):
    only_exact = ferclean.audit(demo.dataset, only=["exact_duplicate"])
    with pytest.raises(ValueError, match="did not examine"):
        clean(demo.dataset, "seed-final", only_exact)
    other = make_demo(n_faces=300, seed=5).dataset
    with pytest.raises(ValueError, match="do not belong to this dataset|not in this dataset"):
        clean(other, "dedup", only_exact)


def test_audit_clean_round_trip_through_files_matches_memory(tmp_path, demo):
    """Findings written by audit and read back give exactly the in-memory removals."""
    params = {"near_duplicate": {"similarity": 0.99, "mirror": True},
              "label_conflict": {"duplicates": "all"}, "cross_split_leak": {"duplicates": "all"}}
    result = ferclean.audit(demo.dataset, params=params)
    back = read_findings(result.save(tmp_path / "audit"))
    assert back.findings.equals(result.findings)
    assert back.summary["issues"] == json.loads(json.dumps(result.summary["issues"]))
    for preset in PRESETS:
        _, in_memory = clean(demo.dataset, preset, result)
        _, from_files = clean(demo.dataset, preset, back)
        assert in_memory.removed.equals(from_files.removed), preset


def test_plan_acts_on_the_audit_settings(demo):
    """A stricter near-duplicate threshold in the audit changes what strict removes."""
    strict = CleaningPlan("near", (Rule("label_conflict", "drop_all"),))
    params = {"label_conflict": {"duplicates": "all"}}
    loose = clean(demo.dataset, strict, ferclean.audit(demo.dataset, params=params))
    tight = clean(demo.dataset, strict, ferclean.audit(
        demo.dataset, params={**params, "near_duplicate": {"similarity": 0.999}}))
    assert len(tight.manifest.removed) < len(loose.manifest.removed)
