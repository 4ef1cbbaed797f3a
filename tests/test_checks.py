"""EXIF orientation (issue 13, section 5): every decode shows the pixels a photo viewer shows.

The reference is Pillow's ``ImageOps.exif_transpose``; the files are real JPEGs carrying an
EXIF orientation tag, as a phone writes them.
"""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import augment_config
from PIL import Image, ImageOps

from alexnet_exp import checks, data, decode, scan

# 4 x 2 blocks of 8x8 flat colours: JPEG keeps them nearly exact, and every one of the eight
# orientations puts a different colour in each corner.
BLOCKS = np.array([[[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20]],
                   [[20, 230, 230], [230, 20, 230], [120, 120, 120], [250, 250, 250]]], np.uint8)


def stored_pixels() -> np.ndarray:
    """(16, 32, 3): wider than tall, so a turn by 90 degrees changes the shape too."""
    return np.repeat(np.repeat(BLOCKS, 8, axis=0), 8, axis=1)


def write_oriented_jpeg(path: Path, orientation: int, pixels: np.ndarray | None = None) -> Path:
    image = Image.fromarray(stored_pixels() if pixels is None else pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation  # what a phone writes instead of turning the pixels
    image.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


def viewer_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_decode_turns_each_exif_orientation_upright_as_pillow_does(tmp_path, orientation):
    path = write_oriented_jpeg(tmp_path / f"o{orientation}.jpg", orientation)
    expected = viewer_pixels(path)

    assert checks.read_orientation(str(path)) == orientation
    pixels = checks.upright(checks.decode_pixels(tf.io.read_file(str(path)), 16),
                            checks.read_orientation(str(path))).numpy()
    assert pixels.shape == expected.shape  # 5..8 turn a 32x16 photo into a 16x32 one
    assert np.abs(pixels.astype(int) - expected).mean() < 4

    # The pipeline's decoder (training, evaluation, prediction, export) sees the same pixels.
    size = 32
    image, label = decode.decoder(size)(tf.constant(str(path)), tf.constant(orientation),
                                      tf.constant(0))
    resized = tf.image.resize(expected.astype(np.float32), [size, size]).numpy()
    assert np.abs(image.numpy().astype(float) - resized).mean() < 4
    if orientation != 1:  # the check is sharp: the stored, unturned pixels are far off
        sideways = tf.image.resize(stored_pixels().astype(np.float32), [size, size]).numpy()
        assert np.abs(image.numpy().astype(float) - sideways).mean() > 40


def test_orientation_of_a_file_without_exif_or_unreadable_is_1(tmp_path):
    plain = tmp_path / "plain.png"
    Image.fromarray(stored_pixels()).save(plain)
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert checks.read_orientation(str(plain)) == 1
    assert checks.read_orientation(str(tmp_path / "junk.jpg")) == 1
    assert checks.read_orientation(str(tmp_path / "missing.jpg")) == 1


# ------------------------------------------------------------ the pipelines that decode files

ORIENTATIONS = (1, 6, 8, 3, 2, 5, 7, 4)


def oriented_folder(root: Path) -> dict[str, np.ndarray]:
    """Two classes of 8 JPEGs, each a colour permutation of the blocks, each orientation used
    twice; returns what a viewer shows of each file."""
    perms = [(0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1)]
    shown = {}
    for c, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i, orientation in enumerate(ORIENTATIONS):
            pixels = np.roll(stored_pixels()[:, :, perms[(i + c) % 4]], 8 * c + i, axis=1)
            path = write_oriented_jpeg(root / name / f"{name}_{i}.jpg", orientation, pixels)
            shown[str(path)] = viewer_pixels(path)
    return shown


def square(pixels: np.ndarray, size: int) -> np.ndarray:
    return tf.image.resize(pixels.astype(np.float32), [size, size]).numpy()


@pytest.mark.parametrize("cache", ["memory", "none"])  # none: one decode-and-augment map
def test_training_and_validation_pipelines_yield_the_upright_pixels(tmp_path, cache):
    from alexnet_exp.config import DataConfig

    root = tmp_path / "data"
    shown = oriented_folder(root)
    cfg = DataConfig(name="folder", dir=str(root), val_split=0.25, cache=cache)
    ds = data.make_datasets(cfg, augment_config("none"), root, 32, 4, 0, cache_dir=tmp_path / "c")

    val = np.concatenate([x for x, _ in ds.val.as_numpy_iterator()])
    for got, path in zip(val, ds.val_files, strict=True):
        assert np.abs(got - square(shown[path], 32)).mean() < 4, path
    train = np.concatenate([x for x, _ in ds.train.as_numpy_iterator()])  # shuffled
    expected = np.stack([square(shown[p], 32) for p in ds.train_files])
    for got in train:
        assert np.abs(expected - got).mean(axis=(1, 2, 3)).min() < 4
    assert len(ds.report.oriented) == 14  # all but the two orientation-1 files
    assert "turned upright 14 images by their EXIF orientation" in ds.report.to_text()

    # The check cache records the orientation: a second scan (served from it) agrees.
    again = scan.scan_folder(root, cfg)[2]
    assert again.oriented == ds.report.oriented


def test_a_check_cache_from_before_orientation_is_not_trusted(tmp_path, alexnet_cache):
    """An old entry (same file, same stamps, written before orientations were recorded) must
    not pass for "upright": the entry format has a version and an old one is checked again."""
    import hashlib
    import json

    from alexnet_exp.config import DataConfig

    root = tmp_path / "data"
    shown = oriented_folder(root)
    old = alexnet_cache / "checks" / (hashlib.sha1(str(root).encode()).hexdigest() + ".json")
    old.parent.mkdir(parents=True)
    old.write_text(json.dumps({p: [Path(p).stat().st_size, Path(p).stat().st_mtime_ns, None,
                                   hashlib.md5(p.encode()).hexdigest()] for p in shown}))
    report = scan.scan_folder(root, DataConfig(name="folder", dir=str(root)))[2]
    assert len(report.oriented) == 14


class TopLeftColour:
    """A stand-in model whose three "class probabilities" are the top-left pixel's RGB."""

    def predict_on_batch(self, x):
        return np.asarray(x)[:, 0, 0, :] / 255.0


@pytest.mark.parametrize("from_scan", [False, True])
def test_evaluation_and_prediction_see_loose_files_upright(tmp_path, from_scan):
    from alexnet_exp.bundle import ModelBundle
    from alexnet_exp.prediction import predict_files

    shown = oriented_folder(tmp_path / "photos")
    files = sorted(shown)
    bundle = ModelBundle(TopLeftColour(), ["r", "g", "b"], input_size=32, eval_resize=32,
                         source="test")
    oriented = None
    if from_scan:  # evaluation passes the scan's orientations
        oriented = {f: checks.read_orientation(f) for f in files}
    probs = predict_files(bundle, files, "none", batch_size=5, oriented=oriented)
    for path, p in zip(files, probs, strict=True):
        corner = square(shown[path], 32)[0, 0] / 255.0
        assert np.abs(p - corner).max() < 0.05, path


def test_the_header_gives_a_jpegs_shorter_side_and_nothing_for_other_formats(tmp_path):
    """What the uncached training crop's decode is chosen by (scan.JpegSides)."""
    pixels = np.zeros((30, 50, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "wide.jpg")
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    assert checks.read_header(str(tmp_path / "wide.jpg")) == (1, 30)
    assert checks.read_header(str(tmp_path / "wide.png")) == (1, 0)
    assert checks.read_header(str(tmp_path / "junk.jpg")) == (1, 0)
    turned = write_oriented_jpeg(tmp_path / "turned.jpg", 6)
    assert checks.read_header(str(turned)) == (6, min(Image.open(turned).size))
