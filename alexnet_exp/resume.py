"""Pick a killed run up where it stopped: a checkpoint after every completed epoch.

After each epoch the model (weights and optimizer state, so momentum and a reduced learning
rate survive), the history so far and the counters of the callbacks that watch epochs (best
val accuracy, plateau and early-stopping patience) are written to the run's checkpoint folder.
``state.json`` is the commit point: the model goes to a new file first, then ``state.json``
(written to a temporary name and renamed) starts naming it, then the old model file goes. A
kill at any instant leaves a consistent pair from the last completed epoch.

A lock file held while a job trains tells a crashed run (lock free: resume it) from one still
training in another process (lock held: leave it alone).

This module decides where a job starts and imports no TensorFlow (the prepare stage runs it
before TensorFlow loads); writing and restoring the checkpoints is :mod:`.checkpoint`'s.
"""

import fcntl
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_exp.errors import UserError

log = logging.getLogger(__name__)

STATE = "state.json"
LOCK = ".lock"
# Callback attributes that carry across epochs; Keras resets them in on_train_begin.
COUNTERS = {
    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
    "EarlyStopping": ("wait", "best", "best_epoch"),
    "BestWeights": ("best",),
}
_held_locks: dict[Path, int] = {}  # open lock files, released when the process ends (or dies)


@dataclass
class ResumePoint:
    """Where a run stopped: its MLflow run, its checkpoint folder, its last completed epoch."""

    run_id: str | None
    directory: Path
    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    counters: dict[str, dict] = field(default_factory=dict)
    model_file: str | None = None


def claim(directory: Path) -> bool:
    """Take the folder's lock for this process's lifetime; False if another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held_locks[directory] = fd
    return True


def release(directory: Path) -> None:
    fd = _held_locks.pop(directory, None)
    if fd is not None:
        os.close(fd)  # closing the file drops its flock


def fresh_folder(output_dir: Path) -> Path:
    """A checkpoint folder of this job's own: ``checkpoints``, else ``checkpoints-2``, ...

    A folder another process claimed before is left alone: an ended run may still resume from
    it (a second command given the same ``hydra.run.dir``), and one held by a live process
    means two commands share this output folder right now, which is refused in one line.
    """
    for n in itertools.count(1):
        folder = output_dir / ("checkpoints" if n == 1 else f"checkpoints-{n}")
        used = (folder / LOCK).exists()
        if not claim(folder):
            raise UserError(f"{output_dir} is in use by another running alexnet-exp command"
                            f" ({folder} is locked): give each concurrent command its own"
                            " hydra.run.dir / hydra.sweep.dir, or leave them unset (the"
                            " default is unique per command)")
        if not used:
            return folder
        release(folder)  # an earlier run's checkpoints: keep them for its resume


def read_point(directory: Path, run_id: str | None) -> ResumePoint | None:
    """The last completed epoch checkpointed in ``directory``, or None if there is none."""
    try:
        state = json.loads((directory / STATE).read_text())
    except (OSError, ValueError):
        return None
    if not (directory / state["model_file"]).exists():
        return None
    return ResumePoint(run_id, directory, state["epoch"], state["history"], state["counters"],
                       state["model_file"])


def starting_point(candidates: list[tuple[str, Path]], output_dir: Path) -> ResumePoint:
    """Where this job starts: the first of ``candidates`` (``(run id, checkpoint folder)`` of
    killed runs of the same config and data, newest first) whose process is gone, else a new
    checkpoint folder in the job's output dir. Which runs qualify is the runner's call."""
    for run_id, directory in candidates:
        if directory.is_dir() and claim(directory):  # its process is gone
            point = read_point(directory, run_id) or ResumePoint(run_id, directory)
            log.info(f"alexnet-exp: resuming MLflow run {run_id} after epoch {point.epoch}"
                     f" (trainer.resume=false starts afresh)")
            return point
    return ResumePoint(None, fresh_folder(output_dir))
