"""The MLflow store and one run per training job: where runs live and how they are written.

The default store is SQLite at ``<launch dir>/mlruns/mlflow.db`` with artifacts under
``<launch dir>/mlruns/artifacts``, both absolute, so every job of a sweep (whatever its working
directory) and ``make ui`` see the same runs. ``tracking.uri`` or ``MLFLOW_TRACKING_URI``
point elsewhere (a team server).
"""

import hashlib
import os
import re
import subprocess
import tempfile
import warnings
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException

from alexnet_exp.config import TrackingConfig


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
    return f"sqlite:///{store / 'mlflow.db'}", store / "artifacts"


CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``https://user:token@host`` -> ``https://***@host``: what is logged must not hold secrets
    (a tracking URI with credentials can reach params, tags, run names and the config files)."""
    return CREDENTIALS.sub(r"\g<scheme>***@", text)


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


def _pinned(*packages: str) -> list[str]:
    """Exact versions of what the logged model needs, so MLflow need not infer them by
    loading the model in a subprocess (slow, and it drags in the whole environment)."""
    return [f"{p}=={package_version(p)}" for p in packages]


class Tracker:
    """One MLflow run per training job; every write goes through here."""

    def __init__(self, cfg: TrackingConfig, launch_dir: Path):
        self.cfg = cfg
        self.uri, self.artifact_root = resolve_tracking_uri(cfg, launch_dir)
        mlflow.set_tracking_uri(self.uri)
        self.run_id: str | None = None
        self.experiment_id: str | None = None

    def check(self) -> None:
        """Fail now, with one line, if the store cannot be used: not after an hour of training."""
        from alexnet_exp.errors import UserError

        try:
            mlflow.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises many types for a bad store or a dead server
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"MLflow tracking store {redact(self.uri)} is not usable:"
                            f" {redact(reason)[:300]}"
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
        tags = {k: redact(v) for k, v in tags.items() if v is not None}
        if resume_run_id:
            run = mlflow.start_run(run_id=resume_run_id)
            mlflow.set_tags(tags)
        else:
            run = mlflow.start_run(experiment_id=self._experiment_id(),
                                   run_name=redact(run_name), parent_run_id=parent_run_id,
                                   tags=tags)
        self.run_id, self.experiment_id = run.info.run_id, run.info.experiment_id
        return self.run_id

    def replay_epochs(self, history: list[dict]) -> None:
        """Log the checkpointed epochs the store misses (a kill between checkpoint and log)."""
        logged = {m.step for m in mlflow.MlflowClient().get_metric_history(self.run_id, "loss")}
        for epoch, metrics in enumerate(history, start=1):
            if epoch not in logged:
                mlflow.log_metrics(metrics, step=epoch)

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params({k: "null" if v is None else redact(str(v))
                           for k, v in flatten(params).items()})

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_text(self, text: str, path: str) -> None:
        mlflow.log_text(redact(text), path)

    def log_dict(self, data: dict, path: str) -> None:
        mlflow.log_dict(data, path)

    def log_figure(self, figure, path: str) -> None:
        mlflow.log_figure(figure, path)

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
            mlflow.log_artifacts(tmp, path)

    def log_dataset(self, files: list[str], labels: list[str], splits: list[str], root: str,
                    name: str) -> None:
        """Record the exact file list (its digest identifies the data set in the UI)."""
        import pandas as pd

        frame = pd.DataFrame({"path": files, "label": labels, "split": splits})
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways"
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(frame, source=root, name=name, targets="label")
        mlflow.log_input(dataset, context="training")

    def log_model(self, model, example: np.ndarray, code_dir: Path, metadata: dict) -> str:
        """Log with the tensorflow flavour: it carries the package (the registered LRN layer
        must be importable where the model loads) and takes an input example."""
        from mlflow.models import infer_signature

        signature = infer_signature(example, model.predict(example, verbose=0))
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            code_paths=[str(code_dir)],
            pip_requirements=_pinned("tensorflow", "keras", "numpy"),
            metadata=metadata,
        )
        return info.model_uri

    def end(self, status: str = "FINISHED", error: str | None = None) -> None:
        if mlflow.active_run() is None:
            return
        if error:
            mlflow.set_tag("error", error[:5000])
        mlflow.end_run(status=status)

    def run_url(self) -> str:
        return f"http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/{self.run_id}"
