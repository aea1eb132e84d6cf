"""Training loop, checkpoints, inference helpers and evaluation metrics.

Runs use the miniature models (``ferclean.learning.models.TINY``) on a few dozen demo faces:
compilation dominates, so the tests share one trained run (module fixture) and the jit
caches (same model and optimiser settings reuse the compiled steps).
"""

from __future__ import annotations

import ast
import dataclasses
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import jax  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from ferclean.dataset import EMOTIONS, FaceDataset  # noqa: E402
from ferclean.demo import demo_dataset  # noqa: E402
from ferclean.learning import (  # noqa: E402
    EarlyStopping,
    ReduceLROnPlateau,
    TrainConfig,
    classification_metrics,
    classification_report,
    confusion_matrix,
    cross_entropy,
    evaluate,
    load_checkpoint,
    predict,
    predict_logits,
    predict_proba,
    saliency,
    save_checkpoint,
    train,
)
from ferclean.learning.models import TINY  # noqa: E402
from ferclean.learning.training import predict as predict_labels  # noqa: E402
from ferclean.learning.training.loop import _class_weight_vector  # noqa: E402
from ferclean.protocol import LeakageError, class_weights, honest_splits  # noqa: E402

N_TRAIN = 64
#: One miniature model for every test here (and in test_models), so the compiled init,
#: steps and forward passes are shared: compilation is most of these tests' time.
#: Dropout is off: the run tests that the loop can fit data at all. (Dropout keys come
#: from fold_in(seed key, step), deterministic by construction; the doctests train with
#: dropout.)
MODEL_KWARGS = {**TINY["cnn_lstm"], "conv_dropout": 0.0, "lstm_dropout": 0.0,
                "dense_dropout": 0.0}
OVERFIT = TrainConfig(
    model="cnn_lstm", model_kwargs=MODEL_KWARGS, epochs=25, batch_size=16,
    learning_rate=5e-3, early_stopping_patience=None, lr_patience=100, seed=0,
)
N_EVAL = 32  # every prediction call below uses 32 images: one compiled forward pass


@pytest.fixture(scope="module")
def demo() -> FaceDataset:
    return demo_dataset(n_faces=300)


@pytest.fixture(scope="module")
def data(demo):
    train_ds, val_ds, _ = honest_splits(demo)
    return train_ds[:N_TRAIN], val_ds[:N_EVAL]


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train(data, OVERFIT, out=out), out


# ---------------------------------------------------------------------- training
def test_short_run_overfits_small_subset(run, data):
    result, _ = run
    history = result.history
    assert list(history.epoch) == list(range(1, OVERFIT.epochs + 1))
    chance = 1 / 7
    majority = np.bincount(data[0].labels).max() / N_TRAIN
    final = history.accuracy.iloc[-3:].max()
    assert final > max(0.6, majority + 0.25, 4 * chance)
    assert history.loss.iloc[-1] < 0.6 * history.loss.iloc[0]
    assert (history.time_s > 0).all() and history.learning_rate.eq(5e-3).all()


def test_history_and_best_checkpoint_written(run):
    result, out = run
    saved = json.loads((out / "history.json").read_text())
    assert saved["monitor"] == "val_loss" and len(saved["epochs"]) == OVERFIT.epochs
    assert result.best_epoch == int(result.history.val_loss.idxmin()) + 1
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["info"]["epoch"] == result.best_epoch
    assert TrainConfig.from_dict(meta["config"]) == OVERFIT


