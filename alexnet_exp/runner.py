"""One training job from a typed config: data -> model -> fit -> results -> tracking.

No Hydra here: the command line hands over a validated :class:`ExperimentConfig` and a
:class:`JobContext` (where the job was launched, where its files go), so a notebook or a test
can run a job the same way.
"""

import hashlib
import io
import json
import math
import os
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alexnet_exp import stopping
from alexnet_exp.config import ExperimentConfig, resolve_threads, validate
from alexnet_exp.fingerprint import DataFingerprint, fingerprint_folder
from alexnet_exp.keys import DATA_ROOT_TAG
from alexnet_exp.outcome import RunSummary, SkippedJob

PACKAGE_DIR = Path(__file__).resolve().parent
FINGERPRINT_ARTIFACT = "data/fingerprint.json"  # the file list a later run's diff reads


@dataclass
class JobContext:
    launch_dir: Path
    output_dir: Path
    overrides: list[str] = field(default_factory=list)
    config_yaml: str = ""
    hydra_dir: Path | None = None
    parallel_jobs: int = 1  # jobs of a sweep running at once on this machine


def run_name_for(overrides: list[str]) -> str:
    """``norm=lrn,dropout=off`` from the command-line overrides; paths stay out of the name."""
    shown = [o for o in overrides if not o.split("=", 1)[0].lstrip("+~").endswith(".dir")]
    return (",".join(shown) or "defaults")[:250]


def config_hash(cfg: ExperimentConfig) -> str:
    """Identity of a job's resolved config (sweep bookkeeping and run names left out)."""
    fields = asdict(cfg)
    fields.pop("sweep")
    fields["tracking"].pop("run_name")
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def model_summary_text(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, line_break=True: lines.append(line))
    return "\n".join(lines)


@dataclass
class JobIdentity:
    """What a run is: how it trains (config hash) and on what (the data's fingerprint)."""

    config_hash: str
    data_root: Path
    data: DataFingerprint


def identify(cfg: ExperimentConfig) -> JobIdentity:
    """The job's identity, from the config and a ``stat`` of every image (no TensorFlow)."""
    from alexnet_exp.sources import resolve_data_dir

    root = resolve_data_dir(cfg.data)
    return JobIdentity(config_hash(cfg), root, fingerprint_folder(root, cfg.data, cfg.seed))


def run(cfg: ExperimentConfig, ctx: JobContext) -> RunSummary | SkippedJob | None:
    """Train one model and record it; returns None for ``dry_run=true`` and for a worker of a
    multi-worker job that is not its chief (the chief records the run)."""
    validate(cfg)
    from alexnet_exp.distribute import placement

    where = placement(cfg.distribute)
    if not where.chief:
        return _run_worker(cfg, ctx, where.task)
    tracker, point, parent_run_id = None, None, None
    if not cfg.dry_run:
        from alexnet_exp import tracking

        tracker = tracking.Tracker(cfg.tracking, ctx.launch_dir, load_model=_load_model)
        tracker.check()  # a dead store fails here, before TensorFlow loads (seconds saved)
    identity = identify(cfg)
    if not cfg.dry_run:
        parent_run_id = os.environ.get(tracking.PARENT_RUN_ENV)
        done = _reusable_run(cfg, ctx, identity, parent_run_id)
        if done:
            return done
        if cfg.trainer.checkpoint:
            from alexnet_exp.resume import starting_point

            point = starting_point(_resume_candidates(cfg, identity, parent_run_id),
                                   ctx.output_dir)
            if point.run_id and parent_run_id:
                _link_if_outside(parent_run_id, point.run_id, "resumed")
    return _train_job(cfg, ctx, tracker, point, parent_run_id, identity)


def _load_model(path: Path):
    """A ``.keras`` model a killed process of this run buffered while its server was away:
    loaded here, above tracking, which knows no TensorFlow."""
    from alexnet_exp import model

    return model.load(path)


def _in_sweep_scope(cfg: ExperimentConfig, parent_run_id: str | None) -> str | None:
    """The parent whose jobs a run may be reused or resumed from; None: the whole experiment."""
    return parent_run_id if cfg.sweep.reuse != "experiment" else None


def _data_changed(runs, identity: JobIdentity) -> str:
    """``data changed since run <id> (classes +tulips, 12 files added)`` for the newest run."""
    from alexnet_exp import tracking

    newest = runs[0]
    if newest.data_fingerprint is None:
        return (f"run {newest.run_id} has no data fingerprint (recorded by an older"
                " alexnet-exp), so its data cannot be matched")
    old = tracking.run_json(newest.run_id, FINGERPRINT_ARTIFACT)
    how = identity.data.changes_since(DataFingerprint.from_dict(old)) if old else (
        "its file list is not in the store")
    return f"data changed since run {newest.run_id} ({how})"


