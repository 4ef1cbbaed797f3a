"""Tiny compiled models and data to fit them on, for the tests that need a real fit (TensorFlow
is imported here, so only those tests import this module)."""

import keras
import numpy as np

from alexnet_exp import training
from alexnet_exp.config import ModelConfig, OptimizerConfig, TrainerConfig
from alexnet_exp.model import build_alexnet


def tiny_model_and_data(trainer: TrainerConfig):
    """A compiled 2-class AlexNet at 67 px and two batches of 4 random images to fit it on."""
    cfg = ModelConfig(name="t", input_size=67, filters=[4, 4, 4, 4, 4], fc_units=[8, 8])
    model = build_alexnet(cfg, 2)
    training.compile_model(model, OptimizerConfig(), trainer)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (8, 67, 67, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, 8), 2)
    import tensorflow as tf

    return model, tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
