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

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from scipy.special import softmax  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from ferclean.dataset import EMOTIONS, FaceDataset  # noqa: E402
from ferclean.demo import demo_dataset  # noqa: E402
from ferclean.learning import (  # noqa: E402
    TRAINING_PRESETS,
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
    training_preset,
)
from ferclean.learning.models import MODELS, TINY, get_model, register_model  # noqa: E402
from ferclean.learning.training import create_train_state, init_model, train_step  # noqa: E402
from ferclean.learning.training import predict as predict_labels  # noqa: E402
from ferclean.learning.training.loop import (  # noqa: E402
    _class_weight_vector,
    scheduled_lr,
)
from ferclean.learning.training.steps import PRNG_IMPL  # noqa: E402
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
    for bad in ({"model": "resnet"}, {"lr_factor": 1.5}, {"class_weight": "inverse"},
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


# ---------------------------------------------------------------------- recipes
class LinearNet(nn.Module):
    """One dense layer over the pixels: it compiles in a moment, so the recipe tests
    below (optimisers, schedules, monitors, crops, test-time views) stay cheap."""

    num_classes: int = 7

    @nn.compact
    def __call__(self, x, train: bool = False, *, return_embedding: bool = False):
        x = x.reshape(x.shape[0], -1)
        if return_embedding:
            return x
        return nn.Dense(self.num_classes, name="dense")(x)


@pytest.fixture(scope="module")
def linear():
    register_model("test_linear", LinearNet)
    yield "test_linear"
    del MODELS["test_linear"]


#: SGD with Nesterov momentum, decoupled weight decay, plateau on the validation
#: accuracy, 40x40 crops with flips: every run below shares its compiled steps.
SGD_RUN = TrainConfig(
    model="test_linear", optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True,
    weight_decay=1e-3, monitor="val_accuracy", lr_factor=0.5, lr_patience=1, epochs=6,
    batch_size=16, early_stopping_patience=None, augment={"crop": 40, "flip": True},
    tta="flip", seed=0,
)


def test_sgd_plateau_on_val_accuracy_restores_the_best_epoch(linear, data, tmp_path):
    result = train(data, SGD_RUN, out=tmp_path / "sgd")
    history = result.history
    assert result.monitor == "val_accuracy"
    # The best epoch is the first with the highest validation accuracy, and its weights
    # are the result's and the checkpoint's.
    assert result.best_epoch == int(history.val_accuracy.to_numpy().argmax()) + 1
    meta = json.loads((tmp_path / "sgd" / "checkpoint.json").read_text())
    assert meta["info"]["epoch"] == result.best_epoch
    assert meta["info"]["monitor"] == "val_accuracy" and (meta["crop"], meta["tta"]) == (40,
                                                                                       "flip")
    # The rate follows reduce-on-plateau in "max" mode over the validation accuracies.
    callback = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=1e-4, mode="max")
    expected = [0.05]
    for accuracy in history.val_accuracy.iloc[:-1]:
        expected.append(callback.update(accuracy, expected[-1]))
    assert history.learning_rate.tolist() == pytest.approx(expected)
    assert history.learning_rate.nunique() > 1  # this run does hit a plateau
    # The crop reached the weights (40x40 inputs) and the checkpoint.
    assert result.model.params["dense"]["kernel"].shape == (40 * 40, 7)
    loaded = load_checkpoint(tmp_path / "sgd")
    assert (loaded.crop, loaded.tta) == (40, "flip")
    np.testing.assert_array_equal(predict_proba(loaded, data[1]), predict_proba(result, data[1]))


def test_cosine_warmup_and_constant_schedules_set_each_epoch(linear, data):
    cosine = dataclasses.replace(SGD_RUN, schedule="cosine", warmup_epochs=1, epochs=4,
                                 min_lr=0.001)
    rates = train(data, cosine).history.learning_rate.tolist()
    assert rates == pytest.approx([scheduled_lr(cosine, e) for e in range(1, 5)])
    assert rates == pytest.approx([0.025, 0.05, 0.001 + 0.049 * 0.5 * (1 + np.cos(np.pi / 3)),
                                   0.001 + 0.049 * 0.5 * (1 + np.cos(2 * np.pi / 3))])
    constant = dataclasses.replace(SGD_RUN, schedule="constant", epochs=3)
    assert train(data, constant).history.learning_rate.tolist() == [0.05] * 3


def test_scheduled_lr_values():
    cfg = TrainConfig(schedule="cosine", epochs=10, learning_rate=1.0)
    assert [scheduled_lr(cfg, e) for e in (1, 6)] == pytest.approx([1.0, 0.5])
    warm = dataclasses.replace(cfg, schedule="plateau", warmup_epochs=3)
    assert [scheduled_lr(warm, e) for e in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, None]
    assert scheduled_lr(dataclasses.replace(cfg, schedule="constant"), 9) == 1.0


