"""Where runs live: the store a command writes to, opened once and handed to whoever needs it.

The default store is SQLite at ``<launch dir>/mlruns/mlflow.db`` with artifacts under
``<launch dir>/mlruns/artifacts``, both absolute, so every job of a sweep (whatever its working
directory) and ``make ui`` see the same runs. ``tracking.uri`` or ``MLFLOW_TRACKING_URI``
point elsewhere (a team server).

Every call goes through the :class:`Store`'s own ``MlflowClient(tracking_uri=...)``, never
through MLflow's process-wide tracking URI: ``mlflow.set_tracking_uri`` also sets
``MLFLOW_TRACKING_URI``, which then outranks the configured store, so the second run of a
process (or any subprocess it starts) would silently land in the first one's store. The few
MLflow calls that have no client form (logging and loading a model) run inside
:meth:`Store.fluent`, which puts the process-wide state back as it was.
"""

import fcntl
import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from alexnet_exp.config import TrackingConfig
from alexnet_exp.errors import UserError, first_line, redact
from alexnet_exp.tracking import outage

# MLflow 3's UI opens an experiment on its GenAI overview (traces, no runs) unless it is told
# the experiment is model training: versions before 3.18 read this tag (a kind already set, by
# the user in the UI, is kept); 3.18 follows its "GenAI / Model training" toggle, which the
# query below sets and the run links we print carry.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
TRAINING_VIEW = "workflowType=machine_learning"

# MLflow prints "View run ... at: <server URL>" itself, with the user info of a tracking URI in
# clear and past every logging filter (it writes to stdout): our summary prints the link, redacted.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

LOCAL_UI = "http://127.0.0.1:5000"  # where `make ui` serves the local store
STORE_LOCK = ".mlflow.db.lock"  # beside the database: held while a process creates/migrates it
URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_ID"


@dataclass(frozen=True)
class Store:
    """One tracking store: its URI, the folder of a local store's artifacts, and its client."""

    uri: str
    artifact_root: Path | None = None  # local stores only: experiments get a folder each

    @cached_property
    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.uri)

    @property
    def shown(self) -> str:
        """The URI as it may be printed or logged (credentials redacted)."""
        return redact(self.uri)

    @contextmanager
    def fluent(self, experiment_id: str | None = None) -> Iterator[None]:
        """MLflow's module-level API pointed at this store (and, for a model logged without an
        active run, at ``experiment_id``) for the length of the block only."""
        from mlflow.tracking._tracking_service import utils as tracking_utils

        # MLflow has no public getter that tells "never set" from a value; restoring None
        # matters, as setting any value also exports it to MLFLOW_TRACKING_URI.
        before = tracking_utils._tracking_uri
        with outage.kept_environment((URI_ENV, EXPERIMENT_ENV)):
            mlflow.set_tracking_uri(self.uri)
            if experiment_id is not None:
                os.environ[EXPERIMENT_ENV] = experiment_id
            try:
                yield
            finally:
                mlflow.set_tracking_uri(before)

    def check(self) -> None:
        """Fail now, with one line, if the store cannot be used: not after an hour of training.

        An http(s) server is asked ``/health`` first with a 2 s timeout: MLflow's own client
        would retry a closed port for ~15 s and a server that never answers for ~100 s.
        """
        where = f"MLflow tracking store {self.shown} is not usable"
        reason = outage.probe(self.uri)
        if reason:
            raise UserError(f"{where}: {reason}; start the server or fix tracking.uri /"
                            f" {URI_ENV}")
        try:
            self.client.search_experiments(max_results=1)
        except Exception as exc:  # MLflow raises many types for a bad store or a dead server
            raise UserError(f"{where}: {redact(first_line(exc))[:300]}"
                            f" (check tracking.uri / {URI_ENV})") from exc

    def experiment_id(self, name: str) -> str:
        """The experiment called ``name``, created on first use (in a local store, with an
        artifact folder of its own named after it)."""
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.tags.get(EXPERIMENT_KIND_TAG) is None:  # created before the tag was
                self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG,
                                               TRAINING_KIND)
            return experiment.experiment_id
        location = None
        if self.artifact_root is not None:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            digest = hashlib.sha1(name.encode()).hexdigest()[:6]
            location = (self.artifact_root / f"{slug}-{digest}").as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        except MlflowException:  # a parallel job created it first
            return self.client.get_experiment_by_name(name).experiment_id

    def search_runs(self, experiment_ids: list[str], filter_string: str = "",
                    order_by: list[str] | None = None) -> list:
        """Every matching run, all pages of them (the client returns 1,000 at most a call)."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(experiment_ids, filter_string, order_by=order_by,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """A run's page on the server it was logged to; for a local store, in ``make ui``."""
        server = self.uri.startswith(("http://", "https://"))
        base = self.shown.rstrip("/") if server else LOCAL_UI
        # The query sets the UI's "Model training" toggle, so the run page opens there; a bare
        # experiment page still follows the toggle the browser last kept (see TRAINING_VIEW).
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{TRAINING_VIEW}"

    def ui_base(self) -> str:
        """Where the UI of this store is served: the server itself (without credentials), or
        for a local store ``make ui``'s address."""
        if not self.uri.startswith(("http://", "https://")):
            return LOCAL_UI
        return re.sub(r"^(https?://)[^/@]*@", r"\1", self.uri).rstrip("/")


