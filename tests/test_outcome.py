"""What a finished job prints and hands back: the summary lines and how to open the run."""

import json

from alexnet_exp.outcome import REPO_STORE, RunSummary, summary_json, summary_lines, ui_command


def _summary(uri: str) -> RunSummary:
    return RunSummary(run_id="r1", experiment_id="7", tracking_uri=uri, url="http://ui/#/r1",
                      best_val_accuracy=0.83456, best_epoch=4, epochs=5, seconds=61.6,
                      parameters=1234567, metrics={"test_accuracy": 0.8})


def test_the_ui_hint_is_make_ui_only_for_the_repos_own_store(tmp_path):
    assert ui_command(f"sqlite:///{REPO_STORE}") == "make ui"
    other = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert ui_command(other) == (
        f"mlflow ui --backend-store-uri {other} --host 127.0.0.1")  # local only
    assert ui_command("http://mlflow.example:5000") == "open http://mlflow.example:5000"


def test_summary_lines_say_what_ran_and_where_to_look(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert summary_lines(_summary(uri)).splitlines() == [
        "alexnet-exp: 5 epochs in 62 s, 1,234,567 parameters",
        "  best val_accuracy 0.8346 (epoch 4)",
        f"  MLflow run r1  (store {uri})",
        f"  look at it: {ui_command(uri)}, then open http://ui/#/r1",
    ]


def test_the_summary_json_round_trips():
    summary = _summary("http://x")
    assert RunSummary(**json.loads(summary_json(summary))) == summary


def test_a_run_of_tracking_none_says_nothing_was_recorded():
    summary = RunSummary(run_id="", experiment_id="", tracking_uri="", url=None,
                         best_val_accuracy=0.5, best_epoch=1, epochs=1, seconds=3.2,
                         parameters=10)
    lines = summary_lines(summary).splitlines()
    assert lines[-1] == "  nothing recorded in MLflow (tracking=none)"
    assert not any("MLflow run" in line or "look at it" in line for line in lines)


def test_the_summary_says_where_the_jobs_files_are(tmp_path):
    summary = _summary("http://x")
    summary.output_dir, summary.tensorboard = str(tmp_path), True
    summary.checkpoint_dir = str(tmp_path / "checkpoints")
    assert summary_lines(summary).splitlines()[4:] == [
        f"  job folder {tmp_path}  (log alexnet-exp.log; TensorBoard: tensorboard --logdir"
        f" {tmp_path})",
        f"  checkpoints {tmp_path}/checkpoints",
    ]
    assert RunSummary(**json.loads(summary_json(summary))) == summary
