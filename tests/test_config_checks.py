"""config_checks: a config that cannot train is refused before anything runs, with a message
that names the key and the value."""

import re

import pytest
from helpers.configs import compose_config

from alexnet_exp.config import ExperimentConfig, user_tags
from alexnet_exp.config_checks import feature_map_trace, validate
from alexnet_exp.config_store import register_configs
from alexnet_exp.errors import ConfigError

register_configs()


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
        (["model.pool=average"], "model.pool='average' is not one of overlapping, non_overlap"),
        (["trainer.threads=0"], "trainer.threads='0' must be auto or a whole number >= 1"),
        (["sweep.objective=accuracy"], "sweep.objective='accuracy' is not one of best_val_acc"),
        (["augment.min_area=0"], r"augment.min_area=0.0 is outside \(0.0, 1.0\]"),
        (["augment.min_area=1.5"], r"augment.min_area=1.5 is outside \(0.0, 1.0\]"),
        (["trainer.limit_train_batches=0"], "trainer.limit_train_batches=0 must be a number of"),
        (["trainer.limit_val_batches=1.5"], r"limit_val_batches=1.5 .* fraction of them in \(0,"),
        (["trainer.limit_val_batches=0.0"], "trainer.limit_val_batches=0.0 must be"),
        (["trainer.limit_train_batches=-2"], "trainer.limit_train_batches=-2 must be"),
        (["data.cache=ram"], "data.cache='ram' is not one of auto, memory, disk, none"),
        (["data.cache_max_memory=8 gigs"], "data.cache_max_memory: '8 gigs' is not a size like"
                                           " 8GB, 512MB, 1.5GiB or a number of bytes"),
        (["data.cache_max_memory=0MB"], "data.cache_max_memory=0MB must be more than 0"),
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


@pytest.mark.parametrize("name", ["team/alexnet", "alexnet:v1", "alexnet@champion", " alexnet",
                                  "..", "a/../b", "''"])
def test_a_model_registry_name_mlflow_would_refuse_is_refused_before_training(name):
    with pytest.raises(ConfigError, match="is not a Model Registry name") as info:
        validate(compose_config(f"tracking.register_as={name!r}" if " " in name
                                else f"tracking.register_as={name}"))
    assert "\n" not in str(info.value)


def test_registry_names_that_work_and_system_metrics_without_psutil(monkeypatch):
    for name in ("alexnet", "six_ideas.champion-2", "AlexNet flowers"):
        validate(compose_config(f"tracking.register_as='{name}'"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: None if n == "psutil" else real(n, *a))
    with pytest.raises(ConfigError, match="tracking.system_metrics=true needs the psutil"):
        validate(compose_config("tracking.system_metrics=true"))
    validate(compose_config("tracking.system_metrics=false"))


def test_the_gap_head_and_adamw_compose_and_a_head_that_is_not_one_is_refused():
    cfg = compose_config("optimizer=adamw", "model.head=gap")
    validate(cfg)
    assert (cfg.optimizer.name, cfg.optimizer.weight_decay, cfg.model.head) == ("adamw", 0.05,
                                                                                "gap")
    with pytest.raises(ConfigError, match="model.head='avg' is not one of fc, gap"):
        validate(compose_config("model.head=avg"))


def test_mixup_and_cutmix_compose_from_the_command_line_and_bad_values_are_refused():
    cfg = compose_config("augment.mixup.alpha=0.2", "augment.cutmix.alpha=1.0",
                         "augment.cutmix.prob=0.5")
    validate(cfg)
    assert (cfg.augment.mixup.alpha, cfg.augment.mixup.prob, cfg.augment.cutmix.prob) == (
        0.2, 1.0, 0.5)
    with pytest.raises(ConfigError, match=r"augment.cutmix.prob=1.5 is outside \[0.0, 1.0\]"):
        validate(compose_config("augment.cutmix.prob=1.5"))
    with pytest.raises(ConfigError, match="augment.mixup.alpha=-1.0 must be >= 0.0"):
        validate(compose_config("augment.mixup.alpha=-1"))


def test_optimizer_ema_composes_and_a_momentum_of_one_is_refused():
    cfg = compose_config("optimizer=adamw", "optimizer.ema=0.999")
    validate(cfg)
    assert cfg.optimizer.ema == 0.999
    with pytest.raises(ConfigError, match=r"optimizer.ema=1.0 is outside \[0.0, 1.0\)"):
        validate(compose_config("optimizer.ema=1.0"))


def test_val_tta_is_none_or_flip_and_needs_one_machine():
    validate(compose_config("trainer.val_tta=flip"))
    with pytest.raises(ConfigError, match="trainer.val_tta='ten_crop' is not one of none, flip"):
        validate(compose_config("trainer.val_tta=ten_crop"))
    with pytest.raises(ConfigError, match="trainer.val_tta=flip needs one machine"):
        validate(compose_config("trainer.val_tta=flip", "distribute=multi_worker"))


def test_progressive_resizing_composes_and_sizes_the_network_cannot_take_are_refused():
    cfg = compose_config("model=small", "model.head=gap", "trainer.progressive.start_size=64")
    validate(cfg)
    assert (cfg.trainer.progressive.start_size, cfg.trainer.progressive.full_at) == (64, 0.75)
    with pytest.raises(ConfigError, match="start_size=64 needs model.head=gap"):
        validate(compose_config("model=small", "trainer.progressive.start_size=64"))
    with pytest.raises(ConfigError, match="start_size=128 must be below model.input_size=128"):
        validate(compose_config("model=small", "model.head=gap",
                                "trainer.progressive.start_size=128"))
    with pytest.raises(ConfigError, match="start_size=8 is too small for this network: the"
                                          " feature map vanishes at"):
        validate(compose_config("model=paper", "model.head=gap",
                                "trainer.progressive.start_size=8"))
    with pytest.raises(ConfigError, match=r"full_at=0.0 is outside \(0, 1\]"):
        validate(compose_config("model=small", "model.head=gap",
                                "trainer.progressive.start_size=64",
                                "trainer.progressive.full_at=0"))


@pytest.mark.parametrize(("tags", "message"), [
    (["ok", "mlflow.user"], "tag 'mlflow.user': give letters, digits"),
    ({"alexnet_exp.best_trial": "true"}, "tag 'alexnet_exp.best_trial'"),
    ({"owner": {"name": "alice"}}, "tag 'owner': give a single value"),
    (["a,b"], "tag 'a,b': give letters"),
])
def test_tags_that_mlflow_would_refuse_or_that_shadow_a_tag_of_ours_are_refused(tags, message):
    with pytest.raises(ConfigError, match=f"tags: {re.escape(message)}"):
        validate(ExperimentConfig(tags=tags))


def test_tags_are_labels_or_keys_with_values():
    assert user_tags(["baseline", "v2"]) == {"baseline": "true", "v2": "true"}
    assert user_tags({"owner": "alice", "lr": 0.1, "note": None}) == {
        "owner": "alice", "lr": "0.1", "note": "null"}
    assert user_tags("baseline") == {"baseline": "true"}
    assert user_tags(None) == {}
