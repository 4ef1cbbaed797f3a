"""What a person sees on the console, and what a job's log file keeps.

The library logs under one logger, ``alexnet_exp`` (each module's ``getLogger(__name__)``), so
Hydra's job logging (``conf/hydra/job_logging/alexnet_exp.yaml``) can write every line into
the job's folder and a notebook can quiet the library with
``logging.getLogger("alexnet_exp").setLevel(logging.WARNING)``. On the console a record shows
as its bare message, as the ``print`` calls it replaced did: INFO on stdout, WARNING and up on
stderr (tests and pipes read them apart). A record logged with ``extra={"console": False}``
goes to the log file only (the epoch line while Keras draws its live progress bar).

TensorFlow's start-up chatter is the other half of a readable console: its environment is set
here, on the first import of the package, before any module of ours imports TensorFlow, and
:func:`load_tensorflow` holds back the C++ lines that no environment variable reaches.
"""

import contextlib
import gc
import logging
import os
import sys
import tempfile

from alexnet_exp.errors import redact

LOGGER_NAME = "alexnet_exp"

# Before TensorFlow loads: no INFO/WARNING lines from its C++ side once absl logging is up.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Lines TensorFlow's shared libraries write to file descriptor 2 while they load and look for
# a GPU, before absl logging is initialised: TF_CPP_MIN_LOG_LEVEL does not reach them yet.
START_UP_NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "This TensorFlow binary is optimized to use available CPU instructions",
)


class ConsoleHandler(logging.Handler):
    """A record as its bare message: INFO and below on stdout, WARNING and up on stderr.

    The stream is looked up at every record, not kept, so ``contextlib.redirect_stdout``,
    pytest's capture and a notebook's own streams see the lines too.
    """

    def __init__(self, level: int = logging.NOTSET):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "console", True) and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout if record.levelno < logging.WARNING else sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: report, never raise
            self.handleError(record)


class RedactSecrets(logging.Filter):
    """Every line a handler writes, ours and other libraries' (MLflow's, Hydra's list of a
    sweep's jobs), loses the user info of any URI in it: a tracking URI typed with a password
    reaches log lines in too many ways (an override echoed, an error quoted) to redact each.
    Attached to the handlers of conf/hydra/*_logging/alexnet_exp.yaml, so the console and the
    job's log file are covered alike."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shown = redact(message)
        if shown != message:
            record.msg, record.args = shown, None
        return True


class KerasStepRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning about Keras's own step
    functions (``make_train_function``, ``make_test_function``, ``make_predict_function``).

    TensorFlow counts traces by a function's code, and every model a process builds gets a
    step function of the same code: in a sweep whose jobs share one process (Hydra's basic
    launcher, the default), each new model's first traces counted as retraces of the last
    model's, and the warning (ten lines of advice) came from the third job on, about nothing.
    A retracing of any other function, ours included, still warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "TensorFlowTrainer.make_" in message)


def install_default_handler() -> None:
    """Show the library's lines as before, until an application (Hydra's job logging, a
    notebook) configures the ``alexnet_exp`` logger itself. It does not propagate to the root
    logger, so an application's root handler does not print each line twice."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = ConsoleHandler()
        handler.addFilter(RedactSecrets())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def quiet_start_up() -> bool:
    """Hold back TensorFlow's start-up lines unless the user asked for them with
    ``TF_CPP_MIN_LOG_LEVEL=0`` or ``1``."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") not in ("0", "1")


@contextlib.contextmanager
def held_back_stderr(noise: tuple[str, ...] = START_UP_NOISE):
    """File descriptor 2 (what C++ writes to) goes to a temporary file for the block; after
    it, every line that is not ``noise`` is written to stderr, so nothing else is lost."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not any(n in line for n in noise))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()


@contextlib.contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the block (a block of imports).

    Importing TensorFlow creates about a million objects, and the collections that their
    growth sets off walk the ones already made again and again, though an import leaves next
    to no garbage: 6-10% of the import's time, ~0.5 s of every command (measured).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def load_tensorflow() -> None:
    """Import TensorFlow and let it look for its devices (where cuInit fails on a machine
    without a GPU) with its start-up lines held back unless asked for; a no-op once it is
    loaded."""
    if "tensorflow" in sys.modules:
        return
    quiet = held_back_stderr() if quiet_start_up() else contextlib.nullcontext()
    with collector_paused(), quiet:
        import tensorflow as tf

        tf.config.list_physical_devices()


install_default_handler()
# TensorFlow logs through this logger (tf_logging.get_logger): a filter set on it now stays
logging.getLogger("tensorflow").addFilter(KerasStepRetracing())
