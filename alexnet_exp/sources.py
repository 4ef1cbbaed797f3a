"""Where the class folders come from: a user's folder, the flowers download, or digits.

Each source ends in a plain class-folder tree, so everything after :func:`resolve_data_dir`
(checking, splitting, the tf.data pipeline) is one code path whatever the source.
"""

import logging
import os
import tarfile
import tempfile
from pathlib import Path

from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError, first_line
from alexnet_exp.paths import cache_root

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def _has_class_folders(root: Path) -> bool:
    if not root.is_dir():
        return False
    return any(
        sub.is_dir() and any(f.suffix.lower() in IMAGE_SUFFIXES for f in sub.iterdir())
        for sub in root.iterdir()
        if not sub.name.startswith(".")
    )


def resolve_data_dir(cfg: DataConfig) -> Path:
    """Return the class-folder root for ``cfg``, materialising or downloading it if needed."""
    if cfg.name == "digits":
        return materialise_digits(Path(cfg.dir).expanduser() if cfg.dir else None)
    if cfg.name == "flowers":
        target = Path(cfg.dir).expanduser().resolve() if cfg.dir else _default_flowers_dir()
        if _has_class_folders(target):
            return target
        if cfg.dir and not target.exists():  # a typo must not start a 228 MB download
            raise DataError(
                f"data.dir={cfg.dir} does not exist: point it at your flower_photos folder, or"
                " create it empty to download there (without data.dir the download goes to"
                f" {_default_flowers_dir()})"
            )
        return download_flowers(cfg.url, cfg.sha256, target)
    root = Path(cfg.dir).expanduser().resolve()
    what = "the pack's folder" if cfg.name == "records" else "a folder of class folders"
    if not root.exists():
        raise DataError(f"data.dir={cfg.dir} does not exist: point it at {what}")
    if not root.is_dir():
        raise DataError(f"data.dir={cfg.dir} is a file, not a folder: point it at {what}")
    return root


def _default_flowers_dir() -> Path:
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "flower_photos"


def _refuse_to_overwrite(target: Path, what: str) -> None:
    """Never replace a folder the user filled: only a missing or empty one is ours to write."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DataError(
            f"data.dir={target} exists but holds no {what} (expected <data.dir>/<class name>/"
            "<images>); point data.dir at the class-folder root, or at a new folder to fill"
        )


def download_flowers(url: str, sha256: str | None, target: Path) -> Path:
    """Fetch and unpack flower_photos into ``target`` with a checksum check.

    The archive is unpacked next to ``target`` and moved in with one rename, so an interrupted
    download never leaves a half-filled folder that a later run would take as complete.
    """
    _refuse_to_overwrite(target, "flower class folders")  # before Keras loads: it takes seconds
    import keras

    target.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"alexnet-exp: {target} has no class folders; downloading {url}")
    try:
        archive = keras.utils.get_file(
            fname=f"{target.name}.tgz",
            origin=url,
            file_hash=sha256,
            hash_algorithm="sha256",
            cache_dir=str(target.parent),
            cache_subdir=".",
        )
    except Exception as exc:  # network, HTTP and checksum errors all end here
        reason = first_line(exc)
        raise DataError(
            f"could not download flower_photos from {url} ({reason}). Without internet, use a"
            " local copy: alexnet-exp data=folder data.dir=/path/to/flower_photos"
        ) from exc
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".extract-") as tmp:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            reason = " ".join(str(exc).split())  # tarfile puts each method it tried on a line
            raise DataError(f"{archive} is not a readable .tgz archive ({reason}); delete it"
                            ) from exc
        candidates = [Path(tmp)] + [p for p in Path(tmp).rglob("*") if p.is_dir()]
        root = next((p for p in candidates if _has_class_folders(p)), None)
        if root is None:
            raise DataError(f"{url} unpacked to no class folders: is it the flowers archive?")
        if target.exists():
            target.rmdir()  # empty, checked above
        root.rename(target)
    return target


def materialise_digits(target: Path | None) -> Path:
    """Write scikit-learn's 8x8 digits once as 32x32 PNGs in class folders ``0``..``9``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    target = target or cache_root() / "digits"
    if (target / ".complete").exists():
        return target
    _refuse_to_overwrite(target, "digits written by alexnet-exp")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".digits-") as tmp:
        digits = load_digits()
        for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
            folder = Path(tmp) / str(label)
            folder.mkdir(exist_ok=True)
            image = Image.fromarray((pixels * (255.0 / 16.0)).round().astype("uint8"))
            image.resize((32, 32), Image.Resampling.NEAREST).save(folder / f"{index:04d}.png")
        (Path(tmp) / ".complete").write_text("sklearn.datasets.load_digits\n")
        try:
            if target.exists():
                target.rmdir()  # empty, checked above
            Path(tmp).rename(target)
            Path(tmp).mkdir()  # TemporaryDirectory wants something to clean up
        except OSError:
            if not (target / ".complete").exists():
                raise
            # a parallel sweep job wrote the same digits first: use theirs
    return target
