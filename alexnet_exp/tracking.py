"""Everything MLflow: the only module that imports it.

The default store is SQLite at ``<launch dir>/mlruns/mlflow.db`` with artifacts under
``<launch dir>/mlruns/artifacts``, both absolute, so every job of a sweep (whatever its working
directory) and ``make ui`` see the same runs. ``tracking.uri`` or ``MLFLOW_TRACKING_URI``
point elsewhere (a team server).
"""

import hashlib
import os
import re
import subprocess
import warnings
from dataclasses import replace
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
            raise UserError(f"MLflow tracking store {self.uri} is not usable: {reason[:300]}"
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

    def start(self, run_name: str, tags: dict[str, str], parent_run_id: str | None = None) -> str:
        self.experiment_id = self._experiment_id()
        run = mlflow.start_run(experiment_id=self.experiment_id, run_name=run_name,
                               parent_run_id=parent_run_id,
                               tags={k: v for k, v in tags.items() if v is not None})
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        mlflow.log_params({k: "null" if v is None else v for k, v in flatten(params).items()})

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics, step=epoch)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        mlflow.log_metrics(metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        mlflow.set_tags(tags)

    def log_text(self, text: str, path: str) -> None:
        mlflow.log_text(text, path)

    def log_dict(self, data: dict, path: str) -> None:
        mlflow.log_dict(data, path)

    def log_figure(self, figure, path: str) -> None:
        mlflow.log_figure(figure, path)

    def log_artifacts(self, local_dir: Path, path: str | None = None) -> None:
        if Path(local_dir).is_dir():
            mlflow.log_artifacts(str(local_dir), path)

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


def load_model_bundle(cfg, launch_dir: Path):
    """The model named by ``run_id`` / ``model_uri`` / ``model_path`` with its preprocessing.

    Logged models carry class names and input size as MLflow model metadata; a ``.keras`` file
    carries them in the ``.json`` file the exporter writes beside it.
    """
    import json

    import keras

    from alexnet_exp.errors import UserError
    from alexnet_exp.evaluate import PAPER_RESIZE, ModelBundle, sidecar_path
    from alexnet_exp.model import as_float32  # also registers LRN, which safe_mode needs

    train_run_id = cfg.run_id
    if cfg.model_path:
        path = Path(cfg.model_path).expanduser()
        if not path.is_file():
            raise UserError(f"model_path={cfg.model_path} does not exist")
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise UserError(f"{sidecar} (class names, input size) is missing beside {path}:"
                            " export with alexnet-exp-export format=keras to get both")
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot load {path} as a .keras model: {reason[:300]}") from exc
        metadata, source = json.loads(sidecar.read_text()), str(path)
        mlflow.set_tracking_uri(resolve_tracking_uri(cfg.tracking, launch_dir)[0])
        train_run_id = metadata.get("train_run_id")
        if train_run_id and not run_exists(train_run_id):
            train_run_id = None  # trained against another store: nothing to link to here
    else:
        uri, _ = resolve_tracking_uri(cfg.tracking, launch_dir, create=False)
        mlflow.set_tracking_uri(uri)
        source = cfg.model_uri or f"runs:/{cfg.run_id}/model"
        if cfg.run_id and not run_exists(cfg.run_id):
            raise UserError(f"run_id={cfg.run_id}: no such run in {uri}")
        try:
            info = mlflow.models.get_model_info(source)
        except (MlflowException, OSError) as exc:
            hint = (" (no model logged: was it trained with tracking.log_model=false, or is"
                    " it an evaluation run?)" if cfg.run_id else "")
            raise UserError(f"cannot find model {source} in {uri}{hint}") from exc
        try:
            model = mlflow.tensorflow.load_model(source)
        except (MlflowException, OSError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot load model {source}: {reason[:300]}") from exc
        metadata = info.metadata or {}
        train_run_id = train_run_id or info.run_id
    if "class_names" not in metadata:
        raise UserError(f"{source} records no class names: was it trained by alexnet-exp?")
    input_size = int(model.input_shape[1])
    return ModelBundle(
        model=as_float32(model),
        class_names=list(metadata["class_names"]),
        input_size=input_size,
        eval_resize=int(metadata.get("eval_resize", round(input_size * PAPER_RESIZE))),
        source=source,
        train_run_id=train_run_id,
    )


def run_exists(run_id: str) -> bool:
    try:
        mlflow.get_run(run_id)
    except MlflowException:
        return False
    return True


def run_tag(run_id: str, tag: str) -> str | None:
    return mlflow.get_run(run_id).data.tags.get(tag)


def experiment_name_of(run_id: str) -> str:
    return mlflow.get_experiment(mlflow.get_run(run_id).info.experiment_id).name


def log_artifact_to_run(run_id: str, local_path: Path, artifact_path: str) -> None:
    """Attach a file to a finished run (exports land beside the model they came from)."""
    client = mlflow.MlflowClient()
    if Path(local_path).is_dir():
        client.log_artifacts(run_id, str(local_path), artifact_path)
    else:
        client.log_artifact(run_id, str(local_path), artifact_path)


def log_evaluation(cfg, launch_dir: Path, bundle, root: Path, metrics: dict, figure,
                   report_text: str, csv_path: Path | None) -> str:
    """One MLflow run per evaluation, in the training run's experiment, tagged with its id."""
    experiment = (experiment_name_of(bundle.train_run_id) if bundle.train_run_id
                  else cfg.tracking.experiment_name)
    tracker = Tracker(replace(cfg.tracking, experiment_name=experiment), launch_dir)
    tracker.start(f"eval {root.name} tta={cfg.tta}", tags={
        "alexnet_exp.kind": "evaluation",
        "alexnet_exp.train_run_id": bundle.train_run_id or "(none)",
        "model_source": bundle.source,
        "test_data": str(root),
    })
    try:
        tracker.log_params({"tta": cfg.tta, "top_k": cfg.top_k, "data_dir": str(root),
                            "model": bundle.source})
        tracker.log_metrics(metrics)
        tracker.log_figure(figure, "plots/confusion_matrix.png")
        tracker.log_text(report_text, "eval/classification_report.txt")
        if csv_path is not None:
            mlflow.log_artifact(str(csv_path), "eval")
    except BaseException as exc:
        tracker.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracker.end("FINISHED")
    return tracker.run_id


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