def open_store(cfg: TrackingConfig, launch_dir: Path, create: bool = True) -> Store:
    """The configured store, ready to use.

    ``create=False``: a local store must exist already (a tool reading a model or a report
    refuses a folder it was not trained in, in one line, and never creates an empty store).
    """
    uri, artifact_root = resolve_tracking_uri(cfg, launch_dir, create=create)
    return Store(uri, artifact_root)


def resolve_tracking_uri(cfg: TrackingConfig, launch_dir: Path,
                         create: bool = True) -> tuple[str, Path | None]:
    """Tracking URI and, for the local store, the folder under which artifacts live."""
    if cfg.uri:
        return cfg.uri, None
    if os.environ.get(URI_ENV):
        return os.environ[URI_ENV], None
    store = (launch_dir / cfg.store_dir).expanduser().resolve()
    if create:
        store.mkdir(parents=True, exist_ok=True)
    elif not (store / "mlflow.db").exists():
        raise UserError(f"no MLflow store at {store / 'mlflow.db'}: run from the folder you"
                        " trained in, or pass tracking.uri=...")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    _open_local_store(store, uri, writable=create)
    return uri, store / "artifacts"


@contextmanager
def _quiet_schema_lines() -> Iterator[None]:
    """MLflow announces at INFO, on stderr, that it creates and updates a new store's tables
    ("Creating initial MLflow database tables...", Alembic's steps): every first command in a
    folder printed them as if something were wrong. Its warnings and errors still show."""
    import logging

    loggers = [logging.getLogger(name) for name in ("mlflow.store.db.utils", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


_opened_stores: set[str] = set()  # local stores this process has created/migrated already


def _open_local_store(store: Path, uri: str, writable: bool) -> None:
    """Create and migrate the SQLite store under an exclusive file lock, once per process.

    MLflow creates the tables and runs its Alembic migrations the first time a process opens a
    store; two first commands started together both migrate and one dies with ``Online
    migration expected to match one row``. The lock makes the second wait for the first, then
    find the schema current. A read-only store is refused in one line when this job must write
    to it (training), and opened without the lock when it only reads (eval, report).
    """
    if uri in _opened_stores:
        return
    database = store / "mlflow.db"
    fix = (f"make it writable (chmod -R u+w {store}) or pass tracking.store_dir=<a writable"
           " folder>")
    try:
        fd = os.open(store / STORE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        if writable:
            raise UserError(f"MLflow store folder {store} is read-only ({exc.strerror}):"
                            f" {fix}") from exc
        fd = None
    if writable and database.exists() and not os.access(database, os.W_OK):
        os.close(fd)
        raise UserError(f"MLflow store {database} is read-only: {fix}")
    try:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed, or when the process dies
        with _quiet_schema_lines():
            mlflow.MlflowClient(uri).search_experiments(max_results=1)  # creates, migrates
    except Exception as exc:  # MLflow raises many types for a bad store
        raise UserError(f"MLflow tracking store {uri} is not usable:"
                        f" {first_line(exc)[:300]}") from exc
    finally:
        if fd is not None:
            os.close(fd)
    _opened_stores.add(uri)
