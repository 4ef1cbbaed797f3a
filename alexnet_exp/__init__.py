"""alexnet-exp: config-driven AlexNet experiments on your own class-folder image data.

Notebook use needs no Hydra: ``build_alexnet(ModelConfig(), 5)`` and
``make_datasets(...)`` take the plain dataclasses of :mod:`alexnet_exp.config`.
"""

__version__ = "0.1.0"
