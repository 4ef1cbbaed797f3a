"""The Hydra callback that makes a multirun one MLflow parent run with a child run per job.

Configured under ``hydra.callbacks`` in ``conf/config.yaml``. The parent's id reaches the jobs
through ``ALEXNET_EXP_PARENT_RUN_ID`` (set before any launcher starts, so jobs in other
processes inherit it); never through ``MLFLOW_RUN_ID``, which would make every job log into the
parent itself.
"""

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from alexnet_exp import job_locks, stopping
from alexnet_exp.config import TrackingConfig, user_tags
from alexnet_exp.errors import UserError, exit_with, first_line
from alexnet_exp.keys import (
    PARENT_RUN_ENV,
    PARENT_STORE_ENV,
    SWEPT_KEYS_ENV,
    SWEPT_TAG,
    SWEPT_VALUE_PREFIX,
)
from alexnet_exp.prepare import override_key, run_name_for

log = logging.getLogger(__name__)

LOKY_WORKER = "popen_loky"  # joblib's worker processes: python -m ...loky.backend.popen_loky_posix
WORKER_GRACE_SECONDS = 300  # SLURM, Kubernetes and systemd send SIGKILL well before this


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies, in the order first given, found by Hydra's own parser: the
    sweeper's ``params`` (an experiment's sweep, Optuna's search space) and the command line's
    overrides, the command line's last word on a key winning as it does for the sweep. A key
    given one value is shared by every job, not swept."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    given = [f"{key}={value}" for key, value in params.items()]
    swept: dict[str, bool] = {}
    for override in OverridesParser.create().parse_overrides(
            [*given, *config.hydra.overrides.task]):
        package = f"@{override.package}" if override.package else ""
        swept[f"{override.key_or_group}{package}"] = override.is_sweep_override()
    return [key for key, varies in swept.items() if varies]


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.swept: list[str] = []  # the keys the sweep varies, which name its jobs
        self.parent_run_id: str | None = None
        self.store = None  # tracking.Store the parent run lives in
        self.register_as: str | None = None  # tracking.register_as: the winner's registry name
        self.job_locks: str | None = None  # joblib sweeps: where each running job holds a lock

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.swept = swept_keys(config)
        os.environ[SWEPT_KEYS_ENV] = json.dumps(self.swept)  # names the jobs' runs and models
        if config.get("dry_run"):
            return  # nothing is trained or logged, so there is nothing to group
        if config.tracking.backend != "none":  # tracking=none: no run, so no parent run either
            self.start_parent(config)
        if "joblib" in str(config.hydra.launcher.get("_target_", "")):
            self.job_locks = tempfile.mkdtemp(prefix="alexnet-exp-jobs-")
            os.environ[job_locks.JOB_LOCKS_ENV] = self.job_locks  # the workers inherit it
            stopping.before_raise(self.stop_workers)

    def start_parent(self, config: DictConfig) -> None:
        """The sweep's parent run, its id handed to the jobs through the environment."""
        from alexnet_exp import tracking

        tracking_cfg = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
        overrides = list(config.hydra.overrides.task)
        shared = [o for o in overrides if override_key(o) not in self.swept]
        shared_name = run_name_for(shared)
        varies = f" (varies {', '.join(self.swept)})" if self.swept else ""
        try:
            self.store = tracking.open_store(tracking_cfg, Path(config.hydra.runtime.cwd))
            self.parent_run_id = tracking.start_sweep_parent(
                self.store,
                tracking_cfg.experiment_name,
                overrides=overrides,
                sweep_dir=str(Path(config.hydra.sweep.dir).resolve()),
                run_name=f"sweep {'(defaults)' if shared_name == 'defaults' else shared_name}"
                         f"{varies}",
                tags={"sweep_shared": " ".join(shared) or "(none)",
                      SWEPT_TAG: " ".join(self.swept) or "(none)",
                      **user_tags(OmegaConf.to_container(config.tags) if isinstance(
                          config.get("tags"), DictConfig | ListConfig) else config.get("tags"))},
            )
        except UserError as exc:  # an unusable store: one line before any job, as for a run
            exit_with(str(exc))
        self.register_as = tracking_cfg.register_as
        os.environ[PARENT_RUN_ENV] = self.parent_run_id
        os.environ[PARENT_STORE_ENV] = self.store.uri
        log.info(f"alexnet-exp: sweep parent MLflow run {self.parent_run_id}")

    def stop_workers(self, signum: int) -> None:
        """A stop signal to this process ends the jobs in joblib's worker processes first:
        ``kill <pid>`` and Kubernetes signal this process only, so it forwards the signal (SLURM,
        systemd and ``timeout`` signal them all; a second signal changes nothing), then waits
        until each job has recorded its run KILLED. Only then may the stop unwind joblib, which
        kills its workers with SIGKILL."""
        workers = job_locks.child_processes(LOKY_WORKER)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        if workers and self.job_locks:
            busy = job_locks.wait_for_jobs(self.job_locks, WORKER_GRACE_SECONDS)
            if busy:
                log.warning(f"alexnet-exp: jobs in processes {busy} did not end within"
                            f" {WORKER_GRACE_SECONDS} s; their runs may stay RUNNING")
        if self.job_locks:  # on_multirun_end will not run: the stop unwinds the sweep
            shutil.rmtree(self.job_locks, ignore_errors=True)

    def register_champion(self, best: str) -> None:
        """The winner as a version of ``tracking.register_as``, aliased ``champion``. A failure
        (no logged model, a registry that refuses) is one line, and the sweep still ends: Hydra
        would only warn about a callback's exception, leaving the parent run RUNNING."""
        from alexnet_exp import tracking

        name = self.register_as
        try:
            version = tracking.register_champion(self.store, name, best)
        except Exception as exc:  # UserError, or MLflow's many types
            log.warning(f"alexnet-exp: run {best} not registered as {name}:"
                        f" {first_line(exc)[:300]}")
            return
        log.info(f"alexnet-exp: registered as {name} version {version}:"
                 f" models:/{name}@{tracking.CHAMPION}")

    def share_view(self, objective: str, maximize: bool) -> None:
        """The link to the sweep compared in MLflow's UI (``tracking.share_sweep_view``); a
        store that refuses the experiment tag costs the link only."""
        from alexnet_exp import tracking

        try:
            url = tracking.share_sweep_view(self.store, self.parent_run_id, self.swept,
                                            objective, maximize)
        except Exception as exc:  # MLflow's many types: the sweep still ends
            log.warning(f"alexnet-exp: no link to compare the sweep: {first_line(exc)[:300]}")
            return
        # MLflow 3.18 opened the page with its default columns and the parent collapsed
        # despite the shared view (seen in Chromium): the line says the clicks it still needs.
        keys = " or ".join(f"{SWEPT_VALUE_PREFIX}{key}" for key in self.swept) or "a tag"
        log.info(f"alexnet-exp: compare the sweep's runs: {url} (expand the parent with its +;"
                 f" Group by {keys} to average repeats)")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from alexnet_exp import tracking

        os.environ.pop(SWEPT_KEYS_ENV, None)
        if self.parent_run_id:
            stopping.raise_if_stopped()  # a stop a __del__ swallowed: the parent ends KILLED
            objective = config.sweep.objective
            maximize = not objective.endswith("loss")
            best = tracking.tag_best_child(self.store, self.parent_run_id, objective, maximize)
            if best:
                run_id, value = best
                log.info(f"alexnet-exp: the sweep's best run is MLflow run {run_id}"
                         f" ({objective} {value:.4f})")
                if self.register_as:
                    self.register_champion(run_id)
            self.share_view(objective, maximize)
            tracking.end_sweep_parent(self.store, self.parent_run_id)
            os.environ.pop(PARENT_RUN_ENV, None)
            os.environ.pop(PARENT_STORE_ENV, None)
        if self.job_locks:
            stopping.before_raise(None)
            os.environ.pop(job_locks.JOB_LOCKS_ENV, None)
            shutil.rmtree(self.job_locks, ignore_errors=True)
            self.job_locks = None
