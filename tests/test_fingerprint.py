"""The data fingerprint: what counts as the same data for resume and sweep reuse."""

import os
import unicodedata

from alexnet_exp.config import DataConfig
from alexnet_exp.fingerprint import DataFingerprint, fingerprint_folder

CFG = DataConfig(name="folder", val_split=0.25)


def test_the_same_tree_gives_the_same_digest_and_a_round_trip_keeps_it(tmp_path, image_folder):
    root = image_folder(tmp_path / "data")
    first, second = fingerprint_folder(root, CFG, 42), fingerprint_folder(root, CFG, 42)
    assert first.digest == second.digest and len(first.digest) == 16
    assert first.classes == ("cat", "dog") and len(first.files) == 12
    assert DataFingerprint.from_dict(first.to_dict()).digest == first.digest


def test_each_kind_of_change_is_a_new_digest_and_is_named(tmp_path, image_folder):
    root = image_folder(tmp_path / "data")
    before = fingerprint_folder(root, CFG, 42)

    image_folder(root, classes={"tulips": 3})
    grown = fingerprint_folder(root, CFG, 42)
    assert grown.digest != before.digest
    assert grown.changes_since(before) == "classes +tulips, 3 files added"

    for path in (root / "tulips").iterdir():
        path.unlink()
    (root / "tulips").rmdir()
    os.rename(root / "dog", root / "fox")  # one class replaced by another, same count
    swapped = fingerprint_folder(root, CFG, 42)
    assert swapped.changes_since(before) == "classes +fox -dog, 6 files added, 6 files removed"

    os.rename(root / "fox", root / "dog")
    target = root / "cat" / "cat_000.jpg"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched
    assert fingerprint_folder(root, CFG, 42).changes_since(before) == (
        "1 file touched (same size, new modification time: copied without keeping times?)")
    content = target.read_bytes()
    target.write_bytes(content + b"\0")  # rewritten: a new size
    assert fingerprint_folder(root, CFG, 42).changes_since(before) == "1 file changed"
    target.write_bytes(content)

    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fingerprint_folder(root, CFG, 42).digest == before.digest
    other_split = fingerprint_folder(root, DataConfig(name="folder", val_split=0.5), 42)
    assert other_split.changes_since(before) == "data.val_split 0.25 -> 0.5"
    assert fingerprint_folder(root, CFG, 7).changes_since(before) == "seed 42 -> 7"


def test_non_image_files_do_not_count_and_nfd_names_equal_nfc(tmp_path, image_folder):
    nfc = unicodedata.normalize("NFC", "Café")
    a = image_folder(tmp_path / "a", classes={nfc: 2, "tea": 2})
    b = tmp_path / "b"  # the same files, as macOS would name them (decomposed)
    for path in a.rglob("*.jpg"):
        copy = b / unicodedata.normalize("NFD", str(path.relative_to(a)))
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
        for same in (path, copy):
            os.utime(same, ns=(0, 1_000_000_000))
    assert (b / unicodedata.normalize("NFD", nfc)).is_dir() and not (b / nfc).is_dir()
    (a / "tea" / "README.txt").write_text("not an image")
    assert fingerprint_folder(a, CFG, 1).digest == fingerprint_folder(b, CFG, 1).digest
    assert fingerprint_folder(b, CFG, 1).classes == (nfc, "tea")


def test_a_missing_folder_is_an_empty_fingerprint_for_the_scan_to_explain(tmp_path):
    empty = fingerprint_folder(tmp_path / "nowhere", CFG, 1)
    assert empty.classes == () and empty.files == {}


def test_the_fingerprint_walks_class_folders_as_the_scan_does(tmp_path, image_folder):
    """Links that the scan does not follow (to the root's parent, into another class) add no
    file to the fingerprint; a linked folder elsewhere is followed, as the scan follows it."""
    root = image_folder(tmp_path / "data")
    image_folder(tmp_path / "outside", classes={"stray": 3})
    extra = image_folder(tmp_path / "elsewhere", classes={"more": 2})
    cat = root / "cat"
    (cat / "up").symlink_to("../..", target_is_directory=True)
    (cat / "to_dog").symlink_to(root / "dog", target_is_directory=True)
    (cat / "loop").symlink_to(cat, target_is_directory=True)
    (cat / "more").symlink_to(extra / "more", target_is_directory=True)
    (cat / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")

    files = fingerprint_folder(root, CFG, 1).files
    assert sorted(k for k in files if "/more/" in k) == ["cat/more/more_000.jpg",
                                                         "cat/more/more_001.jpg"]
    assert len(files) == 12 + 2
