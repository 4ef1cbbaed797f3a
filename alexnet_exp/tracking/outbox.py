"""The local outbox of a run whose tracking server went away: nothing logged is lost.

While the server is unreachable, every write of the run is appended to
``<outbox dir>/mlflow-outbox-<run id>.jsonl`` (one JSON record a line, in order; artifacts and
the model as files in ``<outbox dir>/<run id>/``). :func:`.replay.replay` sends the records once the
server answers, either from the training process (next log call, or the end of the run) or
from ``alexnet-exp-sync`` afterwards. Replaying twice does no harm: a metric point already in
the store (same key, step and timestamp) is skipped, tags, params and artifacts are idempotent,
and a replay that fails half-way keeps only the records not yet sent.
"""

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alexnet_exp.paths import atomic_write_text

PREFIX = "mlflow-outbox-"
ModelLoader = Callable[[Path], Any]  # a .keras file -> the Keras model (TensorFlow: the caller's)


class NoModelLoader(RuntimeError):
    """A buffered model met a replay that was given no way to load it."""

    def __init__(self, path: Path):
        super().__init__(f"the buffered model {path} needs alexnet-exp-sync to log it")


def path_for(folder: Path, run_id: str) -> Path:
    return Path(folder) / f"{PREFIX}{run_id}.jsonl"


class Outbox:
    """Append-only record file of one run, with a folder for the files its records point to."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.files = self.path.parent / self.path.stem.removeprefix(PREFIX)

    @classmethod
    def create(cls, folder: Path, run_id: str, uri: str) -> "Outbox":
        """Open (or take over, after a killed process) the outbox of ``run_id``."""
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # metrics are nobody else's
        box = cls(path_for(folder, run_id))
        header = {"op": "run", "run_id": run_id, "uri": uri, "pid": os.getpid(),
                  "host": socket.gethostname(), "created": time.time()}
        records = box.records()[1:] if box.path.exists() else []
        box._rewrite([header, *records])
        return box

    def append(self, record: dict) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def records(self) -> list[dict]:
        """Every complete record; a line cut short by a kill mid-write is dropped."""
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def file(self, name: str) -> Path:
        """Where a record's file lives (created parent folders)."""
        target = self.files / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def writer_alive(self) -> int | None:
        """The pid of the process still writing this outbox (on this host), else None."""
        header = (self.records() or [{}])[0]
        pid = header.get("pid")
        if not pid or pid == os.getpid() or header.get("host") != socket.gethostname():
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _rewrite(self, records: list[dict]) -> None:
        # atomic: a kill leaves the old or the new file
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in records))

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.files, ignore_errors=True)
