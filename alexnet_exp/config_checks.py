"""The range checks of an experiment config, run before TensorFlow starts.

A type in :mod:`alexnet_exp.config` refuses a string where a number belongs; these catch what a
type cannot say (a dropout rate of 1.5, an input too small for the strides, an unknown choice)
and do so before the runner imports TensorFlow, so a bad override costs a second, not a model
build. Apart from the schema because the checks are a job of their own (and the tools' checks
in :mod:`alexnet_exp.tool_config` reuse the ``require_*`` helpers).
"""

import importlib.util
import math
import os
import posixpath

from alexnet_exp.config import (
    POOL_WINDOWS,
    AugmentConfig,
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    OptimizerConfig,
    ProgressiveConfig,
    TrackingConfig,
    TrainerConfig,
    parse_bytes,
    pool_window,
    user_tags,
)
from alexnet_exp.errors import ConfigError

DATA_NAMES = ("flowers", "folder", "digits", "records")
CACHE_MODES = ("auto", "memory", "disk", "none")
DATA_CHECKS = ("auto", "full", "header", "none")
NORMS = ("bn", "lrn", "none")
PADDINGS = ("valid", "same")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "swish")
INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal")
AUGMENTS = ("none", "flip", "paper", "seed")
OPTIMIZERS = ("sgd", "adam", "adamw")
HEADS = ("fc", "gap")
SCHEDULES = ("plateau", "cosine", "one_cycle")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
VERBOSITIES = ("auto", "0", "1", "2")
VAL_TTAS = ("none", "flip")
STRATEGIES = ("none", "mirrored", "multi_worker")
BATCH_MEANINGS = ("global", "per_replica")
LR_SCALINGS = ("none", "linear", "sqrt")
COMMUNICATIONS = ("auto", "ring", "nccl")
TRACKING_BACKENDS = ("local", "server", "none")
# Which earlier FINISHED run a sweep job may stand in for: one of this sweep (its parent's
# jobs), any of the experiment, or none (always train).
SWEEP_REUSE = ("sweep", "experiment", "never")
# What a sweep job returns to the sweeper (Optuna maximises or minimises it).
OBJECTIVES = ("best_val_accuracy", "final_val_accuracy", "best_val_loss")