def _reusable_run(cfg: ExperimentConfig, ctx: JobContext, identity: JobIdentity,
                  parent_run_id: str | None) -> SkippedJob | None:
    """Inside a multirun: the earlier FINISHED run of this job (same config, same data) that
    ``sweep.reuse`` allows to stand in for it; the job is then skipped."""
    from alexnet_exp import tracking

    if not parent_run_id or cfg.sweep.reuse == "never":
        return None
    finished = tracking.runs_with_hash(cfg.tracking.experiment_name, identity.config_hash,
                                       ("FINISHED",), _in_sweep_scope(cfg, parent_run_id))
    same = [r for r in finished if r.data_fingerprint == identity.data.digest]
    name = run_name_for(ctx.overrides)
    if not same:
        if finished:
            print(f"alexnet-exp: {_data_changed(finished, identity)}: training {name} again",
                  flush=True)
        return None
    done = same[0]
    _link_if_outside(parent_run_id, done.run_id, "reused")
    print(f"alexnet-exp: skipping {name}: the same config and data already FINISHED as MLflow"
          f" run {done.run_id} (sweep.reuse=never trains it again)", flush=True)
    return SkippedJob(done.run_id, tracking.run_metric(done.run_id, cfg.sweep.objective))


def _link_if_outside(parent_run_id: str, run_id: str, how: str) -> None:
    """A run this sweep reuses or resumes but did not start counts as one of its jobs."""
    from alexnet_exp import tracking

    run = tracking.recorded_run(run_id)
    if run.tags.get("mlflow.parentRunId") != parent_run_id:
        tracking.link_to_sweep(parent_run_id, run, how)


def _resume_candidates(cfg: ExperimentConfig, identity: JobIdentity,
                       parent_run_id: str | None) -> list[tuple[str, Path]]:
    """Killed runs this job may continue (and runs that failed on a full disk): same config,
    same data, newest first. A run of the same config on other data is left as it is (still
    resumable with its own data)."""
    from alexnet_exp import tracking

    if not cfg.trainer.resume or cfg.distribute.strategy == "multi_worker":  # workers can't agree
        return []
    unfinished = tracking.runs_with_hash(cfg.tracking.experiment_name, identity.config_hash,
                                         ("RUNNING", "KILLED", "FAILED"),
                                         _in_sweep_scope(cfg, parent_run_id))
    # FAILED runs failed for a reason a rerun would meet again, except a full disk
    unfinished = [r for r in unfinished if r.tags.get("checkpoint_dir") and (
        r.status != "FAILED" or r.tags.get("failure_reason") == tracking.DISK_FAILURE)]
    same = [r for r in unfinished if r.data_fingerprint == identity.data.digest]
    if unfinished and not same:
        print(f"alexnet-exp: {_data_changed(unfinished, identity)}: starting a new run",
              flush=True)
    return [(r.run_id, Path(r.tags["checkpoint_dir"])) for r in same]


def _run_worker(cfg: ExperimentConfig, ctx: JobContext, task: str) -> None:
    """A non-chief worker: the same steps as the chief, its files in a folder removed after."""
    import shutil
    import tempfile

    from alexnet_exp import resume
    from alexnet_exp.distribute import SilentTracker

    scratch = Path(tempfile.mkdtemp(prefix=f"alexnet-exp-{task.replace(':', '-')}-"))
    try:
        point = resume.ResumePoint(None, scratch / "checkpoints") if cfg.trainer.checkpoint \
            else None
        worker_ctx = JobContext(ctx.launch_dir, scratch, ctx.overrides, ctx.config_yaml)
        _train_job(cfg, worker_ctx, SilentTracker(), point, None, identify(cfg))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"alexnet-exp: {task} done; the chief recorded the run", flush=True)


