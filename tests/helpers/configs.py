"""Configs as Hydra composes them, without running Hydra."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alexnet_exp.config import DataConfig, ExperimentConfig, ModelConfig

CONF = Path(__file__).resolve().parents[2] / "conf"

MY_STUDY = """\
# @package _global_
defaults:
  - override /data: digits
  - override /model: tiny

trainer:
  epochs: 1
tracking:
  experiment_name: my_study
"""
TINY = """\
defaults:
  - small
  - _self_

name: tiny
input_size: 64
filters: [8, 16, 16, 16, 8]
fc_units: [32, 32]
"""


def my_conf(folder: Path) -> Path:
    """A user's own config groups, as they keep them in their project (outside this repo)."""
    conf = folder / "my_conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "experiment" / "my_study.yaml").write_text(MY_STUDY)
    (conf / "model" / "tiny.yaml").write_text(TINY)
    return conf


def model_config(name: str, **overrides) -> ModelConfig:
    """A ModelConfig as Hydra composes it from conf/model/<name>.yaml plus overrides."""
    from omegaconf import OmegaConf

    from alexnet_exp.config import ModelConfig

    merged = OmegaConf.merge(
        OmegaConf.structured(ModelConfig), OmegaConf.load(f"conf/model/{name}.yaml"), overrides
    )
    return OmegaConf.to_object(merged)


def augment_config(name: str, **overrides):
    """An AugmentConfig as Hydra composes it from conf/augment/<name>.yaml plus overrides."""
    from omegaconf import OmegaConf

    from alexnet_exp.config import AugmentConfig

    merged = OmegaConf.merge(
        OmegaConf.structured(AugmentConfig), OmegaConf.load(f"conf/augment/{name}.yaml"), overrides
    )
    return OmegaConf.to_object(merged)


def compose_config(*overrides: str) -> ExperimentConfig:
    """The config the command line composes with these overrides (register_configs() first)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


def folder_cfg(root: Path, **overrides) -> DataConfig:
    from alexnet_exp.config import DataConfig

    return DataConfig(**{"name": "folder", "dir": str(root), "val_split": 0.25, **overrides})
