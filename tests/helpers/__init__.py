"""Helpers shared by the test files, which import them from here and never from each other.

Pytest puts ``tests/`` on ``sys.path`` (rootdir conftest, no ``__init__.py`` there), so a test
says ``from helpers import cli, store``. Fixtures stay in ``conftest.py``.
"""

from helpers.cli import (
    RUN,
    TINY_MODEL,
    artifact,
    artifact_json,
    artifact_text,
    cli,
    empty_store,
    epochs_logged,
    logged_model,
    run_model_uri,
    runs_of,
    store,
)
from helpers.configs import augment_config, model_config
from helpers.files import limit_file_size, rewrite_keeping_stamps
from helpers.images import class_colour, make_image_folder, make_image_pixels
from helpers.net import free_port
from helpers.server import Server
from helpers.waiting import SignalsWhenFreed, catches, signal_when, wait_for

__all__ = [
    "RUN",
    "Server",
    "SignalsWhenFreed",
    "TINY_MODEL",
    "artifact",
    "catches",
    "augment_config",
    "artifact_json",
    "artifact_text",
    "class_colour",
    "cli",
    "empty_store",
    "epochs_logged",
    "free_port",
    "limit_file_size",
    "logged_model",
    "make_image_folder",
    "make_image_pixels",
    "model_config",
    "rewrite_keeping_stamps",
    "run_model_uri",
    "runs_of",
    "signal_when",
    "store",
    "wait_for",
]
