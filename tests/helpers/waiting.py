"""Waiting for a condition, and signalling a child process once it holds."""

import os
import signal
import subprocess
import time
from pathlib import Path


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def signal_when(process: subprocess.Popen, ready, what: str, signum: int,
                group: bool = False) -> tuple[str, str]:
    """Send ``signum`` to ``process`` (to its process group with ``group``, as a terminal's
    Ctrl-C or SLURM do) once ``ready()``, and return its (stdout, stderr); whatever is left of
    it after 120 s is killed."""
    try:
        wait_for(ready, 300, what)
        (os.killpg if group else os.kill)(process.pid, signum)
        return process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler for ``signum`` now (Linux: SigCgt in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))
                 .split()[1], 16)
    return bool(caught >> (signum - 1) & 1)


class SignalsWhenFreed:
    """Sends ``signum`` to this process from its ``__del__`` and stays there until the handler
    ran: how a stop lands inside TensorFlow's ``EagerResourceDeleter.__del__``."""

    def __init__(self, signum):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)
        time.sleep(0.05)  # the handler runs here; what it raises cannot leave a __del__
