"""Sweep bookkeeping in MLflow: the parent run of a multirun and the FINISHED-job lookup."""

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alexnet_exp.errors import redact
from alexnet_exp.keys import (  # noqa: F401  (re-exported by the package)
    CONFIG_HASH_TAG,
    DATA_FINGERPRINT_TAG,
    DISK_FAILURE,
    PARENT_RUN_ENV,
    SWEEP_LINK_PREFIX,
    SWEPT_VALUE_PREFIX,
)
from alexnet_exp.tracking.store import Store


def start_sweep_parent(store: Store, experiment_name: str, overrides: list[str],
                       sweep_dir: str, run_name: str = "sweep",
                       tags: dict[str, str] | None = None) -> str:
    """The RUNNING parent run of a multirun, called ``run_name`` and tagged ``tags`` (what its
    jobs share and vary): the one from an earlier run of the same sweep command (same
    experiment and overrides), or a new one."""
    store.check()  # a dead or read-only store: one line now, not a traceback per job
    experiment_id = store.experiment_id(experiment_name)
    identity = sorted(o for o in overrides if not o.lstrip("+~").startswith(("sweep.", "hydra.")))
    key = hashlib.sha1("\n".join([experiment_name, *identity]).encode()).hexdigest()
    client = store.client
    earlier = client.search_runs([experiment_id], f"tags.`alexnet_exp.sweep_key` = '{key}'",
                                 max_results=1)
    if earlier:
        run_id = earlier[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        for name, value in {**(tags or {}), "sweep_dir": sweep_dir}.items():
            client.set_tag(run_id, name, redact(value))
        return run_id
    shown = redact(" ".join(overrides))
    run = client.create_run(experiment_id, run_name=redact(run_name)[:250],
                            tags={**{k: redact(v) for k, v in (tags or {}).items()},
                                  "alexnet_exp.kind": "sweep", "alexnet_exp.sweep_key": key,
                                  "sweep_overrides": shown, "sweep_dir": sweep_dir})
    return run.info.run_id


def end_sweep_parent(store: Store, run_id: str, status: str = "FINISHED") -> None:
    store.client.set_terminated(run_id, status)


@dataclass
class RecordedRun:
    """A training run as the skip and resume logic sees it: plain values, no MLflow types."""

    run_id: str
    name: str
    status: str
    tags: dict[str, str]

    @property
    def data_fingerprint(self) -> str | None:
        return self.tags.get(DATA_FINGERPRINT_TAG)


def _recorded(run) -> RecordedRun:
    return RecordedRun(run.info.run_id, run.info.run_name or run.info.run_id, run.info.status,
                       dict(run.data.tags))


def recorded_run(store: Store, run_id: str) -> RecordedRun:
    return _recorded(store.client.get_run(run_id))


def runs_with_hash(store: Store, experiment_name: str, config_hash: str, statuses: tuple[str, ...],
                   parent_run_id: str | None = None) -> list[RecordedRun]:
    """This experiment's runs of one config in ``statuses``, newest first; with
    ``parent_run_id`` only the members of that sweep (its children and the runs linked to it)."""
    experiment = store.client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    runs = store.search_runs([experiment.experiment_id],
                             f"tags.`{CONFIG_HASH_TAG}` = '{config_hash}'",
                             order_by=["attributes.start_time DESC"])
    if parent_run_id is not None:
        members = set(_linked_run_ids(store.client, parent_run_id))
        runs = [r for r in runs if r.data.tags.get(MLFLOW_PARENT_RUN_ID) == parent_run_id
                or r.info.run_id in members]
    return [_recorded(r) for r in runs if r.info.status in statuses]


def _linked_run_ids(client, parent_run_id: str) -> list[str]:
    tags = client.get_run(parent_run_id).data.tags
    return [key[len(SWEEP_LINK_PREFIX):] for key in tags if key.startswith(SWEEP_LINK_PREFIX)]


def link_to_sweep(store: Store, parent_run_id: str, run: RecordedRun, how: str) -> None:
    """Count ``run`` (not a child of this sweep) as one of its jobs: a tag on the parent per
    linked run (``alexnet_exp.sweep_member.<run id>``), so the UI shows it on the parent, and
    best-trial selection and ``alexnet-exp-report parent_run_id=...`` include it. One key per
    run, so parallel jobs never overwrite each other's links."""
    store.client.set_tag(parent_run_id, f"{SWEEP_LINK_PREFIX}{run.run_id}",
                         f"{how}: {run.name}"[:250])


def sweep_members(store: Store, parent_run_id: str,
                  statuses: tuple[str, ...] = ("FINISHED",)) -> list:
    """The MLflow runs that are this sweep's jobs: its children and the runs linked to it."""
    client = store.client
    parent = client.get_run(parent_run_id)
    children = store.search_runs(
        [parent.info.experiment_id], f"tags.{MLFLOW_PARENT_RUN_ID} = '{parent_run_id}'")
    children = [r for r in children if r.info.status in statuses]
    known = {r.info.run_id for r in children}
    linked = []
    for run_id in _linked_run_ids(client, parent_run_id):
        if run_id in known:
            continue
        try:
            run = client.get_run(run_id)
        except MlflowException:  # deleted since it was linked
            continue
        if run.info.status in statuses and run.info.lifecycle_stage == "active":
            linked.append(run)
    return children + linked


def run_json(store: Store, run_id: str, artifact_path: str) -> dict | None:
    """A JSON artifact of a run, or None when the run has none at that path."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=tmp,
                tracking_uri=store.uri)
            return json.loads(Path(local).read_text())
        except Exception:  # MLflow raises several types for a missing artifact
            return None


def run_metric(store: Store, run_id: str, name: str) -> float | None:
    """The latest value of a run's metric (None when it was never logged)."""
    return store.client.get_run(run_id).data.metrics.get(name)


def tag_best_child(store: Store, parent_run_id: str, metric: str,
                   maximize: bool) -> tuple[str, float] | None:
    """Mark the sweep's best FINISHED job (``alexnet_exp.best_trial=true``) and name it on
    the parent, so the UI and ``search_runs`` find the winner of an Optuna study at once;
    returns its run id and ``metric``. Runs linked to the sweep compete as its children do
    (:func:`link_to_sweep`).

    The parent logs the winner's value under the children's own key (``best_val_accuracy``):
    MLflow's UI draws one chart per metric key over the runs the table shows, so a collapsed
    sweep is one bar in the chart its children and other runs are compared in, and expanded
    it stands beside them; a key of its own (``best_best_val_accuracy``) was a chart with
    the parent alone. Reports leave the parent out by its ``alexnet_exp.kind`` tag."""
    client = store.client
    children = sweep_members(store, parent_run_id)
    scored = [r for r in children if metric in r.data.metrics]
    if not scored:
        return None
    best = (max if maximize else min)(scored, key=lambda r: r.data.metrics[metric])
    for run in children:
        if run.data.tags.get("alexnet_exp.best_trial") and run is not best:
            client.delete_tag(run.info.run_id, "alexnet_exp.best_trial")
    client.set_tag(best.info.run_id, "alexnet_exp.best_trial", "true")
    client.set_tag(parent_run_id, "best_run_id", best.info.run_id)
    client.log_metric(parent_run_id, metric, best.data.metrics[metric])
    return best.info.run_id, best.data.metrics[metric]


SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI's experiment tag of a shared view
SHARED_VIEW_QUERY = "viewStateShareKey"


def share_sweep_view(store: Store, parent_run_id: str, swept: list[str], metric: str,
                     maximize: bool) -> str:
    """A link that opens the sweep compared in MLflow's UI: its parent expanded, the runs
    ordered by ``metric``, the metric and each swept key (``swept.<key>`` tag) as columns, and
    when it repeats seeds, its runs grouped by the other swept keys (each group's mean: one
    row per variant). MLflow 3.18's UI has no URL state for any of that (the URL carries
    only the search filter and order); it does open the view state a "Share" of the runs
    table stored as the experiment tag ``mlflow.sharedViewState.<key>`` when the experiment
    page is opened with ``?viewStateShareKey=<key>``, and reads that tag as plain JSON too.
    Here the sweep writes that tag itself, keyed by its parent's id."""
    from alexnet_exp.tracking.store import TRAINING_VIEW

    experiment_id = store.client.get_run(parent_run_id).info.experiment_id
    columns = ["attributes.`Models`", f"metrics.`{metric}`",
               *[f"tags.`{SWEPT_VALUE_PREFIX}{key}`" for key in swept]]
    state = {"orderByKey": f"metrics.`{metric}`", "orderByAsc": not maximize,
             "selectedColumns": columns, "runsExpanded": {parent_run_id: True}}
    variants = [key for key in swept if key != "seed"]
    if "seed" in swept and variants:
        state["groupBy"] = {"aggregateFunction": "average", "groupByKeys": [
            {"mode": "tag", "groupByData": f"{SWEPT_VALUE_PREFIX}{key}"} for key in variants]}
    store.client.set_experiment_tag(experiment_id, f"{SHARED_VIEW_TAG}{parent_run_id}",
                                    json.dumps(state))
    return (f"{store.ui_base()}/#/experiments/{experiment_id}"
            f"?{SHARED_VIEW_QUERY}={parent_run_id}&{TRAINING_VIEW}")
