"""tracking.models: an evaluation's run ends as what happened to it, never RUNNING; a run is
named by its id or a unique prefix of it."""

import signal
from types import SimpleNamespace

import pytest
from helpers import empty_store
from matplotlib.figure import Figure

from alexnet_exp import stopping
from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import UserError
from alexnet_exp.tracking import log_evaluation, models, open_store, require_run


@pytest.mark.parametrize(("raised", "status"), [
    (stopping.Stopped(signal.SIGTERM), "KILLED"), (OSError(28, "No space left on device"),
                                                   "FAILED")])
def test_an_evaluation_stopped_while_it_is_logged_ends_killed_or_failed(tmp_path, raised,
                                                                         status):
    # a SIGTERM to alexnet-exp-eval while it logged its plot: the run ended FAILED (Ctrl-C) or
    # stayed RUNNING (SIGTERM, which the tool did not take)
    empty_store(tmp_path / "mlruns")
    store = open_store(TrackingConfig(), tmp_path)
    cfg = SimpleNamespace(tta="none", top_k=1, tracking=TrackingConfig())
    figure = Figure()

    def stop(*args, **kwargs):
        raise raised

    figure.savefig = stop
    with pytest.raises(type(raised)):
        log_evaluation(store, cfg, None, "model.keras", tmp_path, {"accuracy": 0.5}, figure,
                       "report", None)
    (run,) = store.client.search_runs([store.experiment_id("alexnet-exp")])
    assert run.info.status == status


def test_a_run_is_found_by_a_unique_prefix_of_eight_or_more_characters(tmp_path):
    empty_store(tmp_path / "mlruns")
    store = open_store(TrackingConfig(), tmp_path)
    other = store.client.create_experiment("other")
    ids = [store.client.create_run(experiment, run_name=f"r{i}").info.run_id
           for i, experiment in enumerate([store.experiment_id("alexnet-exp"), other, other])]
    store.client.delete_run(ids[2])  # a deleted run is still a run a user may name
    for run_id in ids:
        assert require_run(store, run_id) == run_id
        assert require_run(store, run_id[:8]) == run_id
        assert require_run(store, run_id[:12].upper()) == run_id
    with pytest.raises(UserError, match=r"run_id=abc123: no such run .*first 8\+ characters"):
        require_run(store, "abc123")
    unused = next(p for p in ("00000000", "ffffffff") if not any(i.startswith(p) for i in ids))
    with pytest.raises(UserError, match=f"parent_run_id={unused}: no such run in sqlite:///"):
        require_run(store, unused, "parent_run_id")


def test_an_ambiguous_prefix_names_the_candidates(tmp_path, monkeypatch):
    # two ids sharing 8 characters cannot be made on purpose: the listing is replaced
    empty_store(tmp_path / "mlruns")
    store = open_store(TrackingConfig(), tmp_path)
    runs = [SimpleNamespace(info=SimpleNamespace(run_id=f"720a3612{tail}", run_name=name))
            for tail, name in (("a" * 24, "norm=bn"), ("b" * 24, "norm=lrn"))]
    monkeypatch.setattr(models, "_all_runs", lambda store: iter(runs))
    with pytest.raises(UserError, match=r"run_id=720a3612: 2 runs start with it .*720a3612a+ "
                                        r"\(norm=bn\), 720a3612b+ \(norm=lrn\); give more"):
        require_run(store, "720a3612")