def _train_job(cfg: ExperimentConfig, ctx: JobContext, tracker, point, parent_run_id,
               identity: JobIdentity) -> RunSummary | None:
    from dataclasses import replace

    from alexnet_exp import distribute, train
    from alexnet_exp.data import make_datasets
    from alexnet_exp.model import build_alexnet

    # A resumed run draws fresh dropout/augmentation randomness for the epochs it has left.
    seed = cfg.seed + (point.epoch if point else 0)
    policy = train.configure_runtime(cfg.trainer, seed, ctx.parallel_jobs)
    strategy = distribute.make_strategy(cfg.distribute)
    replicas = strategy.num_replicas_in_sync
    global_batch = distribute.global_batch_size(cfg.distribute, cfg.trainer.batch_size, replicas)
    root = identity.data_root
    datasets = make_datasets(
        cfg.data, cfg.augment, root, cfg.model.input_size, global_batch, cfg.seed,
        cache_dir=ctx.output_dir / "tfdata-cache", fit_lighting=not cfg.dry_run,
    )
    if cfg.distribute.strategy == "multi_worker":
        datasets = replace(datasets, train=distribute.shard_by_data(datasets.train),
                           val=distribute.shard_by_data(datasets.val),
                           val_indexed=distribute.shard_by_data(datasets.val_indexed))
    print(datasets.report.to_text(), flush=True)
    with strategy.scope():
        model = build_alexnet(cfg.model, len(datasets.class_names))
    summary_text = model_summary_text(model)
    if cfg.dry_run:
        print(summary_text)
        print(f"total parameters: {model.count_params():,} (dry run: nothing trained or logged)")
        return None

    from alexnet_exp import tracking
    from alexnet_exp.resume import restore_model
    from alexnet_exp.tracking import DISK_FAILURE, git_commit

    learning_rate = distribute.scaled_learning_rate(
        cfg.distribute, cfg.optimizer.learning_rate, cfg.trainer.batch_size, global_batch)
    with strategy.scope():
        train.compile_model(model, replace(cfg.optimizer, learning_rate=learning_rate),
                            cfg.trainer)
        if point and point.epoch:
            model = restore_model(point)  # weights and optimizer state of the last epoch
    if cfg.distribute.strategy == "multi_worker":
        distribute.build_from_spec(model, datasets.train.element_spec)
    tracker.start(
        cfg.tracking.run_name or run_name_for(ctx.overrides),
        tags={
            "overrides": " ".join(ctx.overrides) or "(none)",
            "git_commit": git_commit(PACKAGE_DIR),  # the code that ran, wherever launched
            "hydra_output_dir": str(ctx.output_dir),
            "precision_policy": policy,
            "intra_op_threads": str(resolve_threads(cfg.trainer.threads, ctx.parallel_jobs)),
            DATA_ROOT_TAG: str(root),
            tracking.CONFIG_HASH_TAG: identity.config_hash,
            tracking.DATA_FINGERPRINT_TAG: identity.data.digest,
            "checkpoint_dir": str(point.directory) if point else None,
            "distribute.replicas": str(replicas),
            "distribute.global_batch_size": str(global_batch),
            "distribute.learning_rate": f"{learning_rate:g}",
        },
        parent_run_id=parent_run_id,
        resume_run_id=point.run_id if point else None,
    )
    try:
        schedule = train.step_schedule(cfg.optimizer, learning_rate, cfg.trainer.epochs,
                                       math.ceil(len(datasets.train_files) / global_batch))
        summary = _train_and_log(cfg, ctx, tracker, model, datasets, summary_text, train, point,
                                 schedule, identity)
    except BaseException as exc:
        stop = stopping.as_stop(exc)  # Ctrl-C, SIGTERM, submitit's time limit: KILLED
        if stop is not None:
            tracker.end("KILLED", str(stop))
            stop.run_id = tracker.run_id
            if point and point.epoch:
                print(f"alexnet-exp: interrupted after epoch {point.epoch}, checkpointed in"
                      f" {point.directory}: run the same command again to resume", flush=True)
            raise stop from (None if stop is exc else exc)
        if isinstance(exc, OSError):  # the disk, not the run: the same command resumes it
            tracker.set_tags({"failure_reason": DISK_FAILURE})
        tracker.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracker.end("FINISHED")
    return summary


def _log_run_inputs(cfg, ctx, tracker, model, datasets, summary_text, identity) -> None:
    """What a run records before training: config, model summary, classes, data set (its file
    list with the fingerprint's digest as MLflow's dataset digest, and the fingerprint itself,
    which a later run diffs against to say what changed)."""
    import numpy as np

    tracker.log_params(asdict(cfg))
    tracker.log_metrics({"parameters": model.count_params()})
    tracker.log_text(ctx.config_yaml, "config/resolved.yaml")
    if ctx.hydra_dir:
        tracker.log_artifacts(ctx.hydra_dir, "config/.hydra")
    tracker.log_text(summary_text, "model_summary.txt")
    tracker.log_dict({"class_names": datasets.class_names}, "class_names.json")
    tracker.log_text(datasets.report.to_text(), "data/report.txt")
    tracker.log_dict(datasets.report.to_dict(), "data/report.json")
    names = datasets.class_names
    tracker.log_dataset(
        datasets.train_files + datasets.val_files,
        [names[i] for i in np.concatenate([datasets.train_labels, datasets.val_labels])],
        ["train"] * len(datasets.train_files) + ["val"] * len(datasets.val_files),
        datasets.report.root, name=Path(datasets.report.root).name,
        digest=identity.data.digest,
    )
    tracker.log_dict(identity.data.to_dict(), FINGERPRINT_ARTIFACT)


