"""Thin Hydra entry points: compose the config, check it, hand it to the runner.

A mistake the user can fix (bad value, missing folder, no network) ends as one line on stderr
and exit code 2, before any MLflow run is started when it can be caught that early.
"""

import importlib
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ chatter
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")  # a dead server: fail in seconds
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402

from alexnet_exp import stopping  # noqa: E402
from alexnet_exp.config import ExperimentConfig  # noqa: E402
from alexnet_exp.config_checks import validate  # noqa: E402
from alexnet_exp.config_store import register_configs  # noqa: E402
from alexnet_exp.errors import UserError, exit_with  # noqa: E402
from alexnet_exp.keys import PARENT_RUN_ENV  # noqa: E402
from alexnet_exp.outcome import SkippedJob, summary_json, summary_lines  # noqa: E402

TARGET_KEY = "_target_"
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

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
    if parent:
        from alexnet_exp import tracking

        tracking.end_sweep_parent(parent, status)


def to_experiment_config(cfg: DictConfig) -> ExperimentConfig:
    """The composed DictConfig as the typed dataclass tree the rest of the package takes."""
    return OmegaConf.to_object(cfg)


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
    ctx = runner.JobContext(
        launch_dir=Path(hydra_cfg.runtime.cwd),
        output_dir=output_dir,
        overrides=list(hydra_cfg.overrides.task),
        config_yaml=OmegaConf.to_yaml(cfg),
        hydra_dir=output_dir / hydra_cfg.output_subdir if hydra_cfg.output_subdir else None,
        parallel_jobs=parallel_jobs(hydra_cfg),
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
        fail(killed(stop), code=stop.exit_code, status="KILLED")
    if summary is None or isinstance(summary, SkippedJob):
        return summary and summary.objective  # a skipped sweep job reports its earlier run
    (output_dir / "summary.json").write_text(summary_json(summary))
    print(summary_lines(summary), flush=True)
    return summary.metrics[experiment.sweep.objective]  # what an Optuna sweep optimises


def killed(stop: stopping.Stopped) -> str:
    """The one line for a job stopped by a signal: what stopped it and which run is KILLED."""
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


def composition_error(exc: Exception) -> str:
    """Hydra's multi-line composition error as one line: the key, the value, what is allowed."""
    text = str(exc)
    missing = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        choices = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.M)
        return f"{group}={option} is not an option of {group}: choose one of {', '.join(choices)}"
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        return f"{key} is not a key of the config (alexnet-exp --cfg job lists every key)"
    tilde = re.search(r"LexerNoViableAltException: (\S+?)=(\S*~\S*)", text)
    if tilde:  # bash expands ~ only at the start of a word, never after key=
        key, value = tilde.groups()
        fix = f"quote it for Hydra: '{key}=\"{value}\"'"
        if value.startswith("~/"):
            fix = f"write {key}=$HOME{value[1:]} (bash expands $HOME there) or {fix}"
        return f"{key}={value}: Hydra cannot read an unquoted ~ in a value: {fix}"
    cause = exc.__cause__
    override = re.search(r"Error merging override (\S+)", text)
    if override and cause is not None:
        return f"{override.group(1)}: {str(cause).splitlines()[0]}"
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.startswith("See https://")]
    return f"cannot parse the command line ({'; '.join(lines)}): write overrides as key=value"


