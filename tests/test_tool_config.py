"""The tools' checks (evaluate, predict, export, report) that run before a model is loaded: a
wrong command line is a one-line error naming the key, never a traceback after loading."""

import pytest

from alexnet_exp.config import DataConfig
from alexnet_exp.errors import ConfigError
from alexnet_exp.tool_config import (
    EvalConfig,
    ExportConfig,
    PredictConfig,
    ReportConfig,
    validate_eval,
    validate_export,
    validate_predict,
    validate_report,
)


def test_exactly_one_model_source_is_required():
    with pytest.raises(ConfigError, match=r"exactly one of run_id=.*\(got none\)"):
        validate_export(ExportConfig())
    with pytest.raises(ConfigError, match=r"\(got run_id, model_path\)"):
        validate_export(ExportConfig(run_id="abc", model_path="m.keras"))
    for source in ({"run_id": "abc"}, {"model_uri": "models:/m/1"}, {"model_path": "m.keras"}):
        validate_export(ExportConfig(**source))  # the defaults with one source are valid


@pytest.mark.parametrize(("overrides", "message"), [
    ({"format": "onnx"}, "format"),
    ({"quantize": "int4", "format": "tflite"}, "quantize"),
    ({"quantize": "float16"}, "quantize=float16 applies to format=tflite only"),
    ({"parity_images": 0}, "parity_images"),
    ({"max_abs_diff": -1e-3}, "max_abs_diff"),
    ({"min_top1_agreement": 1.5}, r"min_top1_agreement=1.5 is outside \[0, 1\]"),
])
def test_export_names_the_key_it_refuses(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_export(ExportConfig(run_id="abc", **overrides))


def test_quantized_tflite_and_an_explicit_tolerance_are_accepted():
    validate_export(ExportConfig(run_id="abc", format="tflite", quantize="dynamic",
                                 max_abs_diff=0.2, min_top1_agreement=1.0))


def test_eval_needs_a_test_set_and_valid_choices():
    with pytest.raises(ConfigError, match="data.dir is required"):
        validate_eval(EvalConfig(run_id="abc"))
    with_data = {"run_id": "abc", "data": DataConfig(name="folder", dir="test")}
    validate_eval(EvalConfig(**with_data, tta="ten_crop"))
    with pytest.raises(ConfigError, match="tta"):
        validate_eval(EvalConfig(**with_data, tta="five_crop"))
    with pytest.raises(ConfigError, match="top_k"):
        validate_eval(EvalConfig(**with_data, top_k=0))


def test_predict_needs_images_and_a_known_output_format():
    with pytest.raises(ConfigError, match="images is empty"):
        validate_predict(PredictConfig(run_id="abc"))
    validate_predict(PredictConfig(run_id="abc", images=["a.jpg"], format="json"))
    with pytest.raises(ConfigError, match="format"):
        validate_predict(PredictConfig(run_id="abc", images=["a.jpg"], format="csv"))


def test_report_needs_an_experiment_name_or_a_sweep_parent():
    with pytest.raises(ConfigError, match="experiment_name or parent_run_id is required"):
        validate_report(ReportConfig())
    validate_report(ReportConfig(experiment_name="six_ideas"))
    validate_report(ReportConfig(parent_run_id="abc"))  # the experiment follows from the run
