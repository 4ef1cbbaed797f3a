"""scan: which files of a class folder tree are images a run can use, which are not and why, and
the check cache that keeps a second scan from opening every file again."""

from pathlib import Path

import numpy as np
import pytest
from helpers import rewrite_keeping_stamps
from helpers.configs import folder_cfg
from helpers.images import write_bad_images
from PIL import Image

from alexnet_exp import scan
from alexnet_exp.errors import DataError


def test_class_names_are_sorted_subfolder_names(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"zebra": 3, "apple": 3, "Mango": 3})
    # A hidden folder is not a class, even with images in it.
    image_folder(root / ".thumbnails", classes={"x": 2})

    files, labels, report = scan.scan_folder(root, folder_cfg(root))

    assert report.class_names == ["Mango", "apple", "zebra"]
    assert report.counts == {"Mango": 3, "apple": 3, "zebra": 3}
    assert len(files) == len(labels) == 9
    assert labels.dtype == np.int32
    for path, label in zip(files, labels, strict=True):
        assert Path(path).parent.name == report.class_names[label]


def test_non_image_files_are_ignored_and_reported(tmp_path, image_folder):
    root = image_folder(tmp_path / "data")
    licence = root / "LICENSE.txt"
    licence.write_text("CC-BY\n")
    notes = root / "cat" / "notes.txt"
    notes.write_text("found these at the shelter\n")

    files, _, report = scan.scan_folder(root, folder_cfg(root))

    assert sorted(report.ignored) == sorted([str(licence), str(notes)])
    assert report.skipped == []
    assert report.counts == {"cat": 6, "dog": 6}
    assert str(notes) not in files and str(licence) not in files
    assert "ignored 2 non-image files" in report.to_text()


def test_unreadable_images_are_skipped_with_a_reason(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 6, "dog": 6})
    bad = write_bad_images(root / "cat")

    files, _, report = scan.scan_folder(root, folder_cfg(root))

    reasons = dict(report.skipped)
    assert set(reasons) == {str(p) for p in bad.values()}
    assert all(isinstance(r, str) and r for r in reasons.values())
    assert "truncated" in reasons[str(bad["truncated"])]
    assert report.counts == {"cat": 6, "dog": 6}
    assert not {str(p) for p in bad.values()} & set(files)
    text = report.to_text()
    assert "skipped 3 unreadable images" in text
    assert all(str(p) in text for p in bad.values())


@pytest.mark.parametrize("classes", [{}, {"only": 4}])
def test_fewer_than_two_classes_is_a_data_error(tmp_path, image_folder, classes):
    root = image_folder(tmp_path / "data", classes=classes)
    (root / "README.md").write_text("a file is not a class\n")
    with pytest.raises(DataError, match="at least 2"):
        scan.scan_folder(root, folder_cfg(root))


def test_class_with_only_corrupt_files_is_named(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 4, "dog": 4})
    bird = root / "bird"
    bird.mkdir()
    (bird / "empty.jpg").write_bytes(b"")
    (bird / "text.png").write_text("not a png")
    (bird / "readme.txt").write_text("non-images do not count either")

    with pytest.raises(DataError, match=r"bird") as info:
        scan.scan_folder(root, folder_cfg(root))
    assert "cat" not in str(info.value) and "dog" not in str(info.value)


def test_image_check_cache_skips_rechecking(tmp_path, image_folder, monkeypatch, alexnet_cache):
    root = image_folder(tmp_path / "data", classes={"cat": 5, "dog": 5})
    (root / "dog" / "broken.jpg").write_bytes(b"")
    calls = []
    real_check = scan.check_image

    def counting_check(path, **kw):
        calls.append(path)
        return real_check(path, **kw)

    monkeypatch.setattr(scan, "check_image", counting_check)
    cfg = folder_cfg(root)

    first = scan.scan_folder(root, cfg)
    assert len(calls) == 11
    assert list((alexnet_cache / "checks").glob("*.sqlite")), "no check cache written"

    calls.clear()
    second = scan.scan_folder(root, cfg)
    assert calls == []
    assert second[0] == first[0]
    assert second[2].skipped == first[2].skipped  # cached failures stay skipped

    # A changed file (new size) is checked again, and only that one.
    changed = root / "cat" / "cat_000.jpg"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(changed, format="JPEG")
    scan.scan_folder(root, cfg)
    assert calls == [str(changed)]


