"""job_locks: how a process waits for the jobs other processes are still running."""

import os
import subprocess
import sys
import time

from alexnet_exp import job_locks


def test_wait_for_jobs_waits_until_the_job_in_another_process_has_ended(tmp_path):
    code = ("import os, sys, time; from alexnet_exp import stopping\n"
            "with stopping.job():\n    print('in', flush=True); time.sleep(2)\n")
    env = {**os.environ, job_locks.JOB_LOCKS_ENV: str(tmp_path)}
    job = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                           text=True)
    try:
        assert job.stdout.readline() == "in\n"
        started = time.monotonic()
        assert job_locks.wait_for_jobs(str(tmp_path), 0.5) == [job.pid]  # still in its job
        assert job_locks.wait_for_jobs(str(tmp_path), 30) == []
        assert 1.0 < time.monotonic() - started < 20  # it waited for the job, not the deadline
    finally:
        job.kill()
        job.wait()
