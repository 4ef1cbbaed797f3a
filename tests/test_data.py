"""Splitting and the tf.data pipeline (data) on scanned folders; scan_folder alone: test_scan."""

import contextlib
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import rewrite_keeping_stamps
from helpers.configs import folder_cfg
from helpers.images import write_bad_images
from omegaconf import OmegaConf
from PIL import Image

from alexnet_exp import augment, data, decode, graphs, paths, scan, sources
from alexnet_exp.config import AugmentConfig, DataConfig
from alexnet_exp.errors import DataError

CONF = Path(__file__).resolve().parents[1] / "conf"
AUGMENTS = ("none", "flip", "paper", "seed")
INPUT = 32


def augment_cfg(name: str, **overrides) -> AugmentConfig:
    """The AugmentConfig that ``augment=<name>`` composes (conf/augment/<name>.yaml)."""
    node = OmegaConf.merge(
        OmegaConf.structured(AugmentConfig), OmegaConf.load(CONF / "augment" / f"{name}.yaml")
    )
    cfg = OmegaConf.to_object(node)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def build(root, tmp_path, aug="none", *, seed=7, batch_size=4, input_size=INPUT, **data_kw):
    aug_cfg = aug if isinstance(aug, AugmentConfig) else augment_cfg(aug)
    return data.make_datasets(
        folder_cfg(root, **data_kw),
        aug_cfg,
        Path(root),
        input_size,
        batch_size,
        seed,
        cache_dir=tmp_path / "tfdata-cache",
    )


def collect(ds):
    """All (images, labels) of one pass over a batched dataset, concatenated."""
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def first_batch(ds):
    return next(iter(ds.as_numpy_iterator()))


def pil_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def as_multiset(images: np.ndarray) -> Counter:
    return Counter(image.tobytes() for image in images)


# ----------------------------------------------------------------------------- scan_folder


def test_training_data_excludes_unreadable_images(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})
    bad = {str(p) for p in write_bad_images(root / "dog").values()}

    ds = build(root, tmp_path)

    used = set(ds.train_files) | set(ds.val_files)
    assert not used & bad
    assert len(used) == 12
    # Every element decodes: a bad file in the pipeline would raise here.
    train_x, _ = collect(ds.train)
    val_x, _ = collect(ds.val)
    assert len(train_x) + len(val_x) == 12


def test_max_images_per_class_caps_counts(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 7, "dog": 3, "emu": 5})

    files, labels, report = scan.scan_folder(root, folder_cfg(root, max_images_per_class=4))

    assert report.counts == {"cat": 4, "dog": 3, "emu": 4}
    assert Counter(labels.tolist()) == {0: 4, 1: 3, 2: 4}
    assert len(files) == len(set(files)) == 11

    ds = build(root, tmp_path, max_images_per_class=4)
    assert len(ds.train_files) + len(ds.val_files) == 11


# --------------------------------------------------------------------------- make_datasets


@pytest.mark.parametrize("aug", AUGMENTS)
def test_make_datasets_batches_labels_and_split(tmp_path, image_folder, aug):
    root = image_folder(tmp_path / "data", classes={"a": 6, "b": 6, "c": 6})

    ds = build(root, tmp_path, aug, batch_size=4)

    assert ds.class_names == ["a", "b", "c"]
    for split in (ds.train, ds.val):
        x, y = first_batch(split)
        assert x.shape == (4, INPUT, INPUT, 3)
        assert x.dtype == np.float32
        assert y.shape == (4, 3)
    train_x, train_y = collect(ds.train)
    val_x, val_y = collect(ds.val)
    for x, y in ((train_x, train_y), (val_x, val_y)):
        assert x.min() >= 0.0 and x.max() <= 255.0
        assert x.max() > 1.0  # raw pixel values, not rescaled to [0, 1]
        np.testing.assert_array_equal(y.sum(axis=1), 1.0)
        assert set(np.unique(y)) <= {0.0, 1.0}

    np.testing.assert_array_equal(val_y.argmax(axis=1), ds.val_labels)
    np.testing.assert_array_equal(np.sort(train_y.argmax(axis=1)), np.sort(ds.train_labels))
    assert not set(ds.train_files) & set(ds.val_files)
    assert len(ds.train_files) + len(ds.val_files) == 18
    assert len(train_x) == len(ds.train_files) == ds.report.train_size
    assert len(val_x) == len(ds.val_files) == ds.report.val_size
    per_class = Counter(ds.val_labels.tolist())
    assert sorted(per_class) == [0, 1, 2]
    assert max(per_class.values()) - min(per_class.values()) <= 1  # stratified
    for path, label in zip(ds.val_files, ds.val_labels, strict=True):
        assert Path(path).parent.name == ds.class_names[label]