def _name_dropped(cfg, tracker, datasets) -> None:
    """Name the images that stopped decoding during the run (the pipeline drops them when it
    reads them; an epoch served from the cache still has the old pixels), in the output and in
    the run's data report, which was logged before they changed."""
    from alexnet_exp.data import changed_since_scan

    dropped = changed_since_scan(datasets.train_files + datasets.val_files,
                                 Path(datasets.report.root), cfg.data)
    if not dropped:
        return
    datasets.report.dropped = dropped
    for path, reason in dropped:
        print(f"alexnet-exp: {path} stopped decoding during the run ({reason}): left out of"
              " every epoch that read it after that", flush=True)
    tracker.set_tags({"alexnet_exp.dropped_images": str(len(dropped))})
    tracker.log_text(datasets.report.to_text(), "data/report.txt")
    tracker.log_dict(datasets.report.to_dict(), "data/report.json")


def _train_and_log(cfg, ctx, tracker, model, datasets, summary_text, train,
                   point=None, schedule=None, identity=None) -> RunSummary:
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix

    from alexnet_exp import plots
    from alexnet_exp.augment import eval_resize
    from alexnet_exp.errors import UserError
    from alexnet_exp.model import as_float32

    if point and point.run_id:  # a resumed run has its params and inputs already
        tracker.replay_epochs(point.history)
    else:
        _log_run_inputs(cfg, ctx, tracker, model, datasets, summary_text, identity)
    names = datasets.class_names

    result = train.fit(model, datasets.train, datasets.val, len(datasets.train_files),
                       cfg.trainer, ctx.output_dir, on_epoch_end=tracker.log_epoch, point=point,
                       schedule=schedule, steps=(datasets.train_steps, datasets.val_steps))
    _name_dropped(cfg, tracker, datasets)
    if result.non_finite_at:
        epoch, step = result.non_finite_at
        tracker.set_tags({"failure_reason": "nan_loss", "nan_epoch": str(epoch),
                          "nan_step": str(step)})
        kept = f"; the best epoch so far is in {result.checkpoint}" if result.checkpoint else ""
        raise UserError(f"training diverged: the loss became NaN/Inf in epoch {epoch}, step"
                        f" {step}{kept}. Lower optimizer.learning_rate or use norm=bn")
    losses = [h.get("loss", math.nan) for h in result.history]
    if not result.history or not all(math.isfinite(v) for v in losses):
        tracker.set_tags({"failure_reason": "nan_loss"})
        raise UserError(
            f"training diverged (loss became NaN/Inf in epoch {len(result.history)}):"
            " lower optimizer.learning_rate or use norm=bn"
        )
    figure = plots.training_curves(result.history)
    tracker.log_figure(figure, "plots/training_curves.png")
    plots.close(figure)

    predicted, kept = train.predict_labels(model, datasets.val_indexed)
    true = datasets.val_labels[kept]  # without the images dropped during the run
    labels = list(range(len(names)))
    matrix = confusion_matrix(true, predicted, labels=labels)
    figure = plots.confusion_matrix_figure(matrix, names, "validation set, best epoch")
    tracker.log_figure(figure, "plots/confusion_matrix.png")
    plots.close(figure)
    report = classification_report(true, predicted, labels=labels,
                                   target_names=names, digits=4, zero_division=0)
    tracker.log_text(report, "eval/classification_report.txt")
    final_metrics = {
        "best_val_accuracy": result.best_val_accuracy,
        "best_val_loss": min(h.get("val_loss", math.inf) for h in result.history),
        "best_epoch": result.best_epoch,
        "final_val_accuracy": float(np.mean(predicted == true)),
        "train_seconds": result.seconds,
        "epochs_run": len(result.history),
    }
    tracker.log_metrics(final_metrics)
    if cfg.tracking.log_model:
        example = next(iter(datasets.val.take(1)))[0].numpy()[:1]
        preprocessing = {
            "input_size": cfg.model.input_size,
            "input": "RGB pixel values 0..255 (uint8 or float), NHWC; scaling is in the model",
            "class_names": names,
            "eval_resize": eval_resize(cfg.model.input_size, cfg.augment.crop_scale),
        }
        tracker.log_dict(preprocessing, "preprocessing.json")
        with redirect_stdout(io.StringIO()):  # the SavedModel export prints its signatures
            if cfg.distribute.strategy != "none":
                from alexnet_exp.distribute import plain_copy

                model = plain_copy(model)
            tracker.log_model(as_float32(model), example, PACKAGE_DIR, metadata=preprocessing)
    return RunSummary(
        run_id=tracker.run_id, experiment_id=tracker.experiment_id, tracking_uri=tracker.uri,
        url=tracker.run_url(), best_val_accuracy=result.best_val_accuracy,
        best_epoch=result.best_epoch, epochs=len(result.history), seconds=result.seconds,
        parameters=model.count_params(), metrics=final_metrics,
    )
