"""How one run's writes reach a server that may go away: at once, or through the outbox.

Writes go to the server at once. When one fails because the server cannot be reached, the run
goes on: that write and every later one are appended to the run's outbox file, and the server
is asked again (``GET /health``, 2 s) at most every ``retry_seconds``; once it answers, the
outbox is replayed in order and writes go straight to the server again. What is left at the
end waits for ``alexnet-exp-sync``.

The :class:`~alexnet_exp.tracking.runs.Tracker` says what to write; this says how it gets
there, so neither the run's lifecycle nor the outage states have to be read through the other.
"""

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from alexnet_exp.errors import first_line, redact
from alexnet_exp.paths import outbox_dir as default_outbox_dir
from alexnet_exp.tracking import outage, outbox, replay

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    """Stderr, one line, as every other ``alexnet-exp:`` warning."""
    log.warning(f"alexnet-exp: {message}")


class Delivery:
    """The write path of one run: live, or buffered in its outbox while the server is away."""

    retry_seconds = 10.0

    def __init__(self, uri: str, outbox_dir: Path | None = None,
                 load_model: Callable[[Path], Any] | None = None):
        """``load_model(path)`` reads a ``.keras`` file that a killed process of this run left
        in its outbox; without it such a model waits for ``alexnet-exp-sync``. A model this
        process buffered itself is still in memory and needs no loading."""
        self.uri = uri
        self.outbox_dir = Path(outbox_dir) if outbox_dir else default_outbox_dir()
        self.load_model = load_model
        self.run_id: str | None = None
        self.outbox: outbox.Outbox | None = None  # set while the server is unreachable
        self._parked_models: dict[Path, Any] = {}  # outbox file -> the model saved there
        self._next_probe = 0.0

    @property
    def buffering(self) -> bool:
        return self.outbox is not None

    def adopt(self, run_id: str) -> None:
        """Write for ``run_id`` from now on. A killed process of this run may have left records
        in its outbox: send them now (before ``replay_epochs`` compares the store with the
        checkpoint)."""
        self.run_id = run_id
        path = outbox.path_for(self.outbox_dir, run_id)
        if not path.exists() or outbox.Outbox(path).writer_alive():
            return
        try:
            replay.replay(outbox.Outbox(path), self.uri, with_end=False,
                          load_model=self._model_for_replay)
        except Exception as exc:
            if outage.is_outage(exc):
                self._go_offline(exc)
            else:
                self._leave_for_sync(path, exc)

    def send(self, live: Callable[[], Any], park: Callable[[outbox.Outbox], dict],
             small: bool = True) -> None:
        """``live()`` against the server; during an outage ``park(outbox)`` -> a record.

        ``small`` writes (metrics, tags, params) get a 5 s timeout and one retry, so the first
        failure costs ~0 s (refused) to ~12 s (a hung server) instead of MLflow's ~15-100 s;
        artifacts and the model keep MLflow's own (user-set) limits.
        """
        if self.outbox is not None and not self._reconnect():
            self.outbox.append(park(self.outbox))
            return
        try:
            with outage.http_limits(outage.WRITE_LIMITS) if small else nullcontext():
                live()
        except Exception as exc:
            if self.run_id is None or not outage.is_outage(exc):
                raise
            self._go_offline(exc)
            self.outbox.append(park(self.outbox))

    def keep_model(self, path: Path, model: Any) -> None:
        """A model parked at ``path`` is replayed from memory, not loaded back."""
        self._parked_models[path] = model

    def last_chance(self) -> None:
        """The run ends: ask the server once more, whatever the retry interval says."""
        self._next_probe = 0.0

    def still_waiting(self, status: str) -> None:
        """After the end: say where the unsent run waits and how to send it."""
        if self.outbox is None:
            return
        hint = "" if self.outbox_dir == default_outbox_dir() else (
            f" outbox_dir={self.outbox_dir}")
        _say(f"tracking server {redact(self.uri)} is still unreachable: run {self.run_id}"
             f" ({status}) waits in {self.outbox.path}; when the server is up, run:"
             f" alexnet-exp-sync{hint}")

    def _model_for_replay(self, path: Path):
        if path in self._parked_models:  # kept: a replay cut short by the server tries again
            return self._parked_models[path]
        if self.load_model is None:
            raise outbox.NoModelLoader(path)
        return self.load_model(path)

    def _leave_for_sync(self, path: Path, exc: BaseException) -> None:
        """A buffered record the server refuses must not stop training: sync retries it."""
        _say(f"warning: could not replay {path}: {redact(first_line(exc))[:200]}; it is left"
             " for alexnet-exp-sync")

    def _go_offline(self, exc: BaseException) -> None:
        if self.outbox is None:
            self.outbox = outbox.Outbox.create(self.outbox_dir, self.run_id, redact(self.uri))
            reason = outage.probe(self.uri, timeout=2.0) or first_line(exc)[:200]
            _say(f"warning: tracking server {redact(self.uri)} unreachable: {redact(reason)};"
                 f" buffering metrics to {self.outbox.path}; they are replayed when it is back"
                 " or by alexnet-exp-sync")
        self._next_probe = time.monotonic() + self.retry_seconds

    def _reconnect(self) -> bool:
        """True once the server answers again and the outbox has been replayed."""
        if time.monotonic() < self._next_probe:
            return False
        self._next_probe = time.monotonic() + self.retry_seconds
        if outage.probe(self.uri, timeout=2.0):
            return False
        try:  # MLflow's own limits: the buffered artifacts and model may be large
            done = replay.replay(self.outbox, self.uri, with_end=False,
                                 load_model=self._model_for_replay)
        except Exception as exc:
            if outage.is_outage(exc):
                return False
            self._leave_for_sync(self.outbox.path, exc)  # writes go to the server again
            self.outbox = None
            return True
        _say(f"tracking server {redact(self.uri)} is back: replayed {done.points} buffered"
             " metric points")
        self.outbox = None
        return True
