"""Cleaning plans, the manifest, restore, clean/publish outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ferclean
from conftest import file_digest
from ferclean.cleaning import (
    PRESETS,
    CleaningPlan,
    Rule,
    clean,
    clean_to,
    publish,
    restore,
    restore_from,
    select_removals,
)
from ferclean.demo import make_demo
from ferclean.io import load, save

EXACT = {"label_conflict": {"duplicates": "exact"}, "cross_split_leak": {"duplicates": "exact"}}


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_faces=400, seed=1)


def _exact(plan: str) -> CleaningPlan:
    """A preset whose duplicate-type rules look at exact groups only (as the truth does)."""
    base = PRESETS[plan]
    return CleaningPlan(base.name, base.rules, base.description, {**EXACT, **base.auditors})


def rows_removed(manifest) -> set[int]:
    return set(manifest.removed.row.tolist())


def test_raw_removes_nothing(demo):
    cleaned, manifest = clean(demo.dataset, "raw")
    assert cleaned.equals(demo.dataset) and manifest.removed.empty


def test_dedup_keeps_first_of_every_exact_group(demo):
    _, manifest = clean(demo.dataset, _exact("dedup"))
    expected = {r for g in demo.truth.exact_groups() for r in sorted(g)[1:]}
    assert rows_removed(manifest) == expected


def test_no_conflicts_drops_every_member(demo):
    _, manifest = clean(demo.dataset, _exact("no-conflicts"))
    assert rows_removed(manifest) == set().union(*demo.truth.conflict_groups("exact"))


def test_no_outliers_and_seed_final_follow_the_findings(demo):
    outliers = ferclean.audit(demo.dataset, only=["outlier"]).findings
    _, manifest = clean(demo.dataset, "no-outliers")
    assert rows_removed(manifest) == set(outliers.row)
    assert set(outliers.row) & set(demo.truth.non_face_rows())  # it does find non-faces
    _, manifest = clean(demo.dataset, _exact("seed-final"))
    conflicts = set().union(*demo.truth.conflict_groups("exact"))
    assert rows_removed(manifest) == conflicts | set(outliers.row)


def test_strict_never_touches_test_splits(demo):
    ds = demo.dataset
    _, manifest = clean(ds, _exact("strict"))
    assert set(manifest.removed.split) <= {"Training"}
    train = set(np.flatnonzero(ds.split_mask("Training")).tolist())
    outliers = set(ferclean.audit(ds, only=["outlier"]).findings.row)
    expected = set()
    for group in demo.truth.exact_groups():
        members = sorted(group)
        tests = [r for r in members if r not in train]
        keeper = tests[0] if tests else members[0]
        expected |= {r for r in members if r != keeper and r in train}
    for group in demo.truth.conflict_groups("exact") + demo.truth.leak_groups("exact"):
        expected |= set(group) & train
    expected |= outliers & train
    assert rows_removed(manifest) == expected
    # no exact copy of a test image is left in Training
    cleaned, _ = clean(ds, _exact("strict"))
    leaks = ferclean.audit(cleaned, [{"cross_split_leak": {"duplicates": "exact"}}]).findings
    assert not (leaks.split == "Training").any()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_restore_is_exact_for_every_preset(demo, preset):
    cleaned, manifest = clean(demo.dataset, preset)
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
    cleaned, manifest = clean_to(original, preset, out)
    assert (out / manifest.info["files"]["cleaned"]).exists()
    back = restore_from(out)
    assert back.equals(original, ids=True)
    assert np.array_equal(back.rows, original.rows)
    if before:
        assert file_digest(src) == before  # the input is never modified


def test_refuses_to_write_over_input(tmp_path, demo):
    folder = save(demo.dataset, tmp_path / "data", image_format="png")
    with pytest.raises(ValueError, match="refusing to write"):
        clean_to(load(folder), "dedup", folder / "clean")
    csv = save(demo.dataset, tmp_path / "d.csv")
    with pytest.raises(ValueError, match="refusing to write"):
        publish(load(csv), "raw", csv)


def test_crash_leaves_no_output(tmp_path, demo, monkeypatch):
    import ferclean.cleaning._publish as pub

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(pub, "write_npz", boom)
    with pytest.raises(RuntimeError):
        clean_to(demo.dataset, "dedup", tmp_path / "out")
    assert list(tmp_path.iterdir()) == []  # no output, no temp folder left


def test_publish_is_deterministic_and_complete(tmp_path, demo):
    a = publish(demo.dataset, "seed-final", tmp_path / "a")
    b = publish(demo.dataset, "seed-final", tmp_path / "b")
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
        publish(synthetic, "raw", tmp_path / "rel")


def test_plan_files_round_trip_and_validate(tmp_path):
    plan = CleaningPlan("mine", (Rule("outlier", "drop_above", threshold=0.8),
                                 Rule("exact_duplicate", "keep_one", keep="prefer_training")),
                        auditors={"outlier": {"method": "mean_iqr"}})
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


def test_drop_above_threshold(demo):
    found = ferclean.audit(demo.dataset, only=["class_imbalance"]).findings
    plan = CleaningPlan("t", (Rule("class_imbalance", "drop_above", threshold=0.7),))
    removed = select_removals(demo.dataset, plan, found)
    assert set(demo.dataset.rows[removed.position]) == set(found[found.score >= 0.7].row)
