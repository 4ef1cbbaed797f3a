"""Sweep bookkeeping in MLflow: the parent run of a multirun and the FINISHED-job lookup."""

import hashlib
from pathlib import Path

import mlflow

from alexnet_exp.config import TrackingConfig
from alexnet_exp.tracking.runs import Tracker

# Sweeps: one parent run per multirun, found again by its key when the same sweep is rerun.
PARENT_RUN_ENV = "ALEXNET_EXP_PARENT_RUN_ID"  # not MLFLOW_RUN_ID: that would override the parent


def start_sweep_parent(cfg: TrackingConfig, launch_dir: Path, overrides: list[str],
                       sweep_dir: str) -> str:
    """The RUNNING parent run of a multirun: the one from an earlier run of the same sweep
    command (same experiment and overrides), or a new one."""
    tracker = Tracker(cfg, launch_dir)
    experiment_id = tracker._experiment_id()
    identity = sorted(o for o in overrides if not o.lstrip("+~").startswith(("sweep.", "hydra.")))
    key = hashlib.sha1("\n".join([cfg.experiment_name, *identity]).encode()).hexdigest()
    client = mlflow.MlflowClient()
    earlier = client.search_runs([experiment_id], f"tags.`alexnet_exp.sweep_key` = '{key}'",
                                 max_results=1)
    if earlier:
        run_id = earlier[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, "sweep_dir", sweep_dir)
        return run_id
    name = "sweep " + (" ".join(overrides) or "(defaults)")
    run = client.create_run(experiment_id, run_name=name[:250],
                            tags={"alexnet_exp.kind": "sweep", "alexnet_exp.sweep_key": key,
                                  "sweep_overrides": " ".join(overrides), "sweep_dir": sweep_dir})
    return run.info.run_id


def end_sweep_parent(run_id: str, status: str = "FINISHED") -> None:
    mlflow.MlflowClient().set_terminated(run_id, status)


def finished_run_with_hash(experiment_name: str, config_hash: str) -> str | None:
    """A FINISHED run of this experiment whose resolved config hashed to ``config_hash``."""
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    runs = mlflow.MlflowClient().search_runs(
        [experiment.experiment_id],
        f"tags.`alexnet_exp.config_hash` = '{config_hash}' and attributes.status = 'FINISHED'",
        max_results=1)
    return runs[0].info.run_id if runs else None
