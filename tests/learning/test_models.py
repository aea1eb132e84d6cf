"""Reference models: registry, parameter counts against the study's, output shapes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from ferclean.learning.models import (  # noqa: E402
    MODELS,
    TINY,
    count_params,
    get_model,
    model_names,
    register_model,
)


def shapes(model, batch: int = 2, side: int = 48):
    """Variables and outputs by abstract evaluation: no compilation, no FLOPs."""
    x = jnp.zeros((batch, side, side))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    logits = jax.eval_shape(model.apply, variables, x)
    emb = jax.eval_shape(lambda v, x: model.apply(v, x, return_embedding=True), variables, x)
    return variables, logits.shape, emb.shape


def keras_lstm(n_in: int, units: int) -> int:
    return 4 * (n_in * units + units * units + units)


def keras_mha(dim: int, heads: int = 8, key_dim: int = 8) -> int:
    width = heads * key_dim
    return 3 * (dim * width + width) + width * dim + dim


# ---------------------------------------------------------------------- registry
def test_registry_lists_builtins_with_study_counts():
    assert model_names() == ["cnn_lstm", "cnn_mha", "vgg"]
    assert MODELS["cnn_lstm"].study_params == 457_031
    assert MODELS["cnn_mha"].study_params == 197_799


def test_unknown_model_lists_valid_names():
    with pytest.raises(KeyError, match="cnn_lstm, cnn_mha, vgg"):
        get_model("resnet")


def test_register_duplicate_raises_and_decorator_registers():
    with pytest.raises(ValueError, match="already registered"):
        register_model("cnn_lstm", "x:y")

    @register_model("test_identity_net", description="for this test")
    class Net:  # any class works; the registry does not inspect it
        def __init__(self, width: int = 1) -> None:
            self.width = width

    try:
        assert get_model("test_identity_net", width=3).width == 3
    finally:
        del MODELS["test_identity_net"]


def test_registry_and_package_import_without_jax():
    code = (
        "import sys, ferclean, ferclean.learning.models, ferclean.learning; "
        "ferclean.learning.models.model_names(); "
        "assert not any(m.split('.')[0] in ('jax', 'flax', 'optax') for m in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------- counts
def test_cnn_lstm_parameter_count_matches_study():
    variables, _, _ = shapes(get_model("cnn_lstm"))
    assert count_params(variables["params"]) == 457_031
    # BatchNorm's running mean/variance: Keras' "non-trainable params".
    assert count_params(variables["batch_stats"]) == 2 * (32 + 64 + 64 + 128 + 128)


def test_cnn_lstm_all_3x3_reading_differs_by_one_kernel():
    variables, _, _ = shapes(get_model("cnn_lstm", kernel_sizes=(3, 3, 3, 3, 3)))
    assert count_params(variables["params"]) == 457_031 + (9 - 1) * 32 * 64  # 473,415


def test_lstm_layers_have_keras_counts():
    params = shapes(get_model("cnn_lstm"))[0]["params"]
    assert count_params(params["lstm1"]) == keras_lstm(128, 128)
    assert count_params(params["lstm2"]) == keras_lstm(128, 64)


def test_cnn_mha_parameter_count_and_keras_mha_counts():
    params = shapes(get_model("cnn_mha"))[0]["params"]
    assert count_params(params) == 195_031  # study: 197,799 (see docs/models.md)
    assert count_params(params["mha1"]) == keras_mha(64)
    assert count_params(params["mha2"]) == keras_mha(128)


@pytest.mark.parametrize(
    ("kernels", "expected"),
    [((2, 3, 1, 1), 156_631), ((2, 3, 2, 2), 219_607), ((2, 3, 3, 3), 324_567)],
)
def test_cnn_mha_other_kernel_readings(kernels, expected):
    params = shapes(get_model("cnn_mha", kernel_sizes=kernels))[0]["params"]
    assert count_params(params) == expected


# ---------------------------------------------------------------------- shapes
@pytest.mark.parametrize(("name", "emb_dim"), [("cnn_lstm", 200), ("cnn_mha", 128)])
def test_output_and_embedding_shapes(name, emb_dim):
    _, logits, emb = shapes(get_model(name), batch=3)
    assert logits == (3, 7)
    assert emb == (3, emb_dim)


def test_channel_axis_optional_and_num_classes():
    model = get_model("cnn_mha", num_classes=5)
    x = jnp.zeros((2, 48, 48, 1))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 5)


def test_tiny_model_really_runs():
    from ferclean.learning import embed, init_model, predict_proba

    # The settings test_training uses, so a full run shares the compiled functions.
    kwargs = {**TINY["cnn_lstm"], "conv_dropout": 0.0, "lstm_dropout": 0.0,
              "dense_dropout": 0.0}
    trained = init_model("cnn_lstm", seed=1, **kwargs)
    images = np.random.default_rng(0).integers(0, 256, (32, 48, 48), dtype=np.uint8)
    probs = predict_proba(trained, images)
    assert probs.shape == (32, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert embed(trained, images).shape == (32, TINY["cnn_lstm"]["dense_units"])


def test_lstm_unroll_changes_speed_not_results():
    # TINY sizes keep the compile short; the sequence is still the 25-step grid.
    looped = get_model("cnn_lstm", **TINY["cnn_lstm"])
    unrolled = get_model("cnn_lstm", **TINY["cnn_lstm"], lstm_unroll=25)
    x = jnp.asarray(np.random.default_rng(0).random((3, 48, 48)), jnp.float32)
    variables = looped.init(jax.random.key(0), x)
    assert jax.tree_util.tree_structure(variables) == jax.tree_util.tree_structure(
        unrolled.init(jax.random.key(0), x))
    np.testing.assert_allclose(unrolled.apply(variables, x), looped.apply(variables, x),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- crops, VGG, LSTM bias
def vgg_count(side: int, filters=(64, 128, 256, 512), dense=(4096, 4096)) -> int:
    """Trainable weights of the VGG net by hand: 3x3 convs with biases, BN scale and
    offset, the dense head over the flattened last stage."""
    total, channels = 0, 1
    for width in filters:
        for _ in range(2):
            total += 9 * channels * width + width + 2 * width
            channels = width
        side //= 2
    width = side * side * channels
    for units in (*dense, 7):
        total += width * units + units
        width = units
    return total


def abstract_init(model, side: int):
    return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, side, side)))


def test_vgg_parameter_counts_and_shapes():
    model = get_model("vgg")
    variables, logits, emb = shapes(model, batch=3, side=40)
    assert count_params(variables["params"]) == vgg_count(40) == 29_890_759
    assert count_params(variables["batch_stats"]) == 2 * 2 * (64 + 128 + 256 + 512)
    assert logits == (3, 7) and emb == (3, 4096)
    # 44 pools down to the same 2x2 grid as 40; 48 to 3x3, a wider first dense layer.
    assert count_params(abstract_init(model, 44)["params"]) == vgg_count(44) == 29_890_759
    assert count_params(abstract_init(model, 48)["params"]) == vgg_count(48) == 40_376_519
    light = abstract_init(get_model("vgg", dense_units=(1024, 1024)), 40)["params"]
    assert count_params(light) == vgg_count(40, dense=(1024, 1024)) == 7_843_015


@pytest.mark.parametrize("name", ["cnn_lstm", "cnn_mha"])
def test_study_models_accept_crops_with_the_same_weights(name):
    model = get_model(name)
    full = abstract_init(model, 48)
    for side in (40, 44):
        cropped = abstract_init(model, side)
        assert jax.tree_util.tree_map(lambda a: a.shape, cropped) == jax.tree_util.tree_map(
            lambda a: a.shape, full)
        x = jnp.zeros((2, side, side))
        assert jax.eval_shape(model.apply, full, x).shape == (2, 7)


def test_lstm_forget_gate_bias_starts_at_one_as_keras():
    from ferclean.learning import init_model

    # test_tiny_model_really_runs' settings: its compiled init is reused.
    kwargs = {**TINY["cnn_lstm"], "conv_dropout": 0.0, "lstm_dropout": 0.0,
              "dense_dropout": 0.0}
    params = init_model("cnn_lstm", seed=1, **kwargs).params
    for name in ("lstm1", "lstm2"):
        np.testing.assert_array_equal(params[name]["hf"]["bias"], 1.0)
        for gate in ("hi", "hg", "ho"):
            np.testing.assert_array_equal(params[name][gate]["bias"], 0.0)
    # the bias is set after Flax's initialisation, so abstract init agrees on the shapes
    abstract = shapes(get_model("cnn_lstm", **kwargs))[0]["params"]
    assert abstract["lstm1"]["hf"]["bias"].shape == params["lstm1"]["hf"]["bias"].shape
