"""The typed schema of every experiment choice, and the checks that run before TensorFlow.

Every YAML file under ``conf/`` is merged onto ``ExperimentConfig`` (registered in Hydra's
ConfigStore as ``base_config``), so a typo in a key or a string where a number belongs is
refused by OmegaConf at composition time. The range checks in :func:`validate` catch what a
type cannot say (a dropout rate of 1.5, an input too small for the strides) and do so before
the runner imports TensorFlow, so a bad override costs a second, not a model build.
"""

import math
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from alexnet_exp.errors import ConfigError

FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)
# sha256 of flower_photos.tgz (228,813,984 bytes), as recorded by TensorFlow Datasets.
FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"

DATA_NAMES = ("flowers", "folder", "digits")
CACHE_MODES = ("memory", "disk", "none")
NORMS = ("bn", "lrn", "none")
PADDINGS = ("valid", "same")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "swish")
INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal")
AUGMENTS = ("none", "flip", "paper", "seed")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("plateau", "cosine", "one_cycle")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
STRATEGIES = ("none", "mirrored", "multi_worker")
BATCH_MEANINGS = ("global", "per_replica")
LR_SCALINGS = ("none", "linear", "sqrt")
COMMUNICATIONS = ("auto", "ring", "nccl")
TRACKING_BACKENDS = ("local", "server")
# What a sweep job returns to the sweeper (Optuna maximises or minimises it).
# Which earlier FINISHED run a sweep job may stand in for: one of this sweep (its parent's
# jobs), any of the experiment, or none (always train).
SWEEP_REUSE = ("sweep", "experiment", "never")
OBJECTIVES = ("best_val_accuracy", "final_val_accuracy", "best_val_loss")
# Paper section 3.4: overlapping z=3, s=2 against the traditional non-overlapping z=s=2.
POOL_WINDOWS = {"overlapping": (3, 2), "non_overlapping": (2, 2)}



@dataclass
class DataConfig:
    name: str = "folder"
    dir: str | None = None
    val_split: float = 0.2
    cache: str = "memory"
    cache_path: str | None = None
    url: str = FLOWERS_URL
    sha256: str | None = FLOWERS_SHA256
    max_images_per_class: int | None = None
    check_workers: int = 8
    threads: int = 0  # tf.data private thread pool size; 0 = share TensorFlow's intra-op pool
    ordered: bool = True  # false: the train pipeline hands over images as soon as they are ready


@dataclass
class LRNConfig:
    k: float = 2.0
    n: int = 5
    alpha: float = 1e-4
    beta: float = 0.75


@dataclass
class ModelConfig:
    name: str = "paper"
    input_size: int = 227
    filters: list[int] = field(default_factory=lambda: [96, 256, 384, 384, 256])
    kernels: list[int] = field(default_factory=lambda: [11, 5, 3, 3, 3])
    strides: list[int] = field(default_factory=lambda: [4, 1, 1, 1, 1])
    padding: list[str] = field(default_factory=lambda: ["valid", "same", "same", "same", "same"])
    pool_after: list[bool] = field(default_factory=lambda: [True, True, False, False, True])
    pool: str = "overlapping"
    pool_size: int | None = None  # set both to override the window that model.pool names
    pool_stride: int | None = None
    norm_after: list[bool] = field(default_factory=lambda: [True, True, False, False, False])
    conv_groups: int = 1
    grouped: list[bool] = field(default_factory=lambda: [False, True, False, True, True])
    fc_units: list[int] = field(default_factory=lambda: [4096, 4096])
    activation: str = "relu"
    initializer: str = "he_normal"
    norm: str = "lrn"
    lrn: LRNConfig = field(default_factory=LRNConfig)
    bn_momentum: float = 0.9
    dropout_rate: float = 0.5


@dataclass
class AugmentConfig:
    name: str = "none"
    flip: bool = False
    crop_scale: float = 1.0
    pca_std: float = 0.0
    pca_sample_images: int = 512
    rotation_degrees: float = 0.0
    zoom: float = 0.0
    # Random-resized crop (Szegedy et al. 2015): each training image is a random crop covering
    # min_area..1 of the stored image, aspect 3/4..4/3, resized to the input; 1.0 = off.
    min_area: float = 1.0


@dataclass
class OptimizerConfig:
    name: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    # plateau: divide by trainer.reduce_lr_factor when val_loss stalls (the paper); cosine:
    # warm up linearly for warmup_epochs, then cosine to 0; one_cycle: up from lr/25 over the
    # first 30% of steps, then cosine down (Smith & Topin 2017). Set per step, never per epoch.
    schedule: str = "plateau"
    warmup_epochs: float = 0.0


