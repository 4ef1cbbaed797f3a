"""Runtime set-up, compile and fit: the only place that decides how a model is trained.

Results leave through a plain ``on_epoch_end(epoch, metrics)`` hook, so this module knows
nothing of MLflow; the runner wires the hook to the tracker. The callbacks themselves live in
:mod:`alexnet_exp.fit_callbacks`; which of them run, and in what order, is decided here.
"""

import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from alexnet_exp import augment
from alexnet_exp.checkpoint import EpochCheckpoint
from alexnet_exp.config import OptimizerConfig, TrainerConfig, resolve_threads, resolve_verbose
from alexnet_exp.errors import DataError
from alexnet_exp.fit_callbacks import (
    AveragedWeights,
    BestWeights,
    EpochReporter,
    EpochTensorBoard,
    FlipValidation,
    InterruptBetweenBatches,
    StepSchedule,
    StopOnNonFiniteLoss,
    watchers,
)
from alexnet_exp.graphs import mapped
from alexnet_exp.resume import COUNTERS, ResumePoint

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
    # Keras' own weight average: its variables are the optimizer's, so a checkpoint (model +
    # optimizer) carries the average and a resumed run continues it.
    ema = {"use_ema": True, "ema_momentum": cfg.ema} if cfg.ema > 0 else {}
    if cfg.name == "sgd":
        return keras.optimizers.SGD(
            cfg.learning_rate, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=decay,
            **ema)
    if cfg.name == "adamw":
        from alexnet_exp.model import AdamW

        return AdamW(cfg.learning_rate, weight_decay=cfg.weight_decay, **ema)
    return keras.optimizers.Adam(cfg.learning_rate, weight_decay=decay, **ema)


def compile_model(model: keras.Model, opt: OptimizerConfig, trainer: TrainerConfig) -> None:
    model.compile(
        optimizer=build_optimizer(opt),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=trainer.label_smoothing),
        metrics=["accuracy"],
    )


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
    image_sizes: list[int] | None = None,
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

    ``image_sizes``: each epoch's training image size (``trainer.progressive``), which needs
    ``steps`` to tell where in the repeated stream an epoch begins.
    """
    verbose = resolve_verbose(trainer.verbose, sys.stdout.isatty())
    # The epoch line is ours, logged (so the job's log file has it) and shown for verbose=2;
    # Keras draws only the live bar.
    reporter = EpochReporter(train_size, on_epoch_end, point.history if point else None,
                             show=verbose == 2)
    guard, interrupt = StopOnNonFiniteLoss(), InterruptBetweenBatches()
    callbacks, checkpoint = _callbacks(model, trainer, schedule, output_dir, point,
                                       [interrupt, guard], reporter)
    first_epoch = point.epoch if point else 0
    train_ds, val_ds = _epoch_streams(train_ds, val_ds, steps, image_sizes, first_epoch)
    train_steps, val_steps = steps if steps is not None else (None, None)
    if trainer.val_tta == "flip":  # validated by the callback, not by Keras
        average = next((c for c in callbacks if isinstance(c, AveragedWeights)), None)
        callbacks.insert(0, FlipValidation(val_ds, val_steps, average))
        val_ds = val_steps = None
    started = time.perf_counter()
    with interrupt.armed():
        model.fit(train_ds, validation_data=val_ds, epochs=trainer.epochs, callbacks=callbacks,
                  verbose=int(verbose == 1), shuffle=False,  # the pipeline shuffles, seeded
                  initial_epoch=first_epoch, steps_per_epoch=train_steps,
                  validation_steps=val_steps)
    seconds = time.perf_counter() - started
    if checkpoint is not None and checkpoint.exists():
        model.load_weights(str(checkpoint))  # the average's weights when optimizer.ema is on
    else:
        checkpoint = None
        if getattr(model.optimizer, "use_ema", False):  # the last epoch's average, then
            model.optimizer.finalize_variable_values(model.trainable_variables)
    return _result(reporter.history, seconds, trainer.epochs, checkpoint, guard.where)


def _epoch_streams(train_ds: tf.data.Dataset, val_ds: tf.data.Dataset,
                   steps: tuple[int, int] | None, image_sizes: list[int] | None,
                   first_epoch: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """The two streams as fit reads them: repeated when ``steps`` says how many batches make an
    epoch, and the training images resized epoch by epoch (progressive resizing)."""
    if steps is not None:
        train_ds, val_ds = train_ds.repeat(), val_ds.repeat()
    if image_sizes is not None:
        if steps is None:
            raise ValueError("image_sizes needs steps: the batches in one epoch")
        train_ds = augment.resized_by_epoch(train_ds, image_sizes, steps[0], first_epoch)
    return train_ds, val_ds


def _callbacks(model: keras.Model, trainer: TrainerConfig, schedule: StepSchedule | None,
               output_dir: Path, point: ResumePoint | None, guards: list,
               reporter: EpochReporter) -> tuple[list[keras.callbacks.Callback], Path | None]:
    """The callbacks of one fit in their order, and the best-weights file (if kept)."""
    callbacks: list[keras.callbacks.Callback] = [*guards, *watchers(trainer, schedule)]
    average = AveragedWeights.of(model)  # validation sees the average of the weights
    if average is not None:
        callbacks.insert(0, average)
    checkpoint = None
    if trainer.checkpoint:
        checkpoint = (point.directory if point else output_dir / "checkpoints") / "best.weights.h5"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        callbacks.append(BestWeights(checkpoint, average))
    if trainer.tensorboard:
        callbacks.append(EpochTensorBoard(log_dir=str(output_dir / "tensorboard"),
                                          profile_batch=0))
    callbacks.append(reporter)
    if point is not None:
        reporter.saver = EpochCheckpoint(point, [c for c in callbacks
                                                 if type(c).__name__ in COUNTERS])
        callbacks.append(reporter.saver)  # last: restores counters after the others reset
    return callbacks, checkpoint


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


def predict_labels(model: keras.Model, ds: tf.data.Dataset,
                   flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predicted class indices over a batched (image, key) dataset, and the keys predicted;
    with ``flip``, from the mean of the softmax of each image and of its mirror image.

    A file that stopped decoding during the run is missing from ``ds``: the keys say which
    images the predictions belong to.
    """
    keys = [k for k in mapped(ds, lambda x, k: k).as_numpy_iterator()]
    keys = np.concatenate(keys) if keys else np.zeros(0, np.int64)
    with warnings.catch_warnings():
        # A dataset that can drop files has no known length: running out of data is how its
        # end is found here, and Keras warns about it all the same.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        probs = model.predict(mapped(ds, lambda x, k: x), verbose=0)
        if flip:
            mirrored = model.predict(mapped(ds, lambda x, k: tf.reverse(x, axis=[2])), verbose=0)
            probs = (probs + mirrored) / 2
    if len(probs) != len(keys):
        raise DataError("validation images changed while their predictions were made"
                        f" ({len(keys)} then {len(probs)} decoded): run the same command again")
    return np.argmax(probs, axis=1), keys
