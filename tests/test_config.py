"""Composition and validation of the Hydra configs, with no TensorFlow involved."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet_exp.config import ExperimentConfig, feature_map_trace, register_configs, validate
from alexnet_exp.errors import ConfigError

CONF = Path(__file__).resolve().parent.parent / "conf"
register_configs()


def compose_config(*overrides: str) -> ExperimentConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_preset_composes_and_validates(experiment):
    cfg = compose_config(f"experiment={experiment}")
    validate(cfg)


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("data", "model", "norm", "dropout", "augment", "optimizer", "trainer",
                          "tracking") for o in group_options(g)],
)
def test_every_group_option_composes(override):
    cfg = compose_config(override, "data.dir=/tmp/x", "tracking.uri=http://127.0.0.1:1")
    validate(cfg)


def test_groups_land_in_the_model():
    cfg = compose_config("model=seed", "norm=bn", "dropout=off")
    assert (cfg.model.name, cfg.model.norm, cfg.model.dropout_rate) == ("seed", "bn", 0.0)
    cfg = compose_config("model.dropout_rate=0.3")
    assert cfg.model.dropout_rate == 0.3 and cfg.model.norm == "lrn"


def test_demo_preset_sets_what_make_train_promises():
    cfg = compose_config("experiment=demo")
    assert (cfg.data.name, cfg.model.name) == ("digits", "small")


def test_type_errors_are_refused_at_composition():
    with pytest.raises(Exception, match="batch_size"):
        compose_config("trainer.batch_size=many")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.dropout_rate=1.0"], r"model.dropout_rate=1.0 is outside \[0.0, 1.0\)"),
        (["model.dropout_rate=-0.1"], "model.dropout_rate"),
        (["model.kernels=[0,5,3,3,3]"], r"model.kernels\[0\] \(conv1\)=0 must be >= 1"),
        (["model.strides=[4,0,1,1,1]"], r"model.strides\[1\]"),
        (["trainer.batch_size=0"], "trainer.batch_size=0 must be >= 1"),
        (["data.val_split=0"], "data.val_split=0.0 is outside"),
        (["data.val_split=1"], "data.val_split=1.0 is outside"),
        (["model.input_size=64"], r"vanishes at pool5 \(2x2 input, 3x3 window\); use model.in"),
        (["model.kernels=[11,5,3]"], "model.kernels has 3 entries but model.filters has 5"),
        (["model.conv_groups=5"], "does not divide conv2"),
        (["data=folder"], "data=folder needs data.dir"),
        (["model.lrn.n=4"], "model.lrn.n=4 must be an odd number"),
        (["trainer.precision=fp8"], "trainer.precision='fp8' is not one of"),
        (["optimizer.learning_rate=0"], "optimizer.learning_rate=0.0 must be > 0"),
    ],
)
def test_out_of_range_values_name_key_and_value(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose_config(*overrides))


def test_vanishing_input_names_layer_and_minimum_size():
    with pytest.raises(ConfigError) as info:
        validate(compose_config("model.input_size=64"))
    text = str(info.value)
    needed = int(text.rsplit(">=", 1)[1])
    cfg = compose_config(f"model.input_size={needed}")
    validate(cfg)
    assert feature_map_trace(cfg.model)[-1][2] >= 1


def test_feature_map_trace_of_the_paper_network():
    trace = {name: out for name, _, out, _ in feature_map_trace(compose_config().model)}
    assert (trace["conv1"], trace["pool1"], trace["pool2"], trace["pool5"]) == (55, 27, 13, 6)