def refuse_target_overrides(args: list[str], program: str = "alexnet-exp") -> None:
    """Refuse any command-line ``_target_``: Hydra would import and call whatever it names
    (``hydra.callbacks.x._target_=os.system``), so a pasted or generated command line could run
    arbitrary code. Classes are chosen in config files under ``conf/``, which are reviewed code.

    Hydra's own parse is checked, not the text, so quoting, a dict value
    (``+hydra.callbacks.x={_target_: ...}``) or a sweep over dicts does not slip through while a
    folder that happens to be called ``_target_`` is still a plain value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    for arg in args:
        if arg.startswith("-"):
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([arg])
        except HydraException as exc:  # malformed: composing it fails before anything runs
            if "~" in arg:  # bash left ~ after key=: say how to write it (sweeps, tools too)
                fail(f"config: {composition_error(exc)}", program)
            continue
        if TARGET_KEY in override.key_or_group.split(".") or names_a_target(override.value()):
            fail(f"{arg}: a {TARGET_KEY} cannot be set on the command line (Hydra would import"
                 " and call it); choose a config option instead, or add a YAML file under"
                 f" {CONFIG_DIR}", program)


def names_a_target(value) -> bool:
    """Whether a parsed override value holds a ``_target_`` key at any depth."""
    if isinstance(value, dict):
        return TARGET_KEY in value or any(names_a_target(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(names_a_target(v) for v in value)
    choices = getattr(value, "list", None)  # ChoiceSweep / GlobChoiceSweep of a -m sweep
    return isinstance(choices, list) and names_a_target(choices)


MULTIRUN_FLAGS = ("-m", "--multirun")


def preflight(args: list[str]) -> None:
    """Compose the config before Hydra does, so a mistyped key, value or option is one line
    and exit 2 (Hydra prints several lines and exits 1). For a sweep (``-m``) every value of
    every swept key is composed and validated, before the sweep's parent run exists."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    multirun = any(a in MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if a not in MULTIRUN_FLAGS]
    if any(a.startswith("-") for a in overrides):  # --cfg, --help, ...: Hydra's own business
        return
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        try:
            jobs = sweep_jobs(overrides, compose) if multirun else [(overrides, None)]
            for job, swept in jobs:
                try:
                    cfg = compose(config_name="config", overrides=job, return_hydra_config=True)
                    if multirun:
                        validate(to_experiment_config(_without_hydra(cfg)))
                except (HydraException, UserError, OmegaConfBaseException) as exc:
                    where = f" (in the sweep {swept})" if swept else ""
                    message = composition_error(exc) if isinstance(exc, HydraException) \
                        else str(exc).splitlines()[0]
                    key = getattr(exc, "full_key", None)  # OmegaConf names the key apart
                    message = f"{key}: {message}" if key else message
                    fail(f"config: {message}{where}")
        except HydraException as exc:
            fail(f"config: {composition_error(exc)}")
    if not multirun:
        problem = unwritable(Path(cfg.hydra.run.dir))
        if problem:
            fail(f"hydra.run.dir={cfg.hydra.run.dir} {problem}: pass hydra.run.dir=<a writable"
                 " folder>")


def _without_hydra(cfg: DictConfig) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def sweep_jobs(overrides: list[str], compose) -> list[tuple[list[str], str | None]]:
    """Override lists that together try every value a ``-m`` command sweeps, each with the
    sweep it tests (``norm=bn,lnr``): the other swept keys stay at their first value, so a
    sweep of n values over k keys costs n compositions, not the n^k jobs it will run.

    The swept keys of a preset (``hydra.sweeper.params`` of ``experiment=six_ideas``) are
    tried too; Optuna's ``interval(a, b)`` is tried at both ends.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = compose(config_name="config", overrides=fixed, return_hydra_config=True)
    preset = OmegaConf.select(base, "hydra.sweeper.params") or {}
    command_keys = {o.key_or_group for o in parsed}
    swept = [o for o in parsed if o.is_sweep_override()]
    swept += [o for o in parser.parse_overrides([f"{k}={v}" for k, v in preset.items()])
              if o.key_or_group not in command_keys and o.is_sweep_override()]
    choices = [(o, _values(o)) for o in swept]
    firsts = [f"{o.get_key_element()}={values[0]}" for o, values in choices]
    jobs: list[tuple[list[str], str | None]] = [(fixed + firsts, None)]
    for i, (override, values) in enumerate(choices):
        for value in values[1:]:
            job = [*firsts[:i], f"{override.get_key_element()}={value}", *firsts[i + 1:]]
            jobs.append((fixed + job, override.input_line))
    return jobs


def _values(override) -> list[str]:
    value = override.value()
    if hasattr(value, "start") and hasattr(value, "end") and not hasattr(value, "step"):
        return [str(value.start), str(value.end)]  # an Optuna interval: both ends
    return list(override.sweep_string_iterator())


def unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or where it would be created), else None."""
    existing = folder.expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return None
    except OSError as exc:
        return f"is not writable ({exc.strerror} in {existing})"


def train_main() -> None:
    """``alexnet-exp``: train one model (or a sweep with ``-m``) and record it in MLflow."""
    refuse_target_overrides(sys.argv[1:])
    preflight(sys.argv[1:])
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
        module, function = job.split(":")
        try:
            getattr(importlib.import_module(module), function)(
                typed, Path(HydraConfig.get().runtime.cwd))
        except UserError as exc:
            fail(str(exc), program)

    def main() -> None:
        refuse_target_overrides(sys.argv[1:], program)
        run_tool()

    return main


def eval_main() -> None:
    """``alexnet-exp-eval``: accuracy, per-class report and confusion matrix on a test folder."""
    _tool("alexnet-exp-eval", "eval", "alexnet_exp.evaluate:run_evaluation")()


def predict_main() -> None:
    """``alexnet-exp-predict``: top-k classes of image files or folders."""
    _tool("alexnet-exp-predict", "predict", "alexnet_exp.evaluate:run_prediction")()


def export_main() -> None:
    """``alexnet-exp-export``: .keras, SavedModel or TFLite with a parity check."""
    _tool("alexnet-exp-export", "export", "alexnet_exp.export:run_export")()


def report_main() -> None:
    """``alexnet-exp-report``: runs of an experiment -> Markdown table + plots, logged to MLflow."""
    _tool("alexnet-exp-report", "report", "alexnet_exp.report:run_report")()


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
