"""How a run's pieces become MLflow objects, the same when logged live and when replayed from
the outbox: the model logged with what it needs to load, the data set as a run input. Both
:mod:`.runs` (live) and :mod:`.outbox` (replay) build on it.
"""

from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np


def log_tf_model(model, example: np.ndarray, code_dir: Path, metadata: dict,
                 run_id: str | None = None, name: str = "model",
                 register_as: str | None = None) -> str:
    """Log with the tensorflow flavour: it carries the package (the registered LRN layer
    must be importable where the model loads) and takes an input example. ``name`` is the
    logged model's (``runs:/<run id>/<name>``); ``register_as`` adds a version of that
    registered model in the Model Registry."""
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example, verbose=0))
    info = mlflow.tensorflow.log_model(
        model,
        name=name,
        registered_model_name=register_as,
        signature=signature,
        input_example=example,
        code_paths=[str(code_dir)],
        pip_requirements=_pinned("tensorflow", "keras", "numpy"),
        metadata=metadata,
        run_id=run_id,
    )
    return info.model_uri


def _pinned(*packages: str) -> list[str]:
    """Exact versions of what the logged model needs, so MLflow need not infer them by
    loading the model in a subprocess (slow, and it drags in the whole environment)."""
    return [f"{p}=={package_version(p)}" for p in packages]


def dataset_input(files: list[str], labels: list[str], splits: list[str], root: str, name: str,
                  digest: str | None = None):
    """The training data set (file list, labels, split) as a run input; its digest identifies
    the data set in the UI."""
    import warnings

    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    frame = pd.DataFrame({"path": files, "label": labels, "split": splits})
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways"
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=root, name=name, targets="label",
                                          digest=digest)
    return DatasetInput(dataset._to_mlflow_entity(),
                        tags=[InputTag(MLFLOW_DATASET_CONTEXT, "training")])


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay one value, as MLflow params are flat."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
