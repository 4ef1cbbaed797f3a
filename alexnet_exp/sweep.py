"""The Hydra callback that makes a multirun one MLflow parent run with a child run per job.

Configured under ``hydra.callbacks`` in ``conf/config.yaml``. The parent's id reaches the jobs
through ``ALEXNET_EXP_PARENT_RUN_ID`` (set before any launcher starts, so jobs in other
processes inherit it); never through ``MLFLOW_RUN_ID``, which would make every job log into the
parent itself.
"""

import os
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import UserError, exit_with


class MlflowSweepCallback(Callback):
    def __init__(self) -> None:
        self.parent_run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from alexnet_exp import tracking

        if config.get("dry_run"):
            return  # nothing is trained or logged, so there is nothing to group
        tracking_cfg = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
        try:
            self.parent_run_id = tracking.start_sweep_parent(
                tracking_cfg,
                Path(config.hydra.runtime.cwd),
                overrides=list(config.hydra.overrides.task),
                sweep_dir=str(Path(config.hydra.sweep.dir).resolve()),
            )
        except UserError as exc:  # an unusable store: one line before any job, as for a run
            exit_with(str(exc))
        os.environ[tracking.PARENT_RUN_ENV] = self.parent_run_id
        print(f"alexnet-exp: sweep parent MLflow run {self.parent_run_id}", flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from alexnet_exp import tracking

        if self.parent_run_id:
            objective = config.sweep.objective
            best = tracking.tag_best_child(self.parent_run_id, objective,
                                           maximize=not objective.endswith("loss"))
            if best:
                print(f"alexnet-exp: best {objective} in this sweep: MLflow run {best}",
                      flush=True)
            tracking.end_sweep_parent(self.parent_run_id)
            os.environ.pop(tracking.PARENT_RUN_ENV, None)
