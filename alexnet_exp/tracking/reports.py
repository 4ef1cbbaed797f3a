"""Training runs read back for ``alexnet-exp-report``, and the report logged to MLflow.

A training run is one without an ``alexnet_exp.kind`` tag: sweep parents (``sweep``),
evaluation runs (``evaluation``) and the report runs written here (``report``) all carry one,
so a later report never counts them as training runs.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from mlflow.exceptions import MlflowException

from alexnet_exp.errors import UserError, first_line
from alexnet_exp.tracking.store import Store
from alexnet_exp.tracking.sweeps import sweep_members

KIND_TAG = "alexnet_exp.kind"
REPORT_KIND = "report"
ALL_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
HISTORIES = ("val_accuracy", "val_loss")  # the per-epoch metrics a report plots or summarises


@dataclass
class TrainingRun:
    """One FINISHED training run as plain values: nothing MLflow leaks out of this package."""

    run_id: str
    name: str
    params: dict[str, str]
    metrics: dict[str, float]  # the latest value of each metric (the summary metrics)
    tags: dict[str, str]
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch, by step


@dataclass
class RunSelection:
    """The runs a report covers, and how many in scope it left out (and why)."""

    experiment_id: str
    runs: list[TrainingRun]
    not_finished: dict[str, int]  # status -> count of training runs that did not FINISH


def _experiment_id(store: Store, name: str) -> str:
    try:
        experiment = store.client.get_experiment_by_name(name)
    except Exception as exc:  # MLflow raises many types for a bad store or a dead server
        raise UserError(f"MLflow tracking store {store.shown} is not usable:"
                        f" {first_line(exc)[:300]} (check tracking.uri / MLFLOW_TRACKING_URI)"
                        ) from exc
    if experiment is None:
        known = sorted(e.name for e in store.client.search_experiments())
        raise UserError(f"experiment_name={name}: no such experiment in {store.shown}"
                        f" (it has: {', '.join(known) or 'none'})")
    return experiment.experiment_id


def _parent_run(store: Store, parent_run_id: str):
    """A wrong id gives an empty report otherwise: say what is wrong instead."""
    try:
        return store.client.get_run(parent_run_id)
    except MlflowException as exc:
        raise UserError(f"parent_run_id={parent_run_id}: no such run; take the id of the"
                        " sweep's parent run from the MLflow UI or the sweep's output") from exc


def parent_experiment(store: Store, parent_run_id: str) -> str:
    """The experiment a sweep's parent run lives in: ``parent_run_id=`` alone names it."""
    return store.client.get_experiment(_parent_run(store, parent_run_id).info.experiment_id).name


def _check_parent(store: Store, parent_run_id: str, experiment_id: str,
                  experiment_name: str) -> None:
    parent = _parent_run(store, parent_run_id)
    if parent.info.experiment_id != experiment_id:
        other = store.client.get_experiment(parent.info.experiment_id).name
        raise UserError(f"parent_run_id={parent_run_id} belongs to experiment {other!r}, not"
                        f" {experiment_name!r}: pass experiment_name={other}")


def _history(client, run_id: str, metric: str) -> list[float]:
    points = sorted(client.get_metric_history(run_id, metric), key=lambda m: (m.step, m.timestamp))
    by_step = {m.step: m.value for m in points}  # a re-logged step keeps its latest value
    return [by_step[s] for s in sorted(by_step)]


def _as_training_run(client, run) -> TrainingRun:
    return TrainingRun(
        run_id=run.info.run_id, name=run.info.run_name or run.info.run_id,
        params=dict(run.data.params), metrics=dict(run.data.metrics), tags=dict(run.data.tags),
        history={m: _history(client, run.info.run_id, m) for m in HISTORIES},
    )


def find_training_runs(store: Store, experiment_name: str,
                       parent_run_id: str | None = None) -> RunSelection:
    """The FINISHED training runs of an experiment (or of one sweep), with their histories.

    Raises a one-line :class:`UserError` for an unknown experiment or parent run, or when
    nothing FINISHED is left to report on.
    """
    experiment_id = _experiment_id(store, experiment_name)
    if parent_run_id:  # the sweep's jobs: its children and the earlier runs it reused
        _check_parent(store, parent_run_id, experiment_id, experiment_name)
        found = sorted(sweep_members(store, parent_run_id, statuses=ALL_STATUSES),
                       key=lambda r: r.info.start_time)
    else:
        found = store.search_runs([experiment_id], order_by=["attributes.start_time ASC"])
    training = [r for r in found if r.data.tags.get(KIND_TAG) in (None, "training")]
    not_finished: dict[str, int] = {}
    for run in training:
        if run.info.status != "FINISHED":
            not_finished[run.info.status] = not_finished.get(run.info.status, 0) + 1
    finished = [r for r in training if r.info.status == "FINISHED"]
    if not finished:
        scope = f"sweep {parent_run_id}" if parent_run_id else f"experiment {experiment_name!r}"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(not_finished.items()))
        raise UserError(f"{scope} has no FINISHED training runs ({counts or 'no runs at all'})"
                        " to report on: train some first (alexnet-exp -m ...)")
    runs = [_as_training_run(store.client, r) for r in finished]
    return RunSelection(experiment_id, runs, not_finished)


def artifact_link(store: Store, run_id: str, path: str) -> str:
    """Where MLflow's UI serves a run's artifact: what an image link in a logged Markdown file
    must say for the artifact preview to show the image. The preview (3.17) draws an image
    only from an absolute URL; a relative one it prints as text."""
    return f"{store.ui_base()}/get-artifact?" + urlencode({"path": path, "run_uuid": run_id})


def log_report(store: Store, experiment_id: str, files: list[Path],
               parent_run_id: str | None = None, artifact_path: str = "report",
               texts: Callable[[Callable[[str], str]], dict[str, str]] | None = None) -> str:
    """Attach the report's files to the sweep parent run, or else to a new ``report`` run.

    The new run is tagged ``alexnet_exp.kind=report``, which keeps it out of later reports.
    ``texts(link)`` may give some files (by name) another text in the run, made with
    ``link(name)``, the address at which the UI serves the file ``name`` logged beside them
    (the report's image links). Returns the id of the run the files went to.
    """
    client = store.client
    run_id = parent_run_id
    if run_id is None:
        run = client.create_run(experiment_id, run_name="report", tags={KIND_TAG: REPORT_KIND})
        run_id = run.info.run_id
    try:
        instead = texts(lambda name: artifact_link(store, run_id, f"{artifact_path}/{name}")
                        ) if texts else {}
        for path in files:
            if path.name in instead:
                client.log_text(run_id, instead[path.name], f"{artifact_path}/{path.name}")
            else:
                client.log_artifact(run_id, str(path), artifact_path)
    except BaseException:
        if parent_run_id is None:
            client.set_terminated(run_id, "FAILED")
        raise
    if parent_run_id is None:
        client.set_terminated(run_id, "FINISHED")
    return run_id