def test_checkpoint_round_trip(run, data, tmp_path):
    result, out = run
    loaded = load_checkpoint(out)
    assert loaded.model == "cnn_lstm" and loaded.n_params == result.model.n_params
    for a, b in zip(jax.tree_util.tree_leaves(result.model.variables),
                    jax.tree_util.tree_leaves(loaded.variables), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    images = data[1].pixels
    np.testing.assert_array_equal(predict_proba(loaded, images),
                                  predict_proba(result.model, images))
    # Same weights and arguments: byte-identical files.
    one, two = save_checkpoint(tmp_path / "a", loaded), save_checkpoint(tmp_path / "b", loaded)
    for name in ("params.msgpack", "checkpoint.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_checkpoint_detects_tampering(run, tmp_path):
    _, out = run
    copy = save_checkpoint(tmp_path / "c", load_checkpoint(out))
    payload = bytearray((copy / "params.msgpack").read_bytes())
    payload[-1] ^= 1
    (copy / "params.msgpack").write_bytes(bytes(payload))
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(copy)


def test_same_seed_same_weights(data):
    # OVERFIT's model and optimiser: the compiled steps are reused, only the runs cost.
    cfg = dataclasses.replace(OVERFIT, epochs=2, seed=3)
    first, second = train(data, cfg), train(data, cfg)
    other = train(data, dataclasses.replace(cfg, seed=4))
    leaves = [jax.tree_util.tree_leaves(r.model.variables) for r in (first, second, other)]
    for a, b in zip(leaves[0], leaves[1], strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert any(not np.array_equal(a, c) for a, c in zip(leaves[0], leaves[2], strict=True))
    pd.testing.assert_frame_equal(first.history.drop(columns=["time_s", "cpu_s"]),
                                  second.history.drop(columns=["time_s", "cpu_s"]))



@pytest.mark.parametrize("drop_remainder", [False, True])
def test_fused_steps_train_like_single_steps(data, drop_remainder):
    # 64 images at batch 16 with a remainder of 6: fused chunks of 3 steps, then a chunk
    # of 1, then (without drop_remainder) the partial batch as a single host-fed step.
    train_ds = data[0][:70]
    cfg = dataclasses.replace(OVERFIT, epochs=2, seed=5, drop_remainder=drop_remainder)
    single = train((train_ds, data[1]), dataclasses.replace(cfg, steps_per_call=1))
    fused = train((train_ds, data[1]), dataclasses.replace(cfg, steps_per_call=3))
    columns = ["loss", "accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_allclose(fused.history[columns], single.history[columns], atol=1e-3)
    # Weights as a whole: Adam turns float-rounding differences in near-zero gradients
    # into full-size steps of single weights, so compare relative to the weights' norm.
    flat = [np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(
        r.model.variables)]) for r in (fused, single)]
    assert np.linalg.norm(flat[0] - flat[1]) < 0.01 * np.linalg.norm(flat[1])


def test_steps_per_call_is_validated():
    with pytest.raises(ValueError, match="steps_per_call"):
        TrainConfig(steps_per_call=0).validate()

def test_predict_proba_rows_sum_to_one_and_predict_is_its_argmax(run, data):
    result, _ = run
    images = data[1].pixels
    proba = predict_proba(result, images)
    assert proba.shape == (N_EVAL, 7) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    labels = predict_labels(result, images)
    assert labels.shape == (N_EVAL,) and labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels, proba.argmax(1))
    np.testing.assert_array_equal(labels, predict_logits(result, images).argmax(1))
    np.testing.assert_array_equal(predict(result, images), labels)


def test_train_result_save_writes_the_live_checkpoint(run, tmp_path):
    result, out = run
    saved = result.save(tmp_path / "again")
    assert sorted(p.name for p in saved.iterdir()) == [  # .ferclean-output: ferclean's
        ".ferclean-output", "checkpoint.json", "history.json", "params.msgpack",
        "training_curves.png"]
    # The live checkpoint of the best epoch and the result's model are the same bytes.
    for name in ("params.msgpack", "checkpoint.json"):
        assert (saved / name).read_bytes() == (out / name).read_bytes()
    assert json.loads((saved / "history.json").read_text()) == json.loads(
        (out / "history.json").read_text())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        result.save(saved)
    result.save(saved, overwrite=True)
    result.save(out)  # the folder it trained into is its own: rewritten in place


def test_train_without_validation_monitors_loss_and_writes_strict_json(data, tmp_path):
    cfg = dataclasses.replace(OVERFIT, epochs=1)
    result = train((data[0], None), cfg, out=tmp_path / "noval")
    assert result.monitor == "loss" and result.history.val_loss.isna().all()
    text = (tmp_path / "noval" / "history.json").read_text()
    assert "NaN" not in text and json.loads(text)["epochs"][0]["val_loss"] is None
    meta = json.loads((tmp_path / "noval" / "checkpoint.json").read_text())
    assert meta["info"]["monitor"] == "loss" and meta["info"]["val_accuracy"] is None


def test_evaluating_a_model_or_its_checkpoint_folder_agrees(run, demo, tmp_path):
    result, out = run
    test_ds = demo.split("PrivateTest")[:N_EVAL]
    ev = evaluate(load_checkpoint(out), test_ds, saliency_per_class=1, history=result.history)
    ev.save(tmp_path / "a")
    from_path = evaluate(out, test_ds, saliency_per_class=1)
    from_path.save(tmp_path / "b")
    assert ev.files == from_path.files == sorted(
        p.name for p in (tmp_path / "a").iterdir() if p.name != ".ferclean-output")
    for name in ("predictions.csv", "classification_report.csv", "saliency.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert ev.metrics["accuracy"] == from_path.metrics["accuracy"]
    assert from_path.metrics["checkpoint_epoch"] == result.best_epoch
    assert from_path.history is not None and from_path.metrics["loss"] == ev.metrics["loss"]


def test_saliency_shape_and_nonzero(run, data):
    result, _ = run
    images = data[1].pixels[:5]
    maps = saliency(result.model, images)
    assert maps.shape == images.shape and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all() and maps.max() > 0
    signed = saliency(result.model, images, absolute=False)
    np.testing.assert_allclose(np.abs(signed), maps)


def test_evaluation_save_writes_figures_and_json(run, demo, tmp_path):
    _, out = run
    report_dir = tmp_path / "eval"
    private = np.flatnonzero(demo.split_mask("PrivateTest"))
    ds = demo.subset(np.concatenate([np.flatnonzero(~demo.split_mask("PrivateTest")),
                                     private[:N_EVAL]]))
    evaluation = evaluate(out, ds, split="PrivateTest", saliency_per_class=1)
    evaluation.save(report_dir)
    expected = {"metrics.json", "classification_report.csv", "predictions.csv",
                "confusion_matrix.png", "saliency.png", "saliency.json", "saliency.npz",
                "training_curves.png"}
    assert set(evaluation.files) == expected
    assert {p.name for p in report_dir.iterdir()} == {*expected, ".ferclean-output"}
    for png in ("confusion_matrix.png", "saliency.png", "training_curves.png"):
        assert (report_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((report_dir / "metrics.json").read_text())
    assert saved["split"] == "PrivateTest" and saved["checkpoint_epoch"] >= 1
    preds = pd.read_csv(report_dir / "predictions.csv")
    assert len(preds) == saved["n_images"] == N_EVAL
    assert saved["accuracy"] == pytest.approx(skm.accuracy_score(preds.label, preds.prediction))
    assert saved["macro_f1"] == pytest.approx(
        skm.f1_score(preds.label, preds.prediction, average="macro", labels=range(7),
                     zero_division=0))


def test_train_refuses_a_folder_with_another_checkpoint(tmp_path, demo):
    (tmp_path / "checkpoint.json").write_text("{}")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        train(demo, TrainConfig(model="cnn_mha"), out=tmp_path)


# ---------------------------------------------------------------------- pieces
def test_honest_splits_refuse_synthetic_test_images(demo):
    train_ds, val_ds, test_ds = honest_splits(demo)
    assert (set(train_ds.split_names), set(val_ds.split_names), set(test_ds.split_names)) == (
        {"Training"}, {"PublicTest"}, {"PrivateTest"})
    synthetic = np.zeros(len(demo), bool)
    synthetic[np.flatnonzero(demo.split_mask("PrivateTest"))[0]] = True
    tainted = FaceDataset(demo.pixels, demo.labels, demo.splits, synthetic=synthetic)
    with pytest.raises(LeakageError):
        honest_splits(tainted)


def test_balanced_class_weights_come_from_training_only(data):
    vector = _class_weight_vector("balanced", data[0])
    for label, weight in class_weights(data[0]).items():
        assert vector[label] == pytest.approx(weight)
    assert _class_weight_vector(None, data[0]).tolist() == [1.0] * 7


def test_config_validation_and_json_round_trip():
    cfg = TrainConfig(model_kwargs={"kernel_sizes": [3, 3, 3, 3, 3]}, class_weight={1: 4})
    assert cfg.model_kwargs["kernel_sizes"] == (3, 3, 3, 3, 3)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in ({"model": "vgg"}, {"lr_factor": 1.5}, {"class_weight": "inverse"},
                {"early_stopping_patience": -1}):
        with pytest.raises(ValueError):
            TrainConfig(**bad).validate()


def test_reduce_lr_follows_keras_rules():
    cb = ReduceLROnPlateau(factor=0.1, patience=2, min_delta=1e-4, min_lr=1e-5)
    lrs, lr = [], 1e-3
    for loss in (1.0, 0.99995, 0.99996, 0.5, 0.6, 0.7, 0.8, 0.9):
        lr = cb.update(loss, lr)
        lrs.append(lr)
    # 0.99995 is within min_delta: no improvement; two such epochs reduce the rate.
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5])


def test_early_stopping_remembers_best_epoch():
    cb = EarlyStopping(patience=3)
    stops = []
    for epoch, loss in enumerate((1.0, 0.9, 0.95, 0.92, 0.91, 0.5), start=1):
        cb.update(loss, epoch)
        stops.append(cb.should_stop)
    assert stops == [False, False, False, False, True, True]
    assert cb.best_epoch == 6 or cb.best_epoch == 2  # stopping is the caller's decision
    cb2 = EarlyStopping(patience=None)
    for epoch in range(1, 20):
        cb2.update(1.0, epoch)
    assert not cb2.should_stop and cb2.best_epoch == 1


# ---------------------------------------------------------------------- metrics
@pytest.fixture
def predictions():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 7, 300)
    y_pred = np.where(rng.random(300) < 0.5, y_true, rng.integers(0, 7, 300))
    logits = rng.normal(size=(300, 7)) + 2 * np.eye(7)[y_pred]
    return y_true, y_pred, logits


