"""The network: parameter counts from the papers, LRN against NumPy, safe reloading."""

import dataclasses

import keras
import numpy as np
import pytest
from helpers import model_config

from alexnet_exp.model import LocalResponseNormalization, build_alexnet


@pytest.mark.parametrize(
    ("name", "overrides", "expected"),
    [
        ("paper", {"norm": "lrn", "dropout_rate": 0.5}, 58_301_829),
        ("paper", {"norm": "lrn", "dropout_rate": 0.5, "conv_groups": 2}, 56_888_709),
        pytest.param("seed", {"norm": "bn", "dropout_rate": 0.0}, 200_127_237,
                     marks=pytest.mark.slow),  # 200 M weights drawn: 5 s
    ],
)
def test_parameter_counts_match_the_papers(name, overrides, expected):
    assert build_alexnet(model_config(name, **overrides), 5).count_params() == expected


def test_grouped_convolutions_really_split_channels():
    model = build_alexnet(model_config("paper", conv_groups=2), 5)
    assert model.get_layer("conv2").kernel.shape == (5, 5, 48, 256)
    assert model.get_layer("conv3").kernel.shape == (3, 3, 256, 384)
    assert model.get_layer("conv5").kernel.shape == (3, 3, 192, 256)


def test_switches_change_the_layers():
    base = model_config("small")
    layers = lambda m: [type(layer).__name__ for layer in m.layers]  # noqa: E731
    lrn = layers(build_alexnet(dataclasses.replace(base, norm="lrn"), 3))
    bn = layers(build_alexnet(dataclasses.replace(base, norm="bn"), 3))
    none = layers(build_alexnet(dataclasses.replace(base, norm="none", dropout_rate=0.0), 3))
    assert lrn.count("LocalResponseNormalization") == 2 and "BatchNormalization" not in lrn
    assert bn.count("BatchNormalization") == 2
    assert "Dropout" not in none and lrn.count("Dropout") == len(base.fc_units)
    tanh = build_alexnet(dataclasses.replace(base, activation="tanh"), 3)
    assert tanh.get_layer("conv1").activation.__name__ == "tanh"


def test_pool_switch_sets_the_max_pool_window():
    overlapping = build_alexnet(model_config("paper"), 5).get_layer("pool1")
    plain = build_alexnet(model_config("paper", pool="non_overlapping"), 5).get_layer("pool1")
    assert (overlapping.pool_size, overlapping.strides) == ((3, 3), (2, 2))
    assert (plain.pool_size, plain.strides) == ((2, 2), (2, 2))
    assert plain.output.shape == overlapping.output.shape  # paper 3.4: same output size


def test_overrides_reach_the_layers():
    cfg = model_config("small", input_size=96, kernels=[7, 5, 3, 3, 3], strides=[2, 1, 1, 1, 1],
                       fc_units=[64], filters=[8, 16, 16, 16, 8])
    model = build_alexnet(cfg, 4)
    assert model.input_shape == (None, 96, 96, 3)
    assert model.get_layer("conv1").kernel.shape == (7, 7, 3, 8)
    assert model.get_layer("conv1").strides == (2, 2)
    assert [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)] == [
        64, 4]


def lrn_reference(a: np.ndarray, k: float, n: int, alpha: float, beta: float) -> np.ndarray:
    """Krizhevsky et al. 2012, section 3.3, channel by channel."""
    channels = a.shape[-1]
    out = np.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - n // 2), min(channels - 1, i + n // 2)
        total = np.sum(a[..., lo : hi + 1] ** 2, axis=-1)
        out[..., i] = a[..., i] / (k + alpha * total) ** beta
    return out


@pytest.mark.parametrize(("k", "n", "alpha", "beta"), [(2.0, 5, 1e-4, 0.75), (1.0, 3, 0.1, 0.5)])
def test_lrn_matches_numpy_reference(k, n, alpha, beta):
    x = np.random.default_rng(0).normal(0, 20, size=(2, 4, 4, 11)).astype(np.float32)
    got = keras.ops.convert_to_numpy(LocalResponseNormalization(k, n, alpha, beta)(x))
    np.testing.assert_allclose(got, lrn_reference(x.astype(np.float64), k, n, alpha, beta),
                               rtol=1e-5, atol=1e-5)


def test_lrn_model_reloads_with_safe_mode(tmp_path):
    model = build_alexnet(model_config("small", norm="lrn", input_size=64), 3)
    x = np.random.default_rng(1).uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert any(isinstance(layer, LocalResponseNormalization) for layer in reloaded.layers)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_output_is_float32_probabilities_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_alexnet(model_config("small", input_size=64), 3)
        probs = keras.ops.convert_to_numpy(model(np.zeros((2, 64, 64, 3), np.float32)))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_float32_copy_of_a_mixed_precision_model_predicts_alike():
    from alexnet_exp.model import as_float32

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        mixed = build_alexnet(model_config("small", input_size=64, norm="lrn"), 3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    single = as_float32(mixed)
    assert {layer.dtype_policy.name for layer in single.layers} == {"float32"}
    x = np.random.default_rng(2).uniform(0, 255, size=(4, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(single.predict(x, verbose=0), mixed.predict(x, verbose=0),
                               atol=2e-2)
    assert as_float32(single) is single


def test_load_brings_its_own_layers(tmp_path, monkeypatch):
    """``model.load`` needs no import-for-side-effect: with LRN gone from Keras' global
    registry, Keras' own loader fails and ours still loads the model."""
    from alexnet_exp import model as alexnet

    model = build_alexnet(model_config("small", norm="lrn", input_size=64), 3)
    path = tmp_path / "m.keras"
    model.save(path)
    registry = keras.saving.get_custom_objects()
    for name in alexnet.custom_objects():
        monkeypatch.delitem(registry, name)
    with pytest.raises(TypeError):
        keras.saving.load_model(path, safe_mode=True)
    reloaded = alexnet.load(path)
    assert any(isinstance(layer, LocalResponseNormalization) for layer in reloaded.layers)


def test_gap_head_averages_each_channel_instead_of_flattening_the_map():
    fc = build_alexnet(model_config("small", input_size=128), 5)  # a 3x3 map at the end
    gap = build_alexnet(model_config("small", input_size=128, head="gap"), 5)
    names = [layer.name for layer in gap.layers]
    assert "gap" in names and "flatten" not in names
    last_conv = gap.get_layer(f"conv{len(model_config('small').filters)}").output.shape[-1]
    assert gap.get_layer("gap").output.shape == (None, last_conv)
    assert gap.count_params() < fc.count_params()
    assert fc.get_layer("flatten").output.shape[-1] > last_conv
    probs = gap.predict(np.zeros((2, 128, 128, 3), np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