def test_pipeline_decodes_pixels_exactly(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", size=(INPUT, INPUT), fmt="PNG")

    ds = build(root, tmp_path, "none")

    val_x, _ = collect(ds.val)
    expected = np.stack([pil_pixels(p) for p in ds.val_files]).astype(np.float32)
    np.testing.assert_array_equal(val_x, expected)


@pytest.mark.parametrize("aug", AUGMENTS)
def test_same_seed_gives_identical_first_train_batch(tmp_path, image_folder, aug):
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})

    a = build(root, tmp_path, aug, seed=11)
    b = build(root, tmp_path, aug, seed=11)
    c = build(root, tmp_path, aug, seed=12)

    xa, ya = first_batch(a.train)
    xb, yb = first_batch(b.train)
    xc, _ = first_batch(c.train)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(xa, xc)


@pytest.mark.parametrize("aug", AUGMENTS)
def test_consecutive_epochs_draw_fresh_augmentations(tmp_path, image_folder, aug):
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})
    ds = build(root, tmp_path, aug, batch_size=16)

    epoch1, labels1 = collect(ds.train)
    epoch2, labels2 = collect(ds.train)

    # The same images in each epoch; with augmentation on, not the same pixels.
    assert Counter(labels1.argmax(1).tolist()) == Counter(labels2.argmax(1).tolist())
    if aug == "none":
        assert as_multiset(epoch1) == as_multiset(epoch2)  # only the order changes
        assert not np.array_equal(epoch1, epoch2)  # reshuffled
    else:
        assert as_multiset(epoch1) != as_multiset(epoch2)
        assert not np.array_equal(epoch1, epoch2)


def test_paper_augment_crops_from_the_larger_stored_size(tmp_path, image_folder):
    paper = augment_cfg("paper")
    stored = augment.stored_size(paper, INPUT)
    assert stored == 36  # round(32 * 1.1278)
    offset = (stored - INPUT) // 2
    # PNGs already at the stored size: the resize is the identity, so Pillow is the oracle.
    root = image_folder(tmp_path / "data", size=(stored, stored), fmt="PNG")

    crop_only = augment_cfg("paper", pca_std=0.0)
    ds = build(root, tmp_path, crop_only, batch_size=16)
    assert ds.lighting is None

    val_x, _ = collect(ds.val)
    expected_val = np.stack(
        [pil_pixels(p)[offset : offset + INPUT, offset : offset + INPUT] for p in ds.val_files]
    )
    np.testing.assert_array_equal(val_x, expected_val.astype(np.float32))

    windows = set()
    for path in ds.train_files:
        pixels = pil_pixels(path)
        for y in range(stored - INPUT + 1):
            for x in range(stored - INPUT + 1):
                window = pixels[y : y + INPUT, x : x + INPUT]
                windows.add(window.astype(np.float32).tobytes())
                windows.add(window[:, ::-1].astype(np.float32).tobytes())
    train_x, _ = collect(ds.train)
    assert all(image.tobytes() in windows for image in train_x)
    # Random crops: not every train image is the centre crop.
    centres = {
        pil_pixels(p)[offset : offset + INPUT, offset : offset + INPUT].astype(np.float32).tobytes()
        for p in ds.train_files
    }
    assert any(image.tobytes() not in centres for image in train_x)


