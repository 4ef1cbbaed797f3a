"""The MLflow store and one run per training job: where runs live and how they are written.

The default store is SQLite at ``<launch dir>/mlruns/mlflow.db`` with artifacts under
``<launch dir>/mlruns/artifacts``, both absolute, so every job of a sweep (whatever its working
directory) and ``make ui`` see the same runs. ``tracking.uri`` or ``MLFLOW_TRACKING_URI``
point elsewhere (a team server).

A server that goes away mid-run does not stop training: the :class:`Tracker` buffers what it
cannot send in a local outbox (:mod:`.outbox`) and replays it when the server answers again, at
the latest at the end of the run; otherwise ``alexnet-exp-sync`` does.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext, suppress
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from alexnet_exp.config import TrackingConfig
from alexnet_exp.paths import outbox_dir as default_outbox_dir
from alexnet_exp.tracking import outage, outbox
from alexnet_exp.tracking.records import dataset_input, log_tf_model, redact

LOCAL_UI = "http://127.0.0.1:5000"  # where `make ui` serves the local store
STORE_LOCK = ".mlflow.db.lock"  # beside the database: held while a process creates/migrates it


def resolve_tracking_uri(cfg: TrackingConfig, launch_dir: Path,
                         create: bool = True) -> tuple[str, Path | None]:
    """Tracking URI and, for the local store, the folder under which artifacts live."""
    if cfg.uri:
        return cfg.uri, None
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"], None
    store = (launch_dir / cfg.store_dir).expanduser().resolve()
    if create:
        store.mkdir(parents=True, exist_ok=True)
    elif not (store / "mlflow.db").exists():
        from alexnet_exp.errors import UserError

        raise UserError(f"no MLflow store at {store / 'mlflow.db'}: run from the folder you"
                        " trained in, or pass tracking.uri=...")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    _open_local_store(store, uri, writable=create)
    return uri, store / "artifacts"


_opened_stores: set[str] = set()  # local stores this process has created/migrated already


def _open_local_store(store: Path, uri: str, writable: bool) -> None:
    """Create and migrate the SQLite store under an exclusive file lock, once per process.

    MLflow creates the tables and runs its Alembic migrations the first time a process opens a
    store; two first commands started together both migrate and one dies with ``Online
    migration expected to match one row``. The lock makes the second wait for the first, then
    find the schema current. A read-only store is refused in one line when this job must write
    to it (training), and opened without the lock when it only reads (eval, report).
    """
    if uri in _opened_stores:
        return
    from alexnet_exp.errors import UserError

    database = store / "mlflow.db"
    fix = (f"make it writable (chmod -R u+w {store}) or pass tracking.store_dir=<a writable"
           " folder>")
    try:
        fd = os.open(store / STORE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if writable:
            raise UserError(f"MLflow store folder {store} is read-only ({exc.strerror}):"
                            f" {fix}") from exc
        fd = None
    if writable and database.exists() and not os.access(database, os.W_OK):
        os.close(fd)
        raise UserError(f"MLflow store {database} is read-only: {fix}")
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed, or when the process dies
        mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates, migrates
    except Exception as exc:  # MLflow raises many types for a bad store
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"MLflow tracking store {uri} is not usable: {reason[:300]}") from exc
    finally:
        if fd is not None:
            os.close(fd)
    _opened_stores.add(uri)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay one value, as MLflow params are flat."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


class Tracker:
    """One MLflow run per training job; every write goes through here.

    Writes go to the server at once. When one fails because the server cannot be reached, the
    run goes on: that write and every later one are appended to the run's outbox file, and the
    server is asked again (``GET /health``, 2 s) at most every ``retry_seconds``; once it
    answers, the outbox is replayed in order and writes go straight to the server again.
    """

    retry_seconds = 10.0

    def __init__(self, cfg: TrackingConfig, launch_dir: Path, outbox_dir: Path | None = None,
                 load_model: Callable[[Path], Any] | None = None):
        """``load_model(path)`` reads a ``.keras`` file that a killed process of this run left
        in its outbox; without it such a model waits for ``alexnet-exp-sync``. A model this
        Tracker buffered itself is still in memory and needs no loading."""
        self.cfg = cfg
        self.uri, self.artifact_root = resolve_tracking_uri(cfg, launch_dir)
        mlflow.set_tracking_uri(self.uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.outbox_dir = Path(outbox_dir) if outbox_dir else default_outbox_dir()
        self.outbox: outbox.Outbox | None = None  # set while the server is unreachable
        self.load_model = load_model
        self._parked_models: dict[Path, Any] = {}  # outbox file -> the model saved there
        self._next_probe = 0.0

    def check(self) -> None:
        """Fail now, with one line, if the store cannot be used: not after an hour of training.

        An http(s) server is asked ``/health`` first with a 2 s timeout: MLflow's own client
        would retry a closed port for ~15 s and a server that never answers for ~100 s.
        """
        from alexnet_exp.errors import UserError

        where = f"MLflow tracking store {redact(self.uri)} is not usable"
        reason = outage.probe(self.uri)
        if reason:
            raise UserError(f"{where}: {reason}; start the server or fix tracking.uri /"
                            " MLFLOW_TRACKING_URI")
        try:
            mlflow.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises many types for a bad store or a dead server
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"{where}: {redact(reason)[:300]}"
                            " (check tracking.uri / MLFLOW_TRACKING_URI)") from exc

    def _experiment_id(self) -> str:
        name = self.cfg.experiment_name
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if self.artifact_root is not None:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            digest = hashlib.sha1(name.encode()).hexdigest()[:6]
            location = (self.artifact_root / f"{slug}-{digest}").as_uri()
        try:
            return mlflow.create_experiment(name, artifact_location=location)
        except MlflowException:  # a parallel job created it first
            return mlflow.get_experiment_by_name(name).experiment_id

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None,
              resume_run_id: str | None = None) -> str:
        """A new run, or (``resume_run_id``) the killed run this job continues, RUNNING again."""
        from alexnet_exp.errors import UserError

        tags = {k: redact(v) for k, v in tags.items() if v is not None}
        try:
            if resume_run_id:
                run = mlflow.start_run(run_id=resume_run_id)
                mlflow.set_tags(tags)
                for stale in ("failure_reason", "error"):  # how it ends is written at its end
                    if stale in run.data.tags:
                        mlflow.delete_tag(stale)
            else:
                run = mlflow.start_run(experiment_id=self._experiment_id(),
                                       run_name=redact(run_name), parent_run_id=parent_run_id,
                                       tags=tags)
        except KeyboardInterrupt:  # a stop signal while the run was being created: not RUNNING
            if mlflow.active_run() is not None:
                mlflow.end_run(status="KILLED")
            raise
        except Exception as exc:
            if not outage.is_outage(exc):
                raise
            raise UserError(f"MLflow tracking server {redact(self.uri)} went away before the"
                            " run started: nothing was trained; run the same command again"
                            " when it is up") from exc
        self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        self._adopt_outbox()
        return self.run_id

    def _adopt_outbox(self) -> None:
        """A killed process of this run may have left metrics in the outbox: send them now
        (before ``replay_epochs`` compares the store with the checkpoint)."""
        path = outbox.path_for(self.outbox_dir, self.run_id)
        if not path.exists() or outbox.Outbox(path).writer_alive():
            return
        try:
            outbox.replay(outbox.Outbox(path), self.uri, with_end=False,
                          load_model=self._model_for_replay)
        except Exception as exc:
            if outage.is_outage(exc):
                self._go_offline(exc)
            else:
                self._leave_for_sync(path, exc)

    def _model_for_replay(self, path: Path):
        if path in self._parked_models:  # kept: a replay cut short by the server tries again
            return self._parked_models[path]
        if self.load_model is None:
            raise outbox.NoModelLoader(path)
        return self.load_model(path)

    def _leave_for_sync(self, path: Path, exc: BaseException) -> None:
        """A buffered record the server refuses must not stop training: sync retries it."""
        print(f"alexnet-exp: warning: could not replay {path}:"
              f" {redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:200]};"
              " it is left for alexnet-exp-sync", file=sys.stderr, flush=True)

    # -- writes: straight to the server, or into the outbox while it is unreachable --------

    def _send(self, live: Callable[[], Any], park: Callable[[outbox.Outbox], dict],
              small: bool = True) -> None:
        """``live()`` against the server; during an outage ``park(outbox)`` -> a record.

        ``small`` writes (metrics, tags, params) get a 5 s timeout and one retry, so the first
        failure costs ~0 s (refused) to ~12 s (a hung server) instead of MLflow's ~15-100 s;
        artifacts and the model keep MLflow's own (user-set) limits.
        """
        if self.outbox is not None and not self._reconnect():
            self.outbox.append(park(self.outbox))
            return
        try:
            with outage.http_limits(outage.WRITE_LIMITS) if small else nullcontext():
                live()
        except Exception as exc:
            if self.run_id is None or not outage.is_outage(exc):
                raise
            self._go_offline(exc)
            self.outbox.append(park(self.outbox))

    def _go_offline(self, exc: BaseException) -> None:
        if self.outbox is None:
            self.outbox = outbox.Outbox.create(self.outbox_dir, self.run_id, redact(self.uri))
            reason = outage.probe(self.uri, timeout=2.0) or str(exc).splitlines()[0][:200]
            print(f"alexnet-exp: warning: tracking server {redact(self.uri)} unreachable:"
                  f" {redact(reason)}; buffering metrics to {self.outbox.path}; they are"
                  " replayed when it is back or by alexnet-exp-sync", file=sys.stderr,
                  flush=True)
        self._next_probe = time.monotonic() + self.retry_seconds

    def _reconnect(self) -> bool:
        """True once the server answers again and the outbox has been replayed."""
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + self.retry_seconds
        if outage.probe(self.uri, timeout=2.0):
            return False
        try:  # MLflow's own limits: the buffered artifacts and model may be large
            done = outbox.replay(self.outbox, self.uri, with_end=False,
                                 load_model=self._model_for_replay)
        except Exception as exc:
            if outage.is_outage(exc):
                return False
            self._leave_for_sync(self.outbox.path, exc)  # writes go to the server again
            self.outbox = None
            return True
        print(f"alexnet-exp: tracking server {redact(self.uri)} is back: replayed"
              f" {done.points} buffered metric points", file=sys.stderr, flush=True)
        self.outbox = None
        return True

    def replay_epochs(self, history: list[dict]) -> None:
        """Log the checkpointed epochs the store misses (a kill between checkpoint and log)."""
        logged = {m.step for m in mlflow.MlflowClient().get_metric_history(self.run_id, "loss")}
        for epoch, metrics in enumerate(history, start=1):
            if epoch not in logged:
                self.log_epoch(epoch, metrics)

    def log_params(self, params: dict[str, Any]) -> None:
        flat = {k: "null" if v is None else redact(str(v)) for k, v in flatten(params).items()}
        self._send(lambda: mlflow.log_params(flat), lambda box: {"op": "params", "params": flat})

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self._metrics(metrics, epoch)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        self._metrics(metrics, None)

    def _metrics(self, metrics: dict[str, float], step: int | None) -> None:
        """The timestamp is taken once, so a replay can tell a point the server already has."""
        values = {k: float(v) for k, v in metrics.items()}
        stamp = int(time.time() * 1000)
        self._send(lambda: mlflow.log_metrics(values, step=step, timestamp=stamp),
                   lambda box: {"op": "metrics", "metrics": values, "step": step or 0,
                                "timestamp": stamp})

    def set_tags(self, tags: dict[str, str]) -> None:
        tags = {k: str(v) for k, v in tags.items()}
        self._send(lambda: mlflow.set_tags(tags), lambda box: {"op": "tags", "tags": tags})

    def _file(self, path: str, live: Callable[[], Any], write: Callable[[Path], Any]) -> None:
        """An artifact at ``path`` in the run: during an outage ``write`` saves it locally."""
        def park(box: outbox.Outbox) -> dict:
            write(box.file(f"artifacts/{path}"))
            parent = str(Path(path).parent)
            return {"op": "artifact", "file": f"artifacts/{path}",
                    "artifact_path": None if parent == "." else parent}

        self._send(live, park, small=False)

    def log_text(self, text: str, path: str) -> None:
        text = redact(text)
        self._file(path, lambda: mlflow.log_text(text, path), lambda f: f.write_text(text))

    def log_dict(self, data: dict, path: str) -> None:
        self._file(path, lambda: mlflow.log_dict(data, path),
                   lambda f: f.write_text(json.dumps(data, indent=2)))

    def log_figure(self, figure, path: str) -> None:
        self._file(path, lambda: mlflow.log_figure(figure, path), figure.savefig)

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

            self._send(lambda: mlflow.log_artifacts(tmp, path), park, small=False)

    def log_dataset(self, files: list[str], labels: list[str], splits: list[str], root: str,
                    name: str, digest: str | None = None) -> None:
        """Record the exact file list; ``digest`` (the data fingerprint's) identifies the data
        set in the UI, as the run's ``alexnet_exp.data_fingerprint`` tag does."""
        data = {"files": files, "labels": labels, "splits": splits, "root": root, "name": name,
                "digest": digest}

        def park(box: outbox.Outbox) -> dict:
            box.file("dataset.json").write_text(json.dumps(data))
            return {"op": "dataset", "file": "dataset.json"}

        self._send(lambda: mlflow.MlflowClient().log_inputs(
            self.run_id, datasets=[dataset_input(**data)]), park, small=False)

    def log_model(self, model, example: np.ndarray, code_dir: Path, metadata: dict) -> str:
        """The best weights as a logged model; during an outage saved (``.keras`` plus the
        input example) for ``alexnet-exp-sync`` to log. Returns the model URI."""
        uri = f"runs:/{self.run_id}/model"

        def live() -> None:
            nonlocal uri
            uri = log_tf_model(model, example, code_dir, metadata)

        def park(box: outbox.Outbox) -> dict:
            model.save(box.file("model.keras"))
            self._parked_models[box.file("model.keras")] = model
            np.save(box.file("model_example.npy"), example)
            return {"op": "model", "file": "model.keras", "example": "model_example.npy",
                    "code_dir": str(code_dir), "metadata": metadata}

        self._send(live, park, small=False)
        return uri

    def end(self, status: str = "FINISHED", error: str | None = None) -> None:
        """End the run; with the server still away, the end is stored with the outbox and
        one line says how to send it."""
        if mlflow.active_run() is None:
            return
        if self.outbox is not None:
            self._next_probe = 0.0  # the last chance to replay from this process
        if error:
            self.set_tags({"error": error[:5000]})

        def park(box: outbox.Outbox) -> dict:
            # Leave MLflow's active-run stack (end_run pops it, then cannot reach the server).
            with outage.http_limits({"MLFLOW_HTTP_REQUEST_TIMEOUT": 1,
                                     "MLFLOW_HTTP_REQUEST_MAX_RETRIES": 0}), suppress(Exception):
                mlflow.end_run(status=status)
            return {"op": "end", "status": status}

        self._send(lambda: mlflow.end_run(status=status), park)
        if self.outbox is not None:
            hint = "" if self.outbox_dir == default_outbox_dir() else (
                f" outbox_dir={self.outbox_dir}")
            print(f"alexnet-exp: tracking server {redact(self.uri)} is still unreachable: run"
                  f" {self.run_id} ({status}) waits in {self.outbox.path}; when the server is"
                  f" up, run: alexnet-exp-sync{hint}", file=sys.stderr, flush=True)

    def run_url(self) -> str:
        """The run's page on the server it was logged to; for a local store, in ``make ui``."""
        server = self.uri.startswith(("http://", "https://"))
        base = redact(self.uri).rstrip("/") if server else LOCAL_UI
        return f"{base}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
