"""tracking.runs: a Tracker starts a run with the tags mlflow.start_run would add, and resumes one
without its old ending."""

from helpers import empty_store

from alexnet_exp.config import TrackingConfig
from alexnet_exp.tracking import Tracker, open_store


def test_a_new_run_carries_the_tags_mlflow_start_run_would_add(tmp_path):
    empty_store(tmp_path / "mlruns")
    store = open_store(TrackingConfig(), tmp_path)
    parent = Tracker(store, "alexnet-exp")
    parent.start("parent", tags={})
    child = Tracker(store, "alexnet-exp")
    child.start("child", tags={"x": "1", "dropped": None}, parent_run_id=parent.run_id)
    tags = store.client.get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id
    assert tags["mlflow.runName"] == "child" and tags["x"] == "1" and "dropped" not in tags
    assert "mlflow.user" in tags and "mlflow.source.name" in tags
    assert store.run_url(child.experiment_id, child.run_id).startswith("http://127.0.0.1:5000/#/")


def test_resuming_a_run_makes_it_running_again_without_its_old_ending(tmp_path):
    empty_store(tmp_path / "mlruns")
    store = open_store(TrackingConfig(), tmp_path)
    old = Tracker(store, "alexnet-exp")
    old.start("job", tags={})
    old.end("FAILED", "disk full")
    old_tags = store.client.get_run(old.run_id).data.tags
    assert old_tags["error"] == "disk full"
    again = Tracker(store, "alexnet-exp")
    assert again.start("job", tags={"resumed": "yes"}, resume_run_id=old.run_id) == old.run_id
    run = store.client.get_run(old.run_id)
    assert run.info.status == "RUNNING" and "error" not in run.data.tags
    assert run.data.tags["resumed"] == "yes"
    again.end("FINISHED")
    again.end("KILLED")  # a second end (a stop during the first) changes nothing
    assert store.client.get_run(old.run_id).info.status == "FINISHED"
