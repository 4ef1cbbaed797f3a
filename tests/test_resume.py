"""Nothing lost: a killed run continues where it stopped; Ctrl-C and NaN end runs cleanly."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import pytest
from helpers import (
    RUN,
    TINY_MODEL,
    catches,
    cli,
    epochs_logged,
    limit_file_size,
    runs_of,
    signal_when,
    store,
)
from helpers.models import tiny_model_and_data

from alexnet_exp import resume, stopping, training
from alexnet_exp.config import TrainerConfig


def start(tmp_path: Path, *args: str, stderr=subprocess.STDOUT) -> subprocess.Popen:
    env = dict(os.environ)
    exe = str(Path(sys.executable).with_name("alexnet-exp"))
    return subprocess.Popen([exe, *args, f"hydra.run.dir={tmp_path}/outputs/first"],
                            cwd=tmp_path, env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=stderr, preexec_fn=_interruptible)


def _interruptible() -> None:
    """Give the child SIGINT as a terminal would: a suite run as a background job (`make test &`)
    starts with SIGINT ignored, and Python then installs no KeyboardInterrupt handler at all."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_9_after_epoch(tmp_path, client, args, epoch: int):
    """Start ``alexnet-exp args``, kill -9 it once ``epoch`` epochs are in the store."""
    signal_when(start(tmp_path, *args), lambda: epochs_logged(client) >= epoch,
                f"epoch {epoch} in the store", signal.SIGKILL, group=True)
    (killed,) = runs_of(client)
    return killed


