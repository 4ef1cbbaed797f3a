"""Tracking outages against a real ``mlflow server`` on 127.0.0.1, stopped and restarted.

The server is a subprocess in its own process group (mlflow and its uvicorn worker stop
together); its SQLite store and artifact folder live in the test's tmp dir, so a restart on the
same port serves the same runs. Training runs are real ``alexnet-exp`` subprocesses.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from helpers import TINY_MODEL, Server, cli, free_port
from mlflow.tracking import MlflowClient

from alexnet_exp.paths import outbox_dir
from alexnet_exp.tracking import outbox

EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds",
              "images_per_second")


def train_async(cwd: Path, data: Path, url: str, *args: str) -> subprocess.Popen:
    """A real ``alexnet-exp`` run logging to ``url``, in the background."""
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    command = [str(Path(sys.executable).with_name("alexnet-exp")), "data=folder",
               f"data.dir={data}", *TINY_MODEL, "tracking=server", f"tracking.uri={url}",
               "tracking.log_model=false", f"hydra.run.dir={cwd}/outputs/run", *args]
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_until(condition, what: str, process: subprocess.Popen, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while not (found := condition()):
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training ended (exit {process.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(0.1)
    return found


def first_epoch_logged(client: MlflowClient):
    """The run's id once epoch 1's loss is in the server's store."""
    experiment = client.get_experiment_by_name("alexnet-exp")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    for run in runs:
        if client.get_metric_history(run.info.run_id, "loss"):
            return run.info.run_id
    return None


def buffered(box: Path) -> bool:
    """True once the trainer has put an epoch's metrics into its outbox."""
    return box.exists() and any(r["op"] == "metrics" and r["step"] >= 2
                                for r in outbox.Outbox(box).records())


def server_goes_away_after_epoch_1(server: Server, trainer: subprocess.Popen) -> Path:
    """Epoch 1 reaches the server, then it stops; returns the run's outbox once an epoch
    has been buffered there. The trainer is paused (SIGSTOP) while the server stops, so the
    outage starts at epoch 2 however fast the epochs are, and is paused again on return."""
    run_id = wait_until(lambda: first_epoch_logged(server.client()), "epoch 1 on the server",
                        trainer)
    trainer.send_signal(signal.SIGSTOP)
    server.stop()
    trainer.send_signal(signal.SIGCONT)
    box = outbox.path_for(outbox_dir(), run_id)
    wait_until(lambda: buffered(box), "an epoch buffered in the outbox", trainer)
    trainer.send_signal(signal.SIGSTOP)
    return box


@contextmanager
def reaped(trainer: subprocess.Popen):
    """Whatever the block does or fails at, the trainer is not left behind, stopped or not."""
    try:
        yield trainer
    finally:
        with suppress(ProcessLookupError):
            trainer.send_signal(signal.SIGCONT)
            trainer.kill()


def run_to_end(trainer: subprocess.Popen) -> tuple[str, str]:
    """Let a paused trainer go on and finish; its stdout and stderr."""
    trainer.send_signal(signal.SIGCONT)
    return trainer.communicate(timeout=120)


def assert_every_epoch_once(client: MlflowClient, run_id: str, epochs: int) -> None:
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    for key in EPOCH_KEYS:
        steps = [m.step for m in client.get_metric_history(run_id, key)]
        assert sorted(steps) == list(range(1, epochs + 1)), (key, steps)
    for key in ("best_val_accuracy", "train_seconds", "epochs_run", "parameters"):
        assert len(client.get_metric_history(run_id, key)) == 1, key
    assert run.data.metrics["epochs_run"] == epochs
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert artifacts == {"plots/training_curves.png", "plots/confusion_matrix.png"}


@pytest.mark.slow
def test_server_back_before_the_run_ends(tmp_path, tiny_data, server):
    with reaped(train_async(tmp_path, tiny_data, server.url, "trainer.epochs=6")) as trainer:
        box = server_goes_away_after_epoch_1(server, trainer)
        server.start()  # same port, same store
        out, err = run_to_end(trainer)
    assert trainer.returncode == 0, err[-3000:]
    assert "Traceback" not in err
    assert f"tracking server {server.url} unreachable" in err
    assert f"buffering metrics to {box}" in err
    assert f"tracking server {server.url} is back: replayed" in err
    assert not box.exists()
    run_id = box.stem.removeprefix(outbox.PREFIX)
    assert_every_epoch_once(server.client(), run_id, 6)


