"""replay: an outbox sent to the store once it answers again, against a local SQLite store (no
server needed)."""

from pathlib import Path

import pytest
from helpers import empty_store
from mlflow.tracking import MlflowClient

from alexnet_exp.tracking import outbox, replay


def test_replay_skips_points_the_store_has_and_keeps_what_it_could_not_send(tmp_path):
    """Idempotent replay against a local store: no server needed."""
    uri = f"sqlite:///{empty_store(tmp_path)}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())
    run_id = client.create_run(experiment).info.run_id
    client.log_metric(run_id, "loss", 0.5, timestamp=1000, step=1)  # sent before the outage
    box = outbox.Outbox.create(tmp_path / "outbox", run_id, uri)
    box.append({"op": "metrics", "metrics": {"loss": 0.5}, "step": 1, "timestamp": 1000})
    box.append({"op": "metrics", "metrics": {"loss": 0.4}, "step": 2, "timestamp": 2000})
    box.append({"op": "tags", "tags": {"error": "x"}})
    box.append({"op": "artifact", "file": "missing.txt", "artifact_path": None})
    box.append({"op": "end", "status": "FAILED"})
    with box.path.open("a") as out:
        out.write('{"op": "metr')  # a kill mid-write
    with pytest.raises(Exception):  # noqa: B017  the artifact file is gone
        replay.replay(box, uri)
    assert [r["op"] for r in box.records()] == ["run", "artifact", "end"]  # the rest is sent
    box.files.mkdir(parents=True, exist_ok=True)
    (box.files / "missing.txt").write_text("found")
    done = replay.replay(box, uri)
    assert (done.points, done.status) == (0, "FAILED")
    assert not box.path.exists() and not box.files.exists()
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss")] == [
        (1, 0.5), (2, 0.4)]
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error"] == "x"
    sent = client.download_artifacts(run_id, "missing.txt", str(tmp_path))
    assert Path(sent).read_text() == "found"


def test_a_buffered_model_waits_for_a_replay_that_can_load_it(tmp_path):
    """Tracking knows no layers of ours: a model record replayed without a loader (the caller's,
    ``alexnet_exp.sync`` gives one) stops there, keeping it and what follows for sync."""
    uri = f"sqlite:///{empty_store(tmp_path)}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())
    run_id = client.create_run(experiment).info.run_id
    box = outbox.Outbox.create(tmp_path / "outbox", run_id, uri)
    box.append({"op": "tags", "tags": {"before": "model"}})
    box.append({"op": "model", "file": "model.keras", "example": "model_example.npy",
                "code_dir": str(tmp_path), "metadata": {}})
    box.append({"op": "end", "status": "FINISHED"})
    with pytest.raises(outbox.NoModelLoader, match="alexnet-exp-sync"):
        replay.replay(box, uri)
    assert [r["op"] for r in box.records()] == ["run", "model", "end"]
    assert client.get_run(run_id).data.tags["before"] == "model"
