"""A trained model ready to predict: the Keras model with its class names and image sizes.

Evaluation, prediction and export all start from a :class:`ModelBundle`. It comes from a
logged MLflow model (``run_id`` / ``model_uri``: the names and sizes are its metadata) or a
``.keras`` file (``model_path``: they are in the ``.json`` file the exporter writes beside it).
Tracking finds the model and its metadata; the TensorFlow side (our layers, float32) is here.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from alexnet_exp import model as alexnet
from alexnet_exp import tracking
from alexnet_exp.augment import eval_resize
from alexnet_exp.errors import UserError, first_line
from alexnet_exp.tool_config import require_model_file


@dataclass
class ModelBundle:
    """A loaded Keras model with what it needs to see images as it saw them in training."""

    model: object
    class_names: list[str]
    input_size: int
    eval_resize: int
    source: str
    train_run_id: str | None = None
    store: object | None = None  # tracking.Store: where its evaluations and exports are logged


def sidecar_path(model_file: Path) -> Path:
    """``model.keras`` -> ``model.keras.json``: class names and input size, one per export."""
    return model_file.parent / f"{model_file.name}.json"


def load_bundle(cfg, launch_dir: Path) -> ModelBundle:
    """The model named by ``run_id`` / ``model_uri`` / ``model_path`` with its preprocessing."""
    if cfg.model_path:
        model, metadata, source, train_run_id, store = _from_file(cfg, launch_dir)
    else:
        model, metadata, source, train_run_id, store = _from_store(cfg, launch_dir)
    if "class_names" not in metadata:
        raise UserError(f"{source} records no class names: was it trained by alexnet-exp?")
    input_size = int(model.input_shape[1])
    return ModelBundle(
        model=alexnet.as_float32(model),
        class_names=list(metadata["class_names"]),
        input_size=input_size,
        eval_resize=int(metadata.get("eval_resize", eval_resize(input_size))),
        source=source,
        train_run_id=train_run_id,
        store=store,
    )


def _from_file(cfg, launch_dir: Path):
    require_model_file(cfg)
    path = Path(cfg.model_path).expanduser()
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        raise UserError(f"{sidecar} (class names, input size) is missing beside {path}:"
                        " export with alexnet-exp-export format=keras to get both")
    try:
        model = alexnet.load(path)
    except Exception as exc:
        raise UserError(f"cannot load {path} as a .keras model:"
                        f" {first_line(exc)[:300]}") from exc
    metadata = json.loads(sidecar.read_text())
    store = tracking.open_store(cfg.tracking, launch_dir)
    train_run_id = metadata.get("train_run_id")
    if train_run_id and not tracking.run_exists(store, train_run_id):
        train_run_id = None  # trained against another store: nothing to link to here
    return model, metadata, str(path), train_run_id, store


def _from_store(cfg, launch_dir: Path):
    store = tracking.open_store(cfg.tracking, launch_dir, create=False)
    run_id = tracking.require_run(store, cfg.run_id) if cfg.run_id else None
    source = cfg.model_uri or tracking.run_model_uri(store, run_id)
    hint = (" (no model logged: was it trained with tracking.log_model=false, or is it an"
            " evaluation run?)" if run_id else "")
    logged = tracking.load_logged_model(store, source, alexnet.custom_objects(), hint)
    return logged.model, logged.metadata, source, run_id or logged.run_id, store
