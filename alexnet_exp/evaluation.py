"""Evaluate a trained model on a class-folder test set: accuracy, per-class report, confusion.

A model knows its classes by name (recorded at training time); a test folder's classes are
mapped onto those names, never onto folder order, so a test set with a class missing or its
folders in another order is still scored correctly. The probabilities come from
:mod:`alexnet_exp.prediction` (the same test-time views ``alexnet-exp-predict`` uses).
"""

import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alexnet_exp import packed
from alexnet_exp.bundle import ModelBundle, load_bundle
from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError, first_line
from alexnet_exp.folders import class_name
from alexnet_exp.prediction import predict_files, predict_records
from alexnet_exp.scan import scan_folder

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    accuracy: float
    top_k_accuracy: float
    top_k: int
    report_text: str
    report: dict
    matrix: np.ndarray
    files: list[str]
    true: np.ndarray
    probs: np.ndarray
    missing_classes: list[str]


def match_classes(test_names: list[str], model_names: list[str]) -> tuple[dict, list[str]]:
    """``{test class: model label index}`` and the model's classes absent from the test set.

    Names compare NFC-normalised (:func:`class_name`): a model trained on a Linux folder
    "Café" knows the test folder "Café" a Mac wrote decomposed, and a model recorded before
    names were normalised knows it too.
    """
    model_names = [class_name(n) for n in model_names]
    test_names = [class_name(n) for n in test_names]
    unknown = [n for n in test_names if n not in model_names]
    if unknown:
        raise DataError(
            f"test class folder(s) {', '.join(unknown)} are not classes of the model"
            f" (it knows {', '.join(model_names)}): rename or remove them"
        )
    mapping = {name: model_names.index(name) for name in test_names}
    return mapping, [n for n in model_names if n not in test_names]


def evaluate_folder(bundle: ModelBundle, root: Path, tta: str, top_k: int,
                    batch_size: int) -> EvalResult:
    from sklearn.metrics import classification_report, confusion_matrix, top_k_accuracy_score

    if packed.is_pack(root):
        files, test_labels, class_names, probs = _predict_pack(bundle, root, tta, batch_size)
    else:
        files, test_labels, report = scan_folder(root, DataConfig(name="folder", dir=str(root)),
                                                 min_classes=1)
        class_names = report.class_names
        probs = predict_files(bundle, files, tta, batch_size, report.oriented)
    mapping, missing = match_classes(class_names, bundle.class_names)
    if missing:
        warnings.warn(f"the test set has no folder for class(es) {', '.join(missing)};"
                      " evaluating the others", stacklevel=2)
    true = np.array([mapping[class_names[i]] for i in test_labels], np.int64)
    labels = list(range(len(bundle.class_names)))
    k = min(top_k, max(1, len(labels) - 1))  # top-n of n classes is always 1.0
    present = sorted(set(true.tolist()))
    text = classification_report(true, probs.argmax(1), labels=present, digits=4, zero_division=0,
                                 target_names=[bundle.class_names[i] for i in present])
    as_dict = classification_report(true, probs.argmax(1), labels=present, zero_division=0,
                                    target_names=[bundle.class_names[i] for i in present],
                                    output_dict=True)
    accuracy = float(np.mean(probs.argmax(1) == true))
    return EvalResult(
        accuracy=accuracy,
        # Top-1 is the accuracy; sklearn refuses a two-class model's 2-column scores with
        # "y_true is binary while y_score is 2d", whatever the labels.
        top_k_accuracy=accuracy if k == 1 else float(top_k_accuracy_score(true, probs, k=k,
                                                                          labels=labels)),
        top_k=k, report_text=text, report=as_dict,
        matrix=confusion_matrix(true, probs.argmax(1), labels=labels),
        files=files, true=true, probs=probs, missing_classes=missing,
    )


