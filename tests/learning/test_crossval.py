"""Out-of-fold probabilities: group folds never split a copy group; planted flips on the demo
data are found by the label_issue auditor; files round-trip; the CLI writes and reads them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

import ferclean
from ferclean.dataset import FaceDataset
from ferclean.learning.crossval import crossval, group_folds, read_crossval

SMALL = {"n_filters": 64, "n_patches": 20_000}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 15)), min_size=12, max_size=80),
       st.integers(0, 10))
def test_group_folds_never_split_a_group(items, seed):
    labels = np.array([label for label, _ in items])
    groups = np.array([group for _, group in items])
    folds = min(3, len(np.unique(groups)))
    if folds < 2:
        return
    fold = group_folds(labels, groups, folds=folds, seed=seed)
    assert (fold >= 0).all()
    for g in np.unique(groups):
        assert len(np.unique(fold[groups == g])) == 1


@pytest.fixture(scope="module")
def flipped_demo(demo):
    """The demo's Training split with 8 % of labels flipped uniformly to another class."""
    ds = demo.dataset.split("Training")
    ds = ds.subset(np.flatnonzero(ds.labels >= 0))
    rng = np.random.default_rng(5)
    flipped = rng.random(len(ds)) < 0.08
    labels = ds.labels.astype(np.int64).copy()
    labels[flipped] = (labels[flipped] + rng.integers(1, 7, flipped.sum())) % 7
    noisy = FaceDataset(ds.pixels, labels=labels, splits=ds.splits, ids=ds.ids, rows=ds.rows,
                        source="flipped demo")
    return noisy, flipped, ds.labels


@pytest.fixture(scope="module")
def flipped_result(flipped_demo):
    noisy, _, _ = flipped_demo
    return crossval(noisy, folds=3, seed=0, params=SMALL)


def test_crossval_keeps_copies_in_one_fold_and_covers_every_image(flipped_demo, flipped_result):
    noisy, _, _ = flipped_demo
    r = flipped_result
    assert len(r.pred_probs) == len(noisy) and r.info["copy_groups"] > 0
    assert r.info["copy_groups_split_across_folds"] == 0
    np.testing.assert_allclose(r.pred_probs.sum(axis=1), 1)
    assert r.accuracy > 0.5


def test_planted_flips_are_label_issues(flipped_demo, flipped_result):
    noisy, flipped, clean_labels = flipped_demo
    result = ferclean.audit(noisy, only=["label_issue"],
                            params={"label_issue": {"pred_probs": flipped_result}})
    auditor = result.auditors[0]
    # measured with these settings: AUROC 0.959, recall 0.90, precision 0.46 (a model at
    # 77 % accuracy also doubts many true labels; 8 % would be chance)
    assert roc_auc_score(flipped, 1 - auditor.quality_) > 0.93
    model = result.findings[result.findings.signal == "model"]
    hit = np.isin(noisy.rows[flipped], model.row)
    precision = np.isin(model.row, noisy.rows[flipped]).mean()
    assert hit.mean() > 0.8 and precision > 0.35, (hit.mean(), precision)
    # the suggestion of a found flip is mostly the original label
    pos = np.searchsorted(noisy.rows, model.row.to_numpy())
    found = flipped[pos]
    assert (model.suggested_label.to_numpy()[found] == clean_labels[pos][found]).mean() > 0.8
    noise = result.summary["issues"]["label_issue"]["noise"]
    assert len(noise["noise_matrix"]) == 7 and noise["estimated_errors"] > 0
    back = ferclean.findings.finding_probabilities(model)
    np.testing.assert_allclose(back.sum(axis=1), 1, atol=1e-3)


def test_crossval_file_round_trip_and_cli(tmp_path, flipped_result, capsys):
    out = flipped_result.save(tmp_path / "p.npz")
    back = read_crossval(out)
    np.testing.assert_array_equal(back.pred_probs, flipped_result.pred_probs)
    assert back.info["model"] == "patches"
    with pytest.raises(Exception, match="exists"):
        flipped_result.save(tmp_path / "p.npz")
    with pytest.raises(ValueError, match="written as .npz"):
        flipped_result.save(tmp_path / "p.csv")


