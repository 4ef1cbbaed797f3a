"""Where and with what a run ran, as MLflow users know it: MLflow's own context tags (user,
source) and ``mlflow.source.git.*`` tags for the code that ran, and MLflow's ``system/*``
metrics sampled while the run lasts.
"""

import subprocess
from pathlib import Path

from mlflow.tracking.context import registry as context_registry
from mlflow.utils.mlflow_tags import (
    MLFLOW_GIT_BRANCH,
    MLFLOW_GIT_COMMIT,
    MLFLOW_GIT_DIRTY,
    MLFLOW_GIT_REPO_URL,
)

from alexnet_exp.errors import redact

GIT_TAG_PREFIX = "mlflow.source.git."


def context_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags MLflow's start_run adds itself (user, source file), less its git guess: that
    is the repository around ``sys.argv[0]`` (for a console script, whatever checkout holds the
    venv), not the code that ran; the caller's ``mlflow.source.git.*`` tags say that."""
    context = context_registry.resolve_tags()
    mine = {k: v for k, v in context.items() if not k.startswith(GIT_TAG_PREFIX)}
    return {**mine, **tags}


def system_monitor(uri: str, run_id: str, resumed: bool):
    """MLflow's sampler of system metrics, started for one run of the store at ``uri``:
    addressed by run id and URI, it needs neither an active run nor the process-wide tracking
    URI (what ``mlflow.start_run(log_system_metrics=True)`` would set). Every
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (default 10) it logs a sample straight
    to the server: during an outage the sampling stops, nothing is buffered."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, resume_logging=resumed, tracking_uri=uri)
    monitor.start()
    return monitor


def git_tags(directory: Path) -> dict[str, str]:
    """MLflow's own ``mlflow.source.git.*`` tags (the UI shows the commit) for the code in
    ``directory``, which must be tracked by its repository: an installed copy of the package
    (site-packages, even in a venv inside some project's checkout) has no commit of its own.

    ``mlflow.source.git.dirty`` (``true``/``false``, the key MLflow's git versioning writes)
    says whether tracked files had uncommitted changes; the commit stays a bare hash, so the
    UI's link to it and ``tags.`mlflow.source.git.commit` = '<sha>'`` searches keep working.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True,
                                 timeout=5, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    if git("ls-files", "--error-unmatch", "__init__.py") is None:
        return {}
    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    changes = git("status", "--porcelain", "--untracked-files=no")
    tags = {MLFLOW_GIT_COMMIT: commit, MLFLOW_GIT_DIRTY: "true" if changes else "false"}
    branch = git("symbolic-ref", "--short", "-q", "HEAD")
    if branch:
        tags[MLFLOW_GIT_BRANCH] = branch
    remote = git("remote", "get-url", "origin")
    if remote:
        tags[MLFLOW_GIT_REPO_URL] = redact(remote)
    return tags
