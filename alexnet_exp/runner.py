"""One training job from a typed config, in the stages it runs: prepare -> build -> fit ->
record.

- prepare (:mod:`.prepare`, no TensorFlow): the store is usable, the job's identity (config
  hash, data fingerprint), a sweep's skip, the killed run it continues;
- build: runtime, strategy, the tf.data pipelines, the model (compiled, restored on resume);
- fit: the run starts (or resumes) in MLflow, Keras trains, every epoch is logged;
- record (:mod:`.record`): curves, validation report, summary metrics, the model.

No Hydra here: the command line hands over a validated :class:`ExperimentConfig` and a
:class:`JobContext` (where the job was launched, where its files go), so a notebook or a test
can run a job the same way.
"""

import hashlib
import logging
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from alexnet_exp import console, stopping
from alexnet_exp.config import (
    ExperimentConfig,
    progressive_sizes,
    resolve_threads,
    user_tags,
)
from alexnet_exp.config_checks import validate
from alexnet_exp.errors import redact
from alexnet_exp.keys import (
    CONFIG_HASH_TAG,
    DATA_FINGERPRINT_TAG,
    DATA_ROOT_TAG,
    DISK_FAILURE,
    SWEPT_TAG,
    SWEPT_VALUE_PREFIX,
)
from alexnet_exp.outcome import RunSummary, SkippedJob
from alexnet_exp.paths import PACKAGE_DIR
from alexnet_exp.prepare import (
    Prepared,
    identify,
    override_key,
    prepare,
    run_name_for,
    swept_keys,
)

log = logging.getLogger(__name__)
TFDATA_CACHE = "tfdata-cache"  # data.cache=disk's folder in the job's folder (no cache_path)


@dataclass
class JobContext:
    launch_dir: Path
    output_dir: Path
    overrides: list[str] = field(default_factory=list)
    config_yaml: str = ""
    hydra_dir: Path | None = None
    parallel_jobs: int = 1  # jobs of a sweep running at once on this machine
    sweep_dir: Path | None = None  # a multirun's folder, which its jobs share; None: one run


@dataclass
class Built:
    """What the build stage made: TensorFlow is loaded from here on."""

    model: object
    datasets: object  # data.Datasets, sharded when the strategy needs it
    summary_text: str
    policy: str  # the precision policy in force
    replicas: int
    global_batch: int
    learning_rate: float | None = None  # scaled for the strategy; None in a dry run
    # each epoch's training image size under trainer.progressive; None: model.input_size
    image_sizes: list[int] | None = None


def run(cfg: ExperimentConfig, ctx: JobContext) -> RunSummary | SkippedJob | None:
    """Train one model and record it; returns None for ``dry_run=true`` and for a worker of a
    multi-worker job that is not its chief (the chief records the run)."""
    validate(cfg)
    from alexnet_exp.distribute import placement

    where = placement(cfg.distribute)
    if not where.chief:
        return _run_worker(cfg, ctx, where.task)
    prepared = prepare(cfg, ctx)
    if isinstance(prepared, SkippedJob):
        return prepared
    try:
        built = build(cfg, ctx, prepared)
        if cfg.dry_run:
            log.info(built.summary_text)
            log.info(f"total parameters: {built.model.count_params():,} (dry run: nothing"
                     " trained or logged)")
            return None
        return fit_and_record(cfg, ctx, prepared, built)
    finally:
        # The disk cache in the job's folder is the job's own (data.cache_path is the user's,
        # kept for the next run): a decoded copy of the data set per job would fill the disk.
        shutil.rmtree(ctx.output_dir / TFDATA_CACHE, ignore_errors=True)


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
        prepared = Prepared(identify(cfg), SilentTracker(), None, point)
        fit_and_record(cfg, worker_ctx, prepared, build(cfg, worker_ctx, prepared))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info(f"alexnet-exp: {task} done; the chief recorded the run")


def show_data_report(report, sweep_dir: Path | None) -> None:
    """The data report on the console once per sweep while the data stays the same: the jobs
    of a norm=bn,lrn sweep read the same folder, and its seven lines, repeated above every
    job, buried what changed. A later job shows one line instead; its log file keeps the whole
    report, and a report that differs (another folder, a changed image, another cache) shows
    in full. The first job to create the marker in the sweep's folder shows it, so parallel
    jobs in other processes agree."""
    text = report.to_text()
    if sweep_dir is not None:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        marker = Path(sweep_dir) / ".alexnet-exp" / f"data-report-{digest}"
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.open("x").close()
        except FileExistsError:
            log.info(text, extra={"console": False})
            log.info(f"data: {report.root} as an earlier job of this sweep reported it"
                     f" ({sum(report.counts.values())} usable images; the report is in"
                     " alexnet-exp.log)")
            return
        except OSError:
            pass  # a sweep folder we cannot write to: the report is shown, as for one run
    log.info(text)