def test_cli_crossval_then_audit_with_pred_probs(tmp_path, capsys):
    from ferclean.cli import main

    # `ferclean crossval` itself runs in tests/test_cli.py; here its file feeds an audit
    probs = tmp_path / "probs.npz"
    ds = ferclean.demo_dataset(n_faces=300)
    crossval(ds, folds=2, params=SMALL).save(probs)
    ferclean.save(ds, tmp_path / "demo.npz")
    assert main(["audit", str(tmp_path / "demo.npz"), "--pred-probs", str(probs), "--only",
                 "label_issue", "--out", str(tmp_path / "audit")]) == 0
    assert "labels doubted by model" in capsys.readouterr().out  # the table says what counts
    back = ferclean.read_findings(tmp_path / "audit")
    assert "model" in set(back.findings.signal)
    assert back.summary["settings"]["label_issue"]["pred_probs"] == str(probs)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full((3, 7), 0.5))
    assert main(["audit", str(tmp_path / "demo.npz"), "--pred-probs", str(bad), "--only",
                 "label_issue", "--out", str(tmp_path / "audit2")]) != 0
    assert "bad.npy" in capsys.readouterr().err


def test_cli_crossval_audit_clean_relabel_restore(tmp_path, capsys):
    """The whole path on the command line: crossval -> audit --pred-probs -> clean --plan
    relabel -> restore gives back the original labels."""
    from ferclean.cli import main

    data = tmp_path / "demo.npz"
    ferclean.save(ferclean.demo_dataset(n_faces=300), data)
    probs = tmp_path / "probs.npz"
    assert main(["crossval", str(data), "--out", str(probs), "--folds", "3",
                 "--filters", "16"]) == 0
    out = capsys.readouterr().out
    assert "out-of-fold accuracy" in out and f"--pred-probs {probs}" in out
    assert main(["crossval", str(data), "--out", str(probs), "--filters", "16"]) != 0
    assert "--overwrite" in capsys.readouterr().err
    assert main(["clean", str(data), "--plan", "relabel", "--pred-probs", str(probs),
                 "--out", str(tmp_path / "clean")]) == 0
    out = capsys.readouterr().out
    assert "relabeled" in out and "label_issue (model)" in out
    cleaned = ferclean.load(next((tmp_path / "clean").glob("cleaned.*")))
    original = ferclean.load(data)
    changed = int((cleaned.labels != original.labels).sum())
    assert changed > 0 and f"relabeled {changed}" in out
    assert main(["restore", str(tmp_path / "clean"), "--out", str(tmp_path / "back.npz")]) == 0
    assert ferclean.load(tmp_path / "back.npz").equals(original, ids=True)


def test_reference_net_crossval_trains_one_net_per_fold(small_demo, monkeypatch):
    """The GPU path's bookkeeping (training itself is tested in test_training.py): one net
    per fold, trained without its held-out fold and validated on the next, every image
    predicted once by the net that did not see it."""
    from ferclean.learning.training import inference, loop

    calls = []

    def fake_train(data, config):
        train, val = data
        calls.append((set(train.ids.tolist()), set(val.ids.tolist()), config.seed))
        return len(calls) - 1  # the "trained model": its fold number

    def fake_predict_proba(trained, pixels):
        out = np.full((len(pixels), 7), 0.0)
        out[:, trained] = 1.0  # the class is the fold's number, to see who predicted
        return out

    monkeypatch.setattr(loop, "train", fake_train)
    monkeypatch.setattr(inference, "predict_proba", fake_predict_proba)
    r = crossval(small_demo.dataset, model="cnn_mha", folds=3, seed=1)
    assert len(calls) == 3 and [c[2] for c in calls] == [1, 2, 3]
    for k, (train_ids, val_ids, _) in enumerate(calls):
        held_out = set(r.image_ids[r.fold == k].tolist())
        assert not held_out & train_ids and not held_out & val_ids
        assert val_ids == set(r.image_ids[r.fold == (k + 1) % 3].tolist())
    assert (r.pred_probs.argmax(axis=1) == r.fold).all()
