"""Runs never share files: commands started together get their own output and checkpoint
folders and all reach a store created together; a run that failed on the disk resumes; a
read-only store and a ``~`` in a value are one line that says what to do."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import RUN, limit_file_size, make_image_folder, runs_of, store, wait_for

EXE = str(Path(sys.executable).with_name("alexnet-exp"))


def launch(cwd: Path, *args: str) -> subprocess.Popen:
    """The CLI as a script's ``cmd &`` starts it: no hydra.run.dir, so the default is used."""
    env = dict(os.environ)
    return subprocess.Popen([EXE, *args], cwd=cwd, env=env, start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def launch_together(cwd: Path, commands: list[list[str]]) -> list[subprocess.Popen]:
    """Start every command at the top of the same wall-clock second, as ``a & b & c`` would."""
    time.sleep(1.0 - time.time() % 1.0)
    return [launch(cwd, *args) for args in commands]


def finish(processes: list[subprocess.Popen], timeout: float = 600) -> list[str]:
    outputs = []
    for process in processes:
        output, _ = process.communicate(timeout=timeout)
        assert process.returncode == 0, output[-3000:]
        outputs.append(output)
    return outputs


def loss_steps(client, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, "loss")}


def checkpoint_state(run) -> dict:
    return json.loads((Path(run.data.tags["checkpoint_dir"]) / "state.json").read_text())


@pytest.mark.slow
def test_commands_started_at_once_keep_their_own_folders_and_histories(tmp_path, tiny_data):
    # two commands in the same second meet the same race as three did, with two processes fewer
    rates = ["0.01", "0.002"]
    commands = [[*RUN, f"data.dir={tiny_data}", "trainer.epochs=8",
                 "trainer.early_stopping_patience=null", f"optimizer.learning_rate={rate}"]
                for rate in rates]
    client = store(tmp_path)  # created first: this test is about folders, not the store race
    processes = dict(zip(rates, launch_together(tmp_path, commands), strict=True))

    folders: dict[str, Path] = {}  # rate -> the run's checkpoint folder, once it has a run

    def kill_each_after_epoch_2() -> bool:
        """Read from each run's checkpoint state (a file read, every 50 ms): a tiny epoch
        takes well under a second, and polling the store under load was slow enough for a run
        to finish all 8 before its kill."""
        if len(folders) < len(rates):
            exp = client.get_experiment_by_name("alexnet-exp")
            for run in client.search_runs([exp.experiment_id]) if exp else []:
                rate = run.data.params.get("optimizer.learning_rate")  # params come after tags
                if rate and "checkpoint_dir" in run.data.tags:
                    folders[rate] = Path(run.data.tags["checkpoint_dir"])
        for rate, folder in folders.items():
            state = folder / "state.json"
            if (processes[rate].poll() is None and state.exists()
                    and json.loads(state.read_text())["epoch"] >= 2):
                os.killpg(processes[rate].pid, signal.SIGKILL)
        return all(p.poll() is not None for p in processes.values())

    try:
        wait_for(kill_each_after_epoch_2, 600, "every run to checkpoint 2 epochs", every=0.05)
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    killed = {r.data.params["optimizer.learning_rate"]: r for r in runs_of(client)}
    assert sorted(killed) == sorted(rates)
    assert all(r.info.status == "RUNNING" for r in killed.values())  # killed mid-training
    folders = {r.data.tags["checkpoint_dir"] for r in killed.values()}
    assert len(folders) == len(rates), folders  # same second, same folder on main
    assert all(Path(f).parent.parent.parent == tmp_path / "outputs" for f in folders)
    before = {rate: checkpoint_state(run)["history"] for rate, run in killed.items()}
    assert all(2 <= len(history) < 8 for history in before.values()), before

    outputs = finish(launch_together(tmp_path, commands))
    for rate, output in zip(rates, outputs, strict=True):
        assert f"resuming MLflow run {killed[rate].info.run_id} after epoch" in output, output
    runs = {r.data.params["optimizer.learning_rate"]: r for r in runs_of(client)}
    assert {rate: r.info.run_id for rate, r in runs.items()} == {
        rate: r.info.run_id for rate, r in killed.items()}  # the same runs, no new ones
    for rate, run in runs.items():
        assert run.info.status == "FINISHED"
        history = checkpoint_state(run)["history"]
        assert history[:len(before[rate])] == before[rate]  # continued its own checkpoint
        logged = loss_steps(client, run.info.run_id)
        assert logged == pytest.approx({i: h["loss"] for i, h in enumerate(history, start=1)})
        assert sorted(logged) == list(range(1, 9))


