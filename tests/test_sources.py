"""Where the class folders come from, without the network: a user's folder as given, flowers
already on disk, and the download's offline failures (a file:// archive stands in for the web).
The download over HTTP is tests/test_download.py."""

import io
import tarfile
from pathlib import Path

import pytest

from alexnet_exp import sources
from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError

NO_NETWORK = "http://127.0.0.1:9/flower_photos.tgz"  # the discard port: never a server


def test_a_folder_is_resolved_to_its_absolute_path(tmp_path, image_folder, monkeypatch):
    image_folder(tmp_path / "home" / "photos")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "home")
    for given in ("~/photos", "photos", "./photos/../photos"):
        assert sources.resolve_data_dir(DataConfig(name="folder", dir=given)) == (
            tmp_path / "home" / "photos")


def test_a_missing_folder_or_a_file_is_a_data_error_naming_data_dir(tmp_path):
    with pytest.raises(DataError, match=r"data.dir=.*nowhere does not exist"):
        sources.resolve_data_dir(DataConfig(name="folder", dir=str(tmp_path / "nowhere")))
    (tmp_path / "list.txt").write_text("a\n")
    with pytest.raises(DataError, match=r"list.txt is a file, not a folder"):
        sources.resolve_data_dir(DataConfig(name="folder", dir=str(tmp_path / "list.txt")))


def test_flowers_already_in_the_default_place_are_used_without_the_network(image_folder):
    """Without data.dir, data=flowers looks under $KERAS_HOME/datasets (where Keras' own
    get_file put it) before it downloads: a machine that has it never goes online."""
    import os

    default = Path(os.environ["KERAS_HOME"]) / "datasets" / "flower_photos"
    image_folder(default, classes={"daisy": 1, "roses": 1})
    assert sources.resolve_data_dir(DataConfig(name="flowers", url=NO_NETWORK)) == default


def test_only_visible_folders_with_images_count_as_class_folders(tmp_path, image_folder):
    """A folder holding only hidden or image-less sub-folders is not the data set: flowers
    refuses to download over it (no network is touched), the user's files stay."""
    root = tmp_path / "flower_photos"
    image_folder(root, classes={".thumbnails": 2})
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("sort the photos\n")
    with pytest.raises(DataError, match="exists but holds no flower class folders"):
        sources.resolve_data_dir(DataConfig(name="flowers", dir=str(root), url=NO_NETWORK))
    assert (root / "notes" / "todo.txt").exists()
    assert len(list(root.rglob("*.jpg"))) == 2


def _archive(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri()


def test_an_archive_without_class_folders_fails_and_leaves_no_folder(tmp_path):
    url = _archive(tmp_path / "served.tgz", {"README.txt": b"not flowers\n"})
    target = tmp_path / "data" / "flower_photos"
    with pytest.raises(DataError, match="unpacked to no class folders"):
        sources.download_flowers(url, None, target)
    assert not target.exists()
    assert not list(target.parent.glob(".extract-*"))  # the half-unpacked copy is gone


def test_a_file_that_is_not_a_tgz_is_named_for_deletion(tmp_path):
    served = tmp_path / "served.tgz"
    served.write_bytes(b"<html>captive portal</html>")
    target = tmp_path / "data" / "flower_photos"
    with pytest.raises(DataError, match=r"is not a readable \.tgz archive .*; delete it") as info:
        sources.download_flowers(served.as_uri(), None, target)
    assert "\n" not in str(info.value)  # the command line's error is one line
    assert not target.exists()


def test_a_local_archive_is_unpacked_into_class_folders_with_one_rename(tmp_path, image_folder):
    src = image_folder(tmp_path / "src" / "flower_photos", classes={"daisy": 2, "tulips": 1})
    members = {f"flower_photos/{p.relative_to(src).as_posix()}": p.read_bytes()
               for p in sorted(src.rglob("*.jpg"))}
    url = _archive(tmp_path / "served.tgz", members)
    target = tmp_path / "data" / "flower_photos"
    target.mkdir(parents=True)  # an empty folder is the user's way to say "download here"

    assert sources.download_flowers(url, None, target) == target
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*.jpg")) == [
        "daisy/daisy_000.jpg", "daisy/daisy_001.jpg", "tulips/tulips_000.jpg"]
    assert (target / "daisy" / "daisy_000.jpg").read_bytes() == (
        src / "daisy" / "daisy_000.jpg").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["flower_photos",
                                                               "flower_photos.tgz"]
