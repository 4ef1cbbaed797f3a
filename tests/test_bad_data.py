"""Bad data, one test each (issue 6): every case is a real file on disk, scanned by the real
scan_folder and, where an epoch could die on it, pushed once through the real train and val
pipelines. Usable oddities must decode to the right RGB pixels; unusable files must be in the
report with a specific reason; an unusable data set must fail before training, saying what is
wrong, where, and how to fix it.
"""

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import augment_config
from PIL import Image

from alexnet_exp import check_store, checks, data, sources
from alexnet_exp import scan as folder_scan
from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError

INPUT = 32  # augment=none stores images at the input size: a 32x32 file is decoded unresized
REPO = Path(__file__).resolve().parents[1]


def folder_cfg(root: Path, **overrides) -> DataConfig:
    return DataConfig(**{"name": "folder", "dir": str(root), "val_split": 0.25, **overrides})


def scan(root: Path):
    return folder_scan.scan_folder(root, folder_cfg(root))


def base(tmp_path: Path, image_folder) -> Path:
    """Two classes of four 32x32 noisy PNGs: the good data every bad file is added to."""
    return image_folder(tmp_path / "data", classes={"cat": 4, "dog": 4}, size=(INPUT, INPUT),
                        fmt="PNG")


def one_pass(root: Path, tmp_path: Path):
    """Build the real pipelines, run one pass over train and val; all images, as trained on."""
    ds = data.make_datasets(folder_cfg(root), augment_config("none"), root, INPUT, 4, 0,
                            cache_dir=tmp_path / "tfdata-cache")
    images = []
    for split in (ds.train, ds.val):
        for x, y in split.as_numpy_iterator():
            assert x.shape[1:] == (INPUT, INPUT, 3) and x.dtype == np.float32
            assert y.shape[1:] == (len(ds.class_names),)
            images.append(x)
    images = np.concatenate(images)
    # Nothing was dropped on the way: every listed file was decoded and trained on.
    assert len(images) == len(ds.train_files) + len(ds.val_files)
    assert images.min() >= 0.0 and images.max() <= 255.0
    return ds, images


def assert_trained_on(ds, images, path: Path, expected: np.ndarray, tolerance: float) -> None:
    assert str(path) in ds.train_files + ds.val_files, f"{path.name} was not used"
    assert expected.shape == (INPUT, INPUT, 3)
    best = min(np.abs(image - expected.astype(np.float32)).max() for image in images)
    assert best <= tolerance, f"{path.name}: closest decoded image is {best} grey levels off"


def pillow_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def smooth_rgb(size: int = INPUT) -> np.ndarray:
    """A smooth colour image (JPEG keeps it within a few grey levels)."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([40 + x * 5, 60 + y * 5, 200 - (x + y) * 2], -1).astype(np.uint8)


def reason_of(report, path: Path) -> str:
    reasons = dict(report.skipped)
    assert str(path) in reasons, f"{path.name} not in the report: {report.skipped}"
    assert str(path) in report.to_text()
    return reasons[str(path)]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a symlink loop must not recurse forever)."""

    def expire(*_):
        raise TimeoutError(f"took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------- data sets that cannot train


def test_missing_folder_is_a_data_error(tmp_path):
    missing = tmp_path / "no_such_data"

    with pytest.raises(DataError, match="does not exist") as info:
        sources.resolve_data_dir(DataConfig(name="folder", dir=str(missing)))
    assert f"data.dir={missing}" in str(info.value)
    assert "point it at a folder of class folders" in str(info.value)

    # scan_folder on its own (a notebook, evaluate) says the same kind of thing.
    with pytest.raises(DataError, match="is not a folder") as info:
        scan(missing)
    assert str(missing) in str(info.value) and "<class name>" in str(info.value)


def test_empty_folder_is_a_data_error(tmp_path):
    root = tmp_path / "data"
    root.mkdir()

    with pytest.raises(DataError) as info:
        scan(root)
    message = str(info.value)
    assert str(root) in message
    assert "0 class folder(s)" in message and "need at least 2" in message
    assert "<data.dir>/<class name>/<image files>" in message


def test_a_single_class_is_a_data_error_that_names_it(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"only_cats": 4})

    with pytest.raises(DataError) as info:
        scan(root)
    message = str(info.value)
    assert f"{root} has 1 class folder(s): only_cats; need at least 2" in message
    assert "own sub-folder" in message


