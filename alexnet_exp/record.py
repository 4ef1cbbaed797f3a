"""The record stage of a job: what its MLflow run holds besides the per-epoch metrics.

Before training: the config, the model summary, the classes, the data set (its file list, with
the data fingerprint's digest as MLflow's dataset digest) and the fingerprint itself. After:
the images that stopped decoding, the curves, the confusion matrix, the summary metrics and the
model. Every write goes through the job's tracker, so an outage buffers it like the rest.
"""

import io
import logging
import math
import re
from contextlib import redirect_stdout
from dataclasses import asdict
from pathlib import Path

from alexnet_exp.errors import DataError, UserError, redact
from alexnet_exp.keys import FINGERPRINT_ARTIFACT
from alexnet_exp.outcome import RunSummary
from alexnet_exp.paths import PACKAGE_DIR

log = logging.getLogger(__name__)


def run_inputs(cfg, ctx, tracker, model, datasets, summary_text, identity) -> None:
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
    data_cache(tracker, datasets)
    names = datasets.class_names
    tracker.log_dataset(
        datasets.train_files + datasets.val_files,
        [names[i] for i in np.concatenate([datasets.train_labels, datasets.val_labels])],
        ["train"] * len(datasets.train_files) + ["val"] * len(datasets.val_files),
        datasets.report.root, name=Path(datasets.report.root).name,
        digest=identity.data.digest,
    )
    tracker.log_dict(identity.data.to_dict(), FINGERPRINT_ARTIFACT)


def data_cache(tracker, datasets) -> None:
    """Where the decoded images waited (data.cache=auto's choice), to filter runs on in the
    UI; set again by a resumed run, whose data.cache may not be the first process's."""
    if datasets.cache:
        tracker.set_tags({"alexnet_exp.data_cache": datasets.cache.mode})


def data_changed_during_run(cfg, tracker, datasets, digest: str) -> None:
    """What changed in the data while the run read it: a pack changes whole
    (:func:`_pack_unchanged`), a folder's images one by one (:func:`_dropped_images`)."""
    if cfg.data.name == "records":
        _pack_unchanged(datasets, digest)
    else:
        _dropped_images(cfg, tracker, datasets)


def _dropped_images(cfg, tracker, datasets) -> None:
    """Name the images that stopped decoding during the run (the pipeline drops them when it
    reads them; an epoch served from the cache still has the old pixels), in the output and in
    the run's data report, which was logged before they changed."""
    from alexnet_exp.scan import changed_since_scan

    dropped = changed_since_scan(datasets.train_files + datasets.val_files,
                                 Path(datasets.report.root), cfg.data,
                                 datasets.report.check_level)
    if not dropped:
        return
    datasets.report.dropped = dropped
    for path, reason in dropped:
        log.info(f"alexnet-exp: {path} stopped decoding during the run ({reason}): left out of"
                 " every epoch that read it after that")
    tracker.set_tags({"alexnet_exp.dropped_images": str(len(dropped))})
    tracker.log_text(datasets.report.to_text(), "data/report.txt")
    tracker.log_dict(datasets.report.to_dict(), "data/report.json")


def _pack_unchanged(datasets, digest: str) -> None:
    """A pack rewritten while the run read it (packed again with ``overwrite=true``, cut
    short, a shard replaced): the run trained on two data sets and its record names one, so it
    ends FAILED saying so, never FINISHED (a sweep would reuse it). Every epoch reopens the
    shards by name, and a shard missing for a moment is skipped as an unreadable image is."""
    from alexnet_exp import packed

    root = Path(datasets.report.root)
    try:
        now = packed.fingerprint(root, packed.open_pack(root)).digest
    except (DataError, OSError) as exc:
        now = f"unreadable: {exc}"
    if now != digest:
        raise DataError(f"the pack at {root} changed while this run read it (fingerprint"
                        f" {digest} -> {now}): the run trained on what was there at each"
                        " epoch; run it again on the pack as it is now")


def check_finite(tracker, result) -> None:
    """A diverged run ends FAILED with the epoch and step where the loss left the numbers."""
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


