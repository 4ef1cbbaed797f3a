"""Thin Hydra entry points: compose the config, check it, hand it to the runner.

A mistake the user can fix (bad value, missing folder, no network) ends as one line on stderr
and exit code 2, before any MLflow run is started when it can be caught that early: the
command line's own checks are :mod:`alexnet_exp.preflight`; how the process ends (and the
sweep's parent run with it) is decided here.
"""

import importlib
import logging
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")  # a dead server: fail in seconds
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from alexnet_exp import console, stopping  # noqa: E402
from alexnet_exp.config_checks import validate  # noqa: E402
from alexnet_exp.config_store import register_configs  # noqa: E402
from alexnet_exp.errors import UserError, exit_with  # noqa: E402
from alexnet_exp.keys import PARENT_RUN_ENV, PARENT_STORE_ENV, SWEPT_KEYS_ENV  # noqa: E402
from alexnet_exp.outcome import SkippedJob, keep_summary, summary_lines  # noqa: E402
from alexnet_exp.paths import CONFIG_DIR, redact_files  # noqa: E402
from alexnet_exp.preflight import (  # noqa: E402
    preflight,
    refuse_target_overrides,
    refuse_two_modes,
    to_experiment_config,
)
from alexnet_exp.tool_config import (  # noqa: E402
    EvalConfig,
    require_model_file,
    require_test_folder,
    validate_tool,
)

log = logging.getLogger(__name__)

register_configs()


def fail(message: str, program: str = "alexnet-exp", code: int = 2,
         status: str = "FAILED") -> None:
    """One line, exit 2; inside a sweep the parent run is closed as FAILED first."""
    close_sweep_parent(status)
    exit_with(message, program, code)


def close_sweep_parent(status: str) -> None:
    """End the sweep's parent run as ``status`` if it is still open in this process: a sweep
    that stops early (a bad job, a crash, Ctrl-C) never leaves its parent RUNNING."""
    parent = os.environ.pop(PARENT_RUN_ENV, None)
    store = os.environ.pop(PARENT_STORE_ENV, None)
    os.environ.pop(SWEPT_KEYS_ENV, None)  # a next command in this process is no sweep job
    if parent and store:
        from alexnet_exp import tracking

        tracking.end_sweep_parent(tracking.Store(store), parent, status)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _train(cfg: DictConfig) -> float | None:
    with stopping.job():  # in a joblib worker process too, where train_main never ran
        return _train_job(cfg)


def _train_job(cfg: DictConfig) -> float | None:
    try:
        experiment = to_experiment_config(cfg)
        validate(experiment)
    except UserError as exc:
        fail(f"config: {exc}")
    from alexnet_exp import runner

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    redact_hydra_files(hydra_cfg)
    ctx = runner.JobContext(
        launch_dir=Path(hydra_cfg.runtime.cwd),
        output_dir=output_dir,
        overrides=list(hydra_cfg.overrides.task),
        config_yaml=OmegaConf.to_yaml(cfg),
        hydra_dir=output_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None,
        parallel_jobs=parallel_jobs(hydra_cfg),
        sweep_dir=(Path(hydra_cfg.sweep.dir).resolve() if hydra_cfg.mode == RunMode.MULTIRUN
                   else None),
    )
    try:
        summary = runner.run(experiment, ctx)
    except UserError as exc:
        fail(str(exc))
    except OSError as exc:  # a full disk, a read-only or vanished folder: the run is FAILED
        fail(f"{write_error(exc)}; free disk space or point hydra.run.dir / the tracking store"
             " elsewhere, then run the same command again (it resumes)")
    except KeyboardInterrupt as exc:
        stop = stopping.as_stop(exc)
        stopping.hand_over(stop)  # submitit's time limit: it requeues the job, which resumes
        fail(killed(stop, tracked=experiment.tracking.backend != "none"), code=stop.exit_code,
             status="KILLED")
    if summary is None or isinstance(summary, SkippedJob):
        return summary and summary.objective  # a skipped sweep job reports its earlier run
    log.info(summary_lines(keep_summary(summary, output_dir, experiment.trainer.tensorboard)))
    return summary.metrics[experiment.sweep.objective]  # what an Optuna sweep optimises


def redact_hydra_files(hydra_cfg) -> None:
    """Hydra's own copies of the config and the command line (the job's ``.hydra/``, the
    sweep's ``multirun.yaml``) as every other file of ours is written: without the user info
    of a tracking URI. They are rewritten before the job starts, so a job killed at any point
    leaves none behind."""
    files = []
    if hydra_cfg.output_subdir:
        subdir = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
        files += [subdir / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        files.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
    redact_files(*files)


def killed(stop: stopping.Stopped, tracked: bool = True) -> str:
    """The one line for a job stopped by a signal: what stopped it and which run is KILLED
    (under ``tracking=none`` there is no run to speak of)."""
    if not tracked:
        return f"{stop} (tracking=none: nothing was recorded)"
    if stop.run_id:
        return f"{stop}; MLflow run {stop.run_id} is marked KILLED"
    return f"{stop} before its MLflow run started"


def parallel_jobs(hydra_cfg) -> int:
    """How many jobs share this machine's cores: joblib's ``n_jobs`` (negative as joblib counts
    them), or for submitit's local launcher as many as ``cpus_per_task`` leaves room for."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return 1
    launcher = hydra_cfg.launcher
    cores = os.cpu_count() or 1
    if "LocalLauncher" in str(launcher.get("_target_", "")) and launcher.get("cpus_per_task"):
        return max(1, cores // launcher.cpus_per_task)
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return 1
    return max(1, n_jobs if n_jobs > 0 else cores + 1 + n_jobs)


def write_error(exc: OSError) -> str:
    """``cannot write <file>: <reason>`` from an OSError, h5py's multi-line ones included."""
    text = " ".join(str(exc).split())
    named = re.search(r"filename = '([^']+)'", text)
    where = exc.filename or (named.group(1) if named else None)
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or text)[:200]
    return f"cannot write {where}: {reason}" if where else f"cannot write: {reason}"