@pytest.mark.parametrize(
    ("contents", "why"),
    [({}, "empty folder"), ({"notes.txt": "to do"}, "1 non-image file(s)")],
    ids=["empty", "only-a-text-file"],
)
def test_class_folder_with_no_images_is_a_data_error(tmp_path, image_folder, contents, why):
    root = base(tmp_path, image_folder)
    (root / "bird").mkdir()
    for name, text in contents.items():
        (root / "bird" / name).write_text(text)

    with pytest.raises(DataError) as info:
        scan(root)
    message = str(info.value)
    assert f"class folder(s) bird under {root} hold no usable image (bird: {why}" in message
    assert "add images or remove the folder" in message


# --------------------------------------------------------------- files that are skipped, why


def test_zero_byte_file_is_skipped_as_empty(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    zero = root / "cat" / "zero.jpg"
    zero.write_bytes(b"")

    _, _, report = scan(root)

    assert reason_of(report, zero) == "empty file (0 bytes)"
    assert report.counts == {"cat": 4, "dog": 4}
    ds, _ = one_pass(root, tmp_path)
    assert str(zero) not in ds.train_files + ds.val_files


def test_truncated_jpeg_is_skipped_as_truncated(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    buffer = io.BytesIO()
    Image.fromarray(smooth_rgb(64)).save(buffer, format="JPEG", quality=95)
    cut = root / "cat" / "cut.jpg"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])

    _, _, report = scan(root)

    reason = reason_of(report, cut)
    assert reason.startswith("truncated file") and "download it again" in reason
    one_pass(root, tmp_path)


def test_png_missing_its_end_chunk_is_skipped(tmp_path, image_folder):
    """Pillow decodes a PNG that lost its last byte; TensorFlow does not, so it must go."""
    root = base(tmp_path, image_folder)
    buffer = io.BytesIO()
    Image.fromarray(smooth_rgb()).save(buffer, format="PNG")
    cut = root / "dog" / "no_end.png"
    cut.write_bytes(buffer.getvalue()[:-1])
    with Image.open(cut) as image:
        image.load()  # Pillow alone would have let it through

    _, _, report = scan(root)

    assert reason_of(report, cut).startswith("TensorFlow cannot decode it (Invalid PNG data")
    one_pass(root, tmp_path)


