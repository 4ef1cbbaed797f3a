"""The tools that work on a trained model (evaluate, predict, export, report) and on a data set
(pack): their schemas and the checks run before any model or TensorFlow is loaded.

They build on the experiment's schema (a tool reads a data folder and a tracking store as
training does) and its ``require_*`` checks, never the other way round; Hydra's ConfigStore
gets both from :mod:`alexnet_exp.config_store`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alexnet_exp.config import SEED, DataConfig, TrackingConfig, parse_bytes
from alexnet_exp.config_checks import require_at_least, require_choice, require_in_range
from alexnet_exp.errors import ConfigError
from alexnet_exp.folders import PACK_MANIFEST, class_folders

TTA_MODES = ("none", "flip", "ten_crop")
EXPORT_FORMATS = ("keras", "savedmodel", "tflite")
QUANTIZATIONS = ("none", "dynamic", "float16")
OUTPUT_FORMATS = ("table", "json")


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

    experiment_name: str | None = None  # default: the experiment of parent_run_id
    parent_run_id: str | None = None  # only the children of this sweep parent run
    metric: str = "best_val_accuracy"  # the headline column and the bar chart's metric
    baseline: str = "baseline"  # the group that effects are measured against, when present
    output_dir: str | None = None  # default: reports/<experiment_name>[-<parent id[:8]>]
    log: bool = True  # log the table and plots to the sweep parent run (or a report run)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class PackConfig:
    """``alexnet-exp-pack``: a class-folder data set written as sharded TFRecord files."""

    data: DataConfig = field(default_factory=DataConfig)  # the class folders, split, check
    output: str | None = None  # the pack's folder: new, empty, or an earlier pack (overwrite)
    seed: int = SEED  # of the split (and of the shuffle across shards), as training's default
    shard_size: str = "128MB"  # bytes of images per shard, about
    overwrite: bool = False  # replace an earlier pack at output


def validate_pack(cfg: PackConfig) -> None:
    if not cfg.output:
        raise ConfigError("output is required: alexnet-exp-pack data.dir=<class folders>"
                          " output=<new folder>")
    if cfg.data.name == "records":
        raise ConfigError("data=records is a pack already: alexnet-exp-pack reads class folders"
                          " (data=folder data.dir=..., data=flowers or data=digits)")
    if cfg.data.name == "folder" and not cfg.data.dir:
        raise ConfigError("data.dir is required: the class folders to pack")
    require_in_range("data.val_split", cfg.data.val_split, 0.0, 1.0, high_open=True)
    require_at_least("data.max_images_per_class", cfg.data.max_images_per_class, 2)
    require_at_least("data.check_workers", cfg.data.check_workers, 1)
    if not 0 <= cfg.seed < 2**32:
        raise ConfigError(f"seed={cfg.seed} is outside [0, 2**32)")
    try:
        if parse_bytes(cfg.shard_size) <= 0:
            raise ValueError(f"{cfg.shard_size!r} is not more than 0 bytes")
    except ValueError as exc:
        raise ConfigError(f"shard_size: {exc}") from None


def validate_report(cfg: ReportConfig) -> None:
    if not cfg.experiment_name and not cfg.parent_run_id:
        raise ConfigError("experiment_name or parent_run_id is required: alexnet-exp-report"
                          " experiment_name=<name> (or parent_run_id=<sweep parent run>)")


def validate_model_source(cfg) -> None:
    given = [k for k in ("run_id", "model_uri", "model_path") if getattr(cfg, k)]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one of run_id=<MLflow run>, model_uri=<MLflow model URI> or"
            f" model_path=<file.keras> (got {', '.join(given) or 'none'})"
        )


def require_model_file(cfg) -> None:
    """A ``model_path`` that is not a file, refused before any model code loads."""
    if cfg.model_path and not Path(cfg.model_path).expanduser().is_file():
        raise ConfigError(f"model_path={cfg.model_path} does not exist")


def require_test_folder(cfg: "EvalConfig") -> None:
    """An evaluation's ``data.dir`` that is not a folder of class folders (or a pack, which
    :mod:`alexnet_exp.packed` checks when it reads it), refused from the listing, before the
    model is loaded."""
    root = Path(cfg.data.dir).expanduser().resolve()
    if not (root / PACK_MANIFEST).is_file():
        class_folders(root, min_classes=1)


def validate_eval(cfg: EvalConfig) -> None:
    validate_model_source(cfg)
    if not cfg.data.dir:
        raise ConfigError("data.dir is required: the class-folder test set to evaluate on")
    require_choice("tta", cfg.tta, TTA_MODES)
    require_at_least("top_k", cfg.top_k, 1)
    require_at_least("batch_size", cfg.batch_size, 1)


def validate_predict(cfg: PredictConfig) -> None:
    validate_model_source(cfg)
    if not cfg.images:
        raise ConfigError("images is empty: pass images=[a.jpg,b.jpg] or images=[some/folder]")
    require_choice("tta", cfg.tta, TTA_MODES)
    require_choice("format", cfg.format, OUTPUT_FORMATS)
    require_at_least("top_k", cfg.top_k, 1)
    require_at_least("batch_size", cfg.batch_size, 1)


def validate_export(cfg: ExportConfig) -> None:
    validate_model_source(cfg)
    require_choice("format", cfg.format, EXPORT_FORMATS)
    require_choice("quantize", cfg.quantize, QUANTIZATIONS)
    if cfg.quantize != "none" and cfg.format != "tflite":
        raise ConfigError(f"quantize={cfg.quantize} applies to format=tflite only")
    require_at_least("parity_images", cfg.parity_images, 1)
    require_at_least("max_abs_diff", cfg.max_abs_diff, 0.0)
    if not 0.0 <= cfg.min_top1_agreement <= 1.0:
        raise ConfigError(f"min_top1_agreement={cfg.min_top1_agreement} is outside [0, 1]")


def validate_tool(cfg) -> None:
    """The checks of whichever tool's config this is: each tool's command line runs them
    before it loads TensorFlow, so a mistake answers in a second, not after the import."""
    VALIDATORS[type(cfg)](cfg)


VALIDATORS = {EvalConfig: validate_eval, PredictConfig: validate_predict,
              ExportConfig: validate_export, ReportConfig: validate_report,
              PackConfig: validate_pack}
