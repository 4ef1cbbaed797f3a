"""The command line as Python calls, for a notebook or a script: compose a config from the same
overrides, then train, evaluate or predict with it.

``alexnet_exp.compose(["experiment=demo", "norm=bn"])`` gives the validated
:class:`~alexnet_exp.config.ExperimentConfig` that ``alexnet-exp experiment=demo norm=bn``
trains; ``alexnet_exp.train(cfg)`` trains it into the same store, with the same records, and
returns the run's :class:`~alexnet_exp.outcome.RunSummary`. A mistake raises the
:class:`~alexnet_exp.errors.UserError` whose one line the command line would print: a notebook
keeps its kernel, and the message says what to fix.

Hydra's compose API needs the schemas in its ConfigStore and the package's ``conf/`` folder; a
plain ``hydra.compose`` without them fails with "Could not load 'base_config'". Here both are
set up once. TensorFlow is loaded only when a call needs it, through
:func:`alexnet_exp.console.load_tensorflow`, so its start-up lines never reach a notebook.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alexnet_exp.errors import UserError

if TYPE_CHECKING:
    from alexnet_exp.config import ExperimentConfig
    from alexnet_exp.outcome import RunSummary

def compose(overrides: Sequence[str] = (), config_name: str = "config",
            config_dir: str | Path | None = None):
    """The config ``alexnet-exp <overrides>`` runs (``config_name="eval"`` / ``"predict"``: the
    tools' configs), checked as the command line checks it. ``config_dir``: your own config
    groups, as ``--config-dir`` adds them."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from alexnet_exp.config_store import register_configs
    from alexnet_exp.paths import CONFIG_DIR
    from alexnet_exp.preflight import refuse_target_overrides, to_experiment_config
    from alexnet_exp.user_configs import with_search_path

    if isinstance(overrides, str):
        raise UserError(f"compose({overrides!r}): give a list of overrides, e.g."
                        f" compose([{overrides!r}])")
    overrides = list(overrides)
    refuse_target_overrides(overrides)
    register_configs()
    overrides = with_search_path(overrides, str(Path(config_dir).resolve()) if config_dir
                                 else None)
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            composed = hydra_compose(config_name=config_name, overrides=overrides)
        if config_name != "config":
            from alexnet_exp.tool_config import validate_tool

            tool = OmegaConf.to_object(composed)
            validate_tool(tool)
            return tool
        experiment = to_experiment_config(composed)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(f"config: {' '.join(str(exc).split())}") from exc
    from alexnet_exp.config_checks import validate

    validate(experiment)
    return experiment


def train(cfg: ExperimentConfig, launch_dir: str | Path | None = None,
          output_dir: str | Path | None = None) -> RunSummary | None:
    """Train ``cfg`` as ``alexnet-exp`` does, launched from ``launch_dir`` (default: the
    current folder, whose ``mlruns/`` is the default store), its files in ``output_dir``
    (default: ``outputs/<date>/<time>-<id>`` there, as the command line names it). Returns
    the run's summary; None for ``dry_run=true``."""
    from alexnet_exp import runner
    from alexnet_exp.config_store import LAUNCH_ID
    from alexnet_exp.outcome import SkippedJob, keep_summary, summary_lines

    launch = Path(launch_dir or Path.cwd()).resolve()
    now = datetime.datetime.now()
    out = Path(output_dir) if output_dir else (
        launch / "outputs" / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S}-{LAUNCH_ID}")
    out.mkdir(parents=True, exist_ok=True)
    summary = runner.run(cfg, runner.JobContext(launch_dir=launch, output_dir=out))
    if summary is None or isinstance(summary, SkippedJob):
        return None
    runner.log.info(summary_lines(keep_summary(summary, out, cfg.trainer.tensorboard)))
    return summary


def evaluate(cfg, launch_dir: str | Path | None = None):
    """Score a trained model on a test folder, as ``alexnet-exp-eval`` does: ``cfg`` from
    ``compose([...], config_name="eval")`` or the overrides themselves
    (``["run_id=<id>", "data.dir=<test folder>"]``)."""
    return _tool(cfg, "eval", "alexnet_exp.evaluation:run_evaluation", launch_dir)


def predict(cfg, launch_dir: str | Path | None = None):
    """Top-k classes of image files or folders, as ``alexnet-exp-predict`` does (``cfg`` from
    ``compose([...], config_name="predict")`` or its overrides)."""
    return _tool(cfg, "predict", "alexnet_exp.prediction:run_prediction", launch_dir)


def _tool(cfg, config_name: str, job: str, launch_dir):
    import importlib

    from alexnet_exp import console
    from alexnet_exp.cli import check_before_loading

    if isinstance(cfg, (list, tuple)):
        cfg = compose(cfg, config_name=config_name)
    launch = Path(launch_dir or Path.cwd()).resolve()
    check_before_loading(cfg, launch)
    console.load_tensorflow()
    module, function = job.split(":")
    return getattr(importlib.import_module(module), function)(cfg, launch)
