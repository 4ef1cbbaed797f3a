"""Running the entry points as a user does, and reading their runs back from the store."""

from __future__ import annotations

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
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **(env or {})}
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
    import mlflow
    from mlflow.tracking import MlflowClient

    (cwd / "mlruns").mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    client = MlflowClient()
    client.search_experiments(max_results=1)
    return client


def runs_of(client: MlflowClient, experiment: str = "alexnet-exp"):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r} in the store"
    return client.search_runs([exp.experiment_id])


def epochs_logged(client) -> int:
    exp = client.get_experiment_by_name("alexnet-exp")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return len(client.get_metric_history(runs[0].info.run_id, "loss")) if runs else 0
