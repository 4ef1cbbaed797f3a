"""Running the entry points as a user does, and reading their runs back from the store."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TINY_MODEL = [
    "model=small",
    "model.input_size=64",
    "model.filters=[8,16,16,16,8]",
    "model.fc_units=[32,32]",
    "optimizer=adam",
    "trainer.batch_size=8",
    "trainer.verbose=0",
]
RUN = ["data=folder", *TINY_MODEL, "tracking.log_model=false", "trainer.verbose=2"]


def cli(cwd: Path, *args: str, module: bool = False, timeout: int = 600,
        program: str = "alexnet-exp", env: dict | None = None):
    """Run ``alexnet-exp`` (or ``python -m alexnet_exp``, or another entry point) in ``cwd``."""
    env = {**os.environ, **(env or {})}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    exe = [sys.executable, "-m", "alexnet_exp"] if module else [
        str(Path(sys.executable).with_name(program))]
    run_dir = [f"hydra.run.dir={cwd}/outputs/run", f"hydra.sweep.dir={cwd}/multirun"]
    if "--help" in args or "--cfg" in args or program != "alexnet-exp":
        run_dir = []
    return subprocess.run([*exe, *args, *run_dir], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def store(cwd: Path) -> MlflowClient:
    """A client of the run's store, created (schema migrated) now: a test that watches a running
    child must call this before starting it, or both migrate a new database at once."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{empty_store(cwd / 'mlruns')}")
    client.search_experiments(max_results=1)
    return client


def empty_store(folder: Path) -> Path:
    """``folder/mlflow.db``: a new, empty SQLite store (left as it is if there is one already).

    MLflow creates a store by running its ~60 Alembic migrations (1.5-2.5 s); the first store of
    a test process is made that way and copied for the rest, which is the same file MLflow
    would write. The tests that are about a store being created leave it to the code under
    test instead.
    """
    import sqlite3
    from contextlib import closing

    db = folder / "mlflow.db"
    if not db.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(_migrated_template())) as template, \
                closing(sqlite3.connect(db)) as copy:
            template.backup(copy)  # SQLite's own copy: consistent while MLflow holds it open
    return db


@functools.cache
def _scratch() -> Path:
    """This pytest process's folder for downloads and the store template, removed at exit."""
    import atexit
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="alexnet-exp-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def _migrated_template() -> Path:
    from mlflow.tracking import MlflowClient

    db = _scratch() / "mlflow.db"
    client = MlflowClient(f"sqlite:///{db}")
    client.search_experiments(max_results=1)
    return db


def runs_of(client: MlflowClient, experiment: str = "alexnet-exp"):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in the store"
    return client.search_runs([exp.experiment_id])


def epochs_logged(client) -> int:
    exp = client.get_experiment_by_name("alexnet-exp")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return len(client.get_metric_history(runs[0].info.run_id, "loss")) if runs else 0


def artifact(client: MlflowClient, run_id: str, path: str) -> Path:
    """A run's artifact downloaded from the client's store (a file or a folder; a logged model
    is not: see :func:`logged_model`). Explicit store, never MLflow's process-wide URI."""
    import tempfile

    import mlflow

    return Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=path,
        dst_path=tempfile.mkdtemp(prefix="artifact-", dir=_scratch()),
        tracking_uri=client.tracking_uri))


def artifact_text(client: MlflowClient, run_id: str, path: str) -> str:
    return artifact(client, run_id, path).read_text()


def artifact_json(client: MlflowClient, run_id: str, path: str):
    import json

    return json.loads(artifact_text(client, run_id, path))


def run_model_uri(client: MlflowClient, run_id: str) -> str:
    """``runs:/<run id>/<name>`` of the one model the run logged, whatever it is called."""
    experiment_id = client.get_run(run_id).info.experiment_id
    (model,) = client.search_logged_models([experiment_id],
                                           filter_string=f"source_run_id = '{run_id}'")
    return f"runs:/{run_id}/{model.name}"


def logged_model(client: MlflowClient, run_id: str):
    """The Keras model a run logged, loaded by MLflow's tensorflow flavour. Inside the store's
    ``fluent()``: MLflow finds a logged model behind ``runs:/`` through the process-wide
    tracking URI only (else its default ``./mlflow.db``)."""
    import tempfile

    import mlflow

    from alexnet_exp import model as alexnet
    from alexnet_exp.tracking import Store

    with Store(client.tracking_uri).fluent():
        return mlflow.tensorflow.load_model(
            run_model_uri(client, run_id), dst_path=tempfile.mkdtemp(dir=_scratch()),
            keras_model_kwargs={"custom_objects": alexnet.custom_objects()})