def require_choice(key: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def require_in_range(key: str, value: float, low: float, high: float, *, high_open: bool) -> None:
    ok = low <= value < high if high_open else low < value < high
    if not ok:
        bounds = f"[{low}, {high})" if high_open else f"({low}, {high})"
        raise ConfigError(f"{key}={value} is outside {bounds}")


def require_at_least(key: str, value: float | None, low: float) -> None:
    if value is not None and value < low:
        raise ConfigError(f"{key}={value} must be >= {low}")


def require_batch_limit(key: str, value: int | float | None) -> None:
    """A ``trainer.limit_*_batches``: a whole number of batches >= 1, or a fraction in (0, 1]
    (1.0 is every batch, 1 is one batch, as in Lightning)."""
    if value is None or (type(value) is int and value >= 1) or (
            isinstance(value, float) and 0.0 < value <= 1.0):
        return
    raise ConfigError(f"{key}={value} must be a number of batches >= 1 (e.g. {key}=5) or a"
                      f" fraction of them in (0, 1] (e.g. {key}=0.1)")


def feature_map_trace(model: ModelConfig, input_size: int | None = None) -> list[tuple]:
    """Walk the conv/pool stack in pure Python: ``[(layer_name, size_in, size_out), ...]``.

    ``size_out`` is 0 where the feature map vanishes, so callers can name that layer.
    """
    size = model.input_size if input_size is None else input_size
    pool_size, pool_stride = pool_window(model)
    trace = []
    for i, (kernel, stride, pad) in enumerate(
        zip(model.kernels, model.strides, model.padding, strict=True), start=1
    ):
        out = math.ceil(size / stride) if pad == "same" else (size - kernel) // stride + 1
        trace.append((f"conv{i}", size, max(out, 0), kernel))
        size = max(out, 0)
        if size and model.pool_after[i - 1]:
            out = (size - pool_size) // pool_stride + 1
            trace.append((f"pool{i}", size, max(out, 0), pool_size))
            size = max(out, 0)
        if not size:
            break
    return trace


def _vanishing_layer(model: ModelConfig, input_size: int) -> tuple | None:
    return next((t for t in feature_map_trace(model, input_size) if t[2] < 1), None)


def validate_model(model: ModelConfig) -> None:
    n = len(model.filters)
    if n == 0:
        raise ConfigError("model.filters is empty: give at least one conv layer")
    for key in ("kernels", "strides", "padding", "pool_after", "norm_after", "grouped"):
        if len(getattr(model, key)) != n:
            raise ConfigError(
                f"model.{key} has {len(getattr(model, key))} entries but model.filters has {n}:"
                " give one per conv layer"
            )
    for key in ("filters", "kernels", "strides"):
        for i, v in enumerate(getattr(model, key)):
            require_at_least(f"model.{key}[{i}] (conv{i + 1})", v, 1)
    for i, pad in enumerate(model.padding):
        require_choice(f"model.padding[{i}]", pad, PADDINGS)
    require_choice("model.pool", model.pool, tuple(POOL_WINDOWS))
    require_at_least("model.pool_size", model.pool_size, 1)
    require_at_least("model.pool_stride", model.pool_stride, 1)
    require_at_least("model.input_size", model.input_size, 1)
    for i, units in enumerate(model.fc_units):
        require_at_least(f"model.fc_units[{i}]", units, 1)
    require_choice("model.activation", model.activation, ACTIVATIONS)
    require_choice("model.initializer", model.initializer, INITIALIZERS)
    require_choice("model.norm", model.norm, NORMS)
    require_choice("model.head", model.head, HEADS)
    require_in_range("model.dropout_rate", model.dropout_rate, 0.0, 1.0, high_open=True)
    require_in_range("model.bn_momentum", model.bn_momentum, 0.0, 1.0, high_open=True)
    require_at_least("model.conv_groups", model.conv_groups, 1)
    if model.lrn.n < 1 or model.lrn.n % 2 == 0:
        raise ConfigError(f"model.lrn.n={model.lrn.n} must be an odd number >= 1 (paper: 5)")
    if model.conv_groups > 1:
        in_channels = [3, *model.filters[:-1]]
        for i, grouped in enumerate(model.grouped):
            groups = model.conv_groups
            divides = model.filters[i] % groups == 0 and in_channels[i] % groups == 0
            if grouped and not divides:
                raise ConfigError(
                    f"model.conv_groups={model.conv_groups} does not divide conv{i + 1}'s"
                    f" {in_channels[i]} input / {model.filters[i]} output channels"
                )
    vanished = _vanishing_layer(model, model.input_size)
    if vanished:
        name, size_in, _, window = vanished
        needed = next(
            (s for s in range(model.input_size + 1, 4097) if not _vanishing_layer(model, s)), None
        )
        hint = f"use model.input_size>={needed}" if needed else "shrink kernels, strides or pools"
        raise ConfigError(
            f"model.input_size={model.input_size} is too small: the feature map vanishes at"
            f" {name} ({size_in}x{size_in} input, {window}x{window} window); {hint}"
        )


def validate(cfg: ExperimentConfig) -> None:
    """Raise :class:`ConfigError` on the first out-of-range value; imports nothing heavy."""
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed} is outside [0, 2**32)")
    validate_data(cfg.data)
    validate_model(cfg.model)
    validate_augment(cfg.augment)
    validate_optimizer(cfg.optimizer)
    validate_trainer(cfg.trainer)
    require_choice("tracking", cfg.tracking.backend, TRACKING_BACKENDS)
    require_choice("distribute", cfg.distribute.strategy, STRATEGIES)
    require_choice("distribute.batch_size", cfg.distribute.batch_size, BATCH_MEANINGS)
    require_choice("distribute.lr_scaling", cfg.distribute.lr_scaling, LR_SCALINGS)
    require_choice("distribute.communication", cfg.distribute.communication, COMMUNICATIONS)
    validate_progressive(cfg.trainer.progressive, cfg.model)
    if cfg.trainer.val_tta != "none" and cfg.distribute.strategy == "multi_worker":
        raise ConfigError(f"trainer.val_tta={cfg.trainer.val_tta} needs one machine: under"
                          " distribute=multi_worker each worker would score its own shard;"
                          " use trainer.val_tta=none there")
    try:
        user_tags(cfg.tags)
    except ValueError as exc:
        raise ConfigError(f"tags: {exc} (e.g. tags=[baseline,v2], +tags.owner=alice)") from exc
    require_choice("sweep.objective", cfg.sweep.objective, OBJECTIVES)
    require_choice("sweep.reuse", cfg.sweep.reuse, SWEEP_REUSE)
    require_at_least("sweep.seeds", cfg.sweep.seeds, 1)
    if cfg.tracking.backend == "server" and not (
        cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    ):
        raise ConfigError(
            "tracking=server needs tracking.uri=http://host:port (or set MLFLOW_TRACKING_URI)"
        )
    validate_tracking_extras(cfg.tracking)


