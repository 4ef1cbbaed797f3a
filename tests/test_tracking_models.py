"""tracking.models: an evaluation's run ends as what happened to it, never RUNNING."""

import signal
from types import SimpleNamespace

import pytest
from helpers import empty_store
from matplotlib.figure import Figure

from alexnet_exp import stopping
from alexnet_exp.config import TrackingConfig
from alexnet_exp.tracking import log_evaluation, open_store


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