def test_paper_augment_fits_the_lighting_basis_on_train_images(tmp_path, image_folder):
    paper = augment_cfg("paper")
    stored = augment.stored_size(paper, INPUT)
    root = image_folder(tmp_path / "data", size=(stored, stored), fmt="PNG")

    ds = build(root, tmp_path, paper)

    assert ds.lighting is not None
    assert ds.lighting.eigenvalues.shape == (3,)
    assert ds.lighting.eigenvectors.shape == (3, 3)
    assert np.all(ds.lighting.eigenvalues >= 0)
    np.testing.assert_allclose(
        ds.lighting.eigenvectors.T @ ds.lighting.eigenvectors, np.eye(3), atol=1e-5
    )
    expected = augment.lighting_basis(np.stack([pil_pixels(p)[::4, ::4] for p in ds.train_files]))
    np.testing.assert_allclose(ds.lighting.eigenvalues, expected.eigenvalues, rtol=1e-4)
    x, _ = first_batch(ds.train)
    assert x.shape == (4, INPUT, INPUT, 3)
    assert x.min() >= 0.0 and x.max() <= 255.0


def test_disk_cache_writes_files_and_matches_memory(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})
    cache_path = tmp_path / "tfcache"

    disk = build(root, tmp_path, "flip", cache="disk", cache_path=str(cache_path))
    memory = build(root, tmp_path, "flip", cache="memory")
    disk_val = collect(disk.val)
    collect(disk.train)

    names = sorted(p.name for p in cache_path.iterdir())
    assert any(n.startswith("val-") for n in names), names
    assert any(n.startswith("train-") for n in names), names
    assert not any("lockfile" in n for n in names), names
    assert not (tmp_path / "tfdata-cache").exists()  # cache_path wins over cache_dir

    memory_val = collect(memory.val)
    np.testing.assert_array_equal(disk_val[0], memory_val[0])
    np.testing.assert_array_equal(disk_val[1], memory_val[1])
    # A second build reads the cache files back and still agrees.
    again = build(root, tmp_path, "flip", cache="disk", cache_path=str(cache_path))
    np.testing.assert_array_equal(collect(again.val)[0], memory_val[0])
    np.testing.assert_array_equal(first_batch(again.train)[0], first_batch(memory.train)[0])


@pytest.mark.parametrize("aug", ["flip", "paper", "seed"])
def test_without_a_cache_the_training_stream_is_the_cached_one(tmp_path, image_folder,
                                                               monkeypatch, aug):
    """data.cache=none shuffles file names and decodes and augments in one map: the images, in
    the same order, with the same augmentation draws, every epoch, as from the cache. (PNGs are
    decoded whole, then cut: pixel for pixel the cached stream; JPEGs below.)"""
    monkeypatch.setattr(data, "SHUFFLE_BUFFER", 5)  # smaller than the set, as at scale
    root = image_folder(tmp_path / "data", classes={"cat": 8, "dog": 8}, fmt="PNG")
    uncached = build(root, tmp_path, aug, cache="none")
    cached = build(root, tmp_path, aug, cache="memory")
    for _ in range(2):  # the second epoch reshuffles and draws afresh: still the same
        (images, labels), (want_images, want_labels) = collect(uncached.train), collect(
            cached.train)
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)


def smooth_photos(root: Path, count: int, size=(100, 80), turned: int = 1) -> Path:
    """JPEGs of slow 2-D waves: a crop box off by a few pixels changes them a lot, the half
    pixel where a resampling falls barely at all. ``turned``: their EXIF orientation."""
    for name, phase in (("cat", 0.0), ("dog", 2.0)):
        (root / name).mkdir(parents=True)
        y, x = np.mgrid[0:size[1], 0:size[0]]
        for i in range(count):
            wave = 127 + 60 * np.sin(2 * np.pi * (x / 37 + i / 7) + phase) * np.cos(
                2 * np.pi * y / 29)
            pixels = np.stack([wave, 255 - wave, np.full_like(wave, 40 * i)], -1)
            exif = Image.Exif()
            exif[0x0112] = turned
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
                root / name / f"{i}.jpg", quality=95, exif=exif)
    return root


