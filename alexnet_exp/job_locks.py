"""A joblib sweep's parent waits for its worker processes' jobs to end: one lock file per job.

When a stop signal reaches a sweep, its parent must not end the sweep's runs before each worker
has recorded its own job's end (KILLED, with its last epoch). Each job holds an exclusive
``flock`` on ``<folder>/<pid>.lock`` while it runs; the parent takes the locks in turn, and the
kernel releases the lock of a process that died. Apart from :mod:`alexnet_exp.stopping` (how a
signal becomes a stop) because this is bookkeeping between processes, not signal handling.
"""

import fcntl
import os
import time

JOB_LOCKS_ENV = "ALEXNET_EXP_JOB_LOCKS"  # a joblib sweep's folder of running jobs' locks


def hold() -> int | None:
    """The open, exclusively locked ``<folder>/<pid>.lock`` of this process's job under a sweep
    that set ``JOB_LOCKS_ENV`` (the caller closes it when the job has ended), else None."""
    folder = os.environ.get(JOB_LOCKS_ENV)
    if not folder:
        return None
    try:
        fd = os.open(os.path.join(folder, f"{os.getpid()}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None  # the folder is gone (the sweep ended): nobody waits on this job
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def wait_for_jobs(folder: str, seconds: float) -> list[int]:
    """Wait until no other process holds a job lock in ``folder`` (or ``seconds`` passed);
    returns the pids whose jobs were still running at the deadline."""
    deadline = time.monotonic() + seconds
    busy = []
    for name in sorted(os.listdir(folder)):
        pid = int(name.split(".")[0])
        if pid == os.getpid():
            continue
        fd = os.open(os.path.join(folder, name), os.O_RDWR)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        busy.append(pid)
                        break
                    time.sleep(0.2)
        finally:
            os.close(fd)
    return busy


def child_processes(marker: str) -> list[int]:
    """Pids of this process's children whose command line contains ``marker`` (Linux /proc;
    elsewhere none)."""
    me, found = str(os.getpid()), []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = stat.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().decode(errors="replace")
        except OSError:
            continue  # it ended meanwhile
        if parent == me and marker in command:
            found.append(int(entry))
    return found