@dataclass
class TrainerConfig:
    epochs: int = 90
    batch_size: int = 128
    precision: str = "auto"
    deterministic: bool = False
    early_stopping_patience: int | None = 10
    reduce_lr_patience: int | None = 5
    reduce_lr_factor: float = 0.1
    target_val_accuracy: float | None = None
    label_smoothing: float = 0.0
    verbose: int = 1
    tensorboard: bool = True
    checkpoint: bool = True
    resume: bool = True  # rerunning a killed run's command continues it from its last epoch
    threads: str = "auto"  # intra-op threads: "auto" = cores / parallel sweep jobs, or a number
    inter_op_threads: int = 0


@dataclass
class TrackingConfig:
    backend: str = "local"
    uri: str | None = None
    store_dir: str = "mlruns"
    experiment_name: str = "alexnet-exp"
    run_name: str | None = None
    log_model: bool = True


@dataclass
class SweepConfig:
    """Rerunning a multirun skips jobs that already FINISHED on the same config and data.

    ``reuse`` says where such a run may come from: ``sweep`` (default) only this sweep's own
    jobs (the same command run again), ``experiment`` any run of the experiment (linked to
    the sweep's parent so it counts as one of its jobs), ``never`` trains every job again.
    """

    reuse: str = "sweep"
    objective: str = "best_val_accuracy"  # the job's return value, e.g. for hydra/sweeper=optuna
    seeds: int = 3  # repeats per variant where an experiment sweeps seed: range(0,${sweep.seeds})


@dataclass
class DistributeConfig:
    """How one job spreads over devices and machines (tf.distribute).

    ``trainer.batch_size`` is the global batch unless ``batch_size=per_replica``; then the
    global batch grows with the replicas and ``lr_scaling`` says how the learning rate follows
    (linear: Goyal et al. 2017; sqrt: Krizhevsky 2014, "One weird trick").
    """

    strategy: str = "none"
    batch_size: str = "global"
    lr_scaling: str = "none"
    devices: list[str] | None = None  # mirrored: e.g. [/gpu:0,/gpu:1]; null = every GPU
    communication: str = "auto"  # multi_worker all-reduce: auto, ring (gRPC) or nccl (GPUs)


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    distribute: DistributeConfig = field(default_factory=DistributeConfig)
    seed: int = 42
    variant: str | None = None  # a label that reports group runs by (experiment=six_ideas)
    dry_run: bool = False


# The tools that work on a trained model (their checks: alexnet_exp.tool_config).
@dataclass
class ModelSourceConfig:
    """Where a trained model comes from: exactly one of the three is set."""

    run_id: str | None = None
    model_uri: str | None = None
    model_path: str | None = None


@dataclass
class EvalConfig(ModelSourceConfig):
    """``alexnet-exp-eval``: a trained model and a class-folder test set."""

    data: DataConfig = field(default_factory=DataConfig)
    tta: str = "none"
    top_k: int = 3
    batch_size: int = 32
    output: str | None = None
    log: bool = True
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class PredictConfig(ModelSourceConfig):
    """``alexnet-exp-predict``: image files or folders in, top-k classes out."""

    images: Any = field(default_factory=list)  # a list, or one path (a file or a folder)
    top_k: int = 3
    tta: str = "none"
    batch_size: int = 32
    format: str = "table"
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class ExportConfig(ModelSourceConfig):
    """``alexnet-exp-export``: a trained model to .keras, SavedModel or TFLite, parity-checked."""

    format: str = "keras"
    quantize: str = "none"
    output_dir: str = "exports"
    data_dir: str | None = None
    parity_images: int = 32
    max_abs_diff: float | None = None
    min_top1_agreement: float = 0.95
    log: bool = True
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class ReportConfig:
    """``alexnet-exp-report``: the runs of an experiment (or of one sweep) compared in a table."""

    experiment_name: str | None = None
    parent_run_id: str | None = None  # only the children of this sweep parent run
    metric: str = "best_val_accuracy"  # the headline column and the bar chart's metric
    baseline: str = "baseline"  # the group that effects are measured against, when present
    output_dir: str | None = None  # default: reports/<experiment_name>[-<parent id[:8]>]
    log: bool = True  # log the table and plots to the sweep parent run (or a report run)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# One random token per launched process: ``${launch_id:}`` in hydra.run.dir / hydra.sweep.dir