@pytest.mark.parametrize("min_area", [1.0, 0.35])  # the paper's crop, a random-resized one
def test_without_a_cache_only_the_crop_of_a_jpeg_is_decoded_and_it_is_the_cached_crop(
        tmp_path, min_area):
    """A JPEG's training crop is decoded alone (decode_and_crop_jpeg) and resized once: the
    same box as the cached stream cuts, within the half source pixel where the resampling
    falls, and far from a box a few pixels off (which the waves would show)."""
    root = smooth_photos(tmp_path / "data", 6)
    cfg = augment_cfg("paper", pca_std=0.0, min_area=min_area)
    uncached = build(root, tmp_path, cfg, cache="none", input_size=64)
    cached = build(root, tmp_path, cfg, cache="memory", input_size=64)
    (images, labels), (want, want_labels) = collect(uncached.train), collect(cached.train)
    np.testing.assert_array_equal(labels, want_labels)
    off = np.abs(images - want).mean(axis=(1, 2, 3))
    assert 0 < off.max() < 3.0, off  # of 0..255; 0 would be a whole decode, then a cut
    shifted = np.abs(images[:, 4:, 4:] - want[:, :-4, :-4]).mean(axis=(1, 2, 3))
    assert shifted.min() > 3 * off.max(), (shifted, off)


def test_without_a_cache_the_crops_decode_is_chosen_once_for_a_set_of_one_kind(tmp_path,
                                                                                 monkeypatch):
    """The pipeline hands the crop the scan's count of upright JPEGs and their sizes: small
    upright JPEGs are all cropped in the decode, with no branch per image; add one PNG and
    each image is sent its own way again."""
    ways = []
    real = data.cropping_decoder

    def spy(aug_cfg, input_size, from_bytes, sides):
        ways.append(decode.crop_decode_for(sides, augment.stored_size(aug_cfg, input_size)))
        return real(aug_cfg, input_size, from_bytes, sides)

    monkeypatch.setattr(data, "cropping_decoder", spy)
    root = smooth_photos(tmp_path / "data", 6)
    build(root, tmp_path, "paper", cache="none", input_size=64)
    Image.open(root / "cat" / "0.jpg").save(root / "cat" / "0.png")
    build(root, tmp_path, "paper", cache="none", input_size=64)
    assert ways == ["fused", "either"]


def test_without_a_cache_a_set_of_jpegs_and_pngs_is_each_decoded_its_own_way(tmp_path):
    """One branch per image picks: each PNG decoded whole and cut (the cached stream's pixels
    exactly), each JPEG's crop decoded alone (within the half pixel of its resampling)."""
    root = smooth_photos(tmp_path / "data", 6)
    for name in ("cat", "dog"):
        for i in (0, 1):
            Image.open(root / name / f"{i}.jpg").save(root / name / f"{i}.png")
    uncached = build(root, tmp_path, "paper", cache="none", input_size=64)
    cached = build(root, tmp_path, "paper", cache="memory", input_size=64)
    assert uncached.report.jpeg_sides == scan.JpegSides(jpegs=12, others=4, smallest=80,
                                                        largest=80)
    (images, labels), (want, want_labels) = collect(uncached.train), collect(cached.train)
    np.testing.assert_array_equal(labels, want_labels)
    off = np.abs(images - want).mean(axis=(1, 2, 3))
    pngs = sum(Path(f).suffix == ".png" for f in uncached.train_files)
    assert pngs > 0 and (off == 0).sum() == pngs and off.max() < 3.0, off


def test_without_a_cache_a_turned_jpeg_is_decoded_whole_and_cut_as_the_cache_cuts_it(tmp_path):
    root = smooth_photos(tmp_path / "data", 4, turned=6)
    uncached = build(root, tmp_path, "paper", cache="none", input_size=64)
    cached = build(root, tmp_path, "paper", cache="memory", input_size=64)
    np.testing.assert_array_equal(collect(uncached.train)[0], collect(cached.train)[0])


def test_a_disk_cache_left_locked_by_a_killed_run_is_used_by_the_next(tmp_path, image_folder):
    """kill -9 while tf.data fills the cache leaves its lock file: tf.data then refused every
    later run with AlreadyExistsError ("a concurrent caching iterator running")."""
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})
    cache_path = tmp_path / "tfcache"
    collect(build(root, tmp_path, "none", cache="disk", cache_path=str(cache_path)).train)
    (index,) = cache_path.glob("train-*.index")
    prefix = index.name[: -len(".index")]
    for made in cache_path.glob(f"{prefix}*"):
        made.unlink()
    (cache_path / f"{prefix}_0.lockfile").write_text("left by a killed run")
    again = build(root, tmp_path, "none", cache="disk", cache_path=str(cache_path))
    assert len(collect(again.train)[0]) == 9  # 12 images, 3 in val
    assert (cache_path / f"{prefix}.index").exists()


