"""Predict with a trained model: class probabilities of image files, averaged over the
test-time views (TTA), and ``alexnet-exp-predict`` (image files or folders in, top-k out).

Every file goes through the training pipeline's own decoder, upright. Apart from
:mod:`alexnet_exp.evaluation` (which scores these probabilities against a test folder's labels)
because export's parity check needs the predictions and none of the scoring.
"""

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from alexnet_exp.augment import eval_resize
from alexnet_exp.bundle import ModelBundle, load_bundle
from alexnet_exp.decode import decoder, orientations_of
from alexnet_exp.errors import DataError
from alexnet_exp.graphs import mapped
from alexnet_exp.sources import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


def view_size(bundle: ModelBundle, tta: str) -> int:
    """Side of the resize the crops come from; ten_crop always needs room for corners."""
    if tta == "ten_crop" and bundle.eval_resize <= bundle.input_size:
        return eval_resize(bundle.input_size)
    return max(bundle.eval_resize, bundle.input_size)


def tta_views(images: tf.Tensor, size: int, tta: str) -> list[tf.Tensor]:
    """The crops averaged at test time (AlexNet paper, section 4.1, for ``ten_crop``)."""
    full = tf.shape(images)[1]
    mid = (full - size) // 2
    far = full - size

    def crop(top, left):
        return images[:, top : top + size, left : left + size, :]

    centre = crop(mid, mid)
    if tta == "none":
        return [centre]
    if tta == "flip":
        return [centre, tf.reverse(centre, axis=[2])]
    crops = [crop(0, 0), crop(0, far), crop(far, 0), crop(far, far), centre]
    return crops + [tf.reverse(c, axis=[2]) for c in crops]


def predict_files(bundle: ModelBundle, files: list[str], tta: str, batch_size: int,
                  oriented: dict[str, int] | None = None) -> np.ndarray:
    """Class probabilities per file, the softmax outputs averaged over the TTA views.

    ``oriented`` is a scan's EXIF orientations (``DataReport.oriented``); without it each
    file's orientation is read here, so a loose phone photo is predicted upright too.
    """
    records = tf.data.Dataset.from_tensor_slices((files, orientations_of(files, oriented)))
    return predict_records(bundle, records, tta, batch_size)


def predict_records(bundle: ModelBundle, records: tf.data.Dataset, tta: str, batch_size: int,
                    from_bytes: bool = False) -> np.ndarray:
    """:func:`predict_files` of ``records`` of (path, EXIF orientation), or of (bytes, EXIF
    orientation) with ``from_bytes`` (a pack's examples), in their order."""
    ds = mapped(records, decoder(view_size(bundle, tta), from_bytes))
    chunks = []
    for (images,) in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
        views = tta_views(tf.cast(images, tf.float32), bundle.input_size, tta)
        probs = [bundle.model.predict_on_batch(v) for v in views]
        chunks.append(np.mean([np.asarray(p, np.float64) for p in probs], axis=0))
    return np.concatenate(chunks).astype(np.float32)


def collect_images(items: list[str]) -> list[str]:
    """Image files named directly, or found (recursively, sorted) in the folders named."""
    files = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            files.append(str(path))
        else:
            raise DataError(f"image {item} does not exist")
    if not files:
        raise DataError(f"no image files (JPEG, PNG, BMP, GIF) in {', '.join(items)}")
    return files


def top_k_table(files: list[str], probs: np.ndarray, class_names: list[str], k: int) -> list:
    k = min(k, len(class_names))
    rows = []
    for path, p in zip(files, probs, strict=True):
        best = np.argsort(-p)[:k]
        rows.append({"path": path, "top": [{"class": class_names[i], "probability": float(p[i])}
                                           for i in best]})
    return rows


def run_prediction(cfg, launch_dir: Path) -> list:
    """``alexnet-exp-predict``: top-k classes per image, as a table or JSON."""
    import json

    from alexnet_exp.checks import check_image
    from alexnet_exp.tool_config import validate_predict

    validate_predict(cfg)
    files = collect_images([cfg.images] if isinstance(cfg.images, str) else list(cfg.images))
    bad = {f: reason for f in files if (reason := check_image(f))}
    for path, reason in bad.items():
        log.warning(f"skipped {path}: {reason}")
    files = [f for f in files if f not in bad]
    if not files:
        raise DataError("none of the images can be decoded")
    bundle = load_bundle(cfg, launch_dir)
    probs = predict_files(bundle, files, cfg.tta, cfg.batch_size)
    rows = top_k_table(files, probs, bundle.class_names, cfg.top_k)
    if cfg.format == "json":
        log.info(json.dumps(rows, indent=2))
    else:
        for row in rows:
            tops = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"])
            log.info(f"{row['path']}\t{tops}")
    return rows