# keeps two commands started in the same second (a script launching jobs with ``&``) out of each
# other's output and checkpoint folders, which ``${now:...}`` alone does not.
LAUNCH_ID = secrets.token_hex(3)


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; each primary YAML in ``conf/`` lists its own."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # use_cache: Hydra copies resolved values into each job's config, so joblib/submitit
    # workers (other processes, other tokens) keep the sweep folder their launcher made.
    OmegaConf.register_new_resolver("launch_id", lambda: LAUNCH_ID, use_cache=True,
                                    replace=True)

    store = ConfigStore.instance()
    store.store(name="base_config", node=ExperimentConfig)
    store.store(name="eval_schema", node=EvalConfig)
    store.store(name="predict_schema", node=PredictConfig)
    store.store(name="export_schema", node=ExportConfig)
    store.store(name="report_schema", node=ReportConfig)


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


def pool_window(model: ModelConfig) -> tuple[int, int]:
    """(size, stride) of the max-pools: explicit ``pool_size``/``pool_stride`` win over ``pool``."""
    size, stride = POOL_WINDOWS.get(model.pool, (3, 2))
    return model.pool_size or size, model.pool_stride or stride


def resolve_threads(threads: str, parallel_jobs: int, cores: int | None = None) -> int:
    """Intra-op threads for one job: a number as given, ``auto`` = cores / parallel jobs."""
    if threads == "auto":
        return max(1, (cores or os.cpu_count() or 1) // max(1, parallel_jobs))
    return int(threads)


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
    require_choice("data", cfg.data.name, DATA_NAMES)
    require_in_range("data.val_split", cfg.data.val_split, 0.0, 1.0, high_open=False)
    require_choice("data.cache", cfg.data.cache, CACHE_MODES)
    require_at_least("data.max_images_per_class", cfg.data.max_images_per_class, 2)
    require_at_least("data.check_workers", cfg.data.check_workers, 1)
    require_at_least("data.threads", cfg.data.threads, 0)
    if cfg.data.name == "folder" and not cfg.data.dir:
        raise ConfigError(
            "data=folder needs data.dir: pass data.dir=/path/to/class_folders"
            " (or data=digits for the built-in demo set)"
        )
    validate_model(cfg.model)
    require_choice("augment", cfg.augment.name, AUGMENTS)
    require_at_least("augment.crop_scale", cfg.augment.crop_scale, 1.0)
    require_at_least("augment.pca_std", cfg.augment.pca_std, 0.0)
    require_at_least("augment.rotation_degrees", cfg.augment.rotation_degrees, 0.0)
    require_in_range("augment.zoom", cfg.augment.zoom, 0.0, 1.0, high_open=True)
    if not 0.0 < cfg.augment.min_area <= 1.0:
        raise ConfigError(f"augment.min_area={cfg.augment.min_area} is outside (0.0, 1.0]")
    require_choice("optimizer", cfg.optimizer.name, OPTIMIZERS)
    if cfg.optimizer.learning_rate <= 0:
        raise ConfigError(f"optimizer.learning_rate={cfg.optimizer.learning_rate} must be > 0")
    require_in_range("optimizer.momentum", cfg.optimizer.momentum, 0.0, 1.0, high_open=True)
    require_choice("optimizer.schedule", cfg.optimizer.schedule, SCHEDULES)
    require_at_least("optimizer.warmup_epochs", cfg.optimizer.warmup_epochs, 0.0)
    require_at_least("optimizer.weight_decay", cfg.optimizer.weight_decay, 0.0)
    t = cfg.trainer
    require_at_least("trainer.epochs", t.epochs, 1)
    require_at_least("trainer.batch_size", t.batch_size, 1)
    require_choice("trainer.precision", t.precision, PRECISIONS)
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
    require_choice("tracking", cfg.tracking.backend, TRACKING_BACKENDS)
    require_choice("distribute", cfg.distribute.strategy, STRATEGIES)
    require_choice("distribute.batch_size", cfg.distribute.batch_size, BATCH_MEANINGS)
    require_choice("distribute.lr_scaling", cfg.distribute.lr_scaling, LR_SCALINGS)
    require_choice("distribute.communication", cfg.distribute.communication, COMMUNICATIONS)
    require_choice("sweep.objective", cfg.sweep.objective, OBJECTIVES)
    require_choice("sweep.reuse", cfg.sweep.reuse, SWEEP_REUSE)
    require_at_least("sweep.seeds", cfg.sweep.seeds, 1)
    if cfg.tracking.backend == "server" and not (
        cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI")
    ):
        raise ConfigError(
            "tracking=server needs tracking.uri=http://host:port (or set MLFLOW_TRACKING_URI)"
        )

