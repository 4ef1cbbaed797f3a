"""One MLflow run per training job: its lifecycle (start or resume, end) and what it writes.

Every write is addressed to the run by id through the store's own client (no active-run stack,
no process-wide tracking URI) and goes through the run's :class:`~.delivery.Delivery`, which
sends it at once or buffers it while the server is away.
"""

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alexnet_exp.errors import UserError, redact
from alexnet_exp.tracking import outage, outbox
from alexnet_exp.tracking.context import context_tags, system_monitor
from alexnet_exp.tracking.delivery import Delivery
from alexnet_exp.tracking.records import dataset_input, flatten, log_tf_model
from alexnet_exp.tracking.store import Store

STALE_TAGS = ("failure_reason", "error")  # how a run ends is written at its end


class Tracker:
    """One MLflow run per training job (or evaluation, or sweep parent); every write of it
    goes through here."""

    def __init__(self, store: Store, experiment_name: str, outbox_dir: Path | None = None,
                 load_model: Callable[[Path], Any] | None = None):
        """``load_model`` reads back a model a killed process of this run left in its outbox
        (see :class:`~.delivery.Delivery`)."""
        self.store = store
        self.experiment_name = experiment_name
        self.delivery = Delivery(store.uri, outbox_dir, load_model)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._ended = False
        self._monitor = None  # MLflow's SystemMetricsMonitor, with tracking.system_metrics

    @property
    def uri(self) -> str:
        return self.store.uri

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None,
              resume_run_id: str | None = None, system_metrics: bool = False) -> str:
        """A new run, or (``resume_run_id``) the killed run this job continues, RUNNING again;
        ``system_metrics``: MLflow's ``system/*`` metrics (CPU, memory, disk, network, GPU)
        sampled into it until it ends."""
        client = self.store.client
        tags = {k: redact(v) for k, v in tags.items() if v is not None}
        run_id = None
        try:
            if resume_run_id:
                run = client.get_run(resume_run_id)
                run_id = run.info.run_id
                client.update_run(run_id, status="RUNNING")
                self._write_tags(run_id, tags)
                for stale in STALE_TAGS:
                    if stale in run.data.tags:
                        client.delete_tag(run_id, stale)
            else:
                if parent_run_id:
                    tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
                run = client.create_run(self.store.experiment_id(self.experiment_name),
                                        run_name=redact(run_name), tags=context_tags(tags))
                run_id = run.info.run_id
        except KeyboardInterrupt:  # a stop signal while the run was being created: not RUNNING
            if run_id is not None:
                with suppress(Exception):
                    client.set_terminated(run_id, "KILLED")
            raise
        except Exception as exc:
            if not outage.is_outage(exc):
                raise
            raise UserError(f"MLflow tracking server {self.store.shown} went away before the"
                            " run started: nothing was trained; run the same command again"
                            " when it is up") from exc
        self.run_id, self.experiment_id = run_id, run.info.experiment_id
        self.delivery.adopt(run_id)
        if system_metrics:
            self._monitor = system_monitor(self.store.uri, run_id, resumed=bool(resume_run_id))
        return run_id

    def _write_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.store.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def replay_epochs(self, history: list[dict]) -> None:
        """Log the checkpointed epochs the store misses (a kill between checkpoint and log)."""
        logged = {m.step for m in self.store.client.get_metric_history(self.run_id, "loss")}
        for epoch, metrics in enumerate(history, start=1):
            if epoch not in logged:
                self.log_epoch(epoch, metrics)

    # -- writes: straight to the server, or into the outbox while it is unreachable --------

    def log_params(self, params: dict[str, Any]) -> None:
        flat = {k: "null" if v is None else redact(str(v)) for k, v in flatten(params).items()}
        self.delivery.send(
            lambda: self.store.client.log_batch(
                self.run_id, params=[Param(k, v) for k, v in flat.items()]),
            lambda box: {"op": "params", "params": flat})

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics(metrics, epoch)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._metrics(metrics, None)

    def _metrics(self, metrics: dict[str, float], step: int | None) -> None:
        """The timestamp is taken once, so a replay can tell a point the server already has."""
        values = {k: float(v) for k, v in metrics.items()}
        stamp = int(time.time() * 1000)
        self.delivery.send(
            lambda: self.store.client.log_batch(
                self.run_id, metrics=[Metric(k, v, stamp, step or 0) for k, v in values.items()]),
            lambda box: {"op": "metrics", "metrics": values, "step": step or 0,
                         "timestamp": stamp})

    def set_tags(self, tags: dict[str, str]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        self.delivery.send(lambda: self._write_tags(self.run_id, tags),
                           lambda box: {"op": "tags", "tags": tags})

    def _file(self, path: str, live: Callable[[], Any], write: Callable[[Path], Any]) -> None:
        """An artifact at ``path`` in the run: during an outage ``write`` saves it locally."""
        def park(box: outbox.Outbox) -> dict:
            write(box.file(f"artifacts/{path}"))
            parent = str(Path(path).parent)
            return {"op": "artifact", "file": f"artifacts/{path}",
                    "artifact_path": None if parent == "." else parent}

        self.delivery.send(live, park, small=False)

    def log_text(self, text: str, path: str) -> None:
        text = redact(text)
        self._file(path, lambda: self.store.client.log_text(self.run_id, text, path),
                   lambda f: f.write_text(text))

    def log_dict(self, data: dict, path: str) -> None:
        self._file(path, lambda: self.store.client.log_dict(self.run_id, data, path),
                   lambda f: f.write_text(json.dumps(data, indent=2)))

    def log_figure(self, figure, path: str) -> None:
        self._file(path, lambda: self.store.client.log_figure(self.run_id, figure, path),
                   figure.savefig)

    def log_file(self, local_path: Path, artifact_path: str | None = None) -> None:
        """One local file as it is (an evaluation's predictions CSV)."""
        target = f"{artifact_path}/{Path(local_path).name}" if artifact_path else Path(
            local_path).name
        self._file(target, lambda: self.store.client.log_artifact(
            self.run_id, str(local_path), artifact_path),
            lambda f: shutil.copyfile(local_path, f))

    def log_artifacts(self, local_dir: Path, path: str | None = None) -> None:
        """Log a folder of text files (Hydra's ``.hydra/``) with credentials redacted."""
        if not Path(local_dir).is_dir():
            return
        with tempfile.TemporaryDirectory() as tmp:
            for source in Path(local_dir).rglob("*"):
                if source.is_file():
                    target = Path(tmp) / source.relative_to(local_dir)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(redact(source.read_text(errors="replace")))

            def park(box: outbox.Outbox) -> dict:
                name = f"artifacts/{path or ''}/{len(box.records())}"  # one folder a record
                shutil.copytree(tmp, box.file(name), dirs_exist_ok=True)
                return {"op": "artifacts", "dir": name, "artifact_path": path}

            self.delivery.send(
                lambda: self.store.client.log_artifacts(self.run_id, tmp, path), park,
                small=False)

    def log_dataset(self, files: list[str], labels: list[str], splits: list[str], root: str,
                    name: str, digest: str | None = None) -> None:
        """Record the exact file list; ``digest`` (the data fingerprint's) identifies the data
        set in the UI, as the run's ``alexnet_exp.data_fingerprint`` tag does."""
        data = {"files": files, "labels": labels, "splits": splits, "root": root, "name": name,
                "digest": digest}

        def park(box: outbox.Outbox) -> dict:
            box.file("dataset.json").write_text(json.dumps(data))
            return {"op": "dataset", "file": "dataset.json"}

        self.delivery.send(lambda: self.store.client.log_inputs(
            self.run_id, datasets=[dataset_input(**data)]), park, small=False)

    def log_model(self, model, example: np.ndarray, code_dir: Path, metadata: dict,
                  name: str = "model", register_as: str | None = None) -> str:
        """The best weights as a logged model called ``name`` (registered as a new version of
        ``register_as``); during an outage saved (``.keras`` plus the input example) for
        ``alexnet-exp-sync`` to log. Returns the model URI."""
        uri = f"runs:/{self.run_id}/{name}"

        def live() -> None:
            nonlocal uri
            with self.store.fluent(self.experiment_id):  # no client form for logging a model
                uri = log_tf_model(model, example, code_dir, metadata, run_id=self.run_id,
                                   name=name, register_as=register_as)

        def park(box: outbox.Outbox) -> dict:
            model.save(box.file("model.keras"))
            self.delivery.keep_model(box.file("model.keras"), model)
            np.save(box.file("model_example.npy"), example)
            return {"op": "model", "file": "model.keras", "example": "model_example.npy",
                    "code_dir": str(code_dir), "metadata": metadata, "name": name,
                    "register_as": register_as}

        self.delivery.send(live, park, small=False)
        return uri

    def end(self, status: str = "FINISHED", error: str | None = None) -> None:
        """End the run; with the server still away, the end is stored with the outbox and
        one line says how to send it."""
        if self.run_id is None or self._ended:
            return
        self._ended = True
        if self._monitor is not None:  # its last samples land before the run ends
            self._monitor.finish()
        self.delivery.last_chance()
        if error:
            self.set_tags({"error": error[:5000]})
        self.delivery.send(lambda: self.store.client.set_terminated(self.run_id, status),
                           lambda box: {"op": "end", "status": status})
        self.delivery.still_waiting(status)

    def run_url(self) -> str:
        """The run's page on the server it was logged to; for a local store, in ``make ui``."""
        return self.store.run_url(self.experiment_id, self.run_id)
