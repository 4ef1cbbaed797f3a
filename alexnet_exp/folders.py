"""The class folders under a data root, and what each holds: its files, and the entries under
it that cannot be followed.

One walk for everyone who lists a class folder: the data scan (which files to check and
train on) and the data fingerprint (which files a run's identity covers) see the same files.
Standard library only: the fingerprint, and the test folder a tool is given, are checked
before TensorFlow loads.
"""

import errno
import os
import unicodedata
from collections import Counter
from pathlib import Path

from alexnet_exp.errors import DataError


def list_files(folder: Path, others: set[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files under ``folder`` (sorted) and the entries that cannot be followed, with why.

    Symlinked folders are followed, each real folder once: a link back to an ancestor (a
    loop) or into ``others`` (the data root, other class folders) is reported, not
    entered, so the walk always ends. A dangling link, or a name that is not UTF-8 (TensorFlow
    cannot open it, print cannot show it), is reported too instead of vanishing from the data.
    """
    files, problems, seen = [], [], {folder.resolve()}

    def visit(directory: Path) -> None:
        try:
            # scandir knows a plain file or folder from the listing itself: one stat less
            # per image than Path.is_dir / is_file, on data sets of a million files.
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            problems.append((str(directory), f"{UNLISTABLE}: {exc.strerror or exc}"))
            return
        for item in entries:
            entry = directory / item.name
            where = str(entry)
            try:
                where.encode("utf-8")
            except UnicodeEncodeError:
                printable = where.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                problems.append((printable, "name is not valid UTF-8: rename it"))
                continue
            if _is(item.is_dir):
                target = entry.resolve()
                parent = entry.parent.resolve()
                if target == parent or target in parent.parents:
                    problems.append((where, f"symlink loop: points back to {target}; not followed"))
                elif target in seen or target in others:
                    problems.append((where, f"links to {target}, scanned elsewhere; not followed"))
                else:
                    seen.add(target)
                    visit(entry)
            elif _is(item.is_file):
                files.append(entry)
            elif item.is_symlink():
                problems.append((where, _broken_link(entry)))
        # sockets and FIFOs are neither images nor worth a line in the report

    visit(folder)
    return sorted(files), problems


def _is(test) -> bool:
    """``DirEntry.is_dir`` / ``is_file`` as ``Path``'s answer them: False when the stat fails
    (a link loop, a vanished target) instead of raising."""
    try:
        return test()
    except OSError:
        return False


def _broken_link(link: Path) -> str:
    try:
        link.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"symlink loop: {os.readlink(link)} leads back to itself"
    return f"broken symlink: its target {os.readlink(link)} does not exist"


def class_name(folder_name: str) -> str:
    """The class a folder names, NFC-normalised: macOS writes "Café" decomposed (NFD), Linux
    keeps what it is given, and the same class must compare equal on both."""
    return unicodedata.normalize("NFC", folder_name)


# The file that makes a folder a pack (alexnet_exp.packed): here, where a data root is first
# looked at, so a pack given as class folders is told apart from an empty folder.
PACK_MANIFEST = "manifest.json"
# Why a folder's files are missing from a listing (a listing with it is not the whole tree)
UNLISTABLE = "cannot list folder"


def class_folders(root: Path, min_classes: int) -> tuple[list[Path], list[str]]:
    """The class folders under ``root`` and their names (NFC), sorted by name; a root that
    is not a folder of at least ``min_classes`` class folders is refused, saying how to lay
    it out."""
    layout = "(layout: <data.dir>/<class name>/<image files>)"
    if (root / PACK_MANIFEST).is_file():
        raise DataError(f"{root} is a pack written by alexnet-exp-pack, not class folders:"
                        f" train on it with data=records data.dir={root}")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: point data.dir at a folder of class folders"
                        f" {layout}")
    class_dirs = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: class_name(d.name),  # the same label order on macOS and Linux
    )
    if len(class_dirs) < min_classes or not class_dirs:
        found = f": {', '.join(d.name for d in class_dirs)}" if class_dirs else ""
        raise DataError(
            f"{root} has {len(class_dirs)} class folder(s){found}; need at least {min_classes}:"
            f" put each class's images in its own sub-folder {layout}"
        )
    class_names = [class_name(d.name) for d in class_dirs]
    same = [n for n, k in Counter(class_names).items() if k > 1]
    if same:
        raise DataError(f"{root} has two class folders named {same[0]} (one NFC, one NFD"
                        " Unicode): merge them into one folder")
    return class_dirs, class_names
