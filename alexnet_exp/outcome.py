"""What a job hands back to the command line, and how it is shown: the run's summary, or the
earlier run a sweep job was skipped for."""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alexnet_exp.errors import redact

REPO_STORE = Path(__file__).resolve().parent.parent / "mlruns" / "mlflow.db"


@dataclass
class RunSummary:
    run_id: str
    experiment_id: str
    tracking_uri: str
    url: str
    best_val_accuracy: float
    best_epoch: int
    epochs: int
    seconds: float
    parameters: int
    metrics: dict[str, float] = field(default_factory=dict)  # the run's summary metrics
    output_dir: str | None = None  # the job's folder: its log, TensorBoard events, summary.json
    checkpoint_dir: str | None = None  # a resumed run's checkpoints stay in its first job's folder
    tensorboard: bool = False


@dataclass
class SkippedJob:
    """A sweep job whose config already FINISHED: the sweeper gets that run's objective."""

    run_id: str
    objective: float | None


def summary_lines(summary: RunSummary) -> str:
    lines = [
        f"alexnet-exp: {summary.epochs} epochs in {summary.seconds:.0f} s,"
        f" {summary.parameters:,} parameters",
        f"  best val_accuracy {summary.best_val_accuracy:.4f} (epoch {summary.best_epoch})",
    ]
    if not summary.run_id:  # tracking=none: a throwaway trial
        return "\n".join([*lines, "  nothing recorded in MLflow (tracking=none)"])
    return "\n".join([
        *lines,
        f"  MLflow run {summary.run_id}  (store {summary.tracking_uri})",
        f"  look at it: {ui_command(summary.tracking_uri)}, then open {summary.url}",
        *_files(summary),
    ])


def _files(summary: RunSummary) -> list[str]:
    """Where the job's files are: its folder (the log named in conf/hydra/job_logging), the
    TensorBoard events under it, the checkpoints (elsewhere when the run resumed)."""
    lines = []
    if summary.output_dir:
        board = (f"; TensorBoard: tensorboard --logdir {summary.output_dir}"
                 if summary.tensorboard else "")
        lines.append(f"  job folder {summary.output_dir}  (log alexnet-exp.log{board})")
    if summary.checkpoint_dir:
        lines.append(f"  checkpoints {summary.checkpoint_dir}")
    return lines


def ui_command(tracking_uri: str) -> str:
    """``make ui`` where it opens this store (the repo's own mlruns), else the full command."""
    repo_store = f"sqlite:///{REPO_STORE}"
    if tracking_uri == repo_store:
        return "make ui"
    if tracking_uri.startswith("sqlite:///"):
        return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1"
    return f"open {tracking_uri}"


def summary_json(summary: RunSummary) -> str:
    """The summary as the job's ``summary.json`` keeps it: a file others may read, so the store
    is named without the user info its URI was typed with (the summary object keeps it, for
    the caller that still needs to reach the store)."""
    return redact(json.dumps(asdict(summary)))


def keep_summary(summary: RunSummary, output_dir: Path, tensorboard: bool) -> RunSummary:
    """The end of every training job, from the command line or the Python API alike: the job's
    folder named in the summary and ``summary.json`` written there (the caller logs the lines)."""
    summary.output_dir, summary.tensorboard = str(output_dir), tensorboard
    (Path(output_dir) / "summary.json").write_text(summary_json(summary))
    return summary
