"""``make ui`` and ``make server`` as a user starts them: on 127.0.0.1 only, and the server
takes a real training run over HTTP that reads back whole (params, metrics, model)."""

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import TINY_MODEL, cli, free_port, logged_model
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux /proc/net")]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets in LISTEN state on ``port``, from /proc/net/tcp{,6}.

    127.0.0.1 reads ``0100007F``; ``00000000`` would be 0.0.0.0 (every interface)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def make_service(target: str, store: Path):
    """``make <target>`` with the venv running the tests (``-o``: never reinstall from here),
    a scratch store and a free port; yields the port once the service listens."""
    port = free_port()
    bin_dir = Path(sys.executable).parent
    log = store / f"make-{target}.log"
    store.mkdir(parents=True, exist_ok=True)
    # One uvicorn worker and no GenAI job runner (what tests/test_ui_browser.py's `mlflow ui`
    # and the outage tests' `mlflow server` run): the default four workers and the job
    # consumers take ~25 s of both cores to start, and bind the same --host and --port the
    # Makefile gives, which is what these tests check. Set through mlflow's own environment
    # variables, so the command line is still exactly the Makefile's.
    env = {**os.environ, "MLFLOW_WORKERS": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as out:
        service = subprocess.Popen(
            ["make", "-s", "-C", str(REPO), "-o", ".venv/.installed-stamp", target,
             f"PORT={port}", f"BIN={bin_dir}", f"STORE={store}"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not healthy(f"http://127.0.0.1:{port}"):
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make {target} did not serve on port {port}:\n"
                            f"{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield port
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()


def test_make_ui_listens_on_loopback_only(tmp_path):
    with make_service("ui", tmp_path / "mlruns") as port:
        assert listening_addresses(port) == {"0100007F"}


def test_make_server_takes_a_training_run_over_http(tmp_path, tiny_data):
    store = tmp_path / "mlruns"
    with make_service("server", store) as port:
        assert listening_addresses(port) == {"0100007F"}
        url = f"http://127.0.0.1:{port}"
        work = tmp_path / "work"
        work.mkdir()
        result = cli(work, "data=folder", f"data.dir={tiny_data}", *TINY_MODEL,
                     "trainer.epochs=2", "tracking=server", f"tracking.uri={url}")
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"open {url}" in result.stdout

        client = MlflowClient(url)
        (run,) = client.search_runs([client.get_experiment_by_name("alexnet-exp").experiment_id])
        assert run.info.status == "FINISHED"
        assert run.data.params["tracking.backend"] == "server"
        # the summary links to the run on the server it was logged to, not to a local make ui
        page = f"{url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
        assert f"then open {page}" in result.stdout
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == [1, 2]
        model = logged_model(client, run.info.run_id)  # through the server's artifact proxy
        assert model.output_shape[-1] == 3
    # the server kept its files where make server puts them, and the job wrote no local store
    assert (store / "server" / "mlflow.db").exists()
    assert any((store / "server" / "artifacts").rglob("MLmodel"))
    assert not (work / "mlruns").exists()