def test_text_file_named_jpg_is_skipped_as_not_an_image(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    text = root / "dog" / "photo.jpg"
    text.write_text("Sorry, this photo has been removed.\n")
    html = root / "dog" / "download.jpg"
    html.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>\n")

    _, _, report = scan(root)

    assert reason_of(report, text) == "not an image: a text file with an image name"
    assert reason_of(report, html) == "not an image: an HTML or XML page saved under an image name"
    one_pass(root, tmp_path)


def test_unreadable_file_is_skipped_as_permission_denied(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    secret = root / "cat" / "secret.png"
    Image.fromarray(smooth_rgb()).save(secret)
    secret.chmod(0)
    try:
        if os.geteuid() == 0:
            # Root reads a chmod-000 file, so for root it is simply a usable image ...
            assert str(secret) in scan(root)[0]
            # ... and the check is tested in a root process without the capabilities to do so.
            files, skipped = _scan_without_read_override(root)
        else:
            files, _, report = scan(root)
            skipped = report.skipped
            assert str(secret) in report.to_text()
            ds, _ = one_pass(root, tmp_path)
            assert str(secret) not in ds.train_files + ds.val_files
        assert dict(skipped) == {str(secret): checks.PERMISSION_DENIED}
        assert str(secret) not in files and len(files) == 8
    finally:
        secret.chmod(0o644)
    # chmod leaves the mtime alone: the check cache must not keep the file out now.
    files, _, report = scan(root)
    assert str(secret) in files and not report.skipped


# Drop root's read-anything capabilities from the bounding set, then exec Python again: the new
# interpreter runs as root without them, so a chmod-000 file is unreadable to it, as to a user.
DROP_READ_OVERRIDE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH; 24 = PR_CAPBSET_DROP
    if libc.prctl(24, cap, 0, 0, 0) != 0:
        sys.exit(f"SKIP cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
os.execv(sys.executable, [sys.executable, "-c", *sys.argv[1:]])
"""
SCAN_SCRIPT = """
import json, os, sys
from pathlib import Path
if os.access(sys.argv[2], os.R_OK):
    sys.exit("SKIP the file stays readable without CAP_DAC_OVERRIDE")
from alexnet_exp import scan
from alexnet_exp.config import DataConfig
root = Path(sys.argv[1])
files, _, report = scan.scan_folder(root, DataConfig(name="folder", dir=str(root)))
print(json.dumps({"files": files, "skipped": report.skipped}))
"""


def _scan_without_read_override(root: Path):
    """scan_folder in a root process that, like any user, cannot read a chmod-000 file."""
    secret = root / "cat" / "secret.png"
    done = subprocess.run(
        [sys.executable, "-c", DROP_READ_OVERRIDE, SCAN_SCRIPT, str(root), str(secret)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    last = (done.stderr.strip().splitlines() or [""])[-1]
    if done.returncode != 0 and last.startswith("SKIP"):
        pytest.skip(f"running as root, and {last[5:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    return seen["files"], [tuple(item) for item in seen["skipped"]]


def test_image_over_the_pixel_limit_is_skipped_as_too_large(tmp_path, image_folder):
    """A 14000x14000 header on a tiny file: refused from the header, nothing is decoded."""
    root = base(tmp_path, image_folder)
    buffer = io.BytesIO()
    Image.fromarray(smooth_rgb(16)).save(buffer, format="JPEG")
    raw = bytearray(buffer.getvalue())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", 14000, 14000)
    huge = root / "cat" / "huge.jpg"
    huge.write_bytes(bytes(raw))

    _, _, report = scan(root)

    reason = reason_of(report, huge)
    assert reason.startswith("too large") and "downscale it" in reason
    assert "196000000 pixels" in reason


# ------------------------------------------------- odd but usable files: decoded to the right RGB


def test_png_with_alpha_is_used_as_its_rgb(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    rgba = np.dstack([smooth_rgb(), np.linspace(0, 255, INPUT * INPUT).reshape(INPUT, INPUT)])
    path = root / "cat" / "alpha.png"
    Image.fromarray(rgba.astype(np.uint8), "RGBA").save(path)

    files, _, report = scan(root)
    assert str(path) in files and not report.skipped

    ds, images = one_pass(root, tmp_path)
    # Alpha is dropped, not composited: the same as Pillow's convert("RGB").
    assert_trained_on(ds, images, path, pillow_rgb(path), tolerance=0)


def test_grayscale_jpeg_is_used_as_grey_rgb(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    path = root / "dog" / "grey.jpg"
    Image.fromarray(smooth_rgb()).convert("L").save(path, quality=95)

    files, _, _ = scan(root)
    assert str(path) in files

    ds, images = one_pass(root, tmp_path)
    expected = pillow_rgb(path)
    assert (expected[..., 0] == expected[..., 2]).all()
    # libjpeg's fast IDCT (TensorFlow) and its exact one (Pillow) differ by a few levels.
    assert_trained_on(ds, images, path, expected, tolerance=4)


def test_cmyk_jpeg_is_used_as_rgb(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    path = root / "dog" / "print.jpg"
    Image.fromarray(smooth_rgb()).convert("CMYK").save(path, quality=95)
    with Image.open(path) as image:
        assert image.mode == "CMYK"

    files, _, _ = scan(root)
    assert str(path) in files

    ds, images = one_pass(root, tmp_path)
    assert_trained_on(ds, images, path, pillow_rgb(path), tolerance=4)
    assert_trained_on(ds, images, path, smooth_rgb(), tolerance=6)  # and the original colours


def write_png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one): IHDR bit depth 16, colour type 2."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\0" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_16_bit_pngs_are_used_scaled_to_8_bits(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    rng = np.random.default_rng(16)
    grey16 = rng.integers(0, 65536, (INPUT, INPUT)).astype(np.uint16)
    grey = root / "cat" / "grey16.png"
    Image.fromarray(grey16).save(grey)
    rgb16 = rng.integers(0, 65536, (INPUT, INPUT, 3)).astype(np.uint16)
    colour = root / "dog" / "rgb16.png"
    write_png16(colour, rgb16)
    with Image.open(grey) as image:
        assert image.mode == "I;16"

    files, _, _ = scan(root)
    assert {str(grey), str(colour)} <= set(files)

    ds, images = one_pass(root, tmp_path)
    # The top 8 bits of each sample, exactly. (Pillow's convert("RGB") of an I;16 image clips
    # at 255 instead of scaling, so it is not the reference here.)
    assert_trained_on(ds, images, grey, np.repeat((grey16 >> 8)[..., None], 3, -1), tolerance=0)
    assert_trained_on(ds, images, colour, rgb16 >> 8, tolerance=0)
    assert not np.array_equal(pillow_rgb(grey), np.repeat((grey16 >> 8)[..., None], 3, -1))


def test_1x1_image_is_used_as_a_flat_image(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    dot = root / "cat" / "dot.png"
    Image.new("RGB", (1, 1), (12, 200, 99)).save(dot)
    dot_jpg = root / "dog" / "dot.jpg"
    Image.new("RGB", (1, 1), (240, 16, 64)).save(dot_jpg, quality=100)

    files, _, _ = scan(root)
    assert {str(dot), str(dot_jpg)} <= set(files)

    ds, images = one_pass(root, tmp_path)
    assert_trained_on(ds, images, dot, np.full((INPUT, INPUT, 3), (12, 200, 99)), tolerance=0)
    assert_trained_on(ds, images, dot_jpg, np.broadcast_to(pillow_rgb(dot_jpg), (INPUT, INPUT, 3)),
                      tolerance=2)


BIG_SCRIPT = """
import json, resource, sys
from pathlib import Path
import numpy as np
from alexnet_exp import data
from alexnet_exp.config import AugmentConfig, DataConfig

def run(root, colours):
    cfg = DataConfig(name="folder", dir=str(root), val_split=0.25)
    none = AugmentConfig(name="none", flip=False, crop_scale=1.0, pca_std=0.0)
    ds = data.make_datasets(cfg, none, root, 32, 4, 0, cache_dir=root / "tf-cache")
    images = np.concatenate([x for s in (ds.train, ds.val) for x, _ in s.as_numpy_iterator()])
    found = [bool(any(np.abs(im - c).max() <= 3 for im in images)) for c in colours]
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:  # this process's own peak: ru_maxrss also counts the parent's RSS at fork time
        status = Path("/proc/self/status").read_text()
        mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        pass
    return {"images": len(images), "skipped": ds.report.skipped, "found": found, "peak_mb": mb}

small = run(Path(sys.argv[1]), [])
big = run(Path(sys.argv[2]), json.loads(sys.argv[3]))
print(json.dumps({"baseline": small, "big": big}))
"""


@pytest.mark.slow  # a process of its own that decodes 600 MB of pixels: 10-15 s
def test_10000x10000_images_decode_within_bounded_memory(tmp_path, image_folder):
    """A flat 10000x10000 JPEG (1.5 MB) and PNG (0.3 MB) hold 300 MB of pixels each."""
    small = base(tmp_path / "small", image_folder)
    root = base(tmp_path / "big", image_folder)
    colours = {"JPEG": (200, 120, 40), "PNG": (30, 90, 210)}
    for (fmt, colour), folder in zip(colours.items(), ("cat", "dog"), strict=True):
        image = Image.new("RGB", (10000, 10000), colour)
        image.save(root / folder / f"big.{fmt.lower()}", format=fmt)
        del image

    done = subprocess.run(
        [sys.executable, "-c", BIG_SCRIPT, str(small), str(root), json.dumps([*colours.values()])],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    big = result["big"]
    print(f"peak RSS: {result['baseline']['peak_mb']:.0f} MB for 8 small images,"
          f" {big['peak_mb']:.0f} MB with the two 10000x10000 images")
    assert big["skipped"] == [] and big["images"] == 10
    assert big["found"] == [True, True], "a big image did not decode to its flat colour"
    # TensorFlow alone is ~0.8 GB; the JPEG is DCT-scaled (5 MB), the PNG is decoded in full
    # once (300 MB) by the check and once by the pipeline, never both at the same time.
    assert big["peak_mb"] < 1536
    assert big["peak_mb"] - result["baseline"]["peak_mb"] < 450


def test_non_ascii_file_names_are_used(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"café": 4, "日本の猫": 4}, size=(INPUT, INPUT),
                        fmt="PNG")
    odd = root / "café" / "naïve ✓ 🐱 Ünïcødé.png"
    Image.fromarray(smooth_rgb()).save(odd)
    latin1 = os.fsencode(root / "日本の猫") + b"/caf\xe9.png"  # not UTF-8: TF cannot open it
    with open(latin1, "wb") as f:
        Image.fromarray(smooth_rgb()).save(f, format="PNG")

    files, _, report = scan(root)

    assert report.class_names == ["café", "日本の猫"]
    assert str(odd) in files and report.counts == {"café": 5, "日本の猫": 4}
    assert report.skipped == [(str(root / "日本の猫" / "caf\ufffd.png"),
                               "name is not valid UTF-8: rename it")]
    report.to_text().encode("utf-8")  # printable and loggable as it is
    json.dumps(report.to_dict(), ensure_ascii=False).encode("utf-8")
    ds, images = one_pass(root, tmp_path)
    assert_trained_on(ds, images, odd, smooth_rgb(), tolerance=0)


def test_symlink_loops_end_and_broken_links_are_skipped(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    cat = root / "cat"
    (cat / "loop").symlink_to(cat, target_is_directory=True)  # a folder link to its parent
    (cat / "up").symlink_to("../..", target_is_directory=True)  # to the data root's parent
    (cat / "to_dog").symlink_to(root / "dog", target_is_directory=True)
    (cat / "self.png").symlink_to("self.png")  # a file link to itself
    (cat / "gone.png").symlink_to(tmp_path / "deleted.png")
    extra = image_folder(tmp_path / "elsewhere", classes={"more": 2}, size=(INPUT, INPUT),
                         fmt="PNG")
    (cat / "more").symlink_to(extra / "more", target_is_directory=True)  # followed

    with deadline(60):
        files, _, report = scan(root)

    reasons = dict(report.skipped)
    assert reasons[str(cat / "loop")].startswith("symlink loop: points back to")
    assert reasons[str(cat / "up")].startswith("symlink loop: points back to")
    assert reasons[str(cat / "to_dog")].startswith(f"links to {(root / 'dog').resolve()}")
    assert reasons[str(cat / "self.png")] == "symlink loop: self.png leads back to itself"
    assert reasons[str(cat / "gone.png")].startswith("broken symlink: its target")
    assert len(reasons) == 5
    assert report.counts == {"cat": 6, "dog": 4}  # the linked folder's two images count once
    assert sum(str(cat / "more") in f for f in files) == 2
    with deadline(120):
        one_pass(root, tmp_path)


def test_same_bytes_in_two_classes_is_reported_and_left_out(tmp_path, image_folder, monkeypatch):
    root = image_folder(tmp_path / "data", classes={"cat": 5, "dog": 5}, size=(INPUT, INPUT),
                        fmt="PNG")
    cat_copy, dog_copy = root / "cat" / "cat_000.png", root / "dog" / "which_am_i.png"
    shutil.copyfile(cat_copy, dog_copy)
    same_class = root / "dog" / "dog_000_again.png"  # a copy within one class is harmless
    shutil.copyfile(root / "dog" / "dog_000.png", same_class)
    calls = []
    real_check = folder_scan.check_image
    monkeypatch.setattr(folder_scan, "check_image",
                        lambda p, **kw: calls.append(p) or real_check(p, **kw))

    files, _, report = scan(root)

    assert report.duplicates == [[str(cat_copy), str(dog_copy)]]
    assert str(cat_copy) not in files and str(dog_copy) not in files
    assert str(same_class) in files
    assert report.counts == {"cat": 4, "dog": 6}
    assert report.skipped == []
    text = report.to_text()
    assert "WARNING: 2 files are the same image in different classes" in text
    assert f"{cat_copy} = {dog_copy}" in text
    assert report.to_dict()["duplicates"] == [[str(cat_copy), str(dog_copy)]]

    # A re-scan finds them from the cached hashes without checking (or hashing) a file again.
    calls.clear()
    monkeypatch.setattr(checks, "file_digest", lambda p: pytest.fail("re-hashed " + p))
    monkeypatch.setattr(folder_scan, "file_digest", lambda p: pytest.fail("re-hashed " + p))
    assert scan(root)[2].duplicates == report.duplicates
    assert calls == []
    ds, _ = one_pass(root, tmp_path)
    assert not {str(cat_copy), str(dog_copy)} & set(ds.train_files + ds.val_files)


def test_a_class_left_empty_by_duplicates_is_a_data_error(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    (root / "bird").mkdir()
    shutil.copyfile(root / "cat" / "cat_000.png", root / "bird" / "not_a_bird.png")

    with pytest.raises(DataError) as info:
        scan(root)
    assert "bird: 1 also filed under another class" in str(info.value)


def check_rows(alexnet_cache: Path, root: Path) -> dict[str, tuple]:
    """The check store's rows of ``root``: path -> (size, mtime, ctime, inode, level, ...)."""
    import sqlite3

    name = f"{hashlib.sha1(str(root).encode()).hexdigest()}.v{check_store.VERSION}.sqlite"
    with contextlib.closing(sqlite3.connect(alexnet_cache / "checks" / name)) as db:
        return {row[0]: row[1:] for row in db.execute("SELECT * FROM checked")}


def test_rows_of_a_lesser_check_are_checked_again_once(tmp_path, image_folder, monkeypatch,
                                                       alexnet_cache):
    """A file checked at data.check=header (its header read, not decoded) is decoded when
    data.check=full is asked, once; a full check's row serves a header check."""
    root = base(tmp_path, image_folder)
    calls = []
    real_check = folder_scan.check_image
    monkeypatch.setattr(folder_scan, "check_image",
                        lambda p, decode: calls.append((p, decode)) or real_check(p, decode))

    header = folder_scan.scan_folder(root, folder_cfg(root, check="header"))
    assert sorted(calls) == sorted((p, False) for p in header[0])
    assert {row[4] for row in check_rows(alexnet_cache, root).values()} == {1}  # header
    assert "check: header (data.check=header; headers read, not decoded" in header[2].to_text()
    calls.clear()
    files, _, report = scan(root)  # data.check=auto: full, at 8 images
    assert files == header[0] and sorted(calls) == sorted((p, True) for p in files)
    assert "check: full (data.check=auto: 8 images, under 50,000; every image decoded" in (
        report.to_text())
    rows = check_rows(alexnet_cache, root)
    assert {row[4] for row in rows.values()} == {2} and all(row[6] for row in rows.values())
    calls.clear()
    scan(root)
    folder_scan.scan_folder(root, folder_cfg(root, check="header"))
    assert calls == []


def test_check_none_opens_no_file_and_says_what_that_costs(tmp_path, image_folder, monkeypatch,
                                                           alexnet_cache):
    root = base(tmp_path, image_folder)
    (root / "cat" / "broken.png").write_bytes(b"not a png")
    monkeypatch.setattr(folder_scan, "check_image", lambda *_: pytest.fail("a file was opened"))
    files, _, report = folder_scan.scan_folder(root, folder_cfg(root, check="none"))
    assert str(root / "cat" / "broken.png") in files  # trusted: dropped when an epoch reads it
    assert "check: none (data.check=none; files trusted, none opened: EXIF orientation" in (
        report.to_text())
    assert not (alexnet_cache / "checks").exists()


def test_the_end_of_a_run_checks_again_at_the_scans_level(tmp_path, image_folder, monkeypatch,
                                                          alexnet_cache):
    """At data.check=header the files are not decoded after training either (hours of it at
    the sizes that choose header), whatever the number of usable files says."""
    root = base(tmp_path, image_folder)
    files, _, report = folder_scan.scan_folder(root, folder_cfg(root, check="header"))
    assert report.check_level == "header"
    os.utime(files[0])  # touched: checked again
    decodes = []
    real_check = folder_scan.check_image
    monkeypatch.setattr(folder_scan, "check_image",
                        lambda p, decode: decodes.append(decode) or real_check(p, decode))
    assert folder_scan.changed_since_scan(files, root, folder_cfg(root), report.check_level) == []
    assert decodes == [False]


def test_a_check_stopped_half_way_keeps_what_it_did(tmp_path, image_folder, monkeypatch,
                                                    alexnet_cache):
    root = base(tmp_path, image_folder)
    monkeypatch.setattr(folder_scan, "SAVE_EVERY", 2)
    real_check, calls = folder_scan.check_image, []

    def check_then_stop(path, decode):
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C during the check
        calls.append(path)
        return real_check(path, decode)

    monkeypatch.setattr(folder_scan, "check_image", check_then_stop)
    with pytest.raises(KeyboardInterrupt):
        folder_scan.scan_folder(root, folder_cfg(root, check_workers=1))
    assert sorted(check_rows(alexnet_cache, root)) == sorted(calls[:4])  # saved two by two


def test_from_fifty_thousand_images_auto_reads_headers_only():
    cfg = DataConfig()
    assert folder_scan.check_level(cfg, 49_999) == "full"
    assert folder_scan.check_level(cfg, 50_000) == "header"
    assert folder_scan.check_text("header", cfg, 126_689).startswith(
        "check: header (data.check=auto: 126,689 images, from 50,000; headers read, not")
    assert folder_scan.check_level(DataConfig(check="full"), 10**6) == "full"


def test_every_bad_file_at_once_leaves_a_trainable_data_set(tmp_path, image_folder):
    root = base(tmp_path, image_folder)
    cat, dog = root / "cat", root / "dog"
    (cat / "zero.jpg").write_bytes(b"")
    (cat / "text.jpg").write_text("not an image")
    (dog / "cut.png").write_bytes((dog / "dog_000.png").read_bytes()[:-1])
    (dog / "loop").symlink_to(dog, target_is_directory=True)
    (dog / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    Image.new("RGB", (1, 1), (1, 2, 3)).save(cat / "dot.png")
    Image.fromarray(smooth_rgb()).convert("CMYK").save(dog / "cmyk.jpg")
    Image.fromarray(smooth_rgb()).convert("LA").save(cat / "grey_alpha.png")

    ds, images = one_pass(root, tmp_path)

    assert len(ds.report.skipped) == 5
    assert ds.report.counts == {"cat": 6, "dog": 5}
    assert len(images) == 11
    text = ds.report.to_text()
    assert "skipped 5 unreadable images" in text
    for reason in ("empty file", "not an image", "TensorFlow cannot decode", "symlink loop",
                   "broken symlink"):
        assert reason in text