def test_metrics_equal_sklearn(predictions):
    y_true, y_pred, logits = predictions
    labels = list(range(7))
    m = classification_metrics(y_true, y_pred, logits=logits)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted"))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert m["loss"] == pytest.approx(skm.log_loss(y_true, probs, labels=labels))
    assert m["loss"] == pytest.approx(cross_entropy(y_true, logits))
    # Probabilities instead of labels: argmax predictions, log-loss as sklearn's.
    from_probs = classification_metrics(y_true, probs)
    assert from_probs["accuracy"] == pytest.approx(skm.accuracy_score(y_true, probs.argmax(1)))
    assert from_probs["loss"] == pytest.approx(skm.log_loss(y_true, probs, labels=labels))
    np.testing.assert_array_equal(m["confusion_matrix"], skm.confusion_matrix(y_true, y_pred))
    for norm in ("true", "pred", "all"):
        np.testing.assert_allclose(confusion_matrix(y_true, y_pred, normalize=norm),
                                   skm.confusion_matrix(y_true, y_pred, normalize=norm))
    theirs = skm.classification_report(y_true, y_pred, target_names=list(EMOTIONS),
                                       output_dict=True)
    ours = classification_report(y_true, y_pred)
    for name, row in ours.iterrows():
        for col in ("precision", "recall", "f1-score", "support"):
            assert row[col] == pytest.approx(theirs[name][col]), (name, col)