@pytest.mark.slow
def test_run_ended_during_the_outage_is_sent_by_sync(tmp_path, tiny_data, server):
    """The model too: saved in the outbox during the outage, logged by sync."""
    with reaped(train_async(tmp_path, tiny_data, server.url, "trainer.epochs=6",
                            "tracking.log_model=true")) as trainer:
        box = server_goes_away_after_epoch_1(server, trainer)
        out, err = run_to_end(trainer)
    assert trainer.returncode == 0, err[-3000:]  # training went on and finished
    assert "Traceback" not in err
    assert "best val_accuracy" in out
    assert f"run {box.stem.removeprefix(outbox.PREFIX)} (FINISHED) waits in {box}" in err
    assert box.exists()
    parked = box.read_text()
    assert '"op": "end", "status": "FINISHED"' in parked

    still_down = cli(tmp_path, program="alexnet-exp-sync")
    assert still_down.returncode == 2
    assert still_down.stderr.count("\n") == 1, still_down.stderr  # one line
    assert f"tracking server {server.url} is not reachable (connection refused" in still_down.stderr
    assert box.exists()

    server.start()
    synced = cli(tmp_path, program="alexnet-exp-sync")
    assert synced.returncode == 0, synced.stderr[-3000:]
    run_id = box.stem.removeprefix(outbox.PREFIX)
    assert f"run {run_id}: " in synced.stdout and "ended FINISHED" in synced.stdout
    assert not box.exists()
    assert "1 model" in synced.stdout
    client = server.client()
    assert_every_epoch_once(client, run_id, 6)
    run = client.get_run(run_id)
    (model,) = client.search_logged_models([run.info.experiment_id])
    assert model.source_run_id == run_id and model.name != "model"  # named as a live run's
    assert f'"name": "{model.name}"' in parked
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(model.model_id)}
    again = cli(tmp_path, program="alexnet-exp-sync")
    assert again.returncode == 0 and "nothing to sync" in again.stdout


@pytest.mark.slow
def test_unreachable_server_fails_fast_before_training(tmp_path, tiny_data):
    """A closed port and a server that accepts connections but never answers."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshakes; nobody ever reads or answers
    closed = free_port()
    try:
        for port, what in ((closed, "connection refused"), (silent.getsockname()[1],
                                                            "no answer from")):
            began = time.monotonic()
            result = cli(tmp_path, "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                         "tracking=server", f"tracking.uri=http://127.0.0.1:{port}")
            seconds = time.monotonic() - began
            assert result.returncode == 2, result.stderr[-2000:]
            assert seconds < 10, (what, seconds)
            (line,) = [x for x in result.stderr.splitlines() if x.startswith("alexnet-exp")]
            assert line.startswith(f"alexnet-exp: error: MLflow tracking store"
                                   f" http://127.0.0.1:{port} is not usable: {what}")
            assert "Traceback" not in result.stderr
            assert not (tmp_path / "outputs" / "run" / "checkpoints").exists()
    finally:
        silent.close()


@pytest.mark.slow
def test_server_that_hangs_mid_run(tmp_path, tiny_data, server):
    """A frozen server (SIGSTOP: connections are accepted, nothing answers) costs the run one
    bounded wait, then buffering; when it thaws, sync sends every point exactly once, even
    if the server also processes requests that had timed out on the client."""
    try:
        with reaped(train_async(tmp_path, tiny_data, server.url, "trainer.epochs=4")) as trainer:
            run_id = wait_until(lambda: first_epoch_logged(server.client()),
                                "epoch 1 on the server", trainer)
            os.killpg(server.process.pid, signal.SIGSTOP)
            began = time.monotonic()
            out, err = trainer.communicate(timeout=120)
            seconds = time.monotonic() - began
    finally:
        with suppress(ProcessLookupError):
            os.killpg(server.process.pid, signal.SIGCONT)
    assert trainer.returncode == 0, err[-3000:]
    assert "no answer from" in err and "Traceback" not in err
    assert seconds < 60, seconds  # ~12 s for the first write, then ~2 s probes
    assert server.healthy()
    synced = cli(tmp_path, program="alexnet-exp-sync")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert_every_epoch_once(server.client(), run_id, 4)
