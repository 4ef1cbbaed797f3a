"""``alexnet-exp-sync``: send what runs buffered while their tracking server was away.

The outbox (:mod:`alexnet_exp.tracking.outbox`) holds records and files; a buffered model is a
``.keras`` file that only code knowing our layers can load. This module stands above both
tracking and the model and hands the one to the other, so tracking stays a sink.
"""

from pathlib import Path

from alexnet_exp.paths import outbox_dir as default_dir  # noqa: F401  (the command's default)
from alexnet_exp.tracking import replay


def _load_model(path: Path):
    from alexnet_exp import model  # TensorFlow only when a buffered model is to be logged

    return model.load(path)


def sync(folder: Path, uri: str | None = None) -> int:
    """Replay every outbox in ``folder``: 0 when all are sent, 2 while a server is away."""
    return replay.sync(folder, uri, load_model=_load_model)