def test_an_image_rewritten_with_its_old_size_and_mtime_is_checked_again(tmp_path, image_folder):
    root = image_folder(tmp_path / "data", classes={"cat": 4, "dog": 4})
    first = scan.scan_folder(root, folder_cfg(root))  # fills the check cache
    target = root / "cat" / "cat_001.jpg"
    rewrite_keeping_stamps(target, b"garbage " * 1000)
    files, _, report = scan.scan_folder(root, folder_cfg(root))
    assert str(target) in first[0] and str(target) not in files
    assert [path for path, _ in report.skipped] == [str(target)]


def test_class_names_are_nfc_and_sorted_the_same_on_macos_and_linux(tmp_path, image_folder):
    import unicodedata

    nfd = {unicodedata.normalize("NFD", "Café"): 3, "Cafz": 3, "Cafa": 3}
    root = image_folder(tmp_path / "data", classes=nfd)
    files, labels, report = scan.scan_folder(root, folder_cfg(root))
    # NFD "Cafe\u0301" sorts before "Cafz"; NFC "Caf\xe9" after it, as on a Linux-made folder.
    assert report.class_names == ["Cafa", "Cafz", "Café"]
    assert all(unicodedata.is_normalized("NFC", name) for name in report.class_names)
    assert report.counts["Café"] == 3
    assert {labels[i] for i, f in enumerate(files) if "Cafe" in f} == {2}

    both = image_folder(tmp_path / "both", classes={"Café": 2, "Cafe\u0301": 2})
    if len(list(both.iterdir())) == 2:  # a file system that keeps both spellings apart
        with pytest.raises(DataError, match="two class folders named Café"):
            scan.scan_folder(both, folder_cfg(both))


def test_a_scan_forgets_the_checks_of_files_deleted_since_and_a_recheck_of_a_few_does_not(
        tmp_path, image_folder, alexnet_cache):
    import sqlite3

    root = image_folder(tmp_path / "data", classes={"a": 4, "b": 4})
    files, _, _ = scan.scan_folder(root, folder_cfg(root))
    (store,) = (alexnet_cache / "checks").glob("*.sqlite")

    def stored() -> set[str]:
        with sqlite3.connect(store) as db:
            return {path for (path,) in db.execute("SELECT path FROM checked")}

    assert stored() == set(files)
    Path(files[0]).unlink()
    again, _, _ = scan.scan_folder(root, folder_cfg(root))
    assert stored() == set(again) == set(files[1:])  # the deleted file's row is gone
    # the end of a run re-checks the files it trained on, not the whole root: nothing dropped
    assert scan.changed_since_scan(again[:2], root, folder_cfg(root)) == []
    assert stored() == set(again)


def test_a_folder_that_fails_to_list_keeps_its_files_checks(tmp_path, image_folder,
                                                            alexnet_cache, monkeypatch):
    import os
    import sqlite3

    from alexnet_exp import folders

    root = image_folder(tmp_path / "data", classes={"a": 3, "b": 3, "c": 3})
    files, _, _ = scan.scan_folder(root, folder_cfg(root))
    real_scandir = os.scandir

    def flaky(path):  # an I/O error on one class folder, as a half-done rsync or NFS gives
        if Path(path).name == "b":
            raise OSError(5, "Input/output error")
        return real_scandir(path)

    monkeypatch.setattr(folders.os, "scandir", flaky)
    with pytest.raises(DataError):  # class b has no images now
        scan.scan_folder(root, folder_cfg(root))
    (store,) = (alexnet_cache / "checks").glob("*.sqlite")
    with sqlite3.connect(store) as db:
        assert {path for (path,) in db.execute("SELECT path FROM checked")} == set(files)


def test_the_report_counts_the_upright_jpegs_and_their_sides_from_the_check_or_its_store(
        tmp_path, image_folder):
    """The uncached crop's decode is chosen by these (decode.crop_decode_for): upright JPEGs
    with their shorter sides' range, everything else counted apart; a second scan reads them
    from the check store, and a scan that opens no file knows nothing of them."""
    root = image_folder(tmp_path / "data", classes={"cat": 3, "dog": 3}, size=(40, 30))
    Image.fromarray(np.zeros((90, 60, 3), np.uint8)).save(root / "cat" / "big.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "dog" / "small.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "dog" / "turned.jpg",
                                                         exif=exif.tobytes())
    want = scan.JpegSides(jpegs=7, others=2, smallest=30, largest=60)
    for level in ("full", "full", "header"):  # checked, from the store, a lesser level
        assert scan.scan_folder(root, folder_cfg(root, check=level))[2].jpeg_sides == want
    # Not "no JPEG" (which would decode every crop's image whole): not known
    assert scan.scan_folder(root, folder_cfg(root, check="none"))[2].jpeg_sides is None