def results(cfg, tracker, model, datasets, result, model_name: str = "model",
            register_as: str | None = None) -> RunSummary:
    """The finished run's curves, validation report, summary metrics and (``log_model``) the
    best weights as a logged model called ``model_name`` (a new version of ``register_as`` in
    the Model Registry); returns what the command line prints."""
    from alexnet_exp import plots

    figure = plots.training_curves(result.history)
    tracker.log_figure(figure, "plots/training_curves.png")
    plots.close(figure)
    final_val_accuracy = _validation_report(tracker, model, datasets,
                                            flip=cfg.trainer.val_tta == "flip")
    final_metrics = {
        "best_val_accuracy": result.best_val_accuracy,
        "best_val_loss": min(h.get("val_loss", math.inf) for h in result.history),
        "best_epoch": result.best_epoch,
        "final_val_accuracy": final_val_accuracy,
        "train_seconds": result.seconds,
        "epochs_run": len(result.history),
    }
    tracker.log_metrics(final_metrics)
    if cfg.tracking.log_model:
        _log_model(cfg, tracker, model, datasets, model_name, register_as)
    return RunSummary(
        run_id=tracker.run_id, experiment_id=tracker.experiment_id, tracking_uri=tracker.uri,
        url=tracker.run_url(), best_val_accuracy=result.best_val_accuracy,
        best_epoch=result.best_epoch, epochs=len(result.history), seconds=result.seconds,
        parameters=model.count_params(), metrics=final_metrics,
        checkpoint_dir=str(result.checkpoint.parent) if result.checkpoint else None,
    )


def _validation_report(tracker, model, datasets, flip: bool) -> float:
    """Confusion matrix and per-class report of the best weights (each image and its mirror
    with ``flip``, as validation scored them); returns their accuracy."""
    import numpy as np
    from sklearn.metrics import classification_report, confusion_matrix

    from alexnet_exp import plots, training

    names = datasets.class_names
    predicted, kept = training.predict_labels(model, datasets.val_indexed, flip)
    true = datasets.val_labels[kept]  # without the images dropped during the run
    labels = list(range(len(names)))
    matrix = confusion_matrix(true, predicted, labels=labels)
    figure = plots.confusion_matrix_figure(matrix, names, "validation set, best epoch")
    tracker.log_figure(figure, "plots/confusion_matrix.png")
    plots.close(figure)
    report = classification_report(true, predicted, labels=labels,
                                   target_names=names, digits=4, zero_division=0)
    tracker.log_text(report, "eval/classification_report.txt")
    return float(np.mean(predicted == true))


def model_name(cfg, run_name: str, in_sweep: bool = False) -> str:
    """What a run's logged model is called (in ``runs:/<run id>/<name>`` and the experiment's
    Models tab), so that the Models tab tells runs apart as the runs table does: a sweep's job
    by its run's name (what the sweep varies: ``norm-lrn-dropout-off``; its variant repeats
    over seeds), a standalone run by its variant (``ablation=bn``), else by the run's name (its
    overrides), else ``alexnet-<model>``. What MLflow refuses in the name (``/ : . % " '``) and
    what a command line would split (``=``, ``,``, spaces) become ``-``."""
    run_name = redact(run_name)  # a model name is as public as the run name
    named = run_name if run_name != "defaults" else f"alexnet-{cfg.model.name}"
    name = named if in_sweep else (cfg.variant or named)
    return re.sub(r"[^A-Za-z0-9_+-]+", "-", name).strip("-")[:200] or "model"


def _log_model(cfg, tracker, model, datasets, name: str, register_as: str | None) -> None:
    """The model as MLflow logs it, with what eval and predict need to feed it."""
    from alexnet_exp import distribute
    from alexnet_exp.augment import eval_resize
    from alexnet_exp.model import as_float32

    example = next(iter(datasets.val.take(1)))[0].numpy()[:1]
    preprocessing = {
        "input_size": cfg.model.input_size,
        "input": "RGB pixel values 0..255 (uint8 or float), NHWC; scaling is in the model",
        "class_names": datasets.class_names,
        "eval_resize": eval_resize(cfg.model.input_size, cfg.augment.crop_scale),
    }
    tracker.log_dict(preprocessing, "preprocessing.json")
    with redirect_stdout(io.StringIO()):  # the SavedModel export prints its signatures
        plain = distribute.loggable(cfg.distribute, model)
        tracker.log_model(as_float32(plain), example, PACKAGE_DIR, metadata=preprocessing,
                          name=name, register_as=register_as)
