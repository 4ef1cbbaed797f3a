"""Sweep bookkeeping in MLflow: the parent run of a multirun and the FINISHED-job lookup."""

import hashlib
from pathlib import Path

import mlflow

from alexnet_exp.config import TrackingConfig
from alexnet_exp.tracking.runs import Tracker, redact

# Sweeps: one parent run per multirun, found again by its key when the same sweep is rerun.
PARENT_RUN_ENV = "ALEXNET_EXP_PARENT_RUN_ID"  # not MLFLOW_RUN_ID: that would override the parent
# failure_reason of a run that failed writing files (a full disk, a read-only folder): its last
# checkpoint is complete (state.json is the commit point), so a rerun may continue it.
DISK_FAILURE = "disk"


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
    shown = redact(" ".join(overrides))
    run = client.create_run(experiment_id, run_name=f"sweep {shown or '(defaults)'}"[:250],
                            tags={"alexnet_exp.kind": "sweep", "alexnet_exp.sweep_key": key,
                                  "sweep_overrides": shown, "sweep_dir": sweep_dir})
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


def unfinished_runs_with_hash(experiment_name: str, config_hash: str) -> list[tuple[str, str]]:
    """``(run_id, checkpoint_dir)`` of this config's RUNNING or KILLED runs, and FAILED ones
    that failed on the disk, newest first: the runs a rerun of the same command may continue
    (other FAILED ones failed for a reason a rerun would meet again)."""
    experiment = mlflow.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs = mlflow.MlflowClient().search_runs(
        [experiment.experiment_id], f"tags.`alexnet_exp.config_hash` = '{config_hash}'",
        order_by=["attributes.start_time DESC"])
    return [(r.info.run_id, r.data.tags["checkpoint_dir"]) for r in runs
            if r.data.tags.get("checkpoint_dir") and (r.info.status in ("RUNNING", "KILLED") or (
                r.info.status == "FAILED"
                and r.data.tags.get("failure_reason") == DISK_FAILURE))]


def run_metric(run_id: str, name: str) -> float | None:
    """The latest value of a run's metric (None when it was never logged)."""
    return mlflow.MlflowClient().get_run(run_id).data.metrics.get(name)


def tag_best_child(parent_run_id: str, metric: str, maximize: bool) -> str | None:
    """Mark the sweep's best FINISHED child (``alexnet_exp.best_trial=true``) and name it on
    the parent, so the UI and ``search_runs`` find the winner of an Optuna study at once."""
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'FINISHED'")
    scored = [r for r in children if metric in r.data.metrics]
    if not scored:
        return None
    best = (max if maximize else min)(scored, key=lambda r: r.data.metrics[metric])
    for run in children:
        if run.data.tags.get("alexnet_exp.best_trial") and run is not best:
            client.delete_tag(run.info.run_id, "alexnet_exp.best_trial")
    client.set_tag(best.info.run_id, "alexnet_exp.best_trial", "true")
    client.set_tag(parent_run_id, "best_run_id", best.info.run_id)
    client.log_metric(parent_run_id, f"best_{metric}", best.data.metrics[metric])
    return best.info.run_id
