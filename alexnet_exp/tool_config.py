"""Checks of the tools that work on a trained model (evaluate, predict, export, report), run
before any model is loaded. Their schemas live with every other schema in
:mod:`alexnet_exp.config` (one ConfigStore, no import back up); the choices they allow, here.
"""

from alexnet_exp.config import (
    EvalConfig,
    ExportConfig,
    PredictConfig,
    ReportConfig,
    require_at_least,
    require_choice,
)
from alexnet_exp.errors import ConfigError

TTA_MODES = ("none", "flip", "ten_crop")
EXPORT_FORMATS = ("keras", "savedmodel", "tflite")
QUANTIZATIONS = ("none", "dynamic", "float16")
OUTPUT_FORMATS = ("table", "json")


def validate_report(cfg: ReportConfig) -> None:
    if not cfg.experiment_name:
        raise ConfigError("experiment_name is required: alexnet-exp-report experiment_name=<name>")


def validate_model_source(cfg) -> None:
    given = [k for k in ("run_id", "model_uri", "model_path") if getattr(cfg, k)]
    if len(given) != 1:
        raise ConfigError(
            "give exactly one of run_id=<MLflow run>, model_uri=<MLflow model URI> or"
            f" model_path=<file.keras> (got {', '.join(given) or 'none'})"
        )


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
