"""Logged models read back (for evaluation, prediction, export) and what is logged about them.

Plain values and MLflow calls only: which Keras layers a model holds, and what a model is for,
is the caller's knowledge (:mod:`alexnet_exp.bundle`).
"""

from dataclasses import replace
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import UserError
from alexnet_exp.tracking.runs import Tracker, resolve_tracking_uri


def open_store(cfg: TrackingConfig, launch_dir: Path, create: bool = True) -> str:
    """Point this process's MLflow client at the configured store; returns its URI.

    ``create=False``: a local store must exist already (a tool reading a model refuses a
    folder it was not trained in, in one line).
    """
    uri, _ = resolve_tracking_uri(cfg, launch_dir, create=create)
    mlflow.set_tracking_uri(uri)
    return uri


def logged_model_info(source: str, uri: str, hint: str = "") -> tuple[dict, str | None]:
    """The metadata a logged model carries (class names, sizes) and the run that logged it."""
    try:
        info = mlflow.models.get_model_info(source)
    except (MlflowException, OSError) as exc:
        raise UserError(f"cannot find model {source} in {uri}{hint}") from exc
    return info.metadata or {}, info.run_id


def load_logged_model(source: str, custom_objects: dict):
    """The Keras model of a logged model; ``custom_objects`` are the caller's layers (tracking
    knows none: MLflow's flavour hands them to Keras)."""
    try:
        return mlflow.tensorflow.load_model(
            source, keras_model_kwargs={"custom_objects": custom_objects})
    except (MlflowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot load model {source}: {reason[:300]}") from exc


def run_exists(run_id: str) -> bool:
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        return False
    return True


def run_tag(run_id: str, tag: str) -> str | None:
    return mlflow.get_run(run_id).data.tags.get(tag)


def experiment_name_of(run_id: str) -> str:
    return mlflow.get_experiment(mlflow.get_run(run_id).info.experiment_id).name


def log_artifact_to_run(run_id: str, local_path: Path, artifact_path: str) -> None:
    """Attach a file to a finished run (exports land beside the model they came from)."""
    client = mlflow.MlflowClient()
    if Path(local_path).is_dir():
        client.log_artifacts(run_id, str(local_path), artifact_path)
    else:
        client.log_artifact(run_id, str(local_path), artifact_path)


def log_evaluation(cfg, launch_dir: Path, train_run_id: str | None, model_source: str,
                   root: Path, metrics: dict, figure, report_text: str,
                   csv_path: Path | None) -> str:
    """One MLflow run per evaluation, in the training run's experiment, tagged with its id."""
    experiment = (experiment_name_of(train_run_id) if train_run_id
                  else cfg.tracking.experiment_name)
    tracker = Tracker(replace(cfg.tracking, experiment_name=experiment), launch_dir)
    tracker.start(f"eval {root.name} tta={cfg.tta}", tags={
        "alexnet_exp.kind": "evaluation",
        "alexnet_exp.train_run_id": train_run_id or "(none)",
        "model_source": model_source,
        "test_data": str(root),
    })
    try:
        tracker.log_params({"tta": cfg.tta, "top_k": cfg.top_k, "data_dir": str(root),
                            "model": model_source})
        tracker.log_metrics(metrics)
        tracker.log_figure(figure, "plots/confusion_matrix.png")
        tracker.log_text(report_text, "eval/classification_report.txt")
        if csv_path is not None:
            mlflow.log_artifact(str(csv_path), "eval")
    except BaseException as exc:
        tracker.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracker.end("FINISHED")
    return tracker.run_id
