"""The walk of a class folder that the data scan and the data fingerprint share: every file
once, every entry it cannot follow named with why, and an end even in a tree of link loops."""

import os

from alexnet_exp.folders import list_files


def test_files_are_listed_sorted_through_nested_and_linked_folders(tmp_path):
    cat, elsewhere = tmp_path / "data" / "cat", tmp_path / "elsewhere"
    (cat / "2024" / "june").mkdir(parents=True)
    elsewhere.mkdir()
    for path in (cat / "b.jpg", cat / "a.png", cat / "2024" / "june" / "c.jpg",
                 cat / "notes.txt", elsewhere / "d.jpg"):
        path.write_bytes(b"x")
    (cat / "more").symlink_to(elsewhere, target_is_directory=True)
    (cat / "again").symlink_to(elsewhere, target_is_directory=True)  # the same folder twice

    files, problems = list_files(cat, set())

    assert [p.relative_to(cat).as_posix() for p in files] == [
        "2024/june/c.jpg", "a.png", "again/d.jpg", "b.jpg", "notes.txt"]
    assert problems == [(str(cat / "more"), f"links to {elsewhere}, scanned elsewhere;"
                                            " not followed")]


def test_loops_links_elsewhere_and_broken_links_are_named_not_followed(tmp_path):
    root = tmp_path / "data"
    cat, dog = root / "cat", root / "dog"
    cat.mkdir(parents=True)
    dog.mkdir()
    (dog / "d.jpg").write_bytes(b"x")
    (cat / "loop").symlink_to(cat, target_is_directory=True)
    (cat / "up").symlink_to("../..", target_is_directory=True)
    (cat / "to_dog").symlink_to(dog, target_is_directory=True)
    (cat / "self.jpg").symlink_to("self.jpg")
    (cat / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    os.mkfifo(cat / "pipe.jpg")  # neither an image nor worth a line

    files, problems = list_files(cat, {root, dog})

    assert files == []
    reasons = dict(problems)
    assert reasons.pop(str(cat / "loop")).startswith("symlink loop: points back to")
    assert reasons.pop(str(cat / "up")).startswith("symlink loop: points back to")
    assert reasons.pop(str(cat / "to_dog")) == f"links to {dog}, scanned elsewhere; not followed"
    assert reasons.pop(str(cat / "self.jpg")) == "symlink loop: self.jpg leads back to itself"
    assert reasons.pop(str(cat / "gone.jpg")) == (
        f"broken symlink: its target {tmp_path / 'deleted.jpg'} does not exist")
    assert reasons == {}


def test_a_name_that_is_not_utf8_is_named_printably_and_left_out(tmp_path):
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "ok.jpg").write_bytes(b"x")
    with open(os.path.join(os.fsencode(cat), b"caf\xe9.jpg"), "wb") as f:  # Latin-1 "café"
        f.write(b"x")

    files, problems = list_files(cat, set())

    assert files == [cat / "ok.jpg"]
    assert problems == [(f"{cat}/caf\ufffd.jpg", "name is not valid UTF-8: rename it")]
    problems[0][0].encode("utf-8")  # printable as it is


def test_a_folder_gone_before_its_walk_is_named_not_raised(tmp_path):
    """A class folder removed (or unmounted) between the class listing and its walk."""
    files, problems = list_files(tmp_path / "cat", set())
    assert files == []
    assert problems == [(str(tmp_path / "cat"), "cannot list folder: No such file or directory")]
