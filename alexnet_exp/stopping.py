"""Signals that end a run as KILLED, never as a crash and never left RUNNING.

- SIGINT (Ctrl-C) and SIGTERM (SLURM, Kubernetes, ``timeout``, systemd, ``kill``) stop a job:
  during fit at the next batch boundary (the last completed epoch is checkpointed), elsewhere at
  once; the run is marked KILLED, one line says so, the exit code is 128 + the signal.
- Inside a submitit job, submitit's own signal for a time limit or preemption (SIGUSR2 unless
  ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise) stops the job the same way, and only then is
  submitit's handler called: it requeues the job, and the requeued job resumes the KILLED run
  (``trainer.resume``). submitit ignores SIGTERM in its jobs on purpose (SLURM sends it on
  preemption and on requeue), so there SIGTERM is left to submitit.

The stop is a :class:`Stopped`, a KeyboardInterrupt: every ``except Exception`` lets it through,
and the paths Ctrl-C always took (KILLED, resume hint) take it. A process stops once: later
SIGTERMs (SLURM and ``timeout`` signal the whole process group, and a sweep forwards the signal
too) never interrupt the cleanup of the first. A process that started with SIGTERM ignored keeps
ignoring it. Signal handlers exist in the main thread only; elsewhere this module does nothing.

A stop raised where Python cannot pass it on is swallowed: a signal that lands while a
``__del__`` or a weakref callback runs (TensorFlow frees its eager tensors and variables in
``__del__`` all the time) ends that call, not the job. The job would go on and record FINISHED
for a run its user stopped, and exit 0. So the stop is also remembered, and
:func:`raise_if_stopped` raises it again before a run may be recorded as finished.
"""

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alexnet_exp import job_locks

log = logging.getLogger(__name__)

SUBMITIT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's own switch; USR2 is its default
_REASONS = {signal.SIGINT: "interrupted (Ctrl-C)", signal.SIGTERM: "terminated (SIGTERM)"}


class Stopped(KeyboardInterrupt):
    """A job stopped by a signal; ``run_id`` is the MLflow run it marked KILLED (if any)."""

    def __init__(self, signum: int, run_id: str | None = None):
        super().__init__(signum)
        self.signum, self.run_id = signum, run_id

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what the shell reports for a process killed by the signal

    def __str__(self) -> str:
        if self.signum == _requeue_signal:
            name = signal.Signals(self.signum).name
            return f"time limit or preemption ({name} from submitit)"
        return _REASONS.get(self.signum, f"stopped ({signal.Signals(self.signum).name})")


_pending: int | None = None  # a stop that came while it could not be raised (held, or idle)
_terminating: int | None = None  # SIGTERM / submitit's signal came: this process starts no job
_holding = False  # inside fit: signals wait for the next batch boundary
_in_job = False
_raise_anywhere = False  # our CLI is this process's main: stop wherever the main thread is
_requeue_signal: int | None = None
_requeue_handler: Callable | None = None
_before_raise: Callable[[int], None] | None = None
_swallowed_sigint = False  # a Ctrl-C's KeyboardInterrupt that a __del__ swallowed
_previous_unraisablehook = sys.unraisablehook


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install(anywhere: bool = False) -> None:
    """Take SIGTERM (and, in a submitit job, submitit's signal) for this process.

    ``anywhere``: the process is ours (the CLI's main), so a stop is raised wherever it lands.
    Otherwise (a joblib worker process) only inside :func:`job`: a worker that raised between
    jobs would die, and joblib would then kill its siblings before they record their end.
    """
    global _raise_anywhere, _requeue_signal, _requeue_handler, _previous_unraisablehook
    if not _main_thread():
        return
    _raise_anywhere = _raise_anywhere or anywhere
    if sys.unraisablehook is not _on_unraisable:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _on_unraisable
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_signal)
    requeue = submitit_signal()
    if requeue is not None and signal.getsignal(requeue) is not _on_signal:
        previous = signal.getsignal(requeue)
        if callable(previous):  # submitit's checkpoint-and-requeue
            _requeue_signal, _requeue_handler = requeue, previous
            signal.signal(requeue, _on_signal)