@pytest.mark.slow
def test_two_identical_first_commands_in_a_fresh_folder_both_succeed(tmp_path, tiny_data):
    command = [*RUN, f"data.dir={tiny_data}", "trainer.epochs=1"]
    finish(launch_together(tmp_path, [command, command]))  # no migration race on the new store
    runs = runs_of(store(tmp_path))
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert len({r.data.tags["checkpoint_dir"] for r in runs}) == 2


@pytest.mark.slow
def test_a_folder_in_use_by_a_live_command_is_refused_not_shared(tmp_path, tiny_data):
    shared = f"hydra.run.dir={tmp_path}/same"
    command = [*RUN, f"data.dir={tiny_data}", "trainer.epochs=3", shared]
    store(tmp_path)
    processes = launch_together(tmp_path, [command, command])
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    codes = sorted(p.returncode for p in processes)
    assert codes == [0, 2], outputs
    refused = outputs[[p.returncode for p in processes].index(2)]
    assert (f"alexnet-exp: error: {tmp_path}/same is in use by another running alexnet-exp"
            f" command ({tmp_path}/same/checkpoints is locked)") in refused
    (run,) = runs_of(store(tmp_path))  # the refused command started no run
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_a_run_that_failed_on_a_full_disk_resumes_with_the_same_command(tmp_path, tiny_data):
    env = dict(os.environ)
    command = [EXE, *RUN, "model.fc_units=[1024,1024]", f"data.dir={tiny_data}",  # ~12 MB
               "trainer.epochs=1"]
    full = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, preexec_fn=limit_file_size)
    assert full.returncode == 2, full.stderr[-3000:]
    assert "run the same command again (it resumes)" in full.stderr
    client = store(tmp_path)
    (failed,) = runs_of(client)
    assert failed.info.status == "FAILED"

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming MLflow run {failed.info.run_id} after epoch 0" in again.stdout
    (run,) = runs_of(client)  # what the message promised: the same run, not a new one
    assert run.info.run_id == failed.info.run_id and run.info.status == "FINISHED"
    assert failed.data.tags["failure_reason"] == "disk"  # why it was resumable
    assert "failure_reason" not in run.data.tags and "error" not in run.data.tags
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1]


# Drop root's override of file permissions from the bounding set, then exec the command: as
# root (containers, CI) a chmod'ed folder is writable anyway; without the capability it is not.
AS_A_USER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; 24 = PR_CAPBSET_DROP
    if libc.prctl(24, cap, 0, 0, 0) != 0:
        sys.exit(f"SKIP cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("sweep", [[], ["-m", "seed=1,2"]], ids=["run", "sweep"])
def test_read_only_store_is_one_line_and_exit_2(tmp_path, tiny_data, sweep):
    store(tmp_path)
    mlruns = tmp_path / "mlruns"
    for path in (mlruns / "mlflow.db", mlruns):
        path.chmod(0o555)
    env = dict(os.environ)
    try:
        as_a_user = [sys.executable, "-c", AS_A_USER] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*as_a_user, EXE, *sweep, *RUN, f"data.dir={tiny_data}",
             "trainer.epochs=1", f"hydra.run.dir={tmp_path}/out"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    finally:
        mlruns.chmod(0o755)
    if done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("SKIP"):
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip() == (
        f"alexnet-exp: error: MLflow store folder {mlruns} is read-only (Permission denied):"
        f" make it writable (chmod -R u+w {mlruns}) or pass tracking.store_dir=<a writable"
        " folder>")


@pytest.mark.parametrize("typed", [  # README lines as typed in bash, where ~ stays literal
    "alexnet-exp data.dir=~/data/flower_photos",
    "alexnet-exp -m experiment=tune_lr data.dir=~/data/flower_photos",
    "alexnet-exp-eval run_id=abc data.dir=~/data/flower_photos tta=ten_crop",
])
def test_tilde_in_a_value_says_how_to_write_it(tmp_path, typed):
    done = subprocess.run(["bash", "-c", f"{Path(EXE).parent}/{typed}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    program = typed.split()[0]
    assert done.stderr.strip() == (
        f"{program}: error: config: data.dir=~/data/flower_photos: Hydra cannot read an unquoted"
        " ~ in a value: write data.dir=$HOME/data/flower_photos (bash expands $HOME there) or"
        " quote it for Hydra: 'data.dir=\"~/data/flower_photos\"'")


@pytest.mark.slow
@pytest.mark.parametrize("written", ["data.dir=$HOME/photos", "'data.dir=\"~/photos\"'"])
def test_both_suggested_spellings_work_as_typed_in_bash(tmp_path, written):
    make_image_folder(tmp_path / "photos", classes={"a": 4, "b": 4})
    done = subprocess.run(
        ["bash", "-c", f"{EXE} {written} data=folder model=small dry_run=true"],
        cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)}, capture_output=True,
        text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "total parameters" in done.stdout
