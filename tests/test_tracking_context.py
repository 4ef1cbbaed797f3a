"""What a run records about where it ran: MLflow's own ``mlflow.source.git.*`` tags, taken
from the repository that tracks the package (never from whatever holds the launcher), and
MLflow's system metrics with no process-wide tracking state."""

import os
import subprocess
import sys
import time

import pytest
from helpers import store
from mlflow.tracking.context import registry as context_registry

from alexnet_exp.tracking import Store, Tracker, git_tags

COMMIT = "mlflow.source.git.commit"
DIRTY = "mlflow.source.git.dirty"


def git(repo, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


def make_repo(tmp_path):
    repo = tmp_path / "repo"
    package = repo / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return repo, package


def test_a_checkout_gives_its_commit_and_whether_tracked_files_changed(tmp_path):
    repo, package = make_repo(tmp_path)
    head = git(repo, "rev-parse", "HEAD")
    tags = git_tags(package)
    assert tags[COMMIT] == head and tags[DIRTY] == "false"
    assert tags["mlflow.source.git.branch"] == "main"
    (repo / "notes.txt").write_text("untracked files are not a change of the code")
    assert git_tags(package)[DIRTY] == "false"
    (package / "__init__.py").write_text("x = 2\n")
    assert git_tags(package) == {**tags, DIRTY: "true"}  # the commit stays a bare hash


def test_an_installed_copy_inside_some_repository_has_no_commit(tmp_path):
    """A wheel in a venv inside a project's checkout: untracked, so not that project's code."""
    repo, _ = make_repo(tmp_path)
    installed = repo / ".venv" / "site-packages" / "pkg"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("x = 1\n")
    assert git_tags(installed) == {}
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "__init__.py").write_text("")
    assert git_tags(outside) == {}


def test_a_run_holds_the_given_git_tags_not_mlflows_guess_from_the_launcher(tmp_path,
                                                                           monkeypatch):
    """MLflow guesses the commit of the repository around ``sys.argv[0]`` (for a console
    script, the checkout that holds the venv); the run must say the caller's instead."""
    repo, _ = make_repo(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(repo / "pkg" / "__init__.py")])
    for provider in context_registry._run_context_provider_registry:
        if hasattr(provider, "_cache"):
            monkeypatch.setattr(provider, "_cache", {})  # MLflow caches its guess per process
    client = store(tmp_path)
    uri = client.tracking_uri
    guessed = Tracker(Store(uri), "git").start("no git tags", tags={})
    assert not [k for k in client.get_run(guessed).data.tags if k.startswith("mlflow.source.git")]
    given = Tracker(Store(uri), "git").start("given", tags={COMMIT: "a" * 40, DIRTY: "true"})
    tags = client.get_run(given).data.tags
    assert (tags[COMMIT], tags[DIRTY]) == ("a" * 40, "true")
    assert "mlflow.user" in tags and "mlflow.source.name" in tags  # the rest of the context


def test_system_metrics_are_sampled_into_the_run_until_it_ends(tmp_path, monkeypatch):
    pytest.importorskip("psutil", reason="tracking.system_metrics needs psutil (a dependency)")
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    client = store(tmp_path)
    tracker = Tracker(Store(client.tracking_uri), "system")
    run_id = tracker.start("sampled", tags={}, system_metrics=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not client.get_metric_history(
            run_id, "system/cpu_utilization_percentage"):
        time.sleep(0.2)
    tracker.end("FINISHED")
    metrics = client.get_run(run_id).data.metrics
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        metrics)
    assert 0 <= metrics["system/cpu_utilization_percentage"] <= 100
    assert "MLFLOW_TRACKING_URI" not in os.environ  # addressed by URI, not process-wide
    count = len(client.get_metric_history(run_id, "system/cpu_utilization_percentage"))
    time.sleep(0.6)
    assert len(client.get_metric_history(run_id, "system/cpu_utilization_percentage")) == count
    plain = Tracker(Store(client.tracking_uri), "system")
    plain_id = plain.start("not sampled", tags={})
    time.sleep(0.5)
    plain.end("FINISHED")
    assert not [k for k in client.get_run(plain_id).data.metrics if k.startswith("system/")]
