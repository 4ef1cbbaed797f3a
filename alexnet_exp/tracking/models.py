"""Logged models read back (for evaluation, prediction, export) and what is logged about them.

Plain values and MLflow calls only: which Keras layers a model holds, and what a model is for,
is the caller's knowledge (:mod:`alexnet_exp.bundle`).
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from alexnet_exp.errors import UserError, first_line
from alexnet_exp.tracking.runs import Tracker
from alexnet_exp.tracking.store import Store


@dataclass
class LoggedModel:
    model: Any  # the Keras model
    metadata: dict  # what the run logged about it (class names, sizes)
    run_id: str | None  # the run that logged it


def load_logged_model(store: Store, source: str, custom_objects: dict,
                      hint: str = "") -> LoggedModel:
    """A logged model read back with its metadata; ``custom_objects`` are the caller's layers
    (tracking knows none: MLflow's flavour hands them to Keras).

    The model is downloaded once, into a folder removed when it is loaded. MLflow's own
    ``get_model_info`` and ``load_model`` would each download into a fresh temporary folder
    and never remove it: every evaluation would leave a copy of the model in /tmp.
    """
    with store.fluent(), tempfile.TemporaryDirectory(prefix="alexnet-exp-model-") as tmp:
        try:  # models:/ and runs:/ URIs resolve against the current store
            local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp)
            info = Model.load(local).get_model_info()
        except (MlflowException, OSError) as exc:
            raise UserError(f"cannot find model {source} in {store.shown}{hint}") from exc
        try:
            model = mlflow.tensorflow.load_model(
                local, keras_model_kwargs={"custom_objects": custom_objects})
        except (MlflowException, OSError) as exc:
            raise UserError(f"cannot load model {source}: {first_line(exc)[:300]}") from exc
    return LoggedModel(model, info.metadata or {}, info.run_id)


def run_exists(store: Store, run_id: str) -> bool:
    try:
        store.client.get_run(run_id)
    except MlflowException:
        return False
    return True


RUN_ID_PREFIX_MIN = 8  # as the UI's run table and our summaries show an id: git's rule of thumb


def require_run(store: Store, run_id: str, key: str = "run_id") -> str:
    """The full id of the run ``run_id`` names: the id itself, or a unique prefix of at least
    ``RUN_ID_PREFIX_MIN`` characters, as the UI and the summary lines show ids. MLflow resolves
    no prefix (its search filters compare run ids by equality only), so the runs of every
    experiment are listed here: ids only, a few thousand a second on a local store."""
    if run_exists(store, run_id):
        return run_id
    if len(run_id) < RUN_ID_PREFIX_MIN or not re.fullmatch(r"[0-9a-fA-F]+", run_id):
        raise UserError(f"{key}={run_id}: no such run in {store.shown} (give the whole id or"
                        f" its first {RUN_ID_PREFIX_MIN}+ characters)")
    matches = [run for run in _all_runs(store) if run.info.run_id.startswith(run_id.lower())]
    if not matches:
        raise UserError(f"{key}={run_id}: no such run in {store.shown}")
    if len(matches) > 1:
        named = ", ".join(f"{run.info.run_id} ({run.info.run_name})" for run in matches[:5])
        raise UserError(f"{key}={run_id}: {len(matches)} runs start with it in {store.shown}:"
                        f" {named}; give more characters")
    return matches[0].info.run_id


def _all_runs(store: Store):
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in store.client.search_experiments(
        view_type=ViewType.ALL, max_results=50_000)]
    token = None
    while experiments:
        page = store.client.search_runs(experiments, run_view_type=ViewType.ALL,
                                        max_results=50_000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def run_tag(store: Store, run_id: str, tag: str) -> str | None:
    return store.client.get_run(run_id).data.tags.get(tag)


def experiment_name_of(store: Store, run_id: str) -> str:
    return store.client.get_experiment(store.client.get_run(run_id).info.experiment_id).name


def log_artifact_to_run(store: Store, run_id: str, local_path: Path, artifact_path: str) -> None:
    """Attach a file to a finished run (exports land beside the model they came from)."""
    if Path(local_path).is_dir():
        store.client.log_artifacts(run_id, str(local_path), artifact_path)
    else:
        store.client.log_artifact(run_id, str(local_path), artifact_path)


def log_evaluation(store: Store, cfg, train_run_id: str | None, model_source: str, root: Path,
                   metrics: dict, figure, report_text: str, csv_path: Path | None) -> str:
    """One MLflow run per evaluation, in the training run's experiment, tagged with its id."""
    experiment = (experiment_name_of(store, train_run_id) if train_run_id
                  else cfg.tracking.experiment_name)
    tracker = Tracker(store, experiment)
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
            tracker.log_file(csv_path, "eval")
    except KeyboardInterrupt as exc:  # Ctrl-C or the tools' SIGTERM (alexnet_exp.stopping)
        tracker.end("KILLED", str(exc) or "interrupted")
        raise
    except BaseException as exc:
        tracker.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracker.end("FINISHED")
    return tracker.run_id
