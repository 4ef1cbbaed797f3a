"""Waiting for a condition, and signalling a child process once it holds."""

import os
import signal
import subprocess
import time


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