def test_disk_cache_notices_an_image_changed_in_place(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 4, "dog": 4}, size=(32, 32), fmt="PNG")
    cache_path = tmp_path / "tfcache"
    before = build(root, tmp_path, "none", cache="disk", cache_path=str(cache_path))
    collect(before.val)
    target = Path(before.val_files[0])
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(target, format="PNG")
    os.utime(target, ns=(1, 1))  # and a different mtime, in case the key used it

    after = build(root, tmp_path, "none", cache="disk", cache_path=str(cache_path))
    val_x, _ = collect(after.val)
    assert after.val_files[0] == str(target)
    np.testing.assert_array_equal(val_x[0], 255.0)


def test_image_that_tensorflow_cannot_decode_is_skipped(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 4, "dog": 4})
    mono = root / "cat" / "mono.bmp"
    Image.fromarray(make_noise(32)).convert("1").save(mono, format="BMP")

    ds = build(root, tmp_path, "none")
    # An epoch must not die on it: either the check skips it, or it decodes.
    train_x, _ = collect(ds.train)
    val_x, _ = collect(ds.val)
    used = str(mono) in ds.train_files + ds.val_files
    assert used != (str(mono) in dict(ds.report.skipped))
    assert len(train_x) + len(val_x) == 8 + used


def test_palette_bmp_decodes_to_its_colours(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 4, "dog": 4}, size=(32, 32), fmt="PNG")
    pal = root / "cat" / "palette.bmp"
    Image.fromarray(make_noise(32)).convert("P").save(pal, format="BMP")

    ds = build(root, tmp_path, "none")
    if str(pal) in dict(ds.report.skipped):
        return  # refusing the file would be a fine fix too
    # augment=none at the stored size: every train/val image is a plain decode of one file.
    images = np.concatenate([collect(ds.train)[0], collect(ds.val)[0]])
    expected = pil_pixels(pal).astype(np.float32)
    assert any(np.abs(image - expected).max() <= 2 for image in images)


def make_noise(size: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (size, size, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------- digits


def _png_count(root: Path) -> int:
    return sum(1 for _ in root.glob("*/*.png"))


def test_materialise_digits_writes_class_folders_once(tmp_path, monkeypatch):
    from sklearn.datasets import load_digits

    target = sources.materialise_digits(tmp_path / "digits")

    assert target == tmp_path / "digits"
    assert sorted(p.name for p in target.iterdir() if p.is_dir()) == [str(d) for d in range(10)]
    assert _png_count(target) == 1797
    digits = load_digits()
    per_class = {int(d.name): len(list(d.glob("*.png"))) for d in target.iterdir() if d.is_dir()}
    assert per_class == dict(Counter(digits.target.tolist()))
    first = pil_pixels(target / str(digits.target[0]) / "0000.png")[..., 0]
    expected = np.kron(np.round(digits.images[0] * 255.0 / 16.0), np.ones((4, 4)))
    np.testing.assert_array_equal(first, expected.astype(np.uint8))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".digits-")]

    stamps = {p: p.stat().st_mtime_ns for p in target.rglob("*.png")}

    def no_reload(*args, **kwargs):
        raise AssertionError("materialise_digits rebuilt an already complete folder")

    monkeypatch.setattr("sklearn.datasets.load_digits", no_reload)
    assert sources.materialise_digits(tmp_path / "digits") == target
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*.png")} == stamps


class _TinyDigits:
    """A 20-image stand-in for load_digits, so wiring tests need not write 1,797 PNGs."""

    def __init__(self):
        rng = np.random.default_rng(0)
        self.images = rng.integers(0, 17, (20, 8, 8)).astype(np.float64)
        self.target = np.arange(20) % 10


def test_digits_default_location_is_under_the_cache_dir(monkeypatch, alexnet_cache):
    monkeypatch.setattr("sklearn.datasets.load_digits", _TinyDigits)

    root = sources.resolve_data_dir(DataConfig(name="digits"))

    assert root == alexnet_cache / "digits"
    assert _png_count(root) == 20
    assert paths.cache_root() == alexnet_cache


