"""Logged models read back (for evaluation, prediction, export) and what is logged about them."""

from dataclasses import replace
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from alexnet_exp.tracking.runs import Tracker, resolve_tracking_uri


def load_model_bundle(cfg, launch_dir: Path):
    """The model named by ``run_id`` / ``model_uri`` / ``model_path`` with its preprocessing.

    Logged models carry class names and input size as MLflow model metadata; a ``.keras`` file
    carries them in the ``.json`` file the exporter writes beside it.
    """
    import json

    import keras

    from alexnet_exp.errors import UserError
    from alexnet_exp.evaluate import PAPER_RESIZE, ModelBundle, sidecar_path
    from alexnet_exp.model import as_float32  # also registers LRN, which safe_mode needs

    train_run_id = cfg.run_id
    if cfg.model_path:
        path = Path(cfg.model_path).expanduser()
        if not path.is_file():
            raise UserError(f"model_path={cfg.model_path} does not exist")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise UserError(f"{sidecar} (class names, input size) is missing beside {path}:"
                            " export with alexnet-exp-export format=keras to get both")
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot load {path} as a .keras model: {reason[:300]}") from exc
        metadata, source = json.loads(sidecar.read_text()), str(path)
        mlflow.set_tracking_uri(resolve_tracking_uri(cfg.tracking, launch_dir)[0])
        train_run_id = metadata.get("train_run_id")
        if train_run_id and not run_exists(train_run_id):
            train_run_id = None  # trained against another store: nothing to link to here
    else:
        uri, _ = resolve_tracking_uri(cfg.tracking, launch_dir, create=False)
        mlflow.set_tracking_uri(uri)
        source = cfg.model_uri or f"runs:/{cfg.run_id}/model"
        if cfg.run_id and not run_exists(cfg.run_id):
            raise UserError(f"run_id={cfg.run_id}: no such run in {uri}")
        try:
            info = mlflow.models.get_model_info(source)
        except (MlflowException, OSError) as exc:
            hint = (" (no model logged: was it trained with tracking.log_model=false, or is"
                    " it an evaluation run?)" if cfg.run_id else "")
            raise UserError(f"cannot find model {source} in {uri}{hint}") from exc
        try:
            model = mlflow.tensorflow.load_model(source)
        except (MlflowException, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot load model {source}: {reason[:300]}") from exc
        metadata = info.metadata or {}
        train_run_id = train_run_id or info.run_id
    if "class_names" not in metadata:
        raise UserError(f"{source} records no class names: was it trained by alexnet-exp?")
    input_size = int(model.input_shape[1])
    return ModelBundle(
        model=as_float32(model),
        class_names=list(metadata["class_names"]),
        input_size=input_size,
        eval_resize=int(metadata.get("eval_resize", round(input_size * PAPER_RESIZE))),
        source=source,
        train_run_id=train_run_id,
    )


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


def log_evaluation(cfg, launch_dir: Path, bundle, root: Path, metrics: dict, figure,
                   report_text: str, csv_path: Path | None) -> str:
    """One MLflow run per evaluation, in the training run's experiment, tagged with its id."""
    experiment = (experiment_name_of(bundle.train_run_id) if bundle.train_run_id
                  else cfg.tracking.experiment_name)
    tracker = Tracker(replace(cfg.tracking, experiment_name=experiment), launch_dir)
    tracker.start(f"eval {root.name} tta={cfg.tta}", tags={
        "alexnet_exp.kind": "evaluation",
        "alexnet_exp.train_run_id": bundle.train_run_id or "(none)",
        "model_source": bundle.source,
        "test_data": str(root),
    })
    try:
        tracker.log_params({"tta": cfg.tta, "top_k": cfg.top_k, "data_dir": str(root),
                            "model": bundle.source})
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
