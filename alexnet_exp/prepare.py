"""The prepare stage of a job, before TensorFlow loads: who the job is (config hash and data
fingerprint), whether a sweep may skip it (an earlier run of the same config and data FINISHED),
and which killed run it continues.

Everything here reads the tracking store and the file system only, so a dead store, a typo'd
data folder or a job to skip costs seconds, not a TensorFlow start.
"""

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from alexnet_exp.config import ExperimentConfig
from alexnet_exp.errors import redact
from alexnet_exp.fingerprint import DataFingerprint, fingerprint_folder, require_two_per_class
from alexnet_exp.keys import FINGERPRINT_ARTIFACT, PARENT_RUN_ENV, SWEPT_KEYS_ENV
from alexnet_exp.outcome import SkippedJob

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What the prepare stage hands on: the job's identity, its tracker, the sweep it belongs
    to and where it starts (None when checkpoints are off or nothing is recorded)."""

    identity: "JobIdentity"
    tracker: object | None = None
    parent_run_id: str | None = None
    point: object | None = None  # resume.ResumePoint


def prepare(cfg: ExperimentConfig, ctx) -> Prepared | SkippedJob:
    """Check the store, identify the job, skip it or find where it starts: no TensorFlow."""
    identity = identify(cfg)  # a data folder that cannot be trained on: before any store
    if cfg.dry_run:
        return Prepared(identity)
    if cfg.tracking.backend == "none":
        return _untracked(cfg, ctx, identity)
    from alexnet_exp import tracking

    store = tracking.open_store(cfg.tracking, ctx.launch_dir)
    store.check()  # a dead store fails here, before TensorFlow loads (seconds saved)
    tracker = tracking.Tracker(store, cfg.tracking.experiment_name, load_model=_load_model)
    parent_run_id = os.environ.get(PARENT_RUN_ENV)
    done = _reusable_run(store, cfg, ctx.overrides, identity, parent_run_id)
    if done:
        return done
    point = None
    if cfg.trainer.checkpoint:
        from alexnet_exp.resume import starting_point

        point = starting_point(_resume_candidates(store, cfg, identity, parent_run_id),
                               ctx.output_dir)
        if point.run_id and parent_run_id:
            _link_if_outside(store, parent_run_id, tracking.recorded_run(store, point.run_id),
                             "resumed")
    return Prepared(identity, tracker, parent_run_id, point)


def _untracked(cfg: ExperimentConfig, ctx, identity: "JobIdentity") -> Prepared:
    """``tracking=none``: no store is opened (so none is created), nothing is skipped or resumed
    from one, and the tracker takes every write and keeps none (a non-chief worker's tracker);
    checkpoints still go to the job's own folder."""
    from alexnet_exp.distribute import SilentTracker

    point = None
    if cfg.trainer.checkpoint:
        from alexnet_exp.resume import starting_point

        point = starting_point([], ctx.output_dir)
    return Prepared(identity, SilentTracker(), None, point)


# Keys that say where a run's files and records go or how it is shown, not what it trains:
# a standalone run's name leaves them out (its ``overrides`` tag keeps every override).
INCIDENTAL_KEYS = ("tracking", "hydra", "sweep", "tags", "trainer.verbose", "trainer.tensorboard",
                   "data.cache_path")
NAME_LIMIT = 250  # MLflow's run name column


def override_key(override: str) -> str:
    """``norm`` of ``norm=lrn``, ``tags.owner`` of ``+tags.owner=alice``: a job's overrides are
    single values (Hydra expanded the sweep), so the key is what comes before the first ``=``."""
    return override.split("=", 1)[0].lstrip("+~")


def swept_keys() -> list[str] | None:
    """The keys this job's sweep varies, as the sweep callback found them with Hydra's parser
    (``sweep.py``); None outside a multirun."""
    given = os.environ.get(SWEPT_KEYS_ENV)
    return json.loads(given) if given else None


def run_name_for(overrides: list[str], swept: list[str] | None = None) -> str:
    """A run's name from its command-line overrides, space-separated as the ``overrides`` tag:
    in a sweep only those of the ``swept`` keys (``norm=lrn dropout=off``; what every job
    shares names the parent), else the job's own overrides but the incidental ones
    (:data:`INCIDENTAL_KEYS`) and paths. Credentials are masked."""
    if swept:
        chosen = [o for o in overrides if override_key(o) in swept]
    else:
        chosen = [o for o in overrides if not _incidental(override_key(o))]
    return redact(" ".join(_shown(o) for o in chosen) or "defaults")[:NAME_LIMIT]


def _incidental(key: str) -> bool:
    return key.endswith(".dir") or any(key == k or key.startswith(f"{k}.")
                                       for k in INCIDENTAL_KEYS)


def _shown(override: str) -> str:
    """An override as a name shows it: a path by its last part (``data.dir=flower_photos``), a
    searched float to 4 digits (Optuna's ``0.0012345678901`` reads ``0.001235``; the exact value
    is in the params and the ``overrides`` tag)."""
    key, sep, value = override.partition("=")
    if not sep:
        return override
    if override_key(key).endswith(".dir"):
        return f"{key}={Path(value.rstrip('/')).name or value}"
    if FLOAT.fullmatch(value) and len(value) > 8:
        return f"{key}={float(value):.4g}"
    return override


FLOAT = re.compile(r"[-+]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][-+]?\d+)")


# Switches added after runs were first recorded, each with the value that trains as the code
# did before it existed. At that value a switch stays out of the hash, so a new switch does not
# orphan every killed run (which the same command resumes) and finished sweep job (which a
# rerun skips) recorded before it. A switch added later goes here with its neutral value.
ADDED_SWITCHES = {
    ("model", "head"): "fc",
    ("augment", "mixup"): {"alpha": 0.0, "prob": 1.0},
    ("augment", "cutmix"): {"alpha": 0.0, "prob": 1.0},
    ("optimizer", "ema"): 0.0,
    ("trainer", "val_tta"): "none",
    ("trainer", "progressive"): {"start_size": None, "full_at": 0.75, "step": 16},
    ("data", "check"): "auto",
}


# Keys that say how the data is read, not what is trained on (the same images and draws in
# the same order whatever they are), each held at the value it had when runs were first
# recorded: a run killed with the memory cache resumes with the disk cache, and data.cache's
# default becoming auto orphaned no run.
HOW_DATA_IS_READ = {
    ("data", "cache"): "memory",
    ("data", "cache_path"): None,
    ("data", "threads"): 0,
    ("data", "check_workers"): 8,
}
HOW_DATA_IS_READ_ADDED = (("data", "cache_max_memory"),)


def config_hash(cfg: ExperimentConfig) -> str:
    """Identity of a job's resolved config (sweep bookkeeping, run names, how the console
    shows progress and how the data is read left out: none of them changes what is trained)."""
    fields = asdict(cfg)
    fields.pop("sweep")
    fields.pop("tags")  # labels for people: a tag added later is the same run
    fields["tracking"].pop("run_name")
    fields["trainer"].pop("verbose")
    for (section, key), recorded_as in HOW_DATA_IS_READ.items():
        fields[section][key] = recorded_as
    for section, key in HOW_DATA_IS_READ_ADDED:
        del fields[section][key]
    for (section, key), neutral in ADDED_SWITCHES.items():
        if fields[section][key] == neutral:
            del fields[section][key]
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


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
    if cfg.data.name == "records":  # checked, split and counted when it was packed
        from alexnet_exp import packed

        manifest = packed.open_pack(root)
        packed.require_training_pack(root, manifest, cfg.data.val_split,
                                     cfg.data.max_images_per_class)
        return JobIdentity(config_hash(cfg), root, packed.fingerprint(root, manifest))
    data = fingerprint_folder(root, cfg.data, cfg.seed)
    require_two_per_class(data.class_counts())
    return JobIdentity(config_hash(cfg), root, data)


def _load_model(path: Path):
    """A ``.keras`` model a killed process of this run buffered while its server was away:
    loaded here, above tracking, which knows no TensorFlow."""
    from alexnet_exp import model

    return model.load(path)


def _in_sweep_scope(cfg: ExperimentConfig, parent_run_id: str | None) -> str | None:
    """The parent whose jobs a run may be reused or resumed from; None: the whole experiment."""
    return parent_run_id if cfg.sweep.reuse != "experiment" else None


def _data_changed(store, runs, identity: JobIdentity) -> str:
    """``data changed since run <id> (classes +tulips, 12 files added)`` for the newest run."""
    from alexnet_exp import tracking

    newest = runs[0]
    if newest.data_fingerprint is None:
        return (f"run {newest.run_id} has no data fingerprint (recorded by an older"
                " alexnet-exp), so its data cannot be matched")
    old = tracking.run_json(store, newest.run_id, FINGERPRINT_ARTIFACT)
    how = identity.data.changes_since(DataFingerprint.from_dict(old)) if old else (
        "its file list is not in the store")
    return f"data changed since run {newest.run_id} ({how})"


def _reusable_run(store, cfg: ExperimentConfig, overrides: list[str], identity: JobIdentity,
                  parent_run_id: str | None) -> SkippedJob | None:
    """Inside a multirun: the earlier FINISHED run of this job (same config, same data) that
    ``sweep.reuse`` allows to stand in for it; the job is then skipped."""
    from alexnet_exp import tracking

    if not parent_run_id or cfg.sweep.reuse == "never":
        return None
    finished = tracking.runs_with_hash(store, cfg.tracking.experiment_name,
                                       identity.config_hash, ("FINISHED",),
                                       _in_sweep_scope(cfg, parent_run_id))
    name = run_name_for(overrides, swept_keys())
    same = _on_same_data(store, finished, identity, f"training {name} again")
    if not same:
        return None
    done = same[0]
    _link_if_outside(store, parent_run_id, done, "reused")
    log.info(f"alexnet-exp: skipping {name}: the same config and data already FINISHED as MLflow"
             f" run {done.run_id} (sweep.reuse=never trains it again)")
    return SkippedJob(done.run_id, tracking.run_metric(store, done.run_id, cfg.sweep.objective))


def _on_same_data(store, runs: list, identity: JobIdentity, otherwise: str) -> list:
    """The ``runs`` recorded on this job's data; when there are runs but none on it, one line
    says what changed since the newest and what the job does ``otherwise``."""
    same = [r for r in runs if r.data_fingerprint == identity.data.digest]
    if runs and not same:
        log.info(f"alexnet-exp: {_data_changed(store, runs, identity)}: {otherwise}")
    return same


def _link_if_outside(store, parent_run_id: str, run, how: str) -> None:
    """A run this sweep reuses or resumes but did not start counts as one of its jobs."""
    from alexnet_exp import tracking

    if run.tags.get("mlflow.parentRunId") != parent_run_id:
        tracking.link_to_sweep(store, parent_run_id, run, how)


def _resume_candidates(store, cfg: ExperimentConfig, identity: JobIdentity,
                       parent_run_id: str | None) -> list[tuple[str, Path]]:
    """Killed runs this job may continue (and runs that failed on a full disk): same config,
    same data, newest first. A run of the same config on other data is left as it is (still
    resumable with its own data)."""
    from alexnet_exp import tracking

    if not cfg.trainer.resume or cfg.distribute.strategy == "multi_worker":  # workers can't agree
        return []
    unfinished = tracking.runs_with_hash(store, cfg.tracking.experiment_name,
                                         identity.config_hash, ("RUNNING", "KILLED", "FAILED"),
                                         _in_sweep_scope(cfg, parent_run_id))
    # FAILED runs failed for a reason a rerun would meet again, except a full disk
    unfinished = [r for r in unfinished if r.tags.get("checkpoint_dir") and (
        r.status != "FAILED" or r.tags.get("failure_reason") == tracking.DISK_FAILURE)]
    same = _on_same_data(store, unfinished, identity, "starting a new run")
    return [(r.run_id, Path(r.tags["checkpoint_dir"])) for r in same]