def test_digits_never_deletes_a_users_existing_folder(tmp_path, monkeypatch):
    monkeypatch.setattr("sklearn.datasets.load_digits", _TinyDigits)
    mine = tmp_path / "my_data"
    mine.mkdir()
    (mine / "thesis.tex").write_text("three years of work\n")

    with contextlib.suppress(DataError):
        sources.resolve_data_dir(DataConfig(name="digits", dir=str(mine)))

    assert (mine / "thesis.tex").exists()


def test_random_resized_crop_zooms_into_seeded_crops_of_a_quarter_to_all_of_the_area():
    # Pixel value = 4 x column: a crop's horizontal span of values is its width fraction.
    columns = np.arange(64, dtype=np.uint8) * 4
    image = tf.constant(np.broadcast_to(columns[None, :, None], (64, 64, 3)).copy())
    transform = augment.train_transform(augment_cfg("none", min_area=0.25), 32, None)
    outputs = [transform(image, tf.constant([seed, 0])).numpy() for seed in range(20)]
    traced = graphs.traced(transform).get_concrete_function(
        tf.TensorSpec([None, None, 3], tf.uint8), tf.TensorSpec([2], tf.int32))
    assert traced.output_shapes == tf.TensorShape([32, 32, 3])  # static, as the model needs
    assert all(o.shape == (32, 32, 3) and o.dtype == np.float32 for o in outputs)
    widths = [(o[0, :, 0].max() - o[0, :, 0].min()) / 252 for o in outputs]
    # area 0.25..1 at aspect 3/4..4/3: width sqrt(0.25 * 3/4) = 0.43 .. 1 of the image
    assert all(0.4 <= w <= 1.0 for w in widths) and min(widths) < 0.8
    np.testing.assert_array_equal(outputs[3], transform(image, tf.constant([3, 0])).numpy())


# ---------------------------------------------------- a file that stops decoding during a run


def test_a_file_that_stops_decoding_mid_run_is_dropped_and_named(tmp_path, image_folder):
    """Train and val both drop it (no traceback, no "ran out of data"), the validation
    predictions stay aligned with their files, and changed_since_scan names it."""
    import warnings

    import keras

    from alexnet_exp import training
    from alexnet_exp.config import OptimizerConfig, TrainerConfig

    root = image_folder(tmp_path / "data", classes={"cat": 8, "dog": 8}, size=(INPUT, INPUT))
    ds = build(root, tmp_path, batch_size=4, cache="none")
    broken = [Path(ds.train_files[0]), Path(ds.val_files[1])]
    for path in broken:  # after the check pass, before the first epoch reads them
        rewrite_keeping_stamps(path, b"garbage " * 1000)

    keras.utils.set_random_seed(0)
    inputs = keras.Input((INPUT, INPUT, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, outputs)
    trainer = TrainerConfig(epochs=2, verbose=0, tensorboard=False, checkpoint=False)
    training.compile_model(model, OptimizerConfig(name="adam", weight_decay=0.0), trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = training.fit(model, ds.train, ds.val, len(ds.train_files), trainer, tmp_path,
                           steps=(ds.train_steps, ds.val_steps))
        predicted, kept = training.predict_labels(model, ds.val_indexed)
    assert len(result.history) == 2
    assert not [w for w in caught if "ran out of data" in str(w.message)]
    assert kept.tolist() == [i for i in range(len(ds.val_files)) if i != 1]
    assert len(predicted) == len(ds.val_files) - 1

    dropped = scan.changed_since_scan(ds.train_files + ds.val_files, root, folder_cfg(root))
    assert [path for path, _ in dropped] == [str(p) for p in broken]
    assert all("not an image" in reason for _, reason in dropped)
    ds.report.dropped = dropped
    assert str(broken[1]) in ds.report.to_text()


def stages(ds) -> list[str]:
    """The dataset's chain of tf.data stages, from the source to ``ds``."""
    chain = []
    while ds is not None:
        chain.append(type(ds).__name__.strip("_"))
        inputs = ds._inputs()
        ds = inputs[0] if inputs else None
    return chain[::-1]


def test_uncached_training_ignores_errors_after_the_batch_so_map_and_batch_fuse(
        tmp_path, image_folder):
    """Between a map and its batch, ignore_errors keeps tf.data from fusing the two (6% of the
    uncached pipeline's CPU); after the batch it drops a broken file's batch instead."""
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})
    chain = stages(build(root, tmp_path, "flip", cache="none").train)
    at = chain.index("IgnoreErrorsDataset")
    assert chain[at - 2:at] == ["ParallelMapDataset", "BatchDataset"], chain


