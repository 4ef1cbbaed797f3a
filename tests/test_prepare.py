"""The prepare stage against a real SQLite store: which earlier runs a job may resume or stand
in for it, by config hash AND data fingerprint (no TensorFlow, no training)."""

from dataclasses import replace

import pytest
from helpers import empty_store

from alexnet_exp import prepare
from alexnet_exp.config import ExperimentConfig, SweepConfig
from alexnet_exp.fingerprint import DataFingerprint
from alexnet_exp.keys import CONFIG_HASH_TAG, DATA_FINGERPRINT_TAG, SWEEP_LINK_PREFIX
from alexnet_exp.outcome import SkippedJob
from alexnet_exp.tracking import Store

OURS = DataFingerprint(("cat", "dog"), {"cat/a.jpg": (10, 1), "dog/b.jpg": (11, 2)},
                       {"seed": 42})
THEIRS = DataFingerprint(("cat", "dog", "tulips"), {**OURS.files, "tulips/c.jpg": (12, 3)},
                         {"seed": 42})


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{empty_store(tmp_path)}")
    store.client.create_experiment("alexnet-exp")
    return store


@pytest.fixture
def client(store):
    return store.client


def recorded(client, status, data, parent=None, **tags):
    """A run as the runner tags it: config hash, fingerprint, checkpoint folder."""
    exp = client.get_experiment_by_name("alexnet-exp").experiment_id
    tags = {CONFIG_HASH_TAG: "h1", DATA_FINGERPRINT_TAG: data.digest,
            "checkpoint_dir": f"/ckpt/{len(client.search_runs([exp]))}", **tags}
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(exp, tags=tags)
    client.log_dict(run.info.run_id, data.to_dict(), "data/fingerprint.json")
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def identity(tmp_path, data=OURS):
    return prepare.JobIdentity("h1", tmp_path, data)


def test_only_killed_runs_on_the_same_data_are_resumed_newest_first(tmp_path, store, client):
    cfg = ExperimentConfig()
    other_data = recorded(client, "KILLED", THEIRS)
    old = recorded(client, "RUNNING", OURS)
    recorded(client, "FAILED", OURS, failure_reason="nan_loss")  # would fail again
    disk = recorded(client, "FAILED", OURS, failure_reason="disk")  # free space, resume
    found = [run_id for run_id, _ in
             prepare._resume_candidates(store, cfg, identity(tmp_path), None)]
    assert found == [disk, old]
    assert other_data not in found
    no_resume = replace(cfg, trainer=replace(cfg.trainer, resume=False))
    assert prepare._resume_candidates(store, no_resume, identity(tmp_path), None) == []


def test_a_change_of_data_is_named_in_one_line(tmp_path, store, client, capsys):
    killed = recorded(client, "KILLED", OURS)
    theirs = identity(tmp_path, THEIRS)
    assert prepare._resume_candidates(store, ExperimentConfig(), theirs, None) == []
    assert capsys.readouterr().out.strip() == (
        f"alexnet-exp: data changed since run {killed} (classes +tulips, 1 file added):"
        " starting a new run")


@pytest.mark.parametrize(("reuse", "skipped", "linked"), [
    ("sweep", False, False), ("experiment", True, True), ("never", False, False)])
def test_sweep_reuse_decides_which_finished_run_stands_in(tmp_path, store, client, reuse, skipped,
                                                          linked):
    exp = client.get_experiment_by_name("alexnet-exp").experiment_id
    parent = client.create_run(exp, tags={"alexnet_exp.kind": "sweep"}).info.run_id
    standalone = recorded(client, "FINISHED", OURS)
    cfg = replace(ExperimentConfig(), sweep=SweepConfig(reuse=reuse))
    done = prepare._reusable_run(store, cfg, ["norm=lrn"], identity(tmp_path), parent)
    assert isinstance(done, SkippedJob) is skipped
    tags = client.get_run(parent).data.tags
    assert (f"{SWEEP_LINK_PREFIX}{standalone}" in tags) is linked


def test_a_sweeps_own_finished_job_is_skipped_unless_its_data_changed(tmp_path, store, client):
    exp = client.get_experiment_by_name("alexnet-exp").experiment_id
    parent = client.create_run(exp, tags={"alexnet_exp.kind": "sweep"}).info.run_id
    child = recorded(client, "FINISHED", OURS, parent=parent)
    cfg = ExperimentConfig()
    assert prepare._reusable_run(store, cfg, [], identity(tmp_path), parent).run_id == child
    assert prepare._reusable_run(store, cfg, [], identity(tmp_path, THEIRS), parent) is None
    assert not any(k.startswith(SWEEP_LINK_PREFIX) for k in client.get_run(parent).data.tags)