def validate_data(data: DataConfig) -> None:
    require_choice("data", data.name, DATA_NAMES)
    require_in_range("data.val_split", data.val_split, 0.0, 1.0, high_open=False)
    require_choice("data.cache", data.cache, CACHE_MODES)
    if data.cache_max_memory is not None:
        try:
            limit = parse_bytes(data.cache_max_memory)
        except ValueError as exc:
            raise ConfigError(f"data.cache_max_memory: {exc}") from None
        if limit <= 0:
            raise ConfigError(f"data.cache_max_memory={data.cache_max_memory} must be more"
                              " than 0 (data.cache=disk or none not to cache in memory)")
    require_at_least("data.max_images_per_class", data.max_images_per_class, 2)
    require_at_least("data.check_workers", data.check_workers, 1)
    require_choice("data.check", data.check, DATA_CHECKS)
    require_at_least("data.threads", data.threads, 0)
    if data.name == "folder" and not data.dir:
        raise ConfigError(
            "data=folder needs data.dir: pass data.dir=/path/to/class_folders"
            " (or data=digits for the built-in demo set)"
        )
    if data.name == "records" and not data.dir:
        raise ConfigError("data=records needs data.dir: the folder alexnet-exp-pack wrote"
                          " (alexnet-exp-pack data.dir=<class folders> output=<pack folder>)")


def validate_augment(augment: AugmentConfig) -> None:
    require_choice("augment", augment.name, AUGMENTS)
    require_at_least("augment.crop_scale", augment.crop_scale, 1.0)
    require_at_least("augment.pca_std", augment.pca_std, 0.0)
    require_at_least("augment.rotation_degrees", augment.rotation_degrees, 0.0)
    require_in_range("augment.zoom", augment.zoom, 0.0, 1.0, high_open=True)
    for mix in ("mixup", "cutmix"):
        require_at_least(f"augment.{mix}.alpha", getattr(augment, mix).alpha, 0.0)
        prob = getattr(augment, mix).prob
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"augment.{mix}.prob={prob} is outside [0.0, 1.0]")
    if not 0.0 < augment.min_area <= 1.0:
        raise ConfigError(f"augment.min_area={augment.min_area} is outside (0.0, 1.0]")


