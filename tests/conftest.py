"""Shared fixtures: an isolated per-test cache and a factory for real class-folder image trees."""

import os
import sys
from pathlib import Path

import pytest
from helpers.images import make_image_folder
from helpers.server import Server
from helpers.xdist_groups import group_by_shared_fixtures


@pytest.fixture(autouse=True, name="no_process_wide_tracking_uri")
def _set_up_first_no_process_wide_tracking_uri():
    """No test writes to the MLflow server of the developer's shell (``MLFLOW_TRACKING_URI``),
    and no code of ours may set that variable: it would outrank every later store choice of
    the process and of the processes it starts. Set by a test through ``monkeypatch``, it is
    gone again by the time this checks: pytest orders a conftest's autouse fixtures by attribute
    name, and ``_`` sorts this one first, so it is torn down after the shared ``monkeypatch``."""
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    leaked = os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved
    assert leaked is None, f"the test left MLFLOW_TRACKING_URI={leaked} set in the process"


@pytest.fixture(autouse=True)
def alexnet_cache(tmp_path_factory, monkeypatch) -> Path:
    """Point every cache of the package (image checks, digits) and Keras' home at a tmp dir.

    The directory is separate from ``tmp_path`` so tests can list ``tmp_path`` freely.
    """
    cache = tmp_path_factory.mktemp("alexnet_exp_cache")
    monkeypatch.setenv("ALEXNET_EXP_CACHE_DIR", str(cache))
    # data=flowers without data.dir defaults under KERAS_HOME: never touch the real ~/.keras.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    return cache


@pytest.fixture(autouse=True)
def float32_keras_policy():
    """Undo a test's global Keras precision policy (runner: precision=auto may pick bf16).

    ``train.configure_runtime`` sets a process-wide policy; without this reset a CLI test that
    trains would make every later model test build bf16 layers. Costs nothing when no test has
    imported Keras.
    """
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def stop_signals_restored():
    """Undo what a test that calls the CLI's main in-process did to SIGTERM and SIGUSR2
    (``stopping.install``), so a later test or pytest itself is not stopped by our handler."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    stopping = sys.modules.get("alexnet_exp.stopping")
    if stopping is not None:
        stopping.reset()


@pytest.fixture(autouse=True)
def no_autograph_of_our_code(request):
    """AutoGraph converts none of our functions in a test that runs them in-process: it would
    read their source from disk again when they are traced, hours into a real run
    (:mod:`alexnet_exp.graphs`). Spies once TensorFlow is imported: in a suite run, before the
    first test (collection imports every test module, and most import TensorFlow); a module run
    alone that imports it lazily is not watched (test_distribute's TensorFlow work is in its
    subprocesses)."""
    if "tensorflow" not in sys.modules or request.node.get_closest_marker("autograph"):
        yield
        return
    from helpers.autograph import install

    converted: list[str] = []
    uninstall = install(converted.append)
    try:
        yield
    finally:
        uninstall()
    assert not converted, f"AutoGraph converted our code: {sorted(set(converted))}; map and" \
        " trace through alexnet_exp.graphs"


@pytest.fixture
def image_folder():
    """The :func:`make_image_folder` factory:

    ``image_folder(tmp_path / "data", classes={"a": 4, "b": 4}, size=(48, 48), fmt="PNG")``
    """
    return make_image_folder


@pytest.fixture
def tiny_data(tmp_path):
    """Three classes of twelve 48x40 JPEGs: enough for a CLI run of a tiny model."""
    return make_image_folder(tmp_path / "data", classes={"apple": 12, "kiwi": 12, "plum": 12},
                             size=(48, 40))


@pytest.fixture
def server(tmp_path):
    """A real ``mlflow server`` with its store in the test's tmp dir, stopped afterwards."""
    srv = Server(tmp_path / "server")
    srv.root.mkdir()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups it is given
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (``make test``: ``--dist loadgroup``), the tests that share a
    module-scoped fixture (a model trained once for the module, a recorded study) run on one
    worker, so it is built once rather than once per worker
    (``tests/test_suite.py`` checks that it is)."""
    group_by_shared_fixtures(items)
