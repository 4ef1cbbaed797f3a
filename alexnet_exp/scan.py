"""What is under a data root: the images that can be trained on, and why the others cannot.

Every image is decoded once before training by the decoder the pipeline uses (the result, a
hash of the bytes and the EXIF orientation are cached per file size, mtime, ctime and inode),
so a corrupt file is skipped and listed in the :class:`DataReport` instead of killing an epoch
halfway; :mod:`alexnet_exp.checks` says why. Apart from the pipeline (:mod:`alexnet_exp.data`):
evaluation scans a test folder it builds no training pipeline for.
"""

import hashlib
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alexnet_exp.checks import (
    PERMISSION_DENIED,
    check_image,
    file_digest,
    read_orientation,
)
from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError
from alexnet_exp.folders import class_folders, list_files
from alexnet_exp.paths import atomic_write_text, cache_root
from alexnet_exp.sources import IMAGE_SUFFIXES

# Version of the check cache's entries: an entry of another version is never trusted (an
# entry from before orientation was recorded would otherwise say "upright" for every photo).
CHECK_CACHE_VERSION = 2


@dataclass
class DataReport:
    """What was found under the data root: printed before training and logged with the run."""

    root: str
    class_names: list[str]
    counts: dict[str, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    train_size: int = 0
    val_size: int = 0
    # Groups of byte-identical files filed under different classes: a labelling error, so
    # every copy is left out (which label would be right?). Copies within a class are kept.
    duplicates: list[list[str]] = field(default_factory=list)
    # EXIF orientation (2..8) of the images that are stored turned (phone photos): they are
    # turned upright when decoded, as every viewer shows them.
    oriented: dict[str, int] = field(default_factory=dict)
    # Images that passed the check but stopped decoding during the run (rewritten or deleted):
    # left out of every epoch that read them after the change (a cached epoch did not).
    dropped: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_text(self) -> str:
        lines = [
            f"data: {self.root}",
            f"  {len(self.class_names)} classes, {sum(self.counts.values())} usable images"
            f" (train {self.train_size}, val {self.val_size})",
            "  per class: " + ", ".join(f"{c} {self.counts[c]}" for c in self.class_names),
            f"  ignored {len(self.ignored)} non-image files",
            f"  skipped {len(self.skipped)} unreadable images",
        ]
        lines += [f"    {path}: {reason}" for path, reason in self.skipped]
        if self.duplicates:
            lines.append(
                f"  WARNING: {sum(map(len, self.duplicates))} files are the same image in"
                " different classes (a labelling error); left out:"
            )
            lines += ["    " + " = ".join(group) for group in self.duplicates]
        if self.oriented:
            lines.append(f"  turned upright {len(self.oriented)} images by their EXIF orientation")
        if self.dropped:
            lines.append(f"  {len(self.dropped)} images stopped decoding during the run (left out"
                         " of the epochs that read them after that):")
            lines += [f"    {path}: {reason}" for path, reason in self.dropped]
        return "\n".join(lines)


def _inspect(path: str) -> list:
    reason = check_image(path)
    if reason:
        return [reason, None, 1]
    return [None, file_digest(path), read_orientation(path)]


def _check_all(paths: list[str], root: Path, workers: int) -> dict[str, list]:
    """``[reason, digest, orientation]`` per file, checking only files not seen before.

    The cache is keyed by size, mtime, ctime and inode. Size and mtime alone miss a file
    rewritten in place with its old mtime put back (``rsync --times``, a restore from backup,
    ``touch -r``): its stale "good" entry then fed the pipeline a corrupt file. ctime and the
    inode change on every write or replacement and cannot be set by a user. Readability is
    asked afresh every time, as chmod does not change the mtime.
    """
    name = f"{hashlib.sha1(str(root).encode()).hexdigest()}.v{CHECK_CACHE_VERSION}.json"
    store = cache_root() / "checks" / name
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    stamps, result = {}, {}
    for p in paths:
        try:
            st = Path(p).stat()
        except OSError as exc:
            result[p] = [f"cannot read: {exc.strerror or exc}", None, 1]
            continue
        if not os.access(p, os.R_OK):
            result[p] = [PERMISSION_DENIED, None, 1]
            continue
        stamps[p] = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        entry = known.get(p, [])
        if entry[:4] == stamps[p] and len(entry) == 7:
            result[p] = entry[4:]
    todo = [p for p in stamps if p not in result]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for p, checked in zip(todo, pool.map(_inspect, todo), strict=True):
            known[p], result[p] = [*stamps[p], *checked], checked
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(store, json.dumps({p: known[p] for p in stamps}))
    except OSError:
        pass  # a read-only cache only costs a re-check next time
    return result


def scan_folder(
    root: Path, cfg: DataConfig, min_classes: int = 2
) -> tuple[list[str], np.ndarray, DataReport]:
    """Usable image paths, integer labels (index into sorted class names) and the report.

    Training needs two classes; a test set may hold one (``min_classes=1``). Every problem
    that would otherwise surface mid-epoch is raised here, before anything is trained.
    """
    class_dirs, class_names = class_folders(root, min_classes)
    others = {root.resolve()} | {d.resolve() for d in class_dirs}
    candidates, ignored, problems = [], [], []
    for label, folder in enumerate(class_dirs):
        files, unfollowed = list_files(folder, others - {folder.resolve()})
        problems += unfollowed
        images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
        ignored += [str(f) for f in files if f.suffix.lower() not in IMAGE_SUFFIXES]
        candidates += [(str(f), label) for f in images]
    ignored += [str(f) for f in root.iterdir() if f.is_file() and not f.name.startswith(".")]
    checked = _check_all([p for p, _ in candidates], root, cfg.check_workers)
    skipped = problems + [(p, checked[p][0]) for p, _ in candidates if checked[p][0]]
    usable = [(p, label) for p, label in candidates if not checked[p][0]]
    usable, duplicates = _without_cross_class_copies(usable, checked)
    if cfg.max_images_per_class:
        kept, taken = [], Counter()
        for path, label in usable:
            taken[label] += 1
            if taken[label] <= cfg.max_images_per_class:
                kept.append((path, label))
        usable = kept
    counts = Counter(label for _, label in usable)
    report = DataReport(str(root), class_names, {c: counts[i] for i, c in enumerate(class_names)},
                        skipped, ignored, duplicates=duplicates,
                        oriented={p: checked[p][2] for p, _ in usable if checked[p][2] != 1})
    empty = [c for c, n in report.counts.items() if n == 0]
    if empty:
        folders = dict(zip(class_names, class_dirs, strict=True))
        why = "; ".join(f"{c}: {_why_no_image(folders[c], report)}" for c in empty)
        raise DataError(
            f"class folder(s) {', '.join(empty)} under {root} hold no usable image ({why}):"
            " add images or remove the folder"
        )
    files = [p for p, _ in usable]
    return files, np.array([y for _, y in usable], dtype=np.int32), report


def _without_cross_class_copies(usable: list[tuple[str, int]], checked: dict):
    """``usable`` without byte-identical files filed under different classes (which label
    would be right?), and those groups of copies for the report."""
    by_digest = defaultdict(list)
    for path, label in usable:
        by_digest[checked[path][1]].append((path, label))
    duplicates = [[p for p, _ in group] for group in by_digest.values()
                  if len({label for _, label in group}) > 1]
    left_out = {p for group in duplicates for p in group}
    return [(p, label) for p, label in usable if p not in left_out], duplicates


def _why_no_image(folder: Path, report: DataReport) -> str:
    """What a class folder holds instead of images, in a few words for the error message."""
    def inside(path: str) -> bool:
        return path == str(folder) or path.startswith(str(folder) + os.sep)

    skipped = [(Path(p).name, r) for p, r in report.skipped if inside(p)]
    copies = sum(inside(p) for group in report.duplicates for p in group)
    others = sum(inside(p) for p in report.ignored)
    parts = []
    if skipped:
        parts.append(f"{len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]}")
    if copies:
        parts.append(f"{copies} also filed under another class")
    if others:
        parts.append(f"{others} non-image file(s), not .jpg, .jpeg, .png, .bmp or .gif")
    return ", ".join(parts) or "empty folder"


def changed_since_scan(files: list[str], root: Path, cfg: DataConfig) -> list[tuple[str, str]]:
    """The files of ``files`` that no longer pass the check, with why: the ones the pipeline
    dropped during the run. Cheap: only files whose stamps changed are decoded again."""
    checked = _check_all(files, root, cfg.check_workers)
    return [(f, checked[f][0]) for f in files if checked[f][0]]
