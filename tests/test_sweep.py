"""Sweeps as users launch them: parallel jobs (joblib, submitit), Optuna search, resume after a
kill."""

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import TINY_MODEL, cli, empty_store, runs_of, store, wait_for


def children_of(runs):
    (parent,) = [r for r in runs if r.data.tags.get("alexnet_exp.kind") == "sweep"]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.mark.slow
def test_joblib_sweep_of_parallel_jobs_loses_no_run_or_metric(tmp_path, tiny_data):
    # three jobs at once on two cores: more writers to one store than cores
    client = store(tmp_path)
    result = cli(tmp_path, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3",
                 "data=folder", f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=2",
                 "tracking.log_model=false", "seed=1,2,3")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = children_of(runs_of(client))
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2", "3"]
    assert {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        for metric in ("loss", "val_accuracy", "val_loss", "epoch_seconds"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == [1, 2], (run.info.run_name, metric)
        # three jobs on this machine's cores: each job gets its share, never all of them
        assert run.data.tags["intra_op_threads"] == str(max(1, os.cpu_count() // 3))


@pytest.mark.slow
def test_submitit_local_preset_runs_each_job_as_its_own_submitit_job(tmp_path, tiny_data):
    client = store(tmp_path)
    result = cli(tmp_path, "-m", "cluster=submitit_local", "data=folder",
                 f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=2",
                 "tracking.log_model=false", "seed=1,2")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = children_of(runs_of(client))
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]
    assert {r.info.status for r in children} == {"FINISHED"}
    for run in children:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")]
        assert steps == [1, 2]
        assert run.data.tags["intra_op_threads"] == "1"  # the preset's cpus_per_task
    # submitit ran them: one folder of pickled job, result and logs per job
    jobs = [d for d in (tmp_path / "multirun" / ".submitit").iterdir() if d.name != "%j"]
    assert len(jobs) == 2
    assert all(any(d.glob("*_result.pkl")) for d in jobs)


@pytest.mark.slow
def test_optuna_sweep_returns_the_objective_and_tags_the_best_trial(tmp_path, tiny_data):
    client = store(tmp_path)
    result = cli(tmp_path, "-m", "experiment=tune_lr", "data=folder", f"data.dir={tiny_data}",
                 *TINY_MODEL[1:], "trainer.epochs=1", "tracking.log_model=false",
                 "hydra.sweeper.n_trials=2")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, trials = children_of(runs_of(client, "tune_lr"))
    assert len(trials) == 2 and {r.info.status for r in trials} == {"FINISHED"}
    assert len({r.data.params["optimizer.learning_rate"] for r in trials}) == 2  # searched
    optuna_best = yaml.safe_load((tmp_path / "multirun" / "optimization_results.yaml").read_text())
    best_value = max(r.data.metrics["best_val_accuracy"] for r in trials)
    assert optuna_best["best_value"] == pytest.approx(best_value)  # the job's return value
    (tagged,) = [r for r in trials if r.data.tags.get("alexnet_exp.best_trial") == "true"]
    assert tagged.data.metrics["best_val_accuracy"] == best_value
    assert client.get_run(parent.info.run_id).data.tags["best_run_id"] == tagged.info.run_id


def start_sweep(tmp_path: Path, sweep: list[str], **popen) -> subprocess.Popen:
    """``alexnet-exp <sweep>`` started in ``tmp_path`` in a session (process group) of its own;
    its output goes nowhere unless ``popen`` says where."""
    env = dict(os.environ)
    exe = str(Path(sys.executable).with_name("alexnet-exp"))
    popen = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, **popen}
    return subprocess.Popen([exe, *sweep], cwd=tmp_path, env=env, start_new_session=True, **popen)


def runs_now(client) -> list:
    """The runs in the store at this moment (none while the sweep has not created its
    experiment yet)."""
    exp = client.get_experiment_by_name("alexnet-exp")
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.mark.slow
def test_rerun_skips_finished_jobs_and_resumes_a_job_killed_mid_run(tmp_path, tiny_data):
    sweep = ["-m", "data=folder", f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=6",
             "tracking.log_model=false", "seed=1,2", f"hydra.sweep.dir={tmp_path}/multirun"]
    client = store(tmp_path)
    process = start_sweep(tmp_path, sweep)

    def second_job_mid_run():
        runs = runs_now(client)
        jobs = {r.data.params.get("seed"): r for r in runs if "seed" in r.data.params}
        second = jobs.get("2")
        return bool(second and jobs["1"].info.status == "FINISHED"
                    and client.get_metric_history(second.info.run_id, "loss"))

    try:
        wait_for(second_job_mid_run, 300, "seed=1 FINISHED and seed=2 mid-training")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # kill -9: no handler runs, the run stays RUNNING
        process.wait()
    killed = {r.data.params["seed"]: r for r in children_of(runs_of(client))[1]}
    assert killed["2"].info.status == "RUNNING"

    again = cli(tmp_path, *sweep)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skipping") == 1 and "seed=1" in again.stdout
    parent, children = children_of(runs_of(client))
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert sorted(r.data.params["seed"] for r in finished) == ["1", "2"]
    rerun = next(r for r in finished if r.data.params["seed"] == "2")
    assert rerun.info.run_id == killed["2"].info.run_id  # continued from its checkpoint
    assert "resuming MLflow run " + rerun.info.run_id in again.stdout
    steps = [m.step for m in client.get_metric_history(rerun.info.run_id, "loss")]
    assert steps == [1, 2, 3, 4, 5, 6]  # every epoch exactly once


@pytest.mark.slow
def test_a_sweeps_jobs_are_named_by_what_it_varies_and_its_parent_by_what_they_share(
        tmp_path, tiny_data):
    """In the runs table all children read ``model=small,da...`` and in the Models tab all
    models ``model-small-data-max_images_...``: every override was in every name."""
    client = store(tmp_path)
    shared = ["data=folder", f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=1",
              "dropout=off"]
    result = cli(tmp_path, "-m", *shared, "norm=bn,lrn", "+tags.owner=alice")
    assert result.returncode == 0, result.stderr[-3000:]
    parent, children = children_of(runs_of(client))
    children.sort(key=lambda r: r.data.params["model.norm"])
    # the user's own tags, on every job and on the parent, in no name
    assert [r.data.tags.get("owner") for r in [parent, *children]] == ["alice"] * 3
    assert [r.info.run_name for r in children] == ["norm=bn", "norm=lrn"]
    for run, norm in zip(children, ("bn", "lrn"), strict=True):
        assert run.data.tags["overrides"] == " ".join(
            [*shared, f"norm={norm}", "+tags.owner=alice"])  # in full
    # what every job shares names the parent (no path: the tag has it) and is its tag
    assert parent.info.run_name == ("sweep data=folder " + " ".join(TINY_MODEL[:-1]) +
                                    " trainer.epochs=1 dropout=off (varies norm)")
    assert parent.data.tags["sweep_shared"] == " ".join([*shared, "+tags.owner=alice"])
    # the swept keys are easy to find among the params: a tag naming them, one per value
    assert parent.data.tags["alexnet_exp.swept"] == "norm"
    assert [r.data.tags["alexnet_exp.swept"] for r in children] == ["norm", "norm"]
    assert [r.data.tags["swept.norm"] for r in children] == ["bn", "lrn"]
    (lrn,) = client.search_runs([parent.info.experiment_id], "tags.`swept.norm` = 'lrn'")
    assert lrn.info.run_id == children[1].info.run_id
    # the parent's summary is under its children's key: one chart compares them
    best = max(r.data.metrics["best_val_accuracy"] for r in children)
    assert parent.data.metrics == {"best_val_accuracy": best}
    assert f"the sweep's best run is MLflow run {parent.data.tags['best_run_id']}" in (
        result.stdout)
    assert "best best_" not in result.stdout
    # the printed link opens the sweep's view that its experiment tag holds
    (link,) = re.findall(r"compare the sweep's runs: (\S+)", result.stdout)
    key = parent.info.run_id
    assert link.endswith(f"#/experiments/{parent.info.experiment_id}?viewStateShareKey={key}"
                         "&workflowType=machine_learning")
    view = json.loads(client.get_experiment(parent.info.experiment_id).tags[
        f"mlflow.sharedViewState.{key}"])
    assert view["runsExpanded"] == {key: True}
    assert "tags.`swept.norm`" in view["selectedColumns"] and "groupBy" not in view
    models = client.search_logged_models([parent.info.experiment_id])
    assert sorted(m.name for m in models) == ["norm-bn", "norm-lrn"]


def test_swept_keys_are_found_by_hydras_parser_on_the_command_line_and_the_sweeper():
    from omegaconf import OmegaConf

    from alexnet_exp.sweep import swept_keys

    def config(task, params=None):
        return OmegaConf.create({"hydra": {"overrides": {"task": task},
                                           "sweeper": {"params": params}}})

    assert swept_keys(config(["model=small", "norm=bn,lrn", "+tags.owner=alice",
                              "tags=[a,b]", "dropout=on,off"])) == ["norm", "dropout"]
    # six_ideas sweeps in its config; Optuna's search space is swept too
    assert swept_keys(config(["experiment=six_ideas"], {
        "ablation": "baseline,tanh", "seed": "range(0,3)"})) == ["ablation", "seed"]
    assert swept_keys(config([], {"optimizer.learning_rate": "tag(log, interval(1e-4, 1e-1))",
                                  "model.dropout_rate": "interval(0.0, 0.7)"})) == [
        "optimizer.learning_rate", "model.dropout_rate"]
    # the command line's one value outranks the config's sweep, as it does for the sweeper
    assert swept_keys(config(["seed=1"], {"ablation": "bn,tanh", "seed": "range(0,3)"})) == [
        "ablation"]


def test_a_run_is_named_by_its_swept_overrides_or_its_own_short_ones():
    from alexnet_exp.prepare import run_name_for

    job = ["model=small", "data.dir=/home/me/data/flower_photos", "trainer.verbose=2",
           "tracking.uri=http://alice:s3cret@host:5000", "+tags.owner=alice", "norm=lrn",
           "dropout=off", "optimizer.learning_rate=0.0012345678901"]
    assert run_name_for(job, ["norm", "dropout"]) == "norm=lrn dropout=off"
    assert run_name_for(job, ["optimizer.learning_rate"]) == "optimizer.learning_rate=0.001235"
    assert run_name_for(job, ["data.dir"]) == "data.dir=flower_photos"
    assert run_name_for(job) == ("model=small norm=lrn dropout=off"
                                 " optimizer.learning_rate=0.001235")
    assert run_name_for(job, []) == run_name_for(job)  # a multirun that sweeps nothing
    assert run_name_for(["tracking.uri=http://alice:s3cret@h"], ["tracking.uri"]) == (
        "tracking.uri=http://***@h")
    assert run_name_for([]) == "defaults"


def report_runs(tmp_path, parent_run_id: str) -> set[str]:
    """The run ids ``alexnet-exp-report parent_run_id=...`` reports on (from its CSV)."""
    result = cli(tmp_path, "experiment_name=alexnet-exp", f"parent_run_id={parent_run_id}",
                 f"output_dir={tmp_path}/report", "log=false", program="alexnet-exp-report")
    assert result.returncode == 0, result.stderr[-3000:]
    with (tmp_path / "report" / "report.csv").open() as handle:
        return {i for row in csv.DictReader(handle) for i in row["run_ids"].split()}


@pytest.mark.slow
def test_a_sweep_is_a_parent_with_a_child_per_job_and_runs_what_its_command_names(
        tmp_path, image_folder):
    data = image_folder(tmp_path / "data", classes={"apple": 8, "kiwi": 8}, size=(48, 40))
    job = ["data=folder", f"data.dir={data}", *TINY_MODEL, "trainer.epochs=1",
           "tracking.log_model=false"]
    client = store(tmp_path)
    # (reuse=sweep, the default, not letting another command's run stand in for a job:
    # test_prepare's test_sweep_reuse_decides_which_finished_run_stands_in, against a real store.)
    sweep = ["-m", *job, "norm=bn,lrn", "dropout=off"]
    first = cli(tmp_path, *sweep)
    assert first.returncode == 0, first.stderr[-3000:]
    parent, children = children_of(runs_of(client))
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    assert parent.data.tags["best_run_id"] in {r.info.run_id for r in children}
    # one parent, a child per job, each named for what the sweep varies
    assert parent.info.status == "FINISHED"
    assert "norm=bn,lrn" in parent.data.tags["sweep_overrides"]
    assert parent.data.tags["sweep_dir"] == str(tmp_path / "multirun")
    assert sorted(r.info.run_name for r in children) == ["norm=bn", "norm=lrn"]
    assert {(r.data.params["model.norm"], r.data.params["model.dropout_rate"])
            for r in children} == {("bn", "0.0"), ("lrn", "0.0")}
    assert len({r.data.tags["alexnet_exp.config_hash"] for r in children}) == 2
    assert report_runs(tmp_path, parent.info.run_id) == {r.info.run_id for r in children}

    # (The same command again skips its own finished jobs: test_rerun_skips_finished_jobs_and_
    # resumes_a_job_killed_mid_run runs that.)
    # Another sweep that asks for reuse across the experiment: its lrn job is a FINISHED run
    # it did not start, linked to its parent so the UI, best trial and report count it.
    other = cli(tmp_path, "-m", *job, "norm=lrn", "dropout=off", "sweep.reuse=experiment")
    assert other.returncode == 0, other.stderr[-3000:]
    (other_parent,) = [r for r in runs_of(client) if r.data.tags.get("alexnet_exp.kind")
                       == "sweep" and r.info.run_id != parent.info.run_id]
    reused = [k.rsplit(".", 1)[1] for k in other_parent.data.tags
              if k.startswith("alexnet_exp.sweep_member.")]
    (lrn,) = [r.info.run_id for r in children if r.data.params["model.norm"] == "lrn"]
    assert reused == [lrn]  # the first sweep's lrn job, not trained again
    assert other_parent.data.tags["best_run_id"] == reused[0]
    assert other_parent.info.status == "FINISHED"
    assert report_runs(tmp_path, other_parent.info.run_id) == set(reused)

    # (sweep.reuse=never training every job again: test_prepare's
    # test_sweep_reuse_decides_which_finished_run_stands_in, against a real store.)


@pytest.mark.parametrize(("raised", "status"), [(RuntimeError("bug"), "FAILED"),
                                                 (KeyboardInterrupt(), "KILLED")])
def test_a_sweep_that_stops_early_ends_its_parent(tmp_path, monkeypatch, raised, status):
    """A job that crashes (or Ctrl-C) between the parent's start and its end: never RUNNING."""
    from alexnet_exp import cli as entry
    from alexnet_exp import runner

    def stop(cfg, ctx):
        raise raised

    monkeypatch.chdir(tmp_path)
    empty_store(tmp_path / "mlruns")
    monkeypatch.setattr(runner, "run", stop)
    monkeypatch.setattr(sys, "argv", ["alexnet-exp", "-m", "data=digits", "seed=1,2",
                                      f"hydra.sweep.dir={tmp_path}/multirun"])
    client = store(tmp_path)
    with pytest.raises((SystemExit, KeyboardInterrupt)):
        entry.train_main()
    (parent,) = runs_of(client)
    assert parent.data.tags["alexnet_exp.kind"] == "sweep"
    assert parent.info.status == status


@pytest.mark.slow
def test_sigterm_to_a_sweep_of_jobs_in_one_process_ends_the_job_and_the_parent_killed(
        tmp_path, tiny_data):
    sweep = ["-m", "data=folder", f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=40",
             "trainer.early_stopping_patience=null", "tracking.log_model=false", "seed=1,2",
             f"hydra.sweep.dir={tmp_path}/multirun"]
    client = store(tmp_path)
    process = start_sweep(tmp_path, sweep, text=True, stderr=subprocess.PIPE)

    def first_job_mid_run():
        runs = runs_now(client)
        return any(client.get_metric_history(r.info.run_id, "loss") for r in runs)

    try:
        wait_for(first_job_mid_run, 300, "the first job mid-training")
        os.kill(process.pid, signal.SIGTERM)
        _, errors = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    parent, children = children_of(runs_of(client))
    assert parent.info.status == "KILLED"
    (child,) = children  # seed=2 never began
    assert child.info.status == "KILLED" and child.data.params["seed"] == "1"
    assert process.returncode == 143, errors[-3000:]
    ours = [line for line in errors.splitlines() if line.startswith("alexnet-exp")]
    assert ours == [f"alexnet-exp: error: terminated (SIGTERM); MLflow run"
                    f" {child.info.run_id} is marked KILLED"]


@pytest.mark.slow
@pytest.mark.parametrize("to_group", [False, True], ids=["main_process", "process_group"])
def test_sigterm_to_a_joblib_sweep_ends_every_run_killed(tmp_path, tiny_data, to_group):
    # `kill` and Kubernetes signal the main process only (it forwards the signal to joblib's
    # workers); SLURM, systemd and `timeout` signal the whole process group.
    sweep = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data=folder",
             f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=40",
             "trainer.early_stopping_patience=null", "tracking.log_model=false", "seed=1,2,3",
             f"hydra.sweep.dir={tmp_path}/multirun"]
    client = store(tmp_path)
    log = tmp_path / "stderr.txt"  # a file, not a pipe: orphaned workers would hold a pipe open
    process = start_sweep(tmp_path, sweep, stderr=log.open("w"))

    def two_jobs_mid_run():
        runs = runs_now(client)
        jobs = [r for r in runs if "seed" in r.data.params]
        return len(jobs) == 2 and all(client.get_metric_history(r.info.run_id, "loss")
                                      for r in jobs)

    try:
        wait_for(two_jobs_mid_run, 300, "two jobs mid-training")
        (os.killpg if to_group else os.kill)(process.pid, signal.SIGTERM)
        process.wait(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the sweep
        process.wait()
    errors = log.read_text()
    parent, children = children_of(runs_of(client))
    assert parent.info.status == "KILLED"
    assert sorted(r.data.params["seed"] for r in children) == ["1", "2"]  # seed=3 never began
    assert {r.info.status for r in children} == {"KILLED"}
    assert process.returncode == 143, errors[-3000:]
    for run in children:
        assert run.data.tags["error"] == "terminated (SIGTERM)"
        assert f"MLflow run {run.info.run_id} is marked KILLED" in errors
    assert "the sweep's MLflow runs are marked KILLED" in errors
    assert "Traceback" not in errors


def submitit_task(folder: Path) -> int | None:
    """The pid of the submitit job process running from ``folder`` (its controller's child)."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().decode()
        except OSError:
            continue
        if "submitit.core._submit" in command and str(folder) in command:
            return int(entry)
    return None


@pytest.mark.slow
def test_submitit_time_limit_requeues_the_job_which_resumes_the_same_run(tmp_path, tiny_data):
    # Before a time limit (and on preemption) submitit signals the job with SIGUSR2, hands
    # the job's `checkpoint` to a requeued copy and exits. The signal is sent by hand, as
    # submitit's local controller sends it at timeout_min - signal_delay_s: the smallest
    # timeout_min is 1 minute (the signal 30 s in), too slow and too racy for a test.
    sweep = ["-m", "cluster=submitit_local", "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
             "trainer.epochs=12", "trainer.early_stopping_patience=null",
             "tracking.log_model=false", "seed=1", f"hydra.sweep.dir={tmp_path}/multirun"]
    client = store(tmp_path)
    process = start_sweep(tmp_path, sweep)

    def job_mid_run():
        runs = runs_now(client)
        job = next((r for r in runs if "seed" in r.data.params), None)
        return job and client.get_metric_history(job.info.run_id, "loss") and job

    try:
        first = wait_for(job_mid_run, 300, "the job mid-training")
        os.kill(submitit_task(tmp_path / "multirun"), signal.SIGUSR2)
        # KILLED while the job waits to be requeued (its restart takes seconds: Python, TF)
        wait_for(lambda: client.get_run(first.info.run_id).info.status == "KILLED", 60,
                 "the run KILLED before the requeued job resumes it")
        process.wait(timeout=400)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == 0
    parent, children = children_of(runs_of(client))
    (run,) = children  # the requeued job continued the run, it did not start a second one
    assert run.info.run_id == first.info.run_id
    assert run.info.status == "FINISHED" and parent.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert steps == list(range(1, 13))  # every epoch exactly once
    (log,) = (tmp_path / "multirun" / ".submitit").glob("*/*_log.out")
    text = log.read_text()
    assert f"MLflow run {run.info.run_id} is KILLED; submitit requeues the job" in text
    assert "Requeued job" in text  # submitit's own line
    assert f"resuming MLflow run {run.info.run_id} after epoch" in text


def test_a_sweep_of_tracking_none_starts_no_parent_run_and_no_store(tmp_path, monkeypatch):
    from alexnet_exp import cli as entry
    from alexnet_exp import runner

    seen = []

    def job(cfg, ctx):
        seen.append((cfg.seed, os.environ.get("ALEXNET_EXP_PARENT_RUN_ID")))

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(runner, "run", job)
    monkeypatch.setattr(sys, "argv", ["alexnet-exp", "-m", "data=digits", "tracking=none",
                                      "seed=1,2", f"hydra.sweep.dir={tmp_path}/multirun"])
    entry.train_main()
    assert seen == [(1, None), (2, None)]  # both jobs ran, with no parent to join
    assert not (tmp_path / "mlruns").exists()