def validate_optimizer(optimizer: OptimizerConfig) -> None:
    require_choice("optimizer", optimizer.name, OPTIMIZERS)
    if optimizer.learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate={optimizer.learning_rate} must be > 0")
    require_in_range("optimizer.momentum", optimizer.momentum, 0.0, 1.0, high_open=True)
    require_choice("optimizer.schedule", optimizer.schedule, SCHEDULES)
    require_at_least("optimizer.warmup_epochs", optimizer.warmup_epochs, 0.0)
    require_at_least("optimizer.weight_decay", optimizer.weight_decay, 0.0)
    require_in_range("optimizer.ema", optimizer.ema, 0.0, 1.0, high_open=True)


def validate_trainer(t: TrainerConfig) -> None:
    require_at_least("trainer.epochs", t.epochs, 1)
    require_at_least("trainer.batch_size", t.batch_size, 1)
    require_choice("trainer.precision", t.precision, PRECISIONS)
    require_choice("trainer.verbose", str(t.verbose), VERBOSITIES)
    require_at_least("trainer.early_stopping_patience", t.early_stopping_patience, 1)
    require_at_least("trainer.reduce_lr_patience", t.reduce_lr_patience, 1)
    require_in_range("trainer.reduce_lr_factor", t.reduce_lr_factor, 0.0, 1.0, high_open=False)
    if t.target_val_accuracy is not None:
        require_in_range(
            "trainer.target_val_accuracy", t.target_val_accuracy, 0.0, 1.0, high_open=True
        )
    require_in_range("trainer.label_smoothing", t.label_smoothing, 0.0, 1.0, high_open=True)
    if t.threads != "auto" and not (t.threads.isdigit() and int(t.threads) >= 1):
        raise ConfigError(f"trainer.threads={t.threads!r} must be auto or a whole number >= 1")
    require_at_least("trainer.inter_op_threads", t.inter_op_threads, 0)
    require_batch_limit("trainer.limit_train_batches", t.limit_train_batches)
    require_batch_limit("trainer.limit_val_batches", t.limit_val_batches)
    require_choice("trainer.val_tta", t.val_tta, VAL_TTAS)


def validate_progressive(progressive: ProgressiveConfig, model: ModelConfig) -> None:
    """Progressive resizing's sizes, checked against the network they are fed to."""
    start = progressive.start_size
    if start is None:
        return
    key = "trainer.progressive.start_size"
    if model.head != "gap":
        raise ConfigError(f"{key}={start} needs model.head=gap: the fc head's first layer is"
                          " as wide as the last feature map, so it takes one image size only")
    if not 1 <= start < model.input_size:
        raise ConfigError(f"{key}={start} must be below model.input_size={model.input_size}"
                          " (the size the last epochs and validation use)")
    if not 0.0 < progressive.full_at <= 1.0:
        raise ConfigError(f"trainer.progressive.full_at={progressive.full_at} is outside (0, 1]:"
                          " the share of trainer.epochs by which images reach full size")
    require_at_least("trainer.progressive.step", progressive.step, 1)
    vanished = _vanishing_layer(model, start)
    if vanished:
        name, size_in, _, window = vanished
        raise ConfigError(f"{key}={start} is too small for this network: the feature map"
                          f" vanishes at {name} ({size_in}x{size_in} input, {window}x{window}"
                          " window); start larger")


def validate_tracking_extras(tracking: TrackingConfig) -> None:
    """A Model Registry name MLflow would refuse after the training (or that no ``models:/``
    URI can name), and system metrics without their sampler's package, refused before it."""
    name = tracking.register_as
    if name is not None and (
        not name.strip() or name != name.strip() or any(c in name for c in "/:@'\"")
        or posixpath.normpath(name) != name or name.startswith("..")
    ):
        raise ConfigError(f"tracking.register_as={name!r} is not a Model Registry name: use"
                          " letters, digits, '-', '_' and '.' (no '/', ':', '@' or quotes: it is"
                          " used as models:/<name>@champion)")
    if tracking.system_metrics and importlib.util.find_spec("psutil") is None:
        raise ConfigError("tracking.system_metrics=true needs the psutil package:"
                          " pip install 'psutil>=5.9'")
