"""The runner's stages in-process with a fake tracker: what a job hands its tracker, in which
order, and how each ending is recorded (no MLflow store, a tiny model, one epoch)."""

import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import SignalsWhenFreed
from omegaconf import OmegaConf

from alexnet_exp import runner, stopping, training
from alexnet_exp.config import ExperimentConfig
from alexnet_exp.keys import DATA_FINGERPRINT_TAG, FINGERPRINT_ARTIFACT
from alexnet_exp.prepare import Prepared, identify
from alexnet_exp.resume import ResumePoint

CONF = Path(__file__).resolve().parents[1] / "conf"


class FakeTracker:
    """Takes every call a Tracker takes and keeps them, in order, as ``(name, args, kwargs)``."""

    run_id, experiment_id, uri = "fake-run", "0", "fake://store"

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))

    def run_url(self):
        return "fake://run"

    def named(self, name):
        return [(args, kwargs) for called, args, kwargs in self.calls if called == name]


def tiny_job(tmp_path, data, epochs=1):
    cfg = OmegaConf.to_object(OmegaConf.merge(
        OmegaConf.structured(ExperimentConfig),
        {"data": {"name": "folder", "dir": str(data)},
         "model": {**OmegaConf.load(CONF / "model" / "small.yaml"), "input_size": 64,
                   "filters": [8, 16, 16, 16, 8], "fc_units": [32, 32]},
         "trainer": {"epochs": epochs, "batch_size": 8, "verbose": 0, "tensorboard": False},
         "tracking": {"log_model": False}}))
    ctx = runner.JobContext(launch_dir=tmp_path, output_dir=tmp_path / "out",
                            overrides=["norm=lrn"])
    prepared = Prepared(identify(cfg), FakeTracker(), None,
                        ResumePoint(None, tmp_path / "out" / "checkpoints"))
    return cfg, ctx, prepared


@pytest.mark.slow
def test_a_job_starts_logs_each_epoch_records_and_finishes(tmp_path, tiny_data):
    cfg, ctx, prepared = tiny_job(tmp_path, tiny_data, epochs=2)
    summary = runner.fit_and_record(cfg, ctx, prepared, runner.build(cfg, ctx, prepared))
    tracker = prepared.tracker
    ((name,), start), = tracker.named("start")
    assert name == "norm=lrn"
    assert start["tags"][DATA_FINGERPRINT_TAG] == prepared.identity.data.digest
    assert [args[0] for args, _ in tracker.named("log_epoch")] == [1, 2]
    assert any(args[1] == FINGERPRINT_ARTIFACT for args, _ in tracker.named("log_dict"))
    assert tracker.calls[0][0] == "start" and tracker.calls[-1] == ("end", ("FINISHED",), {})
    assert summary.epochs == 2 and summary.run_id == "fake-run"


@pytest.mark.slow
@pytest.mark.parametrize(("raised", "status"), [
    (stopping.Stopped(signal.SIGTERM), "KILLED"), (OSError(28, "No space left on device"),
                                                   "FAILED")])
def test_a_job_that_stops_ends_its_run_killed_or_failed(tmp_path, tiny_data, monkeypatch,
                                                        raised, status):
    def stop(*args, **kwargs):
        raise raised

    cfg, ctx, prepared = tiny_job(tmp_path, tiny_data)
    built = runner.build(cfg, ctx, prepared)
    monkeypatch.setattr(training, "fit", stop)
    with pytest.raises(type(raised)):
        runner.fit_and_record(cfg, ctx, prepared, built)
    (args, _), = prepared.tracker.named("end")
    assert args[0] == status
    if isinstance(raised, OSError):  # a full disk: the same command resumes it
        assert prepared.tracker.named("set_tags")[-1][0][0] == {"failure_reason": "disk"}


@pytest.mark.slow
def test_a_sigterm_swallowed_after_fit_still_ends_the_run_killed(tmp_path, tiny_data,
                                                                 monkeypatch):
    """A SIGTERM that lands in a ``__del__`` (TensorFlow frees tensors there) cannot leave it:
    the job went on, recorded FINISHED and exited 0 for a run its user had stopped."""
    fit = training.fit

    def fit_then_signal(*args, **kwargs):
        history = fit(*args, **kwargs)
        SignalsWhenFreed(signal.SIGTERM)  # freed at once, the stop swallowed
        return history

    cfg, ctx, prepared = tiny_job(tmp_path, tiny_data)
    built = runner.build(cfg, ctx, prepared)
    monkeypatch.setattr(training, "fit", fit_then_signal)
    saved = signal.getsignal(signal.SIGTERM), sys.unraisablehook
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stopping.install(anywhere=True)
    try:
        with pytest.raises(stopping.Stopped), stopping.job():
            runner.fit_and_record(cfg, ctx, prepared, built)
    finally:
        stopping.reset()
        signal.signal(signal.SIGTERM, saved[0])
        sys.unraisablehook = saved[1]
    (args, _), = prepared.tracker.named("end")
    assert args[0] == "KILLED"


