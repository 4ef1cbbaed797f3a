"""Configs as Hydra composes them, without running Hydra."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alexnet_exp.config import ModelConfig


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
