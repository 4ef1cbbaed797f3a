"""The record stage's names: what a run's logged model is called."""

from alexnet_exp.config import ExperimentConfig
from alexnet_exp.record import model_name


def test_a_logged_model_is_named_by_its_variant_or_run_in_characters_mlflow_takes():
    cfg = ExperimentConfig()
    assert model_name(cfg, "norm=bn,dropout=off") == "norm-bn-dropout-off"
    assert model_name(cfg, "optimizer.learning_rate=0.01") == "optimizer-learning_rate-0-01"
    assert model_name(cfg, "defaults") == "alexnet-paper"
    cfg.variant = "no_dropout"
    assert model_name(cfg, "ablation=no_dropout,seed=1") == "no_dropout"
    # a sweep's jobs share their variant over seeds: named by what the sweep varies
    assert model_name(cfg, "ablation=no_dropout seed=1", in_sweep=True) == (
        "ablation-no_dropout-seed-1")
    for name in (model_name(ExperimentConfig(), run) for run in (
            "data.dir='/x/y:z'", "a%b\"c", "x" * 400)):
        assert name and len(name) <= 200
        assert not set(name) & set("/:.%\"' =,")


def test_a_logged_model_name_holds_no_credentials_of_a_tracking_uri():
    """The run name is redacted where it is logged; the model name is made from the same
    overrides and reached the store with the password in clear."""
    name = model_name(ExperimentConfig(), "tracking.uri=http://alice:s3cret@127.0.0.1:5999")
    assert "s3cret" not in name and "alice" not in name
