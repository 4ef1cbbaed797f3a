"""The Keras callbacks ``fit`` runs: the learning-rate schedule, when to stop, the average of
the weights in validation, validation of each image and its mirror, the best weights, and
the per-epoch report that checkpoints and hands the epoch's metrics on.

Apart from :mod:`alexnet_exp.training` (which decides which of them run, and in what order)
because each is a small state machine of its own; their counters that must survive a resume
are named in :data:`alexnet_exp.resume.COUNTERS` by class name, so a class keeps its name.
"""

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from alexnet_exp import stopping
from alexnet_exp.checkpoint import EpochCheckpoint
from alexnet_exp.config import OptimizerConfig, TrainerConfig
from alexnet_exp.graphs import traced

log = logging.getLogger(__name__)


class StepSchedule(keras.callbacks.Callback):
    """The learning rate of ``optimizer.schedule=cosine|one_cycle``, set before every step.

    A function of the global step alone, so a resumed run (``initial_epoch``) continues the
    same curve, and the epoch reporter, which runs after it, logs each epoch's starting rate.
    """

    def __init__(self, kind: str, peak: float, epochs: int, steps_per_epoch: int,
                 warmup_epochs: float = 0.0):
        super().__init__()
        self.kind, self.peak, self.steps = kind, peak, max(1, steps_per_epoch)
        self.total = max(1, epochs * self.steps)
        self.warmup = warmup_epochs * self.steps
        self.epoch = 0

    def rate(self, step: int) -> float:
        progress = min(1.0, step / self.total)
        if self.kind == "one_cycle":
            start, end, rise = self.peak / 25, self.peak / 1e4, 0.3
            if progress < rise:
                return start + (self.peak - start) * progress / rise
            return end + (self.peak - end) * 0.5 * (1 + math.cos(math.pi * (progress - rise)
                                                                 / (1 - rise)))
        if step < self.warmup:
            return self.peak * (step + 1) / self.warmup
        fraction = (step - self.warmup) / max(1.0, self.total - self.warmup)
        return self.peak * 0.5 * (1 + math.cos(math.pi * min(1.0, fraction)))

    def _set(self, step: int) -> None:
        self.model.optimizer.learning_rate = self.rate(step)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self._set(epoch * self.steps)

    def on_train_batch_begin(self, batch, logs=None):
        self._set(self.epoch * self.steps + batch)


def step_schedule(opt: OptimizerConfig, peak: float, epochs: int,
                  steps_per_epoch: int) -> StepSchedule | None:
    """The per-step schedule ``optimizer.schedule`` asks for; None for ``plateau``."""
    if opt.schedule == "plateau":
        return None
    return StepSchedule(opt.schedule, peak, epochs, steps_per_epoch, opt.warmup_epochs)


class TargetValAccuracy(keras.callbacks.Callback):
    """Stop once validation accuracy reaches the target (never training accuracy)."""

    def __init__(self, target: float):
        super().__init__()
        self.target = target

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get("val_accuracy", 0.0) >= self.target:
            log.info("\nalexnet-exp: val_accuracy reached"
                     f" trainer.target_val_accuracy={self.target}")
            self.model.stop_training = True


class AveragedWeights(keras.callbacks.SwapEMAWeights):
    """``optimizer.ema``: the optimizer's moving average of the weights is swapped into the
    model for each validation (Keras' callback) and, through :meth:`swapped_in`, for whatever
    else must see the average: the best-weights file.

    Keras' own ``swap_on_epoch=True`` would leave the average in the model at the end of every
    epoch, so the epoch checkpoint would hold the average as the weights and the weights as
    the average, and a resumed run would train on from the wrong ones.
    """

    @classmethod
    def of(cls, model: keras.Model) -> "AveragedWeights | None":
        return cls() if getattr(model.optimizer, "use_ema", False) else None

    @contextlib.contextmanager
    def swapped_in(self):
        self.on_test_begin()
        try:
            yield
        finally:
            self.on_test_end()


