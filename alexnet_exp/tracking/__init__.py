"""Everything MLflow: the only package that imports it (the rest of alexnet_exp stays testable
and usable without a tracking server).

- :mod:`.store`: where runs live: the :class:`Store` (URI + its own client) every call is given;
- :mod:`.runs`: the :class:`Tracker` that writes one run (start or resume, writes, end);
- :mod:`.delivery`: how a run's writes reach a server that may go away (live, or the outbox);
- :mod:`.models`: logged models read back, evaluation runs, exports attached to runs;
- :mod:`.sweeps`: the parent run of a multirun, and which jobs already FINISHED.
- :mod:`.reports`: FINISHED training runs read back for a report, and the report logged.
- :mod:`.outage`: is the tracking server there (a quick ``/health``), and was an error an outage;
- :mod:`.outbox`: what a run logs while its server is away (a record file and its files);
- :mod:`.replay`: an outbox sent to the server, by the run itself or by ``alexnet-exp-sync``;
- :mod:`.registry`: a run's logged model by name; the Model Registry (a sweep's champion);
- :mod:`.context`: MLflow's context tags, the ``mlflow.source.git.*`` tags, system metrics;
- :mod:`.records`: what runs and replays share: redaction, params, the logged model, the data
  set input.

A sink: it imports only :mod:`alexnet_exp.config`, :mod:`~alexnet_exp.errors`,
:mod:`~alexnet_exp.keys` and :mod:`~alexnet_exp.paths` of ours (import-linter checks it). It
takes and hands back plain values and files; what needs our model code (loading a Keras
model) is handed in by the caller (:mod:`alexnet_exp.bundle`, :mod:`alexnet_exp.sync`).
"""

from alexnet_exp.errors import redact
from alexnet_exp.tracking.context import git_tags
from alexnet_exp.tracking.models import (
    experiment_name_of,
    load_logged_model,
    log_artifact_to_run,
    log_evaluation,
    require_run,
    run_exists,
    run_tag,
)
from alexnet_exp.tracking.records import flatten
from alexnet_exp.tracking.registry import CHAMPION, register_champion, run_model_uri
from alexnet_exp.tracking.reports import (
    RunSelection,
    TrainingRun,
    find_training_runs,
    log_report,
    parent_experiment,
)
from alexnet_exp.tracking.runs import Tracker
from alexnet_exp.tracking.store import Store, open_store, resolve_tracking_uri
from alexnet_exp.tracking.sweeps import (
    CONFIG_HASH_TAG,
    DATA_FINGERPRINT_TAG,
    DISK_FAILURE,
    PARENT_RUN_ENV,
    RecordedRun,
    end_sweep_parent,
    link_to_sweep,
    recorded_run,
    run_json,
    run_metric,
    runs_with_hash,
    share_sweep_view,
    start_sweep_parent,
    sweep_members,
    tag_best_child,
)

__all__ = [
    "CHAMPION",
    "register_champion",
    "run_model_uri",
    "CONFIG_HASH_TAG",
    "DATA_FINGERPRINT_TAG",
    "DISK_FAILURE",
    "PARENT_RUN_ENV",
    "RecordedRun",
    "link_to_sweep",
    "recorded_run",
    "run_json",
    "runs_with_hash",
    "sweep_members",
    "RunSelection",
    "TrainingRun",
    "find_training_runs",
    "log_report",
    "parent_experiment",
    "Store",
    "Tracker",
    "end_sweep_parent",
    "experiment_name_of",
    "flatten",
    "redact",
    "git_tags",
    "load_logged_model",
    "open_store",
    "log_artifact_to_run",
    "log_evaluation",
    "resolve_tracking_uri",
    "require_run",
    "run_exists",
    "run_tag",
    "run_metric",
    "share_sweep_view",
    "start_sweep_parent",
    "tag_best_child",
]
