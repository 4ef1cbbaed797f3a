"""Export a trained model as .keras, SavedModel or TFLite, and prove the copy predicts the same.

Every export is written under a temporary name and renamed when complete, carries a ``.json``
file with class names and input size beside it, and is compared with the Keras model on real
images before it is reported (and logged to the training run) as good.
"""

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from alexnet_exp import console
from alexnet_exp.bundle import ModelBundle, load_bundle, sidecar_path
from alexnet_exp.errors import UserError
from alexnet_exp.graphs import mapped
from alexnet_exp.keys import DATA_ROOT_TAG
from alexnet_exp.paths import atomic_write_text
from alexnet_exp.prediction import collect_images, predict_files

log = logging.getLogger(__name__)
TFLITE_NOISE = ("Created TensorFlow Lite XNNPACK delegate",)

# Largest acceptable |p_export - p_keras| per format and quantisation, before any override.
DEFAULT_TOLERANCE = {"keras": 1e-5, "savedmodel": 1e-4, "tflite": 1e-4, "float16": 1e-2,
                     "dynamic": 0.1}


@dataclass
class Parity:
    images: int
    max_abs_diff: float
    top1_agreement: float


def sidecar(bundle: ModelBundle, fmt: str, quantize: str) -> dict:
    return {"class_names": bundle.class_names, "input_size": bundle.input_size,
            "eval_resize": bundle.eval_resize, "train_run_id": bundle.train_run_id,
            "source": bundle.source, "format": fmt, "quantize": quantize,
            "input": "RGB pixel values 0..255 (float32), NHWC; scaling is in the model"}


def _tflite_bytes(model, quantize: str, workdir: Path) -> bytes:
    saved = workdir / "savedmodel"
    model.export(str(saved), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if quantize in ("dynamic", "float16"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def export_model(bundle: ModelBundle, fmt: str, quantize: str, out_dir: Path) -> Path:
    """Write the export; the returned path exists only once it is complete."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"output_dir={out_dir} cannot hold exports: {exc}") from exc
    stem = f"alexnet-{bundle.train_run_id[:12]}" if bundle.train_run_id else "alexnet"
    suffix = {"keras": ".keras", "savedmodel": "_savedmodel", "tflite": ".tflite"}[fmt]
    if quantize != "none":
        suffix = f"_{quantize}{suffix}"
    final = out_dir / f"{stem}{suffix}"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        partial = Path(tmp) / final.name
        if fmt == "keras":
            bundle.model.save(partial)
        elif fmt == "savedmodel":
            bundle.model.export(str(partial), format="tf_saved_model", verbose=False)
        else:
            partial.write_bytes(_tflite_bytes(bundle.model, quantize, Path(tmp)))
        if final.is_dir():
            shutil.rmtree(final)
        partial.replace(final)
    atomic_write_text(sidecar_path(final), json.dumps(sidecar(bundle, fmt, quantize), indent=2))
    return final


def tflite_interpreter(path: Path):
    """LiteRT's interpreter where installed (tf.lite.Interpreter is deprecated), else TF's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter  # noqa: N806
    # Its first allocation applies the XNNPACK delegate, which says so at INFO on file
    # descriptor 2, past TF_CPP_MIN_LOG_LEVEL: done here, with that line held back.
    with console.held_back_stderr(TFLITE_NOISE):
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
    return interpreter


def exported_predictor(path: Path, fmt: str) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(float32 NHWC batch) -> probabilities`` running the exported artefact itself."""
    if fmt == "keras":
        from alexnet_exp import model as alexnet

        model = alexnet.load(path)
        return lambda x: np.asarray(model.predict_on_batch(x))
    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(path))
        return lambda x: loaded.serve(tf.constant(x)).numpy()
    interpreter = tflite_interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run


def parity_images(data_dir: str | None, count: int) -> list[str]:
    """Up to ``count`` real images spread evenly over the sorted files of ``data_dir``."""
    if not data_dir or not Path(data_dir).expanduser().is_dir():
        raise UserError(
            f"the parity check needs real images: data_dir={data_dir} is not a folder; pass"
            " data_dir=/path/to/images (the training data works)"
        )
    from alexnet_exp.checks import check_image

    files = collect_images([data_dir])
    step = max(1, len(files) // count)
    picked = [f for f in files[::step] if check_image(f) is None][:count]
    if not picked:
        raise UserError(f"no decodable image in {data_dir} for the parity check")
    return picked


def check_parity(bundle: ModelBundle, predict: Callable, files: list[str]) -> Parity:
    from alexnet_exp.decode import decoder, orientations_of
    from alexnet_exp.prediction import tta_views, view_size

    expected = predict_files(bundle, files, "none", batch_size=len(files))
    size = view_size(bundle, "none")
    ds = tf.data.Dataset.from_tensor_slices(
        (files, orientations_of(files), np.zeros(len(files), np.int32)))
    images = next(iter(mapped(ds, decoder(size)).batch(len(files))))[0]
    batch = tta_views(tf.cast(images, tf.float32), bundle.input_size, "none")[0].numpy()
    got = predict(batch)
    return Parity(
        images=len(files),
        max_abs_diff=float(np.max(np.abs(got - expected))),
        top1_agreement=float(np.mean(got.argmax(1) == expected.argmax(1))),
    )


def run_export(cfg, launch_dir: Path) -> tuple[Path, Parity]:
    """``alexnet-exp-export``: export, check against the Keras model, log to the run."""
    from alexnet_exp import tracking
    from alexnet_exp.tool_config import validate_export

    validate_export(cfg)
    bundle = load_bundle(cfg, launch_dir)
    data_dir = cfg.data_dir or (tracking.run_tag(bundle.store, bundle.train_run_id, DATA_ROOT_TAG)
                                if bundle.train_run_id else None)
    files = parity_images(data_dir, cfg.parity_images)
    out_dir = (launch_dir / cfg.output_dir).resolve()
    path = export_model(bundle, cfg.format, cfg.quantize, out_dir)
    size_mb = sum(p.stat().st_size for p in [path, *path.rglob("*")] if p.is_file()) / 1e6
    log.info(f"exported {path} ({size_mb:.1f} MB)")
    parity = check_parity(bundle, exported_predictor(path, cfg.format), files)
    tolerance = cfg.max_abs_diff
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE[cfg.quantize if cfg.quantize != "none" else cfg.format]
    log.info(f"parity on {parity.images} images: max |p_export - p_keras| ="
             f" {parity.max_abs_diff:.2e} (tolerance {tolerance:.0e}), top-1 agreement"
             f" {parity.top1_agreement:.3f} (minimum {cfg.min_top1_agreement})")
    if parity.max_abs_diff > tolerance or parity.top1_agreement < cfg.min_top1_agreement:
        raise UserError(f"{path} fails the parity check (see above); it is not logged."
                        " Raise max_abs_diff= or lower min_top1_agreement= to accept it")
    if cfg.log and bundle.train_run_id:
        tracking.log_artifact_to_run(bundle.store, bundle.train_run_id, path,
                                     f"exports/{cfg.format}")
        tracking.log_artifact_to_run(bundle.store, bundle.train_run_id, sidecar_path(path),
                                     f"exports/{cfg.format}")
        log.info(f"logged to MLflow run {bundle.train_run_id} under exports/{cfg.format}/")
    return path, parity