@pytest.mark.slow
def test_kill_9_after_epoch_2_of_4_then_the_same_command_finishes_the_same_run(
        tmp_path, tiny_data):
    args = [*RUN, f"data.dir={tiny_data}", "trainer.epochs=4"]
    client = store(tmp_path)
    killed = kill_9_after_epoch(tmp_path, client, args, 2)
    assert killed.info.status == "RUNNING"
    state = json.loads((Path(killed.data.tags["checkpoint_dir"]) / "state.json").read_text())
    assert state["epoch"] >= 2

    again = cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming MLflow run {killed.info.run_id} after epoch {state['epoch']}" in again.stdout
    (run,) = runs_of(client)  # the same run, not a second one
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    for metric in ("loss", "val_accuracy", "lr"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
        assert steps == [1, 2, 3, 4], metric  # each epoch exactly once, all of them
    assert run.data.metrics["epochs_run"] == 4
    assert len(client.get_metric_history(run.info.run_id, "parameters")) == 1


@pytest.mark.slow
def test_data_changed_after_a_kill_starts_a_new_run_and_leaves_the_old_one_resumable(
        tmp_path, image_folder):
    data = image_folder(tmp_path / "data", classes={"apple": 8, "kiwi": 8}, size=(48, 40))
    args = [*RUN, f"data.dir={data}", "trainer.epochs=3", "trainer.early_stopping_patience=null"]
    client = store(tmp_path)
    killed = kill_9_after_epoch(tmp_path, client, args, 1)
    old_loss = [m.value for m in client.get_metric_history(killed.info.run_id, "loss")]
    fingerprint = killed.data.tags["alexnet_exp.data_fingerprint"]
    (dataset,) = client.get_run(killed.info.run_id).inputs.dataset_inputs
    assert dataset.dataset.digest == fingerprint  # MLflow's data set digest agrees

    image_folder(data, classes={"tulips": 8}, size=(48, 40))  # a class added before the rerun
    changed = cli(tmp_path, *args)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert (f"data changed since run {killed.info.run_id} (classes +tulips, 8 files added):"
            " starting a new run") in changed.stdout
    new = next(r for r in runs_of(client) if r.info.run_id != killed.info.run_id)
    assert new.info.status == "FINISHED" and new.data.metrics["epochs_run"] == 3
    assert new.data.tags["alexnet_exp.data_fingerprint"] != fingerprint
    assert new.data.tags["checkpoint_dir"] != killed.data.tags["checkpoint_dir"]
    old = client.get_run(killed.info.run_id)  # left exactly as it was
    assert old.info.status == "RUNNING"
    assert [m.value for m in client.get_metric_history(old.info.run_id, "loss")] == old_loss

    for path in (data / "tulips").iterdir():  # the old data back: the old run resumes
        path.unlink()
    (data / "tulips").rmdir()
    back = cli(tmp_path, *args)
    assert back.returncode == 0, back.stderr[-3000:]
    assert f"resuming MLflow run {killed.info.run_id}" in back.stdout
    resumed = client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.metrics["epochs_run"] == 3
    names = json.loads(Path(client.download_artifacts(
        resumed.info.run_id, "class_names.json", str(tmp_path))).read_text())["class_names"]
    assert names == ["apple", "kiwi"]
    assert len(runs_of(client)) == 2


@pytest.mark.slow
def test_ctrl_c_marks_the_run_killed_with_a_resume_hint(tmp_path, tiny_data):
    # Long enough that the interrupt lands mid-training however late a loaded machine
    # notices epoch 1 (tiny epochs take ~0.3 s; early stopping would end it at ~12).
    args = [*RUN, f"data.dir={tiny_data}", "trainer.epochs=500",
            "trainer.early_stopping_patience=null"]
    client = store(tmp_path)
    process = start(tmp_path, *args)
    output, _ = signal_when(process, lambda: epochs_logged(client) >= 1, "epoch 1 in the store",
                            signal.SIGINT, group=True)
    assert process.returncode == 130, output[-3000:]
    assert "run the same command again to resume" in output
    assert "Traceback" not in output
    (run,) = runs_of(client)
    assert run.info.status == "KILLED"
    assert resume.read_point(Path(run.data.tags["checkpoint_dir"]), run.info.run_id).epoch >= 1


@pytest.mark.slow
def test_sigterm_mid_fit_ends_the_run_killed_and_the_same_command_finishes_it(
        tmp_path, tiny_data):
    # SLURM, Kubernetes, `timeout` and systemd end a job with SIGTERM: a normal ending.
    args = [*RUN, f"data.dir={tiny_data}", "trainer.epochs=20",
            "trainer.early_stopping_patience=null"]
    client = store(tmp_path)
    process = start(tmp_path, *args, stderr=subprocess.PIPE)
    output, errors = signal_when(process, lambda: epochs_logged(client) >= 1,  # the process
                                 "epoch 1 in the store", signal.SIGTERM)  # only, as `kill` does
    assert process.returncode == 143, errors[-3000:]
    (killed,) = runs_of(client)
    assert killed.info.status == "KILLED"
    ours = [line for line in errors.splitlines() if line.startswith("alexnet-exp")]
    assert ours == [f"alexnet-exp: error: terminated (SIGTERM); MLflow run"
                    f" {killed.info.run_id} is marked KILLED"]
    assert "Traceback" not in errors
    assert killed.data.tags["error"] == "terminated (SIGTERM)"
    point = resume.read_point(Path(killed.data.tags["checkpoint_dir"]), killed.info.run_id)
    stopped_at = len(client.get_metric_history(killed.info.run_id, "loss"))
    assert 1 <= point.epoch == stopped_at < 20  # the last completed epoch, logged and saved
    assert f"interrupted after epoch {point.epoch}, checkpointed in" in output

    assert killed.data.tags["alexnet_exp.data_cache"] == "memory"  # data.cache=auto's choice
    # The same command, reading its images another way: how the data is read is not what is
    # trained, so the same run goes on, and its tag says how the rest was read.
    again = cli(tmp_path, *args, "data.cache=none")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming MLflow run {killed.info.run_id} after epoch {point.epoch}" in again.stdout
    (run,) = runs_of(client)
    assert run.info.run_id == killed.info.run_id and run.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == list(range(1, 21)) and run.data.metrics["epochs_run"] == 20
    assert run.data.tags["alexnet_exp.data_cache"] == "none"


@pytest.mark.slow
def test_sigterm_before_the_run_starts_is_one_line_and_exit_143(tmp_path, tiny_data):
    client = store(tmp_path)
    process = start(tmp_path, *RUN, f"data.dir={tiny_data}", stderr=subprocess.PIPE)
    # as soon as the CLI handles SIGTERM: Hydra, TensorFlow's import, the data scan
    _, errors = signal_when(process, lambda: catches(process.pid, signal.SIGTERM),
                            "a SIGTERM handler", signal.SIGTERM)
    assert process.returncode == 143, errors[-3000:]
    ours = [line for line in errors.splitlines() if line.startswith("alexnet-exp")]
    assert len(ours) == 1 and ours[0].startswith("alexnet-exp: error: terminated (SIGTERM)")
    exp = client.get_experiment_by_name("alexnet-exp")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    assert not [r for r in runs if r.info.status == "RUNNING"]


@pytest.mark.slow
def test_sigterm_while_the_model_is_logged_ends_the_run_killed_and_resumable(
        tmp_path, tiny_data):
    args = [*(a for a in RUN if a != "tracking.log_model=false"), f"data.dir={tiny_data}",
            "trainer.epochs=2"]  # the model is logged
    client = store(tmp_path)
    process = start(tmp_path, *args)
    # after the last epoch: predictions, plots and the logged model take seconds
    output, _ = signal_when(process, lambda: epochs_logged(client) >= 2, "epoch 2 in the store",
                            signal.SIGTERM)
    assert process.returncode == 143, output[-3000:]
    (killed,) = runs_of(client)
    assert killed.info.status == "KILLED"

    again = cli(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming MLflow run {killed.info.run_id} after epoch 2" in again.stdout
    (run,) = runs_of(client)
    assert run.info.status == "FINISHED" and run.data.metrics["epochs_run"] == 2
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    assert client.search_logged_models([run.info.experiment_id])  # the model, logged this time


@pytest.mark.slow
def test_nan_loss_fails_the_run_naming_epoch_and_step(tmp_path, tiny_data):
    client = store(tmp_path)
    result = cli(tmp_path, *RUN, f"data.dir={tiny_data}", "trainer.epochs=3", "optimizer=sgd",
                 "optimizer.learning_rate=1e12", "norm=none")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "training diverged: the loss became NaN/Inf in epoch 1, step" in result.stderr
    assert "Traceback" not in result.stderr
    (run,) = runs_of(client)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "nan_loss"
    assert run.data.tags["nan_epoch"] == "1" and int(run.data.tags["nan_step"]) >= 1


def test_a_folder_locked_by_a_live_process_is_not_claimed_twice(tmp_path):
    code = ("import sys, time; from pathlib import Path; from alexnet_exp import resume;"
            "print(resume.claim(Path(sys.argv[1])), flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], text=True,
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert resume.claim(tmp_path) is False  # alive elsewhere: leave its run alone
    finally:
        holder.kill()
        holder.wait()
    assert resume.claim(tmp_path) is True  # its process is gone: the lock went with it


def test_unwritable_output_folder_is_one_line_before_anything_runs(tmp_path):
    (tmp_path / "a_file").write_text("")
    result = subprocess.run(  # not cli(): it passes a writable hydra.run.dir of its own
        [str(Path(sys.executable).with_name("alexnet-exp")), "data=digits", "dry_run=true",
         f"hydra.run.dir={tmp_path}/a_file/run"], cwd=tmp_path, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"alexnet-exp: error: hydra.run.dir={tmp_path}/a_file/run cannot be created:"
        f" {tmp_path}/a_file is a file: pass hydra.run.dir=<a writable folder>")


@pytest.mark.slow
def test_full_disk_fails_the_run_with_one_line_and_leaves_no_partial_file(tmp_path, tiny_data):
    env = dict(os.environ)
    big_fc = [*TINY_MODEL, "model.fc_units=[1024,1024]"]  # checkpoints of ~12 MB
    result = subprocess.run(
        [str(Path(sys.executable).with_name("alexnet-exp")), *RUN, *big_fc,
         f"data.dir={tiny_data}", "trainer.epochs=2", f"hydra.run.dir={tmp_path}/out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("alexnet-exp: error:")]
    assert "cannot write " in line and "File too large" in line and "Traceback" not in result.stderr
    (run,) = runs_of(store(tmp_path))
    assert run.info.status == "FAILED"
    checkpoints = tmp_path / "out" / "checkpoints"
    assert not [p.name for p in checkpoints.iterdir() if p.name.endswith((".h5", ".keras"))]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_ctrl_c_during_fit_is_raised_between_batches_after_the_last_epoch_is_saved(
        tmp_path, signum):
    trainer = TrainerConfig(epochs=3, batch_size=4, verbose=0, tensorboard=False)
    model, ds = tiny_model_and_data(trainer)

    class CtrlCInEpoch2(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if len(seen) == 1 and batch == 0:
                os.kill(os.getpid(), signum)

        def on_epoch_end(self, epoch, logs=None):
            seen.append(epoch)

    seen: list[int] = []
    keras_fit = model.fit
    model.fit = lambda *a, callbacks, **kw: keras_fit(*a, callbacks=[*callbacks, CtrlCInEpoch2()],
                                                      **kw)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    previous_term = signal.getsignal(signal.SIGTERM)
    stopping.install(anywhere=True)  # what the CLI does: SIGTERM stops like Ctrl-C
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            training.fit(model, ds, ds, 8, trainer, tmp_path,
                      point=resume.ResumePoint(None, tmp_path / "ckpt"))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
        stopping.reset()
    assert raised.traceback[-1].name == "_raise_if_requested"  # in Python, between batches
    assert raised.value.exit_code == 128 + signum  # 130 for Ctrl-C, 143 for SIGTERM
    assert seen == [0]  # epoch 2 never ended, so it is neither logged nor checkpointed
    assert resume.read_point(tmp_path / "ckpt", "run").epoch == 1
