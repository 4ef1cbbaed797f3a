"""Stop signals in one process: what is raised where, once, and what is handed to submitit."""

import os
import signal
import sys
import time

import pytest
from helpers import SignalsWhenFreed

from alexnet_exp import stopping


@pytest.fixture(autouse=True)
def own_handlers(monkeypatch):
    """Each test starts from the default handlers and leaves them as it found them."""
    monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)}
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    stopping.reset()
    yield
    stopping.reset()
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_sigterm_in_a_job_raises_a_stop_with_exit_code_143_and_a_second_one_is_ignored():
    stopping.install(anywhere=True)
    with pytest.raises(stopping.Stopped) as raised, stopping.job():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never reached: the handler raises at once
    assert raised.value.exit_code == 143 and str(raised.value) == "terminated (SIGTERM)"
    assert isinstance(raised.value, KeyboardInterrupt)  # `except Exception` lets it through
    os.kill(os.getpid(), signal.SIGTERM)  # SLURM and a forwarding sweep may send it twice:
    time.sleep(0.05)  # the cleanup of the first stop must not be cut short by the second


def test_a_sigterm_held_during_fit_is_raised_at_the_boundary_or_when_the_block_ends():
    stopping.install(anywhere=True)
    with pytest.raises(stopping.Stopped), stopping.job(), stopping.between_batches():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # held: no exception here
        assert stopping.take_pending() is not None  # the batch boundary raises this
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    # a Ctrl-C after the last boundary is raised when fit's block ends, never lost


def test_a_worker_between_jobs_keeps_the_signal_for_its_next_job():
    # a joblib worker that raised between jobs would die, and joblib would kill its siblings
    stopping.install()  # not anywhere: a worker process, where the CLI's main never ran
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)  # recorded, not raised
    with pytest.raises(stopping.Stopped), stopping.job():
        pytest.fail("a process told to terminate must not start a job")


def test_a_real_error_is_not_a_stop_but_one_raised_after_the_signal_is():
    assert stopping.as_stop(RuntimeError("disk")) is None
    assert stopping.as_stop(KeyboardInterrupt()).exit_code == 130
    stopping.install()
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    # the signal landing while TensorFlow's C++ raises comes out as a RuntimeError
    assert stopping.as_stop(RuntimeError("pybind11")).exit_code == 143


def test_submitits_signal_stops_the_job_then_goes_to_submitits_handler(monkeypatch):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    calls = []
    signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))  # submitit's
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # submitit ignores SIGTERM
    stopping.install(anywhere=True)
    assert signal.getsignal(signal.SIGTERM) is not stopping._on_signal  # left to submitit
    with pytest.raises(stopping.Stopped) as raised, stopping.job():
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(5)
    assert calls == []  # not before the run is KILLED
    assert str(raised.value) == "time limit or preemption (SIGUSR2 from submitit)"
    with pytest.raises(SystemExit):  # submitit's handler exits (or returns on rank > 0)
        stopping.hand_over(raised.value)
    assert calls == [signal.SIGUSR2]
    stopping.hand_over(stopping.Stopped(signal.SIGTERM))  # any other stop is not submitit's
    assert calls == [signal.SIGUSR2]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_swallowed_by_a_del_is_raised_before_the_job_may_finish(signum, capfd):
    # CI saw it: SIGTERM while the model was logged, the job went on and exited 0, run FINISHED
    stopping.install(anywhere=True)
    with pytest.raises(stopping.Stopped) as raised, stopping.job():
        freed = SignalsWhenFreed(signum)
        del freed  # swallowed: the job goes on
        stopping.raise_if_stopped()
    assert raised.value.signum == signum
    assert "Exception ignored" not in capfd.readouterr().err  # no traceback for it either


def test_a_job_no_signal_reached_may_finish():
    stopping.install(anywhere=True)
    with stopping.job():
        stopping.raise_if_stopped()
