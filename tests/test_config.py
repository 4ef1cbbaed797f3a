"""Composition and validation of the Hydra configs, with no TensorFlow involved."""

import os

import pytest
from helpers.configs import CONF, compose_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet_exp.config import (
    ExperimentConfig,
    ProgressiveConfig,
    limited_count,
    parse_bytes,
    pool_window,
    progressive_sizes,
    resolve_threads,
    resolve_verbose,
)
from alexnet_exp.config_checks import feature_map_trace, validate
from alexnet_exp.config_store import register_configs
from alexnet_exp.errors import ConfigError

register_configs()


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_preset_composes_and_validates(experiment):
    cfg = compose_config(f"experiment={experiment}")
    validate(cfg)


@pytest.mark.parametrize(
    "override",
    [f"{g}={o}" for g in ("data", "model", "norm", "dropout", "augment", "optimizer", "trainer",
                          "tracking", "distribute", "cluster", "debug") for o in group_options(g)],
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


def flat(cfg: ExperimentConfig) -> dict:
    tree = OmegaConf.to_container(OmegaConf.structured(cfg))
    out = {}
    for section in ("model", "augment", "optimizer", "trainer", "data"):
        out.update({f"{section}.{k}": v for k, v in tree[section].items()})
    return out


SIX_IDEAS = {  # ablation option -> the only settings it may change against the baseline
    "tanh": {"model.activation"},
    "bn": {"model.norm"},
    "no_norm": {"model.norm"},
    "non_overlapping_pool": {"model.pool"},
    "no_augment": {"augment.name", "augment.flip", "augment.crop_scale", "augment.pca_std"},
    "no_dropout": {"model.dropout_rate"},
    "grouped": {"model.conv_groups"},
}


@pytest.mark.parametrize("study", ["six_ideas", "six_ideas_long"])
def test_six_ideas_changes_one_idea_per_variant_against_the_paper_baseline(study):
    base = compose_config(f"experiment={study}", "ablation=baseline")
    assert (base.model.activation, base.model.norm, base.model.pool, base.augment.name,
            base.model.dropout_rate, base.model.conv_groups) == (
        "relu", "lrn", "overlapping", "paper", 0.5, 1)
    assert base.model.name == "small" and 64 <= base.model.input_size <= 128
    assert group_options("ablation") == sorted(["baseline", *SIX_IDEAS])
    baseline = flat(base)
    for option, allowed in SIX_IDEAS.items():
        variant = compose_config(f"experiment={study}", f"ablation={option}")
        validate(variant)
        changed = {k for k, v in flat(variant).items() if baseline[k] != v}
        assert changed and changed <= allowed, (option, changed)
        assert variant.variant == option


@pytest.mark.parametrize("study", ["six_ideas", "six_ideas_long"])
def test_six_ideas_sweeps_every_variant_times_the_seeds(study):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={study}", "sweep.seeds=5"],
                      return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params.ablation.split(",") == ["baseline", *SIX_IDEAS]
    assert params.seed == "range(0,5)"


@pytest.mark.parametrize("option", ["baseline", *SIX_IDEAS])
def test_the_long_study_is_the_short_one_at_flowers_fasts_length(option):
    """six_ideas_long changes how long and on what schedule each variant trains, nothing else,
    and trains as long as the flowers_fast recipe (the length the issue asks for)."""
    short = flat(compose_config("experiment=six_ideas", f"ablation={option}"))
    long = compose_config("experiment=six_ideas_long", f"ablation={option}")
    changed = {k for k, v in flat(long).items() if short[k] != v}
    assert changed == {"optimizer.schedule", "trainer.epochs", "trainer.reduce_lr_patience"}
    assert long.tracking.experiment_name == "six_ideas_long"  # its own report
    assert long.trainer.epochs == compose_config("experiment=flowers_fast").trainer.epochs


def test_pool_names_the_window_and_explicit_sizes_win():
    assert pool_window(compose_config().model) == (3, 2)
    assert pool_window(compose_config("model.pool=non_overlapping").model) == (2, 2)
    assert pool_window(compose_config("model=seed").model) == (2, 2)
    assert pool_window(compose_config("model.pool_size=4", "model.pool_stride=3").model) == (4, 3)
    trace = {n: out for n, _, out, _ in feature_map_trace(
        compose_config("model.pool=non_overlapping").model)}
    assert (trace["pool1"], trace["pool2"]) == (27, 13)  # paper 3.4: same output size


@pytest.mark.parametrize(("threads", "jobs", "cores", "expected"),
                         [("auto", 1, 2, 2), ("auto", 2, 2, 1), ("auto", 4, 2, 1),
                          ("auto", 2, 8, 4), ("3", 4, 2, 3)])
def test_threads_auto_shares_the_cores_between_parallel_jobs(threads, jobs, cores, expected):
    assert resolve_threads(threads, jobs, cores) == expected


def test_parallel_jobs_come_from_the_joblib_launcher():
    from hydra.types import RunMode

    from alexnet_exp.cli import parallel_jobs

    def hydra_cfg(mode, **launcher):
        return OmegaConf.create({"mode": mode, "launcher": launcher})

    assert parallel_jobs(hydra_cfg(RunMode.RUN)) == 1
    assert parallel_jobs(hydra_cfg(RunMode.MULTIRUN)) == 1  # the basic launcher: one at a time
    assert parallel_jobs(hydra_cfg(RunMode.MULTIRUN, n_jobs=3)) == 3
    assert parallel_jobs(hydra_cfg(RunMode.MULTIRUN, n_jobs=-1)) == os.cpu_count()


def test_batch_limits_keep_whole_batches_a_whole_number_or_a_fraction_of_them():
    assert limited_count(None, 100, 8) == 100
    assert limited_count(3, 100, 8) == 24  # 3 batches
    assert limited_count(50, 100, 8) == 100  # more batches than the split has: all of it
    assert limited_count(0.5, 100, 8) == 48  # half of 13 batches, rounded down: 6
    assert limited_count(0.01, 100, 8) == 8  # never no batch at all
    assert limited_count(1.0, 100, 8) == 100  # 1.0 is every batch, 1 is one batch
    assert limited_count(1, 100, 8) == 8


def test_sizes_read_as_disks_count_them():
    assert parse_bytes("8GB") == 8 * 10**9 and parse_bytes("8 gb") == 8 * 10**9
    assert parse_bytes("1.5GiB") == 3 * 2**29 and parse_bytes("512MiB") == 2**29
    assert parse_bytes("1MB") == parse_bytes("1000KB") == parse_bytes("1000000") == 10**6
    assert parse_bytes(4096) == 4096  # Hydra hands a bare number over as an int
    assert parse_bytes(1e9) == parse_bytes("1000000000.0") == 10**9  # Hydra's 1e9: a float
    for bad in ("8 gigs", "GB", "-1MB", "1e9", "", "1.5", "9" * 320):  # 1.5 bytes? 9...: inf
        with pytest.raises(ValueError, match="is not a size like 8GB"):
            parse_bytes(bad)


def test_batch_limits_keep_their_type_and_refuse_what_is_no_number():
    cfg = compose_config("trainer.limit_train_batches=3", "trainer.limit_val_batches=0.5")
    assert (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches) == (3, 0.5)
    assert type(cfg.trainer.limit_train_batches) is int
    validate(cfg)
    with pytest.raises(Exception, match="limit_train_batches"):
        compose_config("trainer.limit_train_batches=some")
    cfg = compose_config()
    cfg.trainer.limit_val_batches = True  # a notebook's dataclass: no OmegaConf type check
    with pytest.raises(ConfigError, match="limit_val_batches=True"):
        validate(cfg)


def test_debug_presets_are_what_lightning_hydra_template_users_know():
    fast = compose_config("debug=fast")
    assert (fast.trainer.epochs, fast.trainer.limit_train_batches,
            fast.trainer.limit_val_batches) == (1, 3, 2)
    assert not fast.trainer.checkpoint and not fast.trainer.tensorboard
    assert fast.tracking.backend == "none"
    overfit = compose_config("experiment=demo", "debug=overfit")  # wins over the experiment
    assert overfit.trainer.epochs >= 20 and overfit.trainer.limit_train_batches == 2
    assert (overfit.model.dropout_rate, overfit.augment.name) == (0.0, "none")
    assert overfit.trainer.early_stopping_patience is None
    assert overfit.trainer.reduce_lr_patience is None
    assert overfit.tracking.experiment_name == "debug"
    limit = compose_config("debug=limit")
    assert isinstance(limit.trainer.limit_train_batches, float)
    assert 0 < limit.trainer.limit_train_batches < 1 and limit.tracking.backend == "local"
    assert compose_config().trainer.limit_train_batches is None  # debug: null by default
    assert compose_config("debug=fast", "tracking=local").tracking.backend == "local"


def test_verbose_auto_is_the_bar_on_a_terminal_one_line_per_epoch_elsewhere():
    assert compose_config().trainer.verbose == "auto"
    assert resolve_verbose("auto", terminal=True) == 1
    assert resolve_verbose("auto", terminal=False) == 2
    for given in ("0", "1", "2"):  # an explicit choice wins either way
        assert resolve_verbose(given, terminal=True) == resolve_verbose(given, False) == int(given)
    assert resolve_verbose(0, terminal=True) == 0  # a notebook's TrainerConfig(verbose=0)
    cfg = compose_config("trainer.verbose=2")
    assert cfg.trainer.verbose == "2"
    validate(cfg)
    with pytest.raises(ConfigError, match="trainer.verbose='3' is not one of auto, 0, 1, 2"):
        validate(compose_config("trainer.verbose=3"))


def test_the_schema_defaults_are_the_command_lines():
    """``ExperimentConfig()`` (a notebook) is what ``alexnet-exp`` composes with no overrides:
    one set of defaults, not a dataclass set and a YAML set that disagree (they did: the
    dataclasses said data=folder and no augmentation, the command line flowers and paper)."""
    from dataclasses import asdict

    register_configs()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        composed = OmegaConf.to_container(compose("config"), resolve=False)
    composed.pop("hydra", None)
    assert composed == asdict(ExperimentConfig())


def test_progressive_sizes_grow_linearly_in_steps_to_the_full_size_by_full_at():
    ramp = ProgressiveConfig(start_size=64, full_at=0.75, step=16)
    # full size from epoch 6 of 8 (75%); before it 64 + 64 * (epoch - 1) / 5, rounded down to
    # a multiple of 16
    assert progressive_sizes(ramp, 128, 8) == [64, 64, 80, 96, 112, 128, 128, 128]
    assert progressive_sizes(ProgressiveConfig(), 128, 3) == [128, 128, 128]  # off
    # never below the start, the last epoch always at full size, which need not be a multiple
    assert progressive_sizes(ProgressiveConfig(start_size=100, step=32), 227, 2) == [100, 227]
    assert progressive_sizes(ramp, 128, 1) == [128]