def test_tracking_none_opens_no_store_and_records_nothing(tmp_path, image_folder, monkeypatch):
    from alexnet_exp.config import DataConfig, TrackingConfig, TrainerConfig
    from alexnet_exp.runner import JobContext

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env' / 'mlflow.db'}")
    monkeypatch.setenv("ALEXNET_EXP_PARENT_RUN_ID", "a-parent")  # nothing to reuse or link
    root = image_folder(tmp_path / "data", classes={"a": 3, "b": 3})
    cfg = ExperimentConfig(data=DataConfig(name="folder", dir=str(root)),
                           trainer=TrainerConfig(checkpoint=False),
                           tracking=TrackingConfig(backend="none"))
    got = prepare.prepare(cfg, JobContext(tmp_path, tmp_path / "out"))
    assert isinstance(got, prepare.Prepared) and got.point is None
    assert got.parent_run_id is None and got.tracker.run_id == ""
    got.tracker.log_metrics({"loss": 1.0})  # taken, and kept nowhere
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "env").exists()
    assert got.identity.config_hash == prepare.config_hash(cfg)


def test_a_limited_run_is_another_job_than_the_full_one():
    """Resume and sweep reuse match runs by config hash: a debug run never stands in for a
    full one, nor the other way round."""
    full = ExperimentConfig()
    limited = ExperimentConfig()
    limited.trainer.limit_train_batches = 3
    fraction = ExperimentConfig()
    fraction.trainer.limit_val_batches = 0.5
    hashes = {prepare.config_hash(c) for c in (full, limited, fraction)}
    assert len(hashes) == 3


@pytest.mark.slow  # a Python process that imports MLflow and Hydra: ~6 s
def test_the_prepare_stage_loads_no_tensorflow(tmp_path):
    """Store, data identity and resume point are settled before TensorFlow loads (a dead store
    or a skipped job costs seconds, not TensorFlow's start-up): checked in a fresh process."""
    import subprocess
    import sys
    import textwrap

    from helpers import make_image_folder

    data = make_image_folder(tmp_path / "data", classes={"cat": 3, "dog": 3}, size=(16, 16))
    code = textwrap.dedent(f"""
        import sys
        from dataclasses import replace
        from pathlib import Path
        from types import SimpleNamespace
        from alexnet_exp.config import DataConfig, ExperimentConfig
        from alexnet_exp.prepare import Prepared, prepare
        cfg = replace(ExperimentConfig(), data=DataConfig(name="folder", dir={str(data)!r}))
        work = Path({str(tmp_path)!r})
        ctx = SimpleNamespace(launch_dir=work, output_dir=work / "job", overrides=[])
        prepared = prepare(cfg, ctx)
        assert isinstance(prepared, Prepared) and prepared.point is not None, prepared
        loaded = sorted(m for m in ("tensorflow", "keras") if m in sys.modules)
        print("loaded:", loaded)
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "loaded: []"
    assert (tmp_path / "mlruns" / "mlflow.db").exists()  # the store was opened and checked


def test_the_config_hash_is_what_trains_not_how_progress_is_shown():
    cfg = ExperimentConfig()
    quiet = replace(cfg, trainer=replace(cfg.trainer, verbose="0"))
    longer = replace(cfg, trainer=replace(cfg.trainer, epochs=cfg.trainer.epochs + 1))
    assert prepare.config_hash(quiet) == prepare.config_hash(cfg)
    assert prepare.config_hash(longer) != prepare.config_hash(cfg)


def test_a_switch_added_later_keeps_the_hash_of_runs_recorded_before_it():
    """e23dca656cc3658e is what the default config hashed to before model.head and
    augment.mixup/cutmix existed (commit c822605): a killed run of then still resumes, a
    finished sweep job is still skipped. Using a new switch is a new config."""
    cfg = ExperimentConfig()
    assert prepare.config_hash(cfg) == "e23dca656cc3658e"
    gap = replace(cfg, model=replace(cfg.model, head="gap"))
    mixed = replace(cfg, augment=replace(cfg.augment, mixup=replace(cfg.augment.mixup,
                                                                    alpha=0.2)))
    assert len({prepare.config_hash(c) for c in (cfg, gap, mixed)}) == 3


def test_how_the_data_is_read_is_not_what_is_trained():
    """data.cache (whose default became auto), cache_path, cache_max_memory, threads and
    check_workers change where decoded images wait, not the images or their order: a run
    killed with one resumes with another, and the default still hashes as before."""
    cfg = ExperimentConfig()
    assert cfg.data.cache == "auto"
    read_otherwise = [replace(cfg, data=replace(cfg.data, **change)) for change in (
        {"cache": "memory"}, {"cache": "disk", "cache_path": "/tmp/c"}, {"cache": "none"},
        {"cache_max_memory": "1MB"}, {"threads": 2}, {"check_workers": 1})]
    assert {prepare.config_hash(c) for c in read_otherwise} == {"e23dca656cc3658e"}
    other_order = replace(cfg, data=replace(cfg.data, ordered=False))
    assert prepare.config_hash(other_order) != "e23dca656cc3658e"
