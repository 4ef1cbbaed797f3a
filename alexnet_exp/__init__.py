"""alexnet-exp: config-driven AlexNet experiments on your own class-folder image data.

In a notebook, the command line as calls (:mod:`alexnet_exp.api`)::

    import alexnet_exp
    cfg = alexnet_exp.compose(["experiment=demo", "norm=bn"])
    summary = alexnet_exp.train(cfg)

The building blocks need no Hydra: ``build_alexnet(ModelConfig(), 5)`` and
``make_datasets(...)`` take the plain dataclasses of :mod:`alexnet_exp.config`.
"""

__version__ = "0.1.0"

# Before any module of ours imports TensorFlow: its environment, and the library's logger shown
# on the console as plain lines (alexnet_exp.console).
from alexnet_exp import console  # noqa: E402, F401

API = ("compose", "train", "evaluate", "predict")


def __getattr__(name: str):
    """``alexnet_exp.train`` and the rest, imported on first use: ``import alexnet_exp`` loads
    neither Hydra nor TensorFlow (the command line's ``--help`` and a notebook's first cell
    stay quick)."""
    if name in API:
        from alexnet_exp import api

        return getattr(api, name)
    raise AttributeError(f"module 'alexnet_exp' has no attribute {name!r}")
