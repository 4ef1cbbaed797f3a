"""tracking.store: every call names its store; nothing of ours sets MLflow's process-wide URI.

Two real SQLite stores in one process: a run written to the first must not steer the second
(before, creating a Tracker exported MLFLOW_TRACKING_URI, which then outranked the configured
store of every later run in the process and in the processes it started).
"""

import os

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import UserError
from alexnet_exp.tracking import Store, Tracker, open_store, resolve_tracking_uri


def runs_in(store_dir, experiment="alexnet-exp") -> list:
    client = MlflowClient(f"sqlite:///{store_dir / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def train_like(store: Store, name: str) -> str:
    tracker = Tracker(store, "alexnet-exp")
    tracker.start(name, tags={"kind": "test"})
    tracker.log_params({"trainer": {"epochs": 1}})
    tracker.log_epoch(1, {"loss": 0.5})
    tracker.log_text("hello", "notes/hello.txt")
    tracker.end("FINISHED")
    return tracker.run_id


def test_two_stores_in_one_process_each_get_their_own_runs(tmp_path):
    first = open_store(TrackingConfig(store_dir="a"), tmp_path)
    one = train_like(first, "one")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    second = open_store(TrackingConfig(store_dir="b"), tmp_path)
    assert second.uri == f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}"
    two = train_like(second, "two")
    assert [r.info.run_id for r in runs_in(tmp_path / "a")] == [one]
    assert [r.info.run_id for r in runs_in(tmp_path / "b")] == [two]
    (run,) = runs_in(tmp_path / "b")
    assert run.info.status == "FINISHED"
    assert run.data.params == {"trainer.epochs": "1"}
    assert run.info.artifact_uri.startswith((tmp_path / "b" / "artifacts").as_uri())


def test_fluent_scope_leaves_the_process_as_it_found_it(tmp_path, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.fluent("7"):
        assert mlflow.get_tracking_uri() == store.uri
        assert os.environ["MLFLOW_EXPERIMENT_ID"] == "7"
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_EXPERIMENT_ID" not in os.environ
    # a user's own setting comes back unchanged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team-server:5000")
    with store.fluent():
        assert os.environ["MLFLOW_TRACKING_URI"] == store.uri
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://team-server:5000"


def test_the_users_environment_still_chooses_the_store(tmp_path, monkeypatch):
    """MLFLOW_TRACKING_URI set by the user (not by us) outranks tracking.store_dir, as MLflow
    users expect; tracking.uri outranks both."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://team-server:5000")
    assert resolve_tracking_uri(TrackingConfig(), tmp_path) == ("http://team-server:5000", None)
    chosen = resolve_tracking_uri(TrackingConfig(uri="http://other:5000"), tmp_path)
    assert chosen == ("http://other:5000", None)


def test_a_missing_store_is_refused_for_reading_and_never_created(tmp_path):
    with pytest.raises(UserError, match="no MLflow store at .*: run from the folder you"):
        open_store(TrackingConfig(), tmp_path, create=False)
    assert not (tmp_path / "mlruns").exists()


def test_search_runs_reads_every_page(tmp_path):
    store = open_store(TrackingConfig(), tmp_path)
    experiment = store.experiment_id("many")
    for _ in range(5):
        store.client.create_run(experiment)
    page = store.client.search_runs([experiment], max_results=2)
    assert len(page) == 2 and page.token  # the client pages ...
    assert len(store.search_runs([experiment])) == 5  # ... the store reads them all


def test_experiments_open_on_model_training_in_the_ui(tmp_path):
    """MLflow 3's UI opens an experiment without ``mlflow.experimentKind`` on its GenAI
    overview; ours are tagged as model training, when created and when found without it, and
    a kind the user picked in the UI is kept."""
    store = open_store(TrackingConfig(), tmp_path)
    train_like(store, "one")
    client = store.client
    assert client.get_experiment_by_name("alexnet-exp").tags["mlflow.experimentKind"] == (
        "custom_model_development")
    older = client.create_experiment("recorded-before")
    mine = client.create_experiment("picked-in-the-ui",
                                    tags={"mlflow.experimentKind": "genai_development"})
    assert store.experiment_id("recorded-before") == older
    assert store.experiment_id("picked-in-the-ui") == mine
    assert client.get_experiment(older).tags["mlflow.experimentKind"] == (
        "custom_model_development")
    assert client.get_experiment(mine).tags["mlflow.experimentKind"] == "genai_development"