def build(cfg: ExperimentConfig, ctx: JobContext, prepared: Prepared) -> Built:
    """Runtime, strategy, pipelines and model; compiled (and restored on resume) unless this
    is a dry run, which only shows the data report and the model."""
    from dataclasses import replace

    console.load_tensorflow()  # first, so its start-up lines are held back
    from alexnet_exp import distribute, training
    from alexnet_exp.data import make_datasets
    from alexnet_exp.model import build_alexnet, model_summary_text

    point = prepared.point
    # A resumed run draws fresh dropout/augmentation randomness for the epochs it has left.
    seed = cfg.seed + (point.epoch if point else 0)
    policy = training.configure_runtime(cfg.trainer, seed, ctx.parallel_jobs)
    strategy = distribute.make_strategy(cfg.distribute)
    replicas = strategy.num_replicas_in_sync
    global_batch = distribute.global_batch_size(cfg.distribute, cfg.trainer.batch_size, replicas)
    where = distribute.placement(cfg.distribute)
    datasets = make_datasets(
        cfg.data, cfg.augment, prepared.identity.data_root, cfg.model.input_size, global_batch,
        cfg.seed, cache_dir=ctx.output_dir / TFDATA_CACHE, fit_lighting=not cfg.dry_run,
        limits=(cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches),
        worker=(where.index, where.workers),
    )
    datasets = distribute.shard_datasets(cfg.distribute, datasets)
    show_data_report(datasets.report, ctx.sweep_dir)
    if (cfg.trainer.limit_train_batches, cfg.trainer.limit_val_batches) != (None, None):
        log.info(f"alexnet-exp: limited to {datasets.train_steps} train and {datasets.val_steps}"
                 f" val batches per epoch ({len(datasets.train_files)} and"
                 f" {len(datasets.val_files)} images; trainer.limit_train_batches="
                 f"{cfg.trainer.limit_train_batches}, limit_val_batches="
                 f"{cfg.trainer.limit_val_batches})")
    sizes = None
    if cfg.trainer.progressive.start_size is not None:
        sizes = progressive_sizes(cfg.trainer.progressive, cfg.model.input_size,
                                  cfg.trainer.epochs)
        log.info(f"alexnet-exp: progressive resizing: training images of {sizes[0]} px in epoch"
                 f" 1, {cfg.model.input_size} px from epoch {sizes.index(sizes[-1]) + 1} of"
                 f" {len(sizes)} (validation at {cfg.model.input_size} px)")
    with strategy.scope():
        model = build_alexnet(cfg.model, len(datasets.class_names), any_size=sizes is not None)
    built = Built(model, datasets, model_summary_text(model), policy, replicas, global_batch,
                  image_sizes=sizes)
    if cfg.dry_run:
        return built
    from alexnet_exp.checkpoint import restore_model

    built.learning_rate = distribute.scaled_learning_rate(
        cfg.distribute, cfg.optimizer.learning_rate, cfg.trainer.batch_size, global_batch)
    with strategy.scope():
        training.compile_model(model, replace(cfg.optimizer, learning_rate=built.learning_rate),
                            cfg.trainer)
        if point and point.epoch:
            built.model = restore_model(point)  # weights and optimizer state of the last epoch
    distribute.ready_to_fit(cfg.distribute, built.model, datasets.train.element_spec)
    return built


