"""The benchmark suite: the honest protocol never leaks; the replica does what the study did."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferclean.bench import PROFILES, VARIATIONS, Cell, prepare
from ferclean.demo import make_demo
from ferclean.resample import check_leakage


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_faces=300)


def _base_ids(ds) -> set[str]:
    """Ids of the images a dataset was made from (a ROS copy 'x#copy2' comes from 'x')."""
    return {i.split("#copy")[0] for i in ds.ids[~ds.synthetic]}


@pytest.mark.parametrize("variation", list(VARIATIONS))
@pytest.mark.parametrize("sampling", ["none", "ros", "smote", "class_weights"])
def test_honest_protocol_never_lets_training_into_evaluation(demo, variation, sampling):
    ds = demo.dataset
    prepared = prepare(ds, Cell("honest", variation, sampling, "cnn_lstm"),
                       PROFILES["quick"], seed=0)
    train = prepared.train
    assert set(train.split_names) == {"Training"}
    for name, evaluation in [("val", prepared.val), *prepared.tests.items()]:
        assert not set(evaluation.split_names) & {"Training"}, name
        assert not _base_ids(train) & set(evaluation.ids), name  # no image on both sides
        assert not evaluation.synthetic.any() and not evaluation.resampled
    # the de-leaked test set has no exact copy of any training image (resampled ones too)
    assert check_leakage(train, prepared.tests["PrivateTest_deleaked"]).empty
    # ... while FER-style pre-existing copies remain in the plain PrivateTest (except
    # under strict, which removes them from Training)
    leaks = check_leakage(train, prepared.tests["PrivateTest"])
    if variation == "strict":
        assert leaks.empty
    if sampling == "class_weights":
        assert prepared.class_weights and set(prepared.class_weights) == set(
            np.unique(train.labels).tolist())


def test_replica_does_what_the_study_did(demo):
    prepared = prepare(demo.dataset, Cell("seed-replica", "A", "ros", "cnn_lstm"),
                       PROFILES["quick"], seed=0)
    train, test = prepared.train, prepared.tests["replica_test"]
    # oversampled before the split: copies of one image on both sides of it
    leaks = check_leakage(train, test)
    assert len(leaks) > 0
    assert len(_base_ids(train) & {i.split("#copy")[0] for i in test.ids}) > 0
    assert "FLAWED" in prepared.info["label"]
    # splits are drawn from all three official splits merged
    merged_rows = set(demo.dataset.rows.tolist())
    assert set(train.rows.tolist()) <= merged_rows


def test_profiles_are_labelled():
    assert PROFILES["quick"].is_subset and "SUBSET" in PROFILES["quick"].note
    assert not PROFILES["full"].is_subset
    quick = {c.protocol for c in PROFILES["quick"].cells}
    assert quick == {"honest", "seed-replica"}
    assert len(PROFILES["quick"].seeds) >= 3 and len(PROFILES["full"].seeds) >= 3


def test_smoke_run_writes_results_and_table(tmp_path, demo):
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    from ferclean.bench import run_suite

    out = tmp_path / "smoke"
    results = run_suite(demo.dataset, "smoke", out)
    assert (out / "results.json").exists() and (out / "table.md").exists()
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 2  # two cells, one seed
    for run in saved["runs"].values():
        for metrics in run["metrics"].values():
            assert 0 <= metrics["accuracy"] <= 1
    table = (out / "table.md").read_text()
    assert "SMOKE TEST" in table and "FLAWED" in table
    # resumable: a second call recomputes nothing
    first = {k: v["wall_s"] for k, v in saved["runs"].items()}
    again = run_suite(demo.dataset, "smoke", out)
    assert {k: v["wall_s"] for k, v in again["runs"].items()} == first
    assert results["profile"]["name"] == "smoke"