def test_metrics_with_missing_classes_equal_sklearn_zero_division_0():
    y_true = np.array([0, 0, 3, 3, 3, 6])
    y_pred = np.array([0, 3, 3, 3, 5, 6])  # class 5 predicted, never true; 1, 2, 4 absent
    labels = list(range(7))
    report = classification_report(y_true, y_pred)
    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                     zero_division=0)
    np.testing.assert_allclose(report.precision.iloc[:7], p)
    np.testing.assert_allclose(report.recall.iloc[:7], r)
    np.testing.assert_allclose(report["f1-score"].iloc[:7], f)
    np.testing.assert_array_equal(report.support.iloc[:7], s)
    assert classification_metrics(y_true, y_pred)["macro_f1"] == pytest.approx(
        skm.f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    np.testing.assert_allclose(
        confusion_matrix(y_true, y_pred, normalize="true"),
        skm.confusion_matrix(y_true, y_pred, labels=labels, normalize="true"))


def test_prediction_rejects_pixels_outside_0_255(run):
    result, _ = run
    with pytest.raises(ValueError, match=r"0\.\.255"):
        predict(result, np.full((2, 48, 48), 300.0))
    with pytest.raises(ValueError, match="shape"):
        predict(result, np.zeros((2, 32, 32), np.uint8))


# ---------------------------------------------------------------------- layout
def test_importing_learning_does_not_import_jax():
    code = ("import sys, ferclean.learning, ferclean.learning.training; "
            "assert not any(m.split('.')[0] in ('jax', 'flax', 'optax') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_learning_modules_import_one_way():
    """No cycle among ferclean.learning's modules, counting imports inside functions."""
    import ferclean.learning as package

    root = Path(package.__file__).parent
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: set() for name in names}
    for name, path in names.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in names:
                graph[name].add(node.module)
    # Package __init__ files only re-export; the cycle that matters is between modules.
    graph = {k: {v for v in vs if not names[v].name == "__init__.py"}
             for k, vs in graph.items() if names[k].name != "__init__.py"}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises on a cycle
    assert "ferclean.learning.evaluation" in order
    assert "ferclean.learning.evaluation" not in set().union(
        *(graph[m] for m in graph if m.startswith("ferclean.learning.training")))