def test_sgd_nesterov_and_adamw_steps_match_their_formulas(linear):
    module = get_model("test_linear")
    grads = None
    for optimizer in ("sgd", "adam"):
        cfg = dataclasses.replace(SGD_RUN, optimizer=optimizer, augment={})
        state = create_train_state(module, cfg, 0)
        p0 = np.asarray(state.params["dense"]["kernel"])
        grads = jax.tree_util.tree_map(lambda a: jnp.full_like(a, 0.5), state.params)
        one = state.apply_gradients(grads=grads)
        p1 = np.asarray(one.params["dense"]["kernel"])
        lr, m, wd, g = 0.05, 0.9, 1e-3, 0.5
        if optimizer == "sgd":
            # Nesterov: the step uses g + m * (g + m * trace); the decay is added after it.
            np.testing.assert_allclose(p1, p0 - lr * ((1 + m) * g + wd * p0), rtol=1e-5)
            p2 = np.asarray(one.apply_gradients(grads=grads).params["dense"]["kernel"])
            np.testing.assert_allclose(p2, p1 - lr * ((1 + m + m * m) * g + wd * p1),
                                       rtol=1e-5, atol=1e-7)
        else:  # AdamW: the first step is lr * (g / |g| + wd * p)
            np.testing.assert_allclose(p1, p0 - lr * (1 + wd * p0), rtol=1e-5, atol=1e-6)


def test_augmentation_and_bfloat16_reach_the_step(linear, data):
    cfg = dataclasses.replace(SGD_RUN, augment={})
    state = create_train_state(get_model("test_linear"), cfg, 0)
    batch = {"image": data[0].pixels[:16], "label": data[0].labels[:16].astype(np.int32),
             "weight": np.ones(16, np.float32)}
    key = jax.random.key(1, impl=PRNG_IMPL)
    plain, _ = train_step(state, batch, key)
    flipped, _ = train_step(state, batch, key, augment={"flip": True})
    low, metrics = train_step(state, batch, key, compute_dtype="bfloat16")
    weights = [np.asarray(s.params["dense"]["kernel"]) for s in (plain, flipped, low)]
    assert not np.array_equal(weights[0], weights[1])  # the flips changed the gradient
    # bfloat16 compute, float32 weights: close to the float32 step, not equal to it.
    assert weights[2].dtype == np.float32 and np.isfinite(float(metrics["loss_sum"]))
    assert not np.array_equal(weights[0], weights[2])
    np.testing.assert_allclose(weights[2], weights[0], atol=2e-3)


def test_tta_averages_the_views_and_is_plain_prediction_when_off(linear, demo):
    images = demo.split("PrivateTest").pixels[:N_EVAL]
    tm = init_model("test_linear", seed=2, crop=40, tta="ten_crop")
    x = images.astype(np.float32) / 255.0

    def probs(views):  # the network on hand-cut views, outside the library's batching
        return softmax(np.asarray(tm.module.apply(tm.variables, jnp.asarray(views))), axis=1)

    corners = [(4, 4), (0, 0), (0, 8), (8, 0), (8, 8)]
    crops = [x[:, r:r + 40, c:c + 40] for r, c in corners]
    plain = probs(crops[0])
    np.testing.assert_allclose(predict_proba(tm, images, tta=None), plain, rtol=1e-5, atol=1e-6)
    flip = (plain + probs(crops[0][:, :, ::-1])) / 2
    np.testing.assert_allclose(predict_proba(tm, images, tta="flip"), flip, atol=1e-6)
    ten = np.mean([probs(c) for c in crops] + [probs(c[:, :, ::-1]) for c in crops], axis=0)
    np.testing.assert_allclose(predict_proba(tm, images), ten, atol=1e-6)  # the model's own
    # Off: the same numbers as a model that has no test-time augmentation at all.
    untouched = dataclasses.replace(tm, tta=None)
    np.testing.assert_array_equal(predict_logits(untouched, images),
                                  predict_logits(tm, images, tta=None))
    # Mirror-symmetric faces: the flip changes nothing, so neither does flip TTA.
    symmetric = np.concatenate([images[:, :, :24], images[:, :, :24][:, :, ::-1]], axis=2)
    np.testing.assert_allclose(predict_proba(tm, symmetric, tta="flip"),
                               predict_proba(tm, symmetric, tta=None), atol=1e-6)
    ev = evaluate(tm, demo.split("PrivateTest")[:N_EVAL], saliency_per_class=0)
    assert ev.metrics["tta"] == "ten_crop"
    np.testing.assert_allclose(ev.predictions.filter(like="p_").to_numpy(), ten, atol=1e-5)
    assert evaluate(tm, demo.split("PrivateTest")[:N_EVAL], saliency_per_class=0,
                    tta=None).metrics["tta"] is None
    # Saliency through the centre crop: no gradient outside it.
    maps = saliency(tm, images[:2])
    assert maps.shape == (2, 48, 48) and maps[:, :4].max() == 0 and maps[:, 4:44, 4:44].max() > 0