class FlipValidation(keras.callbacks.Callback):
    """``trainer.val_tta=flip``: each epoch's ``val_loss`` and ``val_accuracy`` from the mean of
    the softmax of every validation image and of its mirror image (the average of the weights
    swapped in when there is one). Keras validates one view only, so fit runs without its own
    validation and this, first among the callbacks, puts the metrics in the epoch's logs for
    every callback after it (stopping, the learning-rate rule, best weights, the report)."""

    def __init__(self, data, steps: int | None, average: AveragedWeights | None = None):
        super().__init__()
        self.data = data.take(steps) if steps else data
        self.average = average

    def on_train_begin(self, logs=None):
        model = self.model
        self.views = traced(lambda x: (model(x, training=False) + model(
            tf.reverse(x, axis=[2]), training=False)) / 2)

    def on_epoch_end(self, epoch, logs=None):
        loss = correct = count = 0.0
        with self.average.swapped_in() if self.average else contextlib.nullcontext():
            for images, labels in self.data:
                probs = self.views(images)
                size = float(tf.shape(labels)[0])
                loss += float(self.model.loss(labels, probs)) * size  # the compiled loss
                correct += float(tf.reduce_sum(tf.cast(
                    tf.argmax(probs, 1) == tf.argmax(labels, 1), tf.float32)))
                count += size
        if logs is not None and count:
            logs.update(val_loss=loss / count, val_accuracy=correct / count)


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the best val-accuracy epoch (the average's, with ``average``), written
    to a temporary name and then renamed, so a full disk or a kill never leaves a truncated file
    that looks complete."""

    def __init__(self, path: Path, average: AveragedWeights | None = None):
        super().__init__()
        self.path, self.best, self.average = path, -math.inf, average

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is None or not value > self.best:
            return
        self.best = float(value)
        partial = self.path.with_name(f".partial-{self.path.name}")
        try:
            with self.average.swapped_in() if self.average else contextlib.nullcontext():
                self.model.save_weights(partial)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, self.path)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop at the first batch whose loss is NaN or Inf, and remember where (epoch, step)."""

    def __init__(self):
        super().__init__()
        self.epoch, self.where = 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


class InterruptBetweenBatches(keras.callbacks.Callback):
    """Ctrl-C or SIGTERM during fit stops training at the next batch boundary, as a
    KeyboardInterrupt (:class:`alexnet_exp.stopping.Stopped`), after the last completed epoch
    was checkpointed. Why not let Python raise it wherever the signal lands, and what a second
    signal does: see :func:`alexnet_exp.stopping.between_batches`.
    """

    def armed(self):
        """Hold the stop signals for the duration of the block; restore the handlers after."""
        return stopping.between_batches()

    def _raise_if_requested(self, *_args, **_kwargs):
        stop = stopping.take_pending()
        if stop is not None:
            raise stop

    on_train_batch_end = on_test_batch_end = on_epoch_begin = _raise_if_requested


class EpochReporter(keras.callbacks.Callback):
    """Adds lr, epoch seconds and images/s to each epoch's logs, checkpoints, then logs them."""

    def __init__(self, train_size: int, on_epoch_end: Callable[[int, dict], None] | None,
                 history: list[dict] | None = None, show: bool = True):
        super().__init__()
        self.train_size, self.hook, self.show = train_size, on_epoch_end, show
        self.history: list[dict] = list(history or [])  # a resumed run's earlier epochs
        self.saver: EpochCheckpoint | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        metrics.update(lr=self.lr, epoch_seconds=seconds,
                       images_per_second=self.train_size / max(seconds, 1e-9))
        self.history.append(metrics)
        log.info(epoch_line(epoch + 1, (self.params or {}).get("epochs"), metrics),
                 extra={"console": self.show})
        if not all(math.isfinite(v) for v in metrics.values()):
            return  # training stops on a NaN; it is neither a checkpoint nor a metric
        if self.saver:
            self.saver.save(epoch + 1, self.history)  # first the checkpoint, then the log
        if self.hook:
            self.hook(epoch + 1, metrics)


def epoch_line(epoch: int, epochs: int | None, metrics: dict[str, float]) -> str:
    """One line per epoch, as Keras's ``verbose=2`` shows it (with images/s): what a log file
    keeps of an epoch, where the live bar's redrawing would be thousands of backspaces."""
    def shown(value: float) -> str:
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.4e}"

    parts = [f"Epoch {epoch}/{epochs or '?'}", f"{metrics['epoch_seconds']:.0f}s",
             f"{metrics['images_per_second']:.0f} images/s"]
    parts += [f"{key}: {shown(value)}" for key, value in metrics.items()
              if key not in ("epoch_seconds", "images_per_second")]
    return " - ".join(parts)


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard writer with epochs counted from 1, as MLflow's steps are (the
    :class:`EpochReporter` logs epoch ``n`` of "Epoch n/N" at step ``n``): the same epoch has
    the same step in both UIs, also for a resumed run (``initial_epoch``)."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def watchers(trainer: TrainerConfig, schedule) -> list[keras.callbacks.Callback]:
    """The callbacks that set the learning rate and decide when to stop, from the config."""
    watchers: list[keras.callbacks.Callback] = []
    if schedule is not None:
        watchers.append(schedule)
    elif trainer.reduce_lr_patience:
        watchers.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=trainer.reduce_lr_factor,
            # verbose=0: the epoch line shows the learning rate, so Keras's own line about
            # reducing it only broke the one-line-per-epoch console
            patience=trainer.reduce_lr_patience, verbose=0))
    if trainer.early_stopping_patience:
        watchers.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=trainer.early_stopping_patience, verbose=1))
    if trainer.target_val_accuracy is not None:
        watchers.append(TargetValAccuracy(trainer.target_val_accuracy))
    return watchers