def fit_and_record(cfg: ExperimentConfig, ctx: JobContext, prepared: Prepared,
                   built: Built) -> RunSummary:
    """Start (or resume) the MLflow run, train, record; the run ends FINISHED, KILLED (Ctrl-C,
    SIGTERM, submitit's time limit) or FAILED, never RUNNING."""
    tracker, point = prepared.tracker, prepared.point
    tracker.start(
        _run_name(cfg, ctx), tags=_run_tags(cfg, ctx, prepared, built),
        parent_run_id=prepared.parent_run_id, resume_run_id=point.run_id if point else None,
        system_metrics=cfg.tracking.system_metrics,
    )
    try:
        summary = _fit(cfg, ctx, prepared, built)
        stopping.raise_if_stopped()  # a stop a __del__ swallowed on the way is still a stop
    except BaseException as exc:
        stop = stopping.as_stop(exc)
        if stop is not None:
            tracker.end("KILLED", str(stop))
            stop.run_id = tracker.run_id
            if point and point.epoch:
                log.info(f"alexnet-exp: interrupted after epoch {point.epoch}, checkpointed in"
                         f" {point.directory}: run the same command again to resume")
            raise stop from (None if stop is exc else exc)
        if isinstance(exc, OSError):  # the disk, not the run: the same command resumes it
            tracker.set_tags({"failure_reason": DISK_FAILURE})
        tracker.end("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracker.end("FINISHED")
    return summary


def _run_name(cfg: ExperimentConfig, ctx: JobContext) -> str:
    return cfg.tracking.run_name or run_name_for(ctx.overrides, swept_keys())


def _swept_tags(ctx: JobContext) -> dict[str, str]:
    """A sweep's job: the keys its sweep varies and each one's value in this job, as tags.

    Tags, not more params: among 97 params a swept key is hard to find, and a group's choice
    is not a param at all (``dropout=off`` shows as ``model.dropout_rate=0.0``). MLflow's UI
    (3.18) lists tags apart from params in its Columns dialog and offers them in "Group by";
    ``tags.`swept.norm` = 'lrn'`` searches them; the sweep's shared view shows them as
    columns (:func:`alexnet_exp.tracking.share_sweep_view`)."""
    swept = swept_keys()
    if not swept:
        return {}
    values = {override_key(o): o.partition("=")[2] for o in ctx.overrides}
    return {SWEPT_TAG: " ".join(swept),
            **{f"{SWEPT_VALUE_PREFIX}{key}": redact(values[key]) for key in swept if key in values}}


def _run_tags(cfg: ExperimentConfig, ctx: JobContext, prepared: Prepared,
              built: Built) -> dict[str, str | None]:
    """What a run is tagged with when it starts: where, how and on what it trains."""
    from alexnet_exp.tracking import git_tags

    point = prepared.point
    return {
        **git_tags(PACKAGE_DIR),  # the code that ran, wherever launched
        "overrides": " ".join(ctx.overrides) or "(none)",
        "hydra_output_dir": str(ctx.output_dir),
        "precision_policy": built.policy,
        "intra_op_threads": str(resolve_threads(cfg.trainer.threads, ctx.parallel_jobs)),
        DATA_ROOT_TAG: str(prepared.identity.data_root),
        CONFIG_HASH_TAG: prepared.identity.config_hash,
        DATA_FINGERPRINT_TAG: prepared.identity.data.digest,
        "checkpoint_dir": str(point.directory) if point else None,
        "distribute.replicas": str(built.replicas),
        "distribute.global_batch_size": str(built.global_batch),
        "distribute.learning_rate": f"{built.learning_rate:g}",
        **_swept_tags(ctx),
        **user_tags(cfg.tags),
    }


def _fit(cfg: ExperimentConfig, ctx: JobContext, prepared: Prepared, built: Built) -> RunSummary:
    from alexnet_exp import fit_callbacks, record, training
    from alexnet_exp.model import at_input_size

    tracker, point, datasets = prepared.tracker, prepared.point, built.datasets
    if point and point.run_id:  # a resumed run has its params and inputs already
        tracker.replay_epochs(point.history)
        record.data_cache(tracker, datasets)  # this process's choice (data.cache may differ)
    else:
        record.run_inputs(cfg, ctx, tracker, built.model, datasets, built.summary_text,
                          prepared.identity)
    schedule = fit_callbacks.step_schedule(
        cfg.optimizer, built.learning_rate, cfg.trainer.epochs,
        math.ceil(len(datasets.train_files) / built.global_batch))
    result = training.fit(built.model, datasets.train, datasets.val, len(datasets.train_files),
                       cfg.trainer, ctx.output_dir, on_epoch_end=tracker.log_epoch, point=point,
                       schedule=schedule, steps=(datasets.train_steps, datasets.val_steps),
                       image_sizes=built.image_sizes)
    record.data_changed_during_run(cfg, tracker, datasets, prepared.identity.data.digest)
    record.check_finite(tracker, result)
    model = at_input_size(built.model, cfg.model)  # progressive resizing trained any size
    # A sweep registers its best trial when it ends (sweep.py), not every job's model.
    register_as = None if prepared.parent_run_id else cfg.tracking.register_as
    return record.results(cfg, tracker, model, datasets, result,
                          record.model_name(cfg, _run_name(cfg, ctx), bool(swept_keys())),
                          register_as)
