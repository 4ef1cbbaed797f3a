"""The typed schema of every experiment choice: one dataclass per config group, with defaults.

Every YAML file under ``conf/`` is merged onto ``ExperimentConfig`` (registered in Hydra's
ConfigStore as ``base_config`` by :mod:`alexnet_exp.config_store`), so a typo in a key or a
string where a number belongs is refused by OmegaConf at composition time. What a type cannot
say (a dropout rate of 1.5, an input too small for the strides) is checked by
:mod:`alexnet_exp.config_checks`; the tools' schemas live in :mod:`alexnet_exp.tool_config`.
This module imports nothing of ours, so every layer can take these plain dataclasses.

The defaults are the command line's: ``ExperimentConfig()`` in a notebook is what
``alexnet-exp`` with no overrides composes (flowers, the paper network and augmentation);
``tests/test_config.py`` composes ``conf/config.yaml`` and holds the two equal.
"""

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)
# sha256 of flower_photos.tgz (228,813,984 bytes), as recorded by TensorFlow Datasets.
FLOWERS_SHA256 = "4c54ace7911aaffe13a365c34f650e71dd5bf1be0a58b464e5a7183e3e595d9c"
# Paper section 3.4: overlapping z=3, s=2 against the traditional non-overlapping z=s=2.
SEED = 42  # of a run (model, split, draws) and of a pack's split: the command line's default
POOL_WINDOWS = {"overlapping": (3, 2), "non_overlapping": (2, 2)}


@dataclass
class DataConfig:
    name: str = "flowers"
    dir: str | None = None
    val_split: float = 0.2
    # auto: memory if the decoded images fit cache_max_memory, else disk, else none
    # (alexnet_exp.data_cache); memory, disk and none force one
    cache: str = "auto"
    cache_path: str | None = None
    cache_max_memory: str | None = None  # "8GB", "512MiB", bytes; None: a quarter of the RAM
    url: str = FLOWERS_URL
    sha256: str | None = FLOWERS_SHA256
    max_images_per_class: int | None = None
    check_workers: int = 8
    # auto: full below 50,000 images, header from there (alexnet_exp.scan.check_level); full
    # decodes every image once before training, header reads headers, none trusts the files
    check: str = "auto"
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
    # fc: flatten the last feature map into the FC layers (the paper); gap: average each
    # channel first (Lin et al. 2014), far fewer weights and less to overfit
    head: str = "fc"
    fc_units: list[int] = field(default_factory=lambda: [4096, 4096])
    activation: str = "relu"
    initializer: str = "he_normal"
    norm: str = "lrn"
    lrn: LRNConfig = field(default_factory=LRNConfig)
    bn_momentum: float = 0.9
    dropout_rate: float = 0.5


@dataclass
class MixConfig:
    """A batch-level mix (mixup, cutmix): ``alpha`` of the Beta distribution the mixing ratio
    is drawn from (0 = off), ``prob`` the share of batches that are mixed."""

    alpha: float = 0.0
    prob: float = 1.0


@dataclass
class AugmentConfig:
    name: str = "paper"  # conf/augment/paper.yaml says what each value is for
    flip: bool = True
    crop_scale: float = 1.1278
    pca_std: float = 0.1
    pca_sample_images: int = 512
    rotation_degrees: float = 0.0
    zoom: float = 0.0
    # Random-resized crop (Szegedy et al. 2015): each training image is a random crop covering
    # min_area..1 of the stored image, aspect 3/4..4/3, resized to the input; 1.0 = off.
    min_area: float = 1.0
    # Each image blended with another of its batch, labels in the same ratio (Zhang et al.
    # 2018), or a box of it pasted in, labels by area (Yun et al. 2019); both on: one of the
    # two per batch, at even odds.
    mixup: MixConfig = field(default_factory=MixConfig)
    cutmix: MixConfig = field(default_factory=MixConfig)


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
    # > 0: also keep an exponential moving average of the weights (Polyak averaging; this is
    # its momentum per step, e.g. 0.999): validation, the best-weights checkpoint and the
    # logged model use the average, training steps the raw weights. 0: off.
    ema: float = 0.0


@dataclass
class ProgressiveConfig:
    """Progressive resizing: the first epochs train on smaller images, which cost less, growing
    linearly to ``model.input_size`` by ``full_at`` of the epochs (and staying there). Sizes
    are multiples of ``step``. ``start_size`` null: off. Validation is always at full size.
    Needs ``model.head=gap``: the FC head's first layer is as wide as the last feature map."""

    start_size: int | None = None
    full_at: float = 0.75
    step: int = 16


