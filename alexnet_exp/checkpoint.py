"""Writing a checkpoint after every epoch and restoring one (Keras): the mechanics behind
:mod:`.resume`, which decides where a job starts without loading TensorFlow."""

import json
import os

import keras

from alexnet_exp.paths import atomic_write_text
from alexnet_exp.resume import COUNTERS, STATE, ResumePoint


def restore_model(point: ResumePoint) -> keras.Model:
    """The checkpointed model, compiled, with its optimizer state (safe_mode stays on)."""
    from alexnet_exp import model

    return model.load(point.directory / point.model_file)


def _plain(value):
    return float(value) if hasattr(value, "__float__") else value


class EpochCheckpoint(keras.callbacks.Callback):
    """Restores the watched callbacks' counters at the start and saves after every epoch.

    :meth:`save` is called by the epoch reporter once the epoch's metrics are complete and
    before they are logged, so a checkpoint never lags behind what the tracking store shows.
    """

    def __init__(self, point: ResumePoint, watched: list[keras.callbacks.Callback]):
        super().__init__()
        self.point, self.watched = point, watched

    def on_train_begin(self, logs=None):
        for callback in self.watched:
            for attr, value in self.point.counters.get(type(callback).__name__, {}).items():
                setattr(callback, attr, value)

    def save(self, epoch: int, history: list[dict]) -> None:
        directory = self.point.directory
        model_file = f"epoch-{epoch:04d}.keras"
        partial = directory / f".partial-{model_file}"  # a truncated file never looks complete
        try:
            self.model.save(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, directory / model_file)
        counters = {type(c).__name__: {a: _plain(getattr(c, a, None)) for a in attrs}
                    for c in self.watched if (attrs := COUNTERS.get(type(c).__name__))}
        state = {"epoch": epoch, "history": history, "counters": counters,
                 "model_file": model_file}
        atomic_write_text(directory / STATE, json.dumps(state))  # the commit point
        previous = self.point.model_file
        if previous and previous != model_file:
            (directory / previous).unlink(missing_ok=True)
        self.point.model_file, self.point.epoch = model_file, epoch