def test_training_steps_are_known_to_keras(tmp_path, image_folder):
    """One pass is train_steps batches: what fit's progress bar shows instead of "Unknown"."""
    root = image_folder(tmp_path / "data", classes={"cat": 9, "dog": 9}, size=(INPUT, INPUT))
    ds = build(root, tmp_path, batch_size=4)
    assert ds.train_steps == sum(1 for _ in ds.train) == -(-len(ds.train_files) // 4)
    assert ds.val_steps == sum(1 for _ in ds.val) == -(-len(ds.val_files) // 4)


# ------------------------------------------------------------------------ class folder names


def test_evaluation_matches_class_names_across_unicode_normal_forms():
    from alexnet_exp.evaluation import match_classes

    mapping, missing = match_classes(["Cafe\u0301", "Tee"], ["Café", "Tee", "Wasser"])
    assert mapping == {"Café": 0, "Tee": 1} and missing == ["Wasser"]
    mapping, _ = match_classes(["Café"], ["Cafe\u0301"])  # a model recorded with NFD names
    assert mapping == {"Café": 0}


def test_a_class_left_with_one_readable_image_is_named_by_its_folder(tmp_path, image_folder):
    """Two files pass the listing's check (before TensorFlow); the check pass leaves one."""
    root = image_folder(tmp_path / "data", classes={"apple": 6, "kiwi": 2, "plum": 6})
    sorted((root / "kiwi").iterdir())[0].write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"class folder\(s\) kiwi \(1 image\)") as error:
        build(root, tmp_path)
    assert "[1]" not in str(error.value)


def test_batch_limits_take_the_same_first_images_of_each_split_every_epoch(tmp_path,
                                                                           image_folder):
    root = image_folder(tmp_path / "data", classes={"a": 8, "b": 8, "c": 8})
    full = build(root, tmp_path, batch_size=2)
    limited = data.make_datasets(folder_cfg(root), augment_cfg("none"), Path(root), INPUT, 2, 7,
                                 cache_dir=tmp_path / "limited-cache", limits=(3, 0.5))
    assert (limited.train_steps, limited.val_steps) == (3, 1)  # what Keras is told per epoch
    assert limited.train_files == full.train_files[:6]  # 3 batches of 2: the first of the split
    assert limited.val_files == full.val_files[:2]  # half of 3 val batches, rounded down
    assert limited.report.train_size == len(full.train_files)  # the report tells the split
    np.testing.assert_array_equal(limited.val_labels, full.val_labels[:2])
    first, second = (sorted(collect(limited.train)[1].argmax(axis=1).tolist()) for _ in "12")
    assert first == second == sorted(limited.train_labels.tolist())  # the same images again
    assert len(collect(limited.val)[0]) == 2


@pytest.mark.parametrize("mix", ["mixup", "cutmix", "both"])
def test_mixup_mixes_training_batches_only_and_keeps_their_shapes(tmp_path, image_folder, mix):
    # through the real pipeline (graphs.mapped, traced without AutoGraph) for each mix
    from alexnet_exp.config import MixConfig

    root = image_folder(tmp_path / "data", classes={"a": 6, "b": 6, "c": 6})
    mixes = {name: MixConfig(alpha=0.4) for name in ("mixup", "cutmix") if mix in (name, "both")}
    ds = build(root, tmp_path, augment_cfg("none", **mixes), batch_size=8)
    images, labels = collect(ds.train)
    assert images.shape == (len(ds.train_files), INPUT, INPUT, 3)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)
    assert (labels.max(axis=1) < 1.0).any()  # soft labels: images were blended
    _, val_labels = collect(ds.val)
    assert set(np.unique(val_labels)) == {0.0, 1.0}  # validation is never mixed