def submitit_signal() -> int | None:
    """The signal submitit sends a job before its time limit or on preemption, in a job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return getattr(signal, "SIG" + os.environ.get(SUBMITIT_SIGNAL_ENV, "USR2"), None)


def before_raise(hook: Callable[[int], None] | None) -> None:
    """``hook(signum)`` runs in this process's handler before the stop is raised (a sweep
    forwards the signal to its worker processes and waits for their runs to end)."""
    global _before_raise
    _before_raise = hook


def _on_signal(signum: int, frame) -> None:
    global _terminating, _pending
    if _terminating is not None:
        return  # one stop per process: a second signal must not cut the first one's cleanup
    _terminating = signum
    if _holding or not (_in_job or _raise_anywhere):
        _pending = signum
        return
    if _before_raise is not None:
        _before_raise(signum)
    raise Stopped(signum)


def _on_unraisable(unraisable) -> None:
    """Python's hook for an exception it could not raise (in a ``__del__``, a weakref callback):
    a stop is kept for :func:`raise_if_stopped` without the traceback Python prints; anything
    else goes to the hook that was there before."""
    global _swallowed_sigint
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        _previous_unraisablehook(unraisable)
        return
    if not isinstance(unraisable.exc_value, Stopped):
        _swallowed_sigint = True  # a SIGTERM's stop is remembered by _terminating already
    log.debug(f"alexnet-exp: a stop signal landed in {unraisable.object!r}; raised again later")


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for if it has not reached the job: a job calls this before
    it records its run as finished, so a stop swallowed by a ``__del__`` ends the run KILLED.

    A stop that was raised and passed on never gets here: it ended the job where it landed.
    """
    global _swallowed_sigint, _pending
    if _terminating is not None:
        _pending = None
        raise Stopped(_terminating)
    if _swallowed_sigint:
        _swallowed_sigint = False
        raise Stopped(signal.SIGINT)


def _hold_sigint(signum: int, frame) -> None:
    global _pending
    _pending = signum
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C is immediate


@contextmanager
def job() -> Iterator[None]:
    """One training job: a stop signal is raised in it; a process already told to terminate
    starts no new job (a joblib worker may be handed one more after its signal).

    Under a sweep that set ``JOB_LOCKS_ENV``, the job holds ``<dir>/<pid>.lock`` until it has
    ended (its run recorded, KILLED or not): :func:`alexnet_exp.job_locks.wait_for_jobs` waits
    on those locks, and the kernel releases one whose process died.
    """
    global _in_job, _pending
    install()
    if _terminating is not None:
        _pending = None
        raise Stopped(_terminating)
    _in_job, lock = True, None
    try:
        lock = job_locks.hold()
        yield
    finally:
        _in_job = False
        if lock is not None:
            os.close(lock)


@contextmanager
def between_batches() -> Iterator[None]:
    """Hold stop signals during fit; :func:`take_pending` raises them at a batch boundary.

    Raising wherever the signal lands is wrong there: landing while TensorFlow's C++ is itself
    raising (every epoch's end is an OutOfRangeError from the iterator), pybind11 turns the pair
    into a RuntimeError, and the run would end FAILED with a traceback instead of KILLED. A stop
    that comes after the last boundary is raised when the block ends, never lost.
    """
    global _holding
    if not _main_thread() or _holding:
        yield
        return
    held_sigint = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if held_sigint:  # a process that started with SIGINT ignored (nohup) keeps ignoring it
        signal.signal(signal.SIGINT, _hold_sigint)
    _holding = True
    try:
        yield
    finally:
        _holding = False
        if held_sigint:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    stop = take_pending()
    if stop is not None:
        raise stop


def take_pending() -> Stopped | None:
    """The stop a held signal asked for (once), or None."""
    global _pending
    signum, _pending = _pending, None
    return Stopped(signum) if signum is not None else None


def as_stop(exc: BaseException) -> Stopped | None:
    """``exc`` as the stop it stands for: a Stopped, a plain KeyboardInterrupt (Ctrl-C), or any
    error raised while a stop signal was being handled (a signal landing inside TensorFlow's C++
    comes out as a RuntimeError); None for a real failure."""
    if isinstance(exc, Stopped):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Stopped(signal.SIGINT)
    return Stopped(_terminating) if _terminating is not None else None


def hand_over(stop: Stopped) -> None:
    """A stop by submitit's signal goes on to submitit's handler once the run is KILLED: it
    requeues the job (and exits), or raises why it cannot. Any other stop returns."""
    if stop.signum == _requeue_signal and _requeue_handler is not None:
        log.info(f"alexnet-exp: {stop}: MLflow run {stop.run_id or '(none yet)'} is KILLED;"
                 " submitit requeues the job, which resumes it")
        _requeue_handler(stop.signum, None)
        # Only rank 0 requeues; another rank's handler returns. The sweep goes on: its parent
        # run is not this rank's to end.
        raise SystemExit(stop.exit_code)


def reset() -> None:
    """Forget stops and settings (for tests and notebooks that stop and go on in one process);
    the signal handlers are the caller's to restore."""
    global _pending, _terminating, _raise_anywhere, _requeue_signal, _requeue_handler
    global _swallowed_sigint
    _pending = _terminating = _requeue_signal = _requeue_handler = None
    _raise_anywhere = _swallowed_sigint = False
    before_raise(None)
