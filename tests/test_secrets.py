"""A password in the tracking URI never leaves the process.

A user who writes ``tracking.uri=http://alice:<password>@host`` (rather than the
``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` the README advises) must not find the
password anywhere they or another viewer of the server can read: the console, the job and sweep
folders (logs, ``summary.json``, Hydra's own config copies), and the server's store (run, parent
and model names, params, tags, artifacts). Each place is grepped as bytes, so a new place a
string leaves by is caught without the test having to know of it.
"""

from pathlib import Path

import pytest
from helpers import TINY_MODEL, cli

PASSWORD = "s3cretPassw0rd"

pytestmark = pytest.mark.slow


def files_holding(root: Path, secret: bytes) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if path.is_file() and secret in path.read_bytes())


def test_a_password_in_the_tracking_uri_reaches_no_output_file_or_store(tmp_path, server,
                                                                         tiny_data):
    work = tmp_path / "work"
    work.mkdir()
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{server.port}"
    common = ["data=folder", f"data.dir={tiny_data}", *TINY_MODEL, "trainer.epochs=1",
              "tracking=server", f"tracking.uri={uri}"]
    run = cli(work, *common)
    sweep = cli(work, "-m", *common, "norm=bn,lrn")
    for result in (run, sweep):
        assert result.returncode == 0, result.stderr[-3000:]

    secret = PASSWORD.encode()
    for result in (run, sweep):
        assert PASSWORD not in result.stdout + result.stderr
    assert files_holding(work, secret) == []
    assert files_holding(server.root, secret) == [], "in the server's store"
    # ...and the runs are there, so the greps above had something to search
    client = server.client()
    runs = client.search_runs([client.get_experiment_by_name("alexnet-exp").experiment_id])
    assert len(runs) == 4  # the run, the sweep's parent and its two children
