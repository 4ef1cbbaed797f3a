"""Real class-folder image trees, written with Pillow, deterministic for a seed."""

import zlib
from pathlib import Path

import numpy as np

_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "GIF": ".gif"}


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


def write_bad_images(folder: Path) -> dict[str, Path]:
    """A zero-byte .jpg, a truncated JPEG and a text file named .jpg in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    zero = folder / "zero.jpg"
    zero.write_bytes(b"")
    good = next(p for p in sorted(folder.parent.rglob("*.jpg")) if p.stat().st_size > 0)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = folder / "not_really.jpg"
    text.write_text("this is not an image\n")
    return {"zero": zero, "truncated": truncated, "text": text}
