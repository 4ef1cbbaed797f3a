"""Runtime set-up, compile and fit: the only place that decides how a model is trained.

Results leave through a plain ``on_epoch_end(epoch, metrics)`` hook, so this module knows
nothing of MLflow; the runner wires the hook to the tracker.
"""

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from alexnet_exp import stopping
from alexnet_exp.config import OptimizerConfig, TrainerConfig, resolve_threads
from alexnet_exp.errors import DataError
from alexnet_exp.resume import COUNTERS, EpochCheckpoint, ResumePoint

POLICIES = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


def cpu_has_avx512_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        return "avx512_bf16" in Path(cpuinfo).read_text()
    except OSError:
        return False


def resolve_precision(requested: str, has_gpu: bool, cpu_bf16: bool) -> str:
    """Keras dtype policy for ``trainer.precision``; ``auto`` picks what is fast on the device.

    fp16 is fast on GPUs (tensor cores) but about 7x slower than fp32 on CPUs; bf16 pays off on
    CPUs with AVX512-BF16 instructions only.
    """
    if requested != "auto":
        return POLICIES[requested]
    if has_gpu:
        return POLICIES["fp16"]
    return POLICIES["bf16"] if cpu_bf16 else POLICIES["fp32"]


def configure_runtime(trainer: TrainerConfig, seed: int, parallel_jobs: int = 1) -> str:
    """Fresh Keras session, seeds, threads, GPU memory growth and precision; returns policy.

    ``parallel_jobs`` is how many jobs of a sweep share the machine (joblib launcher): each then
    gets its share of the cores, since N jobs of all-core thread pools thrash each other.
    """
    keras.backend.clear_session()  # the basic launcher runs sweep jobs in one process
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError):  # already set up by an earlier sweep job
            tf.config.experimental.set_memory_growth(gpu, True)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(
            resolve_threads(trainer.threads, parallel_jobs))
        if trainer.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(trainer.inter_op_threads)
    except RuntimeError:
        pass  # TF refuses once its thread pools exist: later sweep jobs keep the first setting
    keras.utils.set_random_seed(seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = resolve_precision(trainer.precision, bool(gpus), cpu_has_avx512_bf16())
    keras.mixed_precision.set_global_policy(policy)
    return policy


def build_optimizer(cfg: OptimizerConfig) -> keras.optimizers.Optimizer:
    decay = cfg.weight_decay or None
    if cfg.name == "sgd":
        return keras.optimizers.SGD(
            cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=decay
        )
    return keras.optimizers.Adam(cfg.learning_rate, weight_decay=decay)


def compile_model(model: keras.Model, opt: OptimizerConfig, trainer: TrainerConfig) -> None:
    model.compile(
        optimizer=build_optimizer(opt),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=trainer.label_smoothing),
        metrics=["accuracy"],
    )


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
            print(f"\nalexnet-exp: val_accuracy reached trainer.target_val_accuracy={self.target}")
            self.model.stop_training = True


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the best val-accuracy epoch, written to a temporary name and then
    renamed, so a full disk or a kill never leaves a truncated file that looks complete."""

    def __init__(self, path: Path):
        super().__init__()
        self.path, self.best = path, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get("val_accuracy")
        if value is None or not value > self.best:
            return
        self.best = float(value)
        partial = self.path.with_name(f".partial-{self.path.name}")
        try:
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
                 history: list[dict] | None = None):
        super().__init__()
        self.train_size, self.hook = train_size, on_epoch_end
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
        if not all(math.isfinite(v) for v in metrics.values()):
            return  # training stops on a NaN; it is neither a checkpoint nor a metric
        if self.saver:
            self.saver.save(epoch + 1, self.history)  # first the checkpoint, then the log
        if self.hook:
            self.hook(epoch + 1, metrics)


@dataclass
class FitResult:
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    stopped_early: bool
    checkpoint: Path | None = None
    non_finite_at: tuple[int, int] | None = None  # (epoch, step) where the loss became NaN/Inf
    notes: list[str] = field(default_factory=list)


def fit(
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    train_size: int,
    trainer: TrainerConfig,
    output_dir: Path,
    on_epoch_end: Callable[[int, dict], None] | None = None,
    point: ResumePoint | None = None,
    schedule: StepSchedule | None = None,
    steps: tuple[int, int] | None = None,
) -> FitResult:
    """Train; leave the model holding the weights of its best validation epoch.

    With a ``point`` every completed epoch is checkpointed into ``point.directory``, and a
    point taken from a killed run continues from its epoch (``model`` must be restored from it).

    ``steps`` is (train, val) batches per pass. The pipelines drop a file that stops decoding
    mid-run (``ignore_errors``), so their length is unknown to tf.data, and Keras would show
    ``1/Unknown`` and warn "Your input ran out of data" at the end of every first epoch.
    Both are repeated here and read ``steps`` batches per epoch instead: exactly one pass when
    no file is dropped (the last batch of each pass stays partial, as repeat() comes after
    batch()), and when one is, the epoch reads a batch of the next pass rather than ending
    short or failing, as ``assert_cardinality`` would.
    """
    reporter = EpochReporter(train_size, on_epoch_end, point.history if point else None)
    guard, interrupt = StopOnNonFiniteLoss(), InterruptBetweenBatches()
    callbacks: list[keras.callbacks.Callback] = [interrupt, guard, *_watchers(trainer, schedule)]
    checkpoint = None
    if trainer.checkpoint:
        checkpoint = (point.directory if point else output_dir / "checkpoints") / "best.weights.h5"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(BestWeights(checkpoint))
    if trainer.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(
            log_dir=str(output_dir / "tensorboard"), profile_batch=0))
    callbacks.append(reporter)
    if point is not None:
        reporter.saver = EpochCheckpoint(point, [c for c in callbacks
                                                 if type(c).__name__ in COUNTERS])
        callbacks.append(reporter.saver)  # last: restores counters after the others reset

    train_steps = val_steps = None
    if steps is not None:
        train_steps, val_steps = steps
        train_ds, val_ds = train_ds.repeat(), val_ds.repeat()
    started = time.perf_counter()
    with interrupt.armed():
        model.fit(train_ds, validation_data=val_ds, epochs=trainer.epochs, callbacks=callbacks,
                  verbose=trainer.verbose, shuffle=False,  # the pipeline shuffles, seeded
                  initial_epoch=point.epoch if point else 0, steps_per_epoch=train_steps,
                  validation_steps=val_steps)
    seconds = time.perf_counter() - started
    if checkpoint is not None and checkpoint.exists():
        model.load_weights(str(checkpoint))
    else:
        checkpoint = None
    return _result(reporter.history, seconds, trainer.epochs, checkpoint, guard.where)


def _watchers(trainer: TrainerConfig, schedule) -> list[keras.callbacks.Callback]:
    """The callbacks that set the learning rate and decide when to stop, from the config."""
    watchers: list[keras.callbacks.Callback] = []
    if schedule is not None:
        watchers.append(schedule)
    elif trainer.reduce_lr_patience:
        watchers.append(keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=trainer.reduce_lr_factor,
            patience=trainer.reduce_lr_patience, verbose=1))
    if trainer.early_stopping_patience:
        watchers.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=trainer.early_stopping_patience, verbose=1))
    if trainer.target_val_accuracy is not None:
        watchers.append(TargetValAccuracy(trainer.target_val_accuracy))
    return watchers


def _result(history: list[dict], seconds: float, epochs: int, checkpoint: Path | None,
            non_finite_at) -> FitResult:
    val_acc = [h.get("val_accuracy", float("nan")) for h in history]
    best = int(np.nanargmax(val_acc)) if history and not np.all(np.isnan(val_acc)) else -1
    return FitResult(
        history=history,
        best_epoch=best + 1,
        best_val_accuracy=float(val_acc[best]) if best >= 0 else float("nan"),
        seconds=seconds,
        stopped_early=len(history) < epochs,
        checkpoint=checkpoint,
        non_finite_at=non_finite_at,
    )


def predict_labels(model: keras.Model, ds: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class indices over a batched (image, key) dataset, and the keys predicted.

    A file that stopped decoding during the run is missing from ``ds``: the keys say which
    images the predictions belong to.
    """
    keys = [k for k in ds.map(lambda x, k: k).as_numpy_iterator()]
    keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    with warnings.catch_warnings():
        # A dataset that can drop files has no known length: running out of data is how its
        # end is found here, and Keras warns about it all the same.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        probs = model.predict(ds.map(lambda x, k: x), verbose=0)
    if len(probs) != len(keys):
        raise DataError("validation images changed while their predictions were made"
                        f" ({len(keys)} then {len(probs)} decoded): run the same command again")
    return np.argmax(probs, axis=1), keys
