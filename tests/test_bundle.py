"""A trained model ready to predict: loading, class names and the eval resize (one owner:
:func:`alexnet_exp.augment.eval_resize`, used by training, the pipeline, evaluation)."""

import json

import numpy as np
import pytest
from helpers import empty_store, model_config

from alexnet_exp.augment import PAPER_RESIZE, eval_resize
from alexnet_exp.bundle import load_bundle, sidecar_path
from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import UserError
from alexnet_exp.model import LocalResponseNormalization, build_alexnet
from alexnet_exp.tool_config import EvalConfig


def test_eval_resize_is_the_trainings_crop_scale_else_the_papers():
    assert eval_resize(227) == 256  # the paper: 256 px for 227 px crops
    assert eval_resize(224) == round(224 * PAPER_RESIZE)
    assert eval_resize(64, 1.1278) == 72  # augment=paper at a 64 px input
    assert eval_resize(64, 1.0) == 64  # no crop augmentation: no larger resize


def test_the_sidecar_sits_beside_the_model_file(tmp_path):
    assert sidecar_path(tmp_path / "m.keras") == tmp_path / "m.keras.json"


@pytest.fixture
def keras_file(tmp_path, monkeypatch):
    model = build_alexnet(model_config("small", norm="lrn", input_size=64), 3)
    path = tmp_path / "m.keras"
    model.save(path)
    empty_store(tmp_path / "mlruns")  # the store a file's bundle opens (for its train run)
    return path, model


def _cfg(path, tmp_path):
    return EvalConfig(model_path=str(path),
                      tracking=TrackingConfig(store_dir=str(tmp_path / "mlruns")))


def test_a_keras_file_loads_with_its_names_and_the_papers_resize_when_none_is_recorded(
        tmp_path, keras_file):
    path, model = keras_file
    sidecar_path(path).write_text(json.dumps({"class_names": ["a", "b", "c"],
                                              "train_run_id": "not-in-this-store"}))
    bundle = load_bundle(_cfg(path, tmp_path), tmp_path)
    assert bundle.class_names == ["a", "b", "c"]
    assert (bundle.input_size, bundle.eval_resize) == (64, eval_resize(64))
    assert (bundle.source, bundle.train_run_id) == (str(path), None)
    assert any(isinstance(layer, LocalResponseNormalization) for layer in bundle.model.layers)
    x = np.random.default_rng(0).uniform(0, 255, size=(2, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(bundle.model.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_a_recorded_eval_resize_wins(tmp_path, keras_file):
    path, _ = keras_file
    sidecar_path(path).write_text(json.dumps({"class_names": ["a", "b", "c"],
                                              "eval_resize": 80}))
    assert load_bundle(_cfg(path, tmp_path), tmp_path).eval_resize == 80


def test_a_keras_file_without_its_sidecar_is_one_line(tmp_path, keras_file):
    path, _ = keras_file
    with pytest.raises(UserError, match="is missing beside"):
        load_bundle(_cfg(path, tmp_path), tmp_path)


def test_a_sidecar_without_class_names_is_one_line(tmp_path, keras_file):
    path, _ = keras_file
    sidecar_path(path).write_text(json.dumps({"input_size": 64}))
    with pytest.raises(UserError, match="records no class names"):
        load_bundle(_cfg(path, tmp_path), tmp_path)