@pytest.mark.slow
def test_progressive_resizing_trains_any_size_and_hands_on_the_fixed_size_model(
        tmp_path, tiny_data, monkeypatch):
    """Smaller training images in the first epochs (64, 80, then 96 px): the model trains on
    any size, validates at 96, and what is recorded and logged is the 96 px model eval and
    export read their size from, with the trained weights."""
    from dataclasses import replace

    from alexnet_exp import record
    from alexnet_exp.config import ProgressiveConfig

    cfg, ctx, prepared = tiny_job(tmp_path, tiny_data, epochs=3)
    cfg = replace(cfg, model=replace(cfg.model, input_size=96, head="gap"),
                  trainer=replace(cfg.trainer, progressive=ProgressiveConfig(start_size=64)))
    built = runner.build(cfg, ctx, prepared)
    assert built.model.input_shape == (None, None, None, 3)
    handed = {}
    results = record.results

    def recorded(cfg, tracker, model, *args, **kwargs):
        handed["model"] = model
        return results(cfg, tracker, model, *args, **kwargs)

    monkeypatch.setattr(record, "results", recorded)
    summary = runner.fit_and_record(cfg, ctx, prepared, built)
    assert summary.epochs == 3
    assert handed["model"].input_shape == (None, 96, 96, 3)
    for trained, fixed in zip(built.model.get_weights(), handed["model"].get_weights(),
                              strict=True):
        np.testing.assert_array_equal(trained, fixed)


@pytest.mark.slow
def test_two_jobs_in_one_process_each_record_in_the_store_their_config_names(tmp_path,
                                                                            tiny_data):
    """A notebook runs one job, then another with ``tracking.store_dir`` changed: the second
    run lands in the second store (it went to the first: creating a tracker exported
    MLFLOW_TRACKING_URI, which outranked every later store choice of the process)."""
    from dataclasses import replace

    from mlflow.tracking import MlflowClient

    summaries = {}
    for store_dir in ("first", "second"):
        cfg, ctx, _ = tiny_job(tmp_path, tiny_data)
        cfg = replace(cfg, tracking=replace(cfg.tracking, store_dir=store_dir))
        summaries[store_dir] = runner.run(cfg, replace(ctx, output_dir=tmp_path / store_dir))
    for store_dir, summary in summaries.items():
        uri = f"sqlite:///{tmp_path / store_dir / 'mlflow.db'}"
        assert summary.tracking_uri == uri
        client = MlflowClient(uri)
        (run,) = client.search_runs([client.get_experiment_by_name("alexnet-exp").experiment_id])
        assert run.info.run_id == summary.run_id and run.info.status == "FINISHED"


@pytest.mark.slow
def test_a_pack_rewritten_during_the_run_ends_it_failed_saying_so(tmp_path, tiny_data,
                                                                  monkeypatch):
    """Packed again with overwrite=true while the run read it: the run trained on two data
    sets and its record names the first, so it must not end FINISHED."""
    from alexnet_exp import pack
    from alexnet_exp.config import DataConfig
    from alexnet_exp.errors import DataError
    from alexnet_exp.tool_config import PackConfig

    def packed_with(seed):
        return PackConfig(DataConfig(name="folder", dir=str(tiny_data)), str(tmp_path / "pack"),
                          seed=seed, overwrite=True)

    pack.run_pack(packed_with(1), tmp_path)
    cfg, ctx, prepared = tiny_job(tmp_path, tmp_path / "pack")
    cfg.data.name = "records"
    prepared = Prepared(identify(cfg), prepared.tracker, None, prepared.point)
    built = runner.build(cfg, ctx, prepared)
    fit = training.fit

    def fit_then_pack_again(*args, **kwargs):
        result = fit(*args, **kwargs)
        pack.run_pack(packed_with(2), tmp_path)
        return result

    monkeypatch.setattr(training, "fit", fit_then_pack_again)
    with pytest.raises(DataError, match="changed while this run read it"):
        runner.fit_and_record(cfg, ctx, prepared, built)
    (args, _), = prepared.tracker.named("end")
    assert args[0] == "FAILED" and "changed while this run read it" in args[1]