# ---------------------------------------------------------------------- callbacks, config
def test_min_delta_follows_keras_in_both_modes():
    lower = EarlyStopping(patience=None, min_delta=0.1)
    # 0.95 is lower, but not by min_delta: no improvement; 0.85 is (below 1.0 - 0.1).
    assert [lower.update(v, e) for e, v in enumerate((1.0, 0.95, 0.85, 0.8), 1)] == [
        True, False, True, False]
    assert lower.best == 0.85 and lower.best_epoch == 3
    higher = EarlyStopping(patience=2, min_delta=0.1, mode="max")
    assert [higher.update(v, e) for e, v in enumerate((0.5, 0.55, 0.65, 0.7, 0.74), 1)] == [
        True, False, True, False, False]
    assert higher.should_stop and higher.best_epoch == 3
    plateau = ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.01, mode="max")
    assert [plateau.update(v, 1.0) for v in (0.5, 0.505, 0.6)] == [1.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


@pytest.mark.parametrize(("field", "value"), [
    ("optimizer", "rmsprop"), ("momentum", 1.0), ("momentum", -0.1), ("nesterov", "yes"),
    ("weight_decay", -1e-4), ("weight_decay", float("inf")), ("schedule", "step"),
    ("monitor", "val_f1"), ("monitor_mode", "up"), ("warmup_epochs", -1),
    ("augment", {"crop": 50}), ("tta", "five_crop"), ("compute_dtype", "float16"),
])
def test_new_config_fields_are_validated(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value}).validate()


def test_monitor_mode_follows_the_monitor():
    assert TrainConfig().mode == "min" and TrainConfig(monitor="val_accuracy").mode == "max"
    assert TrainConfig(monitor="val_accuracy", monitor_mode="min").mode == "min"


def test_presets_round_trip_validate_and_override():
    assert sorted(TRAINING_PRESETS) == ["study", "study-augmented", "vgg"]
    for name, preset in TRAINING_PRESETS.items():
        back = TrainConfig.from_dict(json.loads(json.dumps(preset.to_dict())))
        assert back == preset and back.validate() is back, name
    assert training_preset("study") == TrainConfig()  # the study's recipe, unchanged
    vgg = training_preset("vgg")
    assert (vgg.model, vgg.optimizer, vgg.nesterov, vgg.monitor, vgg.tta) == (
        "vgg", "sgd", True, "val_accuracy", "ten_crop")
    assert dict(vgg.augment) == {"crop": 40, "flip": True, "rotation": 10.0, "scale": 0.2,
                                 "erasing": 0.5}
    augmented = training_preset("study-augmented", seed=7)
    assert (augmented.model, augmented.seed, augmented.tta) == ("cnn_lstm", 7, "flip")
    assert TRAINING_PRESETS["study-augmented"].seed == 0  # the preset itself is unchanged
    with pytest.raises(ValueError, match="unknown training preset 'big'"):
        training_preset("big")
    with pytest.raises(ValueError, match="epoch"):
        training_preset("vgg", epoch=3)


def test_cli_train_preset_with_explicit_overrides(monkeypatch, demo, tmp_path):
    import ferclean.learning as learning
    from ferclean.cli import main
    from ferclean.io import save

    seen = {}

    class Result:
        history = pd.DataFrame({"epoch": [1]})
        best_epoch = 1

        def save(self, out, overwrite=False):
            return out

    def fake_train(ds, config, **kwargs):
        seen["config"] = config
        return Result()

    monkeypatch.setattr(learning, "train", fake_train)
    data = save(demo, tmp_path / "demo.npz")
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--preset", "vgg",
                 "--epochs", "3", "--lr", "0.02"]) == 0
    assert seen["config"] == training_preset("vgg", epochs=3, learning_rate=0.02)
    assert main(["train", str(data), "--out", str(tmp_path / "run2"), "--preset",
                 "study-augmented", "--model", "cnn_mha", "--model-arg", "dropout=0.1"]) == 0
    assert seen["config"] == training_preset("study-augmented", model="cnn_mha",
                                             model_kwargs={"dropout": 0.1})
    assert main(["train", str(data), "--out", str(tmp_path / "run3")]) == 0
    assert seen["config"] == TrainConfig()  # no preset named: the study's
