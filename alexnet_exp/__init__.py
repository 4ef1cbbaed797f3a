"""alexnet-exp: config-driven AlexNet experiments on your own class-folder image data.

Notebook use needs no Hydra: ``build_alexnet(ModelConfig(), 5)`` and
``make_datasets(...)`` take the plain dataclasses of :mod:`alexnet_exp.config`.
"""

__version__ = "0.1.0"

# Before any module of ours imports TensorFlow: its environment, and the library's logger shown
# on the console as plain lines (alexnet_exp.console).
from alexnet_exp import console  # noqa: E402, F401
