"""Hydra's ConfigStore filled with every schema: the experiment's and the tools'.

Its own module because it is the one place that sees both :mod:`alexnet_exp.config` and
:mod:`alexnet_exp.tool_config` (which builds on it): kept in ``config.py`` it would import
``tool_config`` back, the cycle issue 14 removed. Only the entry points (and scripts that
compose configs as they do) call :func:`register_configs`.
"""

import secrets

from alexnet_exp.config import ExperimentConfig
from alexnet_exp.tool_config import (
    EvalConfig,
    ExportConfig,
    PackConfig,
    PredictConfig,
    ReportConfig,
)

# One random token per launched process: ``${launch_id:}`` in hydra.run.dir / hydra.sweep.dir
# keeps two commands started in the same second (a script launching jobs with ``&``) out of each
# other's output and checkpoint folders, which ``${now:...}`` alone does not.
LAUNCH_ID = secrets.token_hex(3)


def register_configs() -> None:
    """Put the schemas in Hydra's ConfigStore; each primary YAML in ``conf/`` lists its own."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # use_cache: Hydra copies resolved values into each job's config, so joblib/submitit
    # workers (other processes, other tokens) keep the sweep folder their launcher made.
    OmegaConf.register_new_resolver("launch_id", lambda: LAUNCH_ID, use_cache=True,
                                    replace=True)

    store = ConfigStore.instance()
    store.store(name="base_config", node=ExperimentConfig)
    store.store(name="eval_schema", node=EvalConfig)
    store.store(name="predict_schema", node=PredictConfig)
    store.store(name="export_schema", node=ExportConfig)
    store.store(name="report_schema", node=ReportConfig)
    store.store(name="pack_schema", node=PackConfig)
