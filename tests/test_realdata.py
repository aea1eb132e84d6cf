"""Figures on the real FER-2013 (runs when FERCLEAN_DATA names the zip; CI sets it)."""

from __future__ import annotations

import numpy as np
import pytest

import ferclean
from ferclean.io import load, save

pytestmark = pytest.mark.realdata


def test_counts(real_dataset):
    ds = real_dataset
    assert len(ds) == 35_887
    assert ds.split_counts() == {"Training": 28_709, "PublicTest": 3_589, "PrivateTest": 3_589}
    train = ds.labels[ds.split_mask("Training")]
    assert np.bincount(train, minlength=7).tolist() == [3995, 436, 4097, 7215, 4830, 3171, 4965]


def test_csv_built_by_ferclean_reads_back_identically(real_dataset, tmp_path):
    csv = save(real_dataset, tmp_path / "fer2013.csv")
    assert csv.stat().st_size > 250e6  # the Kaggle-sized file, ~300 MB
    back = load(csv)
    assert back.equals(real_dataset)
    npz = save(back, tmp_path / "fer2013.npz")
    assert load(npz).equals(real_dataset)


def test_audit_figures(real_dataset):
    result = ferclean.audit(
        real_dataset, only=["exact_duplicate", "label_conflict", "cross_split_leak",
                            "class_imbalance"])
    issues = result.summary["issues"]
    assert {k: issues["exact_duplicate"][k] for k in ("groups", "images", "removable")} == {
        "groups": 1516, "images": 3369, "removable": 1853}
    # the exact figures as the study counted them, the near copies counted apart
    assert (issues["label_conflict"]["groups"], issues["label_conflict"]["images"]) == (57, 160)
    assert (issues["cross_split_leak"]["groups"],
            issues["cross_split_leak"]["images"]) == (557, 1323)
    assert (issues["label_conflict"]["near_groups"],
            issues["label_conflict"]["near_images"]) == (320, 1318)
    assert issues["cross_split_leak"]["near_groups"] == 980
    assert issues["class_imbalance"]["under_represented"]["Training"] == ["disgust"]
    assert issues["class_imbalance"]["imbalance_ratio"]["Training"] == pytest.approx(
        7215 / 436, abs=1e-3)


def test_seed_final_removes_conflicts_and_outliers_only(real_dataset):
    from ferclean.cleaning import clean

    result = ferclean.audit(real_dataset, only=["label_conflict", "outlier"])
    conflicts = result.of("label_conflict")
    exact_conflicts = set(conflicts[conflicts.kind == "exact"].row)
    assert len(exact_conflicts) == 160
    cleaned, manifest = clean(real_dataset, "seed-final", result)
    removed = set(manifest.removed.row)
    outliers = set(result.of("outlier").row)
    assert removed == exact_conflicts | outliers
    assert len(cleaned) == len(real_dataset) - len(removed)


def test_strict_leaves_no_copy_of_a_test_image_in_training(real_dataset):
    """After strict, no exact, near or mirrored copy of a test image remains in Training,
    and no label conflict among exact or near copies; the test splits are untouched."""
    from ferclean.cleaning import audit_and_clean

    ds = real_dataset
    cleaned, manifest = audit_and_clean(ds, "strict")
    assert set(manifest.removed.split) == {"Training"}
    tests = ["PublicTest", "PrivateTest"]
    assert cleaned.split(tests).equals(ds.split(tests))
    train = cleaned.split("Training")
    assert ferclean.check_leakage(train, cleaned.split(tests), near=True, mirror=True).empty
    assert ferclean.audit(train, only=["label_conflict"]).findings.empty


def test_dask_audit_of_parquet_shards_equals_the_in_memory_audit(real_dataset, tmp_path):
    """FER-2013 as Parquet shards, audited on a 2-worker LocalCluster with every auditor:
    the findings equal the in-memory engine's row for row (the outliers' face model
    fitted on every image, as in memory), and so does the summary."""
    pytest.importorskip("dask.distributed")
    pytest.importorskip("pyarrow")
    import pandas as pd
    from distributed import Client, LocalCluster

    from ferclean.io.parquet import write_parquet

    shards = write_parquet(real_dataset, tmp_path / "shards", shard_size=8192)  # 5 shards
    memory = ferclean.audit(real_dataset)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        result = ferclean.audit(shards, engine="dask", client=client,
                                outlier_sample=len(real_dataset))
    pd.testing.assert_frame_equal(result.findings, memory.findings)
    assert result.summary["engine"]["partitions"] == 5
    assert result.summary["engine"]["images_returned"] < len(real_dataset)
    for key, value in memory.summary.items():
        assert result.summary[key] == (str(shards) if key == "source" else value), key
