"""The benchmark suite: the honest protocol never leaks; the replica does what the study did."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ferclean.bench import PROFILES, VARIATIONS, Cell, deleaked, prepare
from ferclean.demo import make_demo
from ferclean.protocol import check_leakage


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_faces=300)


LABEL_VARIATIONS = ("no-label-issues", "relabel")


def _base_ids(ds) -> set[str]:
    """Ids of the images a dataset was made from (a ROS copy 'x#copy2' comes from 'x')."""
    return {i.split("#copy")[0] for i in ds.ids[~ds.synthetic]}


@pytest.mark.parametrize("variation", list(VARIATIONS))
@pytest.mark.parametrize("sampling", ["none", "ros", "smote", "class_weights"])
def test_honest_protocol_never_lets_training_into_evaluation(demo, variation, sampling):
    if variation in LABEL_VARIATIONS and sampling != "none":
        pytest.skip("label variations: one sampling suffices (each runs a crossval)")
    ds = demo.dataset
    # the label variations' crossval at the smoke profile's small settings: seconds
    profile = PROFILES["smoke" if variation in LABEL_VARIATIONS else "quick"]
    prepared = prepare(ds, Cell("honest", variation, sampling, "cnn_lstm"), profile, seed=0)
    train = prepared.train
    assert set(train.split_names) == {"Training"}
    for name, evaluation in [("val", prepared.val), *prepared.tests.items()]:
        assert not set(evaluation.split_names) & {"Training"}, name
        assert not _base_ids(train) & set(evaluation.ids), name  # no image on both sides
        assert not evaluation.synthetic.any() and not evaluation.resampled
    # the de-leaked test set has no exact copy of any training image (resampled ones too)
    assert check_leakage(train, prepared.tests["PrivateTest_deleaked"]).empty
    if sampling == "none":  # ... nor a near or mirrored copy
        assert check_leakage(train, prepared.tests["PrivateTest_deleaked"], near=True,
                             mirror=True).empty
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


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, demo):
    """One smoke run of the suite, shared by the tests that read what it stored."""
    for module in ("jax", "flax", "optax"):
        pytest.importorskip(module)
    from ferclean.bench import run_suite

    out = tmp_path_factory.mktemp("bench") / "smoke"
    return out, run_suite(demo.dataset, "smoke", out)


def test_smoke_run_writes_results_and_table(smoke_run, demo):
    from ferclean.bench import run_suite

    out, results = smoke_run
    assert (out / "results.json").exists() and (out / "table.md").exists()
    saved = json.loads((out / "results.json").read_text())
    assert len(saved["runs"]) == 2  # two cells, one seed
    for run in saved["runs"].values():
        for metrics in run["metrics"].values():
            assert 0 <= metrics["accuracy"] <= 1
    table = (out / "table.md").read_text()
    assert "SMOKE TEST" in table and "FLAWED" in table
    assert f"PrivateTest de-leaked ({saved['evaluation_sets']['PrivateTest_deleaked']['n']} " \
        "images" in table and "Holm" in table
    # resumable: a second call recomputes nothing
    first = {k: v["wall_s"] for k, v in saved["runs"].items()}
    again = run_suite(demo.dataset, "smoke", out)
    assert {k: v["wall_s"] for k, v in again["runs"].items()} == first
    assert results["profile"]["name"] == "smoke"


def test_every_run_stores_predictions_history_and_config(smoke_run, demo):
    from ferclean.bench import PROFILES, evaluation_sets
    from ferclean.bench.data import evaluation_record
    from ferclean.bench.predictions import load_predictions
    from ferclean.bench.results import load_results
    from ferclean.learning.training.loop import HISTORY_COLUMNS

    out, _ = smoke_run
    saved = json.loads((out / "results.json").read_text())
    sets = evaluation_sets(demo.dataset, PROFILES["smoke"].eval_subset)
    assert saved["evaluation_sets"] == {k: evaluation_record(v) for k, v in sets.items()}
    labels_of = dict(zip(demo.dataset.rows.tolist(), demo.dataset.labels.tolist(), strict=True))
    for run in saved["runs"].values():
        stored = load_predictions(out / run["predictions"])
        assert set(stored) == set(run["metrics"])
        for name, metrics in run["metrics"].items():
            p = stored[name]
            assert p["proba"].dtype == np.float16 and p["proba"].shape == (metrics["n"], 7)
            assert np.allclose(p["proba"].astype(np.float32).sum(axis=1), 1, atol=1e-2)
            assert p["labels"].tolist() == [labels_of[r] for r in p["rows"].tolist()]
            confusion = np.zeros((7, 7), int)
            np.add.at(confusion, (p["labels"], p["pred"]), 1)
            assert confusion.tolist() == metrics["confusion"]  # the same predictions
            if run["protocol"] == "honest":  # on the one pair of sets of the run
                assert p["rows"].tolist() == saved["evaluation_sets"][name]["rows"]
                assert metrics["checksum"] == saved["evaluation_sets"][name]["checksum"]
        assert len(run["history"]) == run["epochs_run"] >= 1
        assert list(run["history"][0]) == list(HISTORY_COLUMNS)
        assert run["recipe"] == "study" and run["config"]["seed"] == run["seed"]
        assert run["config"]["epochs"] == PROFILES["smoke"].epochs
    merged, _ = load_results(out, PROFILES["smoke"])  # what a merge carries
    assert merged["runs"] == saved["runs"]
    assert merged["evaluation_sets"] == saved["evaluation_sets"]


def test_one_deleaked_set_for_every_cell_with_no_copy_in_raw_training(demo):
    from ferclean.bench import evaluation_sets
    from ferclean.bench.data import evaluation_checksum

    ds = demo.dataset
    cache: dict = {}
    for profile in (PROFILES["quick"], PROFILES["full"]):
        seen = set()
        for variation in ("A", "B", "C+D", "strict"):
            for sampling in ("none", "ros", "smote", "class_weights"):
                for seed in (0, 1):
                    prepared = prepare(ds, Cell("honest", variation, sampling, "cnn_lstm"),
                                       profile, seed, cache)
                    clean = prepared.tests["PrivateTest_deleaked"]
                    seen.add(evaluation_checksum(clean))
                    # resampled copies are copies of raw Training images: none leaks
                    assert check_leakage(prepared.train, clean).empty
        single = evaluation_sets(ds, profile.eval_subset)["PrivateTest_deleaked"]
        assert seen == {evaluation_checksum(single)}  # identical for every cell and seed
        # no exact, near or mirrored copy of any of its images in the raw Training split
        assert check_leakage(ds.split("Training"), single, near=True, mirror=True).empty
        test = evaluation_sets(ds, profile.eval_subset)["PrivateTest"]
        assert set(single.rows.tolist()) < set(test.rows.tolist())
        # ... and every PrivateTest image without such a copy is in it
        leaks = check_leakage(ds.split("Training"), test, near=True, mirror=True)
        assert len(single) == len(test) - leaks.test_position.nunique()


def test_resume_refuses_runs_evaluated_on_another_deleaked_set(tmp_path, demo):
    from ferclean.bench import run_suite

    out = tmp_path / "old"
    out.mkdir()
    legacy = {"protocol": "honest", "variation": "B", "sampling": "none", "model": "cnn_lstm",
              "seed": 0, "metrics": {"PrivateTest_deleaked": {"accuracy": 0.5, "n": 29}}}
    (out / "results.json").write_text(json.dumps(
        {"profile": {"name": "smoke"}, "runs": {"honest|B|none|cnn_lstm|0": legacy}}))
    with pytest.raises(ValueError, match="evaluated on another PrivateTest_deleaked"):
        run_suite(demo.dataset, "smoke", out)  # before training anything
    # shard files evaluated on different sets are not merged either
    other = tmp_path / "shards"
    (other / "shards").mkdir(parents=True)
    for i, checksum in enumerate(["one", "two"]):
        (other / "shards" / f"shard-{i}-of-2.json").write_text(json.dumps(
            {"profile": {"name": "smoke"}, "runs": {},
             "evaluation_sets": {"PrivateTest_deleaked": {"n": 3, "checksum": checksum}}}))
    with pytest.raises(ValueError, match="checksums differ"):
        run_suite(None, "smoke", other, train_missing=False)


def test_deleaked_drops_near_copies_too(demo):
    train, test = demo.dataset.split("Training"), demo.dataset.split("PrivateTest")
    exact_only, near_too = deleaked(train, test, near=False), deleaked(train, test)
    assert len(near_too) < len(exact_only) < len(test)
    assert check_leakage(train, near_too, near=True, mirror=True).empty
    # every planted copy of a Training image in PrivateTest is gone, exact or near
    split_of = dict(zip(demo.dataset.rows.tolist(), demo.dataset.split_names, strict=True))
    planted = [g for g in demo.truth.leak_groups("all")
               if any(split_of[r] == "Training" for r in g)]
    private = {r for g in planted for r in g if split_of[r] == "PrivateTest"}
    assert private and not private & set(near_too.rows.tolist())


def test_prepare_cache_changes_nothing(demo):
    cache: dict = {}
    cells = [Cell("honest", "C+D", "none", "cnn_lstm"), Cell("honest", "C+D", "ros", "cnn_lstm"),
             Cell("seed-replica", "A", "ros", "cnn_lstm")]
    for cell in cells:
        for seed in (0, 1):
            cached = prepare(demo.dataset, cell, PROFILES["quick"], seed, cache)
            fresh = prepare(demo.dataset, cell, PROFILES["quick"], seed)
            assert list(cached.train.ids) == list(fresh.train.ids)
            assert cached.tests.keys() == fresh.tests.keys()
            for name in fresh.tests:
                assert list(cached.tests[name].ids) == list(fresh.tests[name].ids)
    assert cache  # and it was used


def _need_jax():
    for module in ("jax", "flax", "optax"):
        pytest.importorskip(module)


def test_shards_split_the_runs_and_merge_without_recomputing(tmp_path, demo):
    _need_jax()
    from ferclean.bench import run_suite

    out = tmp_path / "smoke"
    first = run_suite(demo.dataset, "smoke", out, shard=(0, 2))
    second = run_suite(demo.dataset, "smoke", out, shard=(1, 2))
    assert len(first["runs"]) == len(second["runs"]) == 1
    assert first["runs"].keys() != second["runs"].keys()
    assert not (out / "results.json").exists()  # shards write only their own files
    assert len(list((out / "shards").glob("shard-*-of-2.json"))) == 2
    # a shard that is already done runs nothing again
    again = run_suite(demo.dataset, "smoke", out, shard=(0, 2))
    assert again["runs"] == first["runs"]
    merged = run_suite(demo.dataset, "smoke", out, train_missing=False)
    assert merged["complete"] and merged["runs"] == {**first["runs"], **second["runs"]}
    assert not (out / "shards").exists()
    assert (out / "table.md").exists() and (out / "accuracy_by_variation.png").exists()


def test_merge_only_reports_missing_runs(tmp_path, demo):
    _need_jax()
    from ferclean.bench import run_suite

    out = tmp_path / "smoke"
    run_suite(demo.dataset, "smoke", out, shard=(0, 2))
    merged = run_suite(None, "smoke", out, train_missing=False)  # a merge loads no images
    assert not merged["complete"] and len(merged["runs"]) == 1
    assert merged["source"] == demo.dataset.source  # kept from the shard
    assert "INCOMPLETE: 1 of 2 runs" in (out / "table.md").read_text()


def test_parallel_workers_finish_the_profile(tmp_path, demo):
    _need_jax()
    from ferclean.bench import run_suite_parallel

    out = tmp_path / "smoke"
    results = run_suite_parallel(demo.dataset, "smoke", out, workers=2)
    assert results["complete"] and len(results["runs"]) == 2
    assert results["source"] == demo.dataset.source
    saved = json.loads((out / "results.json").read_text())
    assert saved["runs"].keys() == results["runs"].keys()
    assert not (out / "shards").exists()
    with pytest.raises(ValueError, match="workers"):
        run_suite_parallel(demo.dataset, "smoke", out, workers=0)


def test_shard_must_be_in_range(tmp_path, demo):
    from ferclean.bench import run_suite

    with pytest.raises(ValueError, match="shard"):
        run_suite(demo.dataset, "smoke", tmp_path, shard=(2, 2))
    with pytest.raises(ValueError, match="needs the dataset"):
        run_suite(None, "smoke", tmp_path)


def test_subsets_keep_class_shares_so_oversampling_still_copies(demo):
    from ferclean.bench.data import _stratified_subset

    ds = demo.dataset
    sub = _stratified_subset(ds, 200, seed=0)
    assert abs(len(sub) - 200) <= 7 and set(np.unique(sub.labels)) == set(np.unique(ds.labels))
    full = np.bincount(ds.labels, minlength=7) / len(ds)
    part = np.bincount(sub.labels, minlength=7) / len(sub)
    assert np.abs(full - part).max() < 0.02
    # the quick profile's replica: its subset is imbalanced, so oversampling makes copies
    prepared = prepare(ds, Cell("seed-replica", "A", "ros", "cnn_lstm"),
                       PROFILES["quick"], seed=0)
    assert prepared.train.resampled and any("#copy" in i for i in prepared.train.ids)


def test_variations_of_one_data_role_share_one_audit(demo):
    cache: dict = {}
    for variation in ("B", "C", "D", "C+D"):
        prepare(demo.dataset, Cell("honest", variation, "none", "cnn_lstm"), PROFILES["quick"],
                0, cache)
    assert [key for key in cache if key[0] == "audit"] == [("audit", "training")]


def test_label_variations_find_issues_on_training_with_folds_inside_it(demo):
    """no-label-issues drops and relabel relabels what one label audit of Training found
    (out-of-fold probabilities from folds inside Training); test splits are untouched."""
    from ferclean.cleaning import CleaningPlan, clean

    cache: dict = {}
    raw = prepare(demo.dataset, Cell("honest", "A", "none", "cnn_lstm"), PROFILES["smoke"],
                  0, cache)
    dropped = prepare(demo.dataset, Cell("honest", "no-label-issues", "none", "cnn_lstm"),
                      PROFILES["smoke"], 0, cache)
    relabeled = prepare(demo.dataset, Cell("honest", "relabel", "none", "cnn_lstm"),
                        PROFILES["smoke"], 0, cache)
    assert [k for k in cache if k[0] == "label_audit"] == [("label_audit", "training")]
    found = cache[("label_audit", "training")]
    training = demo.dataset.split("Training")
    assert set(found.findings.split) == {"Training"}
    assert "model" in set(found.findings.signal)
    assert dropped.info["removed"] == found.findings.row.nunique() > 0
    result = clean(training, CleaningPlan.preset("relabel"), found)
    assert relabeled.info["removed"] == len(result.manifest.relabeled) > 0
    assert relabeled.tests["PrivateTest"].equals(raw.tests["PrivateTest"])