def progressive_sizes(progressive: ProgressiveConfig, input_size: int, epochs: int) -> list[int]:
    """The training image size of each epoch (index 0 = epoch 1); all ``input_size`` when off."""
    start = progressive.start_size
    if start is None:
        return [input_size] * epochs
    # the first epoch at full size (from 0): the one that ends full_at of the run, and never
    # later than the last
    full = max(0, min(epochs - 1, math.ceil(progressive.full_at * epochs) - 1))
    sizes = []
    for epoch in range(epochs):
        if epoch >= full:
            sizes.append(input_size)
            continue
        size = start + (input_size - start) * epoch / full
        sizes.append(max(start, int(size) // progressive.step * progressive.step))
    return sizes


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
    # auto: Keras's live progress bar on a terminal, one line per epoch when stdout is a file
    # or a pipe (CI, SLURM, nohup); 0 silent, 1 the bar, 2 one line per epoch
    verbose: str = "auto"
    tensorboard: bool = True
    checkpoint: bool = True
    resume: bool = True  # rerunning a killed run's command continues it from its last epoch
    threads: str = "auto"  # intra-op threads: "auto" = cores / parallel sweep jobs, or a number
    inter_op_threads: int = 0
    # Part of each split per epoch (debug=fast/overfit/limit): a whole number is that many
    # batches, a float in (0, 1] that fraction of them, null all. Always the same images (the
    # first of the seeded split), so debug=overfit can learn them by heart; being config keys,
    # they are in the config hash, so a limited run is never resumed or reused as a full one.
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    # flip: validation scores the mean of the softmax of each image and of its mirror image,
    # the test-time augmentation alexnet-exp-eval's tta=flip uses (every val metric, the best
    # epoch and the validation report); none: the image alone
    val_tta: str = "none"
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)


@dataclass
class TrackingConfig:
    backend: str = "local"  # local | server | none (no MLflow run at all: a throwaway trial)
    uri: str | None = None
    store_dir: str = "mlruns"
    experiment_name: str = "alexnet-exp"
    run_name: str | None = None
    log_model: bool = True
    register_as: str | None = None  # Model Registry name; a sweep registers its best trial
    system_metrics: bool = False  # MLflow's system/* metrics (CPU, memory, ...) for the run


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
    seed: int = SEED
    variant: str | None = None  # a label that reports group runs by (experiment=six_ideas)
    dry_run: bool = False
    # Your own MLflow tags of the run (and of a sweep's parent): labels (tags=[baseline,v2],
    # each tagged "true") or keys and values (+tags.owner=alice). Any, not a typed list or
    # dict: Hydra could then take only one of the two forms. No part of the run's identity.
    tags: Any = None


# A tag key MLflow takes (alphanumerics, _ - . / space), and not one MLflow or this package owns.
USER_TAG_KEY = re.compile(r"[\w\-./ ]{1,250}")
RESERVED_TAG_PREFIXES = ("mlflow.", "alexnet_exp.")


def user_tags(tags: Any) -> dict[str, str]:
    """``tags`` as MLflow tags: a label is tagged ``"true"`` (searchable as
    ``tags.baseline = 'true'``), a key keeps its value as text. Raises ValueError naming the
    first key MLflow would refuse or that would shadow a tag of MLflow's or ours."""
    if tags is None:
        return {}
    if isinstance(tags, str):
        tags = [tags]
    pairs = tags.items() if isinstance(tags, dict) else ((label, "true") for label in tags)
    given = {}
    for key, value in pairs:
        key = str(key)
        if not USER_TAG_KEY.fullmatch(key) or key.startswith(RESERVED_TAG_PREFIXES):
            raise ValueError(f"tag {key!r}: give letters, digits, _ - . / or spaces, not"
                             f" starting with {' or '.join(RESERVED_TAG_PREFIXES)}")
        if isinstance(value, dict | list):
            raise ValueError(f"tag {key!r}: give a single value, not {value!r}")
        given[key] = "null" if value is None else str(value)
    return given


def pool_window(model: ModelConfig) -> tuple[int, int]:
    """(size, stride) of the max-pools: explicit ``pool_size``/``pool_stride`` win over ``pool``."""
    size, stride = POOL_WINDOWS.get(model.pool, (3, 2))
    return model.pool_size or size, model.pool_stride or stride


def resolve_verbose(verbose: str | int, terminal: bool) -> int:
    """Keras's ``verbose`` for ``trainer.verbose``: ``auto`` is the live bar (1) on a terminal,
    one line per epoch (2) otherwise, where the bar's redrawing fills a log file."""
    if str(verbose) == "auto":
        return 1 if terminal else 2
    return int(verbose)


def resolve_threads(threads: str, parallel_jobs: int, cores: int | None = None) -> int:
    """Intra-op threads for one job: a number as given, ``auto`` = cores / parallel jobs."""
    if threads == "auto":
        return max(1, (cores or os.cpu_count() or 1) // max(1, parallel_jobs))
    return int(threads)


def limited_count(limit: int | float | None, count: int, batch_size: int) -> int:
    """How many of a split's ``count`` images a ``trainer.limit_*_batches`` value keeps: whole
    batches (a fraction rounds down, as Lightning's does, but never to none)."""
    if limit is None:
        return count
    batches = limit if isinstance(limit, int) else max(
        1, int(limit * math.ceil(count / batch_size)))
    return min(count, batches * batch_size)


_BYTE_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
               "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_bytes(text: str | int) -> int:
    """Bytes in ``8GB``, ``1.5 GiB``, ``512mb`` or ``1000000``: KB/MB/GB/TB are powers of 1000
    and KiB/MiB/GiB/TiB powers of 1024, as ``df -H`` and ``free --si`` count. ValueError
    names what was not understood."""
    if isinstance(text, float) and text.is_integer():  # Hydra reads 1e9 as a float
        text = int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?)?b?\s*", str(text), re.IGNORECASE)
    number, unit = match.groups() if match else ("", "")
    value = float(number) * _BYTE_UNITS[(unit or "").lower()] if match else math.nan
    # a whole number of bytes: "1.5" (bytes) is a typo for 1.5GB more often than a size
    if not math.isfinite(value) or (not unit and not float(number).is_integer()):
        raise ValueError(f"{text!r} is not a size like 8GB, 512MB, 1.5GiB or a number of bytes")
    return int(value)