def train_main() -> None:
    """``alexnet-exp``: train one model (or a sweep with ``-m``) and record it in MLflow."""
    try:
        refuse_target_overrides(sys.argv[1:])
        preflight(sys.argv[1:])
    except UserError as exc:
        fail(str(exc))
    stopping.install(anywhere=True)
    try:
        _train()
    except KeyboardInterrupt as exc:  # stopped outside a job: a sweep between or around its jobs
        stop = stopping.as_stop(exc)
        fail(f"{stop}; the sweep's MLflow runs are marked KILLED" if os.environ.get(
            PARENT_RUN_ENV) else str(stop), code=stop.exit_code, status="KILLED")
    finally:  # the parent is still open only if the sweep did not reach its end
        close_sweep_parent("FAILED")


def _tool(program: str, config_name: str, job: str):
    """A Hydra main for a tool that works on a trained model (eval, predict, export).

    ``job`` is ``module:function``, imported only after Hydra has parsed the command line, so
    ``--help`` and a mistyped key answer at once, without loading TensorFlow.
    """

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
    def run_tool(cfg: DictConfig) -> None:
        typed = OmegaConf.to_object(cfg)
        launch_dir = Path(HydraConfig.get().runtime.cwd)
        module, function = job.split(":")
        try:
            check_before_loading(typed, launch_dir)
            if module != "alexnet_exp.report":  # the one tool without TensorFlow
                console.load_tensorflow()
            getattr(importlib.import_module(module), function)(typed, launch_dir)
        except UserError as exc:
            fail(str(exc), program)

    def main() -> None:
        try:
            refuse_target_overrides(sys.argv[1:])
            refuse_two_modes(sys.argv[1:])
        except UserError as exc:
            fail(str(exc), program)
        stopping.install(anywhere=True)  # SIGTERM as Ctrl-C: an evaluation's run ends KILLED
        try:
            run_tool()
        except KeyboardInterrupt as exc:
            stop = stopping.as_stop(exc)
            fail(str(stop), program, code=stop.exit_code)

    return main


def check_before_loading(cfg, launch_dir: Path) -> None:
    """A tool's config checks, and the store a ``run_id`` / ``model_uri`` is read from, before
    TensorFlow loads: a mistyped command fails in about a second instead of ten."""
    validate_tool(cfg)
    if getattr(cfg, "model_path", None):
        require_model_file(cfg)
    elif getattr(cfg, "run_id", None) or getattr(cfg, "model_uri", None):
        from alexnet_exp import tracking

        store = tracking.open_store(cfg.tracking, launch_dir, create=False)
        if cfg.run_id:  # a prefix becomes the whole id here, for every tool alike
            cfg.run_id = tracking.require_run(store, cfg.run_id)
    if isinstance(cfg, EvalConfig):
        require_test_folder(cfg)


def eval_main() -> None:
    """``alexnet-exp-eval``: accuracy, per-class report and confusion matrix on a test folder."""
    _tool("alexnet-exp-eval", "eval", "alexnet_exp.evaluation:run_evaluation")()


def predict_main() -> None:
    """``alexnet-exp-predict``: top-k classes of image files or folders."""
    _tool("alexnet-exp-predict", "predict", "alexnet_exp.prediction:run_prediction")()


def export_main() -> None:
    """``alexnet-exp-export``: .keras, SavedModel or TFLite with a parity check."""
    _tool("alexnet-exp-export", "export", "alexnet_exp.export:run_export")()


def report_main() -> None:
    """``alexnet-exp-report``: runs of an experiment -> Markdown table + plots, logged to MLflow."""
    _tool("alexnet-exp-report", "report", "alexnet_exp.report:run_report")()


def pack_main() -> None:
    """``alexnet-exp-pack``: class folders -> sharded TFRecord files and a manifest."""
    _tool("alexnet-exp-pack", "pack", "alexnet_exp.pack:run_pack")()


def sync_main() -> None:
    """``alexnet-exp-sync``: send what runs buffered while the tracking server was away.

    A plain argparse main (no Hydra config): it reads only the outbox folder, and answers
    without loading TensorFlow unless a buffered model has to be logged.
    """
    import argparse

    from alexnet_exp import sync

    parser = argparse.ArgumentParser(
        prog="alexnet-exp-sync",
        description="Replay the metrics, tags, artifacts and models that training runs buffered"
        " while their MLflow tracking server was unreachable, and end those runs.")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"outbox_dir=<folder> (default {sync.default_dir()}),"
                        " tracking.uri=<server> (default: the server each run was logged to)")
    args = parser.parse_args()
    keys = {"outbox_dir": None, "tracking.uri": None}
    for item in args.overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in keys:
            fail(f"{item}: use outbox_dir=<folder> or tracking.uri=<server>", "alexnet-exp-sync")
        keys[key] = value
    folder = Path(keys["outbox_dir"]).expanduser() if keys["outbox_dir"] else sync.default_dir()
    sys.exit(sync.sync(folder, keys["tracking.uri"]))