def _predict_pack(bundle: ModelBundle, root: Path, tta: str, batch_size: int):
    """Files, labels, class names and probabilities of a pack's test set (its images as they
    were checked when packed, read in index order)."""
    manifest = packed.open_pack(root)
    if not manifest.is_test_set:
        raise DataError(f"the pack at {root} is a train/val split for training, not a test set:"
                        " pack the test folder with alexnet-exp-pack data.val_split=0")
    files, labels = packed.read_index(root, manifest, packed.TEST_SPLIT)
    import tensorflow as tf

    from alexnet_exp.graphs import mapped

    records = mapped(packed.read_split(root, manifest, packed.TEST_SPLIT, seed=0, shuffle=False),
                     lambda contents, orientation, *_: (contents, orientation))

    try:
        probs = predict_records(bundle, records, tta, batch_size, from_bytes=True)
    except tf.errors.OpError as exc:  # passed a header check when packed, fails to decode
        raise DataError(f"an image of the pack at {root} cannot be decoded"
                        f" ({first_line(exc)}): pack the test folder with data.check=full,"
                        " which leaves such files out") from None
    return files, labels, manifest.class_names, probs


def write_predictions_csv(path: Path, files, true, probs, class_names) -> None:
    import pandas as pd

    frame = pd.DataFrame({"path": files})
    if true is not None:
        frame["true_class"] = [class_names[i] for i in true]
    frame["predicted_class"] = [class_names[i] for i in probs.argmax(1)]
    for i, name in enumerate(class_names):
        frame[f"p_{name}"] = probs[:, i]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def confusion_text(matrix: np.ndarray, class_names: list[str]) -> str:
    width = max(8, *(len(n) for n in class_names)) + 1
    head = "true \\ pred".ljust(width) + "".join(n[:width - 1].rjust(width) for n in class_names)
    rows = [name.ljust(width) + "".join(str(v).rjust(width) for v in row)
            for name, row in zip(class_names, matrix, strict=True)]
    return "\n".join([head, *rows])


def eval_metrics(result: EvalResult) -> dict[str, float]:
    """What the evaluation prints, as MLflow metrics: overall and per class."""
    metrics = {"test_accuracy": result.accuracy,
               f"test_top_{result.top_k}_accuracy": result.top_k_accuracy,
               "test_macro_f1": result.report["macro avg"]["f1-score"],
               "test_images": float(len(result.files))}
    for name, scores in result.report.items():
        if isinstance(scores, dict) and name not in ("macro avg", "weighted avg"):
            key = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            for score in ("precision", "recall", "f1-score"):
                metrics[f"test_{score.replace('-score', '')}.{key}"] = scores[score]
    return metrics


def run_evaluation(cfg, launch_dir: Path) -> EvalResult:
    """``alexnet-exp-eval``: score a model on a test folder, print it, log an eval run."""
    from alexnet_exp import plots, tracking
    from alexnet_exp.tool_config import require_test_folder, validate_eval

    validate_eval(cfg)
    require_test_folder(cfg)
    root = Path(cfg.data.dir).expanduser().resolve()
    bundle = load_bundle(cfg, launch_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_folder(bundle, root, cfg.tta, cfg.top_k, cfg.batch_size)
    for warning in caught:
        log.warning(f"warning: {warning.message}")
    log.info(f"model {bundle.source} on {root} ({len(result.files)} images, tta={cfg.tta})")
    log.info(f"accuracy {result.accuracy:.4f}   top-{result.top_k} accuracy"
             f" {result.top_k_accuracy:.4f}\n")
    log.info(result.report_text)
    log.info(confusion_text(result.matrix, bundle.class_names))
    csv_path = None
    if cfg.output:
        csv_path = Path(cfg.output).expanduser()
        write_predictions_csv(csv_path, result.files, result.true, result.probs,
                              bundle.class_names)
        log.info(f"\npredictions: {csv_path}")
    if cfg.log:
        figure = plots.confusion_matrix_figure(result.matrix, bundle.class_names,
                                               f"{root.name}, tta={cfg.tta}")
        run_id = tracking.log_evaluation(
            bundle.store, cfg, bundle.train_run_id, bundle.source, root,
            metrics=eval_metrics(result),
            figure=figure, report_text=result.report_text, csv_path=csv_path)
        plots.close(figure)
        log.info(f"\nMLflow evaluation run {run_id}")
    return result
