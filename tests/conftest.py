"""Shared fixtures: an isolated per-test cache and a factory for real class-folder image trees."""

import socket
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server a test starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif"}


@pytest.fixture(autouse=True)
def alexnet_cache(tmp_path_factory, monkeypatch) -> Path:
    """Point every cache of the package (image checks, digits) and Keras' home at a tmp dir.

    The directory is separate from ``tmp_path`` so tests can list ``tmp_path`` freely.
    """
    cache = tmp_path_factory.mktemp("alexnet_exp_cache")
    monkeypatch.setenv("ALEXNET_EXP_CACHE_DIR", str(cache))
    # data=flowers without data.dir defaults under KERAS_HOME: never touch the real ~/.keras.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras_home")))
    return cache


@pytest.fixture(autouse=True)
def float32_keras_policy():
    """Undo a test's global Keras precision policy (runner: precision=auto may pick bf16).

    ``train.configure_runtime`` sets a process-wide policy; without this reset a CLI test that
    trains would make every later model test build bf16 layers. Costs nothing when no test has
    imported Keras.
    """
    yield
    keras = sys.modules.get("keras")
    if keras is not None:
        keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def stop_signals_restored():
    """Undo what a test that calls the CLI's main in-process did to SIGTERM and SIGUSR2
    (``stopping.install``), so a later test or pytest itself is not stopped by our handler."""
    import signal

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR2)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    stopping = sys.modules.get("alexnet_exp.stopping")
    if stopping is not None:
        stopping.reset()


def class_colour(name: str) -> np.ndarray:
    """A stable, class-dependent base RGB colour (so a model can learn the class)."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    return rng.integers(30, 226, size=3).astype(np.float64)


def make_image_pixels(name: str, index: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """uint8 (height, width, 3) pixels: class colour + a left-to-right ramp + seeded noise.

    The ramp makes every image asymmetric, so a horizontal flip always changes it.
    """
    width, height = size
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), index])
    ramp = np.linspace(-25.0, 25.0, width)[np.newaxis, :, np.newaxis]
    noise = rng.normal(0.0, 12.0, size=(height, width, 3))
    pixels = class_colour(name) + ramp + noise
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def make_image_folder(
    root,
    classes: dict[str, int] | None = None,
    size: tuple[int, int] = (40, 30),
    fmt: str = "JPEG",
    seed: int = 0,
) -> Path:
    """Write real images with Pillow into ``root/<class>/<class>_<i>.<ext>`` and return ``root``.

    ``classes`` maps class name to image count (default ``{"cat": 6, "dog": 6}``); ``size`` is
    Pillow's ``(width, height)``; ``fmt`` is "JPEG" (default, ``.jpg``), "PNG", "BMP" or "GIF".
    Content is deterministic for a given ``seed``.
    """
    from PIL import Image

    fmt = fmt.upper()
    if fmt not in _SUFFIXES:
        raise ValueError(f"fmt={fmt!r}: use one of {', '.join(_SUFFIXES)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    classes = {"cat": 6, "dog": 6} if classes is None else classes
    for name, count in classes.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = Image.fromarray(make_image_pixels(name, i, size, seed))
            path = folder / f"{name}_{i:03d}{_SUFFIXES[fmt]}"
            if fmt == "JPEG":
                image.save(path, format=fmt, quality=95)
            else:
                image.save(path, format=fmt)
    return root


@pytest.fixture
def image_folder():
    """The :func:`make_image_folder` factory:

    ``image_folder(tmp_path / "data", classes={"a": 4, "b": 4}, size=(48, 48), fmt="PNG")``
    """
    return make_image_folder


@pytest.fixture
def tiny_data(tmp_path):
    """Three classes of twelve 48x40 JPEGs: enough for a CLI run of a tiny model."""
    return make_image_folder(tmp_path / "data", classes={"apple": 12, "kiwi": 12, "plum": 12},
                             size=(48, 40))
