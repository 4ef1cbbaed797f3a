"""What is under a data root: the images that can be trained on, and why the others cannot.

Every image is decoded once before training by the decoder the pipeline uses (the result, a
hash of the bytes, the EXIF orientation and a JPEG's size are kept per file size, mtime, ctime
and inode in :mod:`alexnet_exp.check_store`), so a corrupt file is skipped and listed in the
:class:`DataReport` instead of killing an epoch halfway; :mod:`alexnet_exp.checks` says why.
From ``FULL_CHECK_BELOW`` images on, ``data.check=auto`` reads only the headers. Apart from
the pipeline (:mod:`alexnet_exp.data`): evaluation scans a test folder it builds no training
pipeline for.
"""

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from alexnet_exp import check_store
from alexnet_exp.check_store import Result
from alexnet_exp.checks import (
    PERMISSION_DENIED,
    check_image,
    file_digest,
    read_header,
)
from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError
from alexnet_exp.folders import UNLISTABLE, class_folders, list_files
from alexnet_exp.paths import cache_root
from alexnet_exp.sources import IMAGE_SUFFIXES


@dataclass(frozen=True)
class JpegSides:
    """What the usable images are, as the uncached training crop decodes them: how many are
    upright JPEGs and their shorter sides' range, and how many are not (another format, or
    stored turned). Counted by the check pass from the headers it reads anyway, so the crop's
    decode is chosen once, when the pipeline is built, where it was a branch per image
    (:func:`alexnet_exp.decode.cropping_decoder`)."""

    jpegs: int = 0
    others: int = 0
    smallest: int = 0  # of the JPEGs' shorter sides; 0 when there are none
    largest: int = 0

    @classmethod
    def of(cls, results: list[Result]) -> "JpegSides | None":
        """None when a file was not opened (``data.check=none``): nothing is known."""
        if any(side is None for *_, side in results):
            return None
        sides = [side for _, _, orientation, side in results if side and orientation == 1]
        return cls(len(sides), len(results) - len(sides), min(sides, default=0),
                   max(sides, default=0))


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
    # How thoroughly the files were checked (data.check), and why: check_text; the level
    # itself, which the end of the run checks the files again at.
    check: str = ""
    check_level: str = "full"
    # Where the training pipeline keeps the decoded images, and why (data.cache=auto decides
    # from their size): alexnet_exp.data_cache.CacheChoice.to_text. Empty for a test folder.
    cache: str = ""
    # The usable images' formats and sizes, from their headers: the uncached crop's decode.
    # None: not known (data.check=none, or a pack written before they were counted).
    jpeg_sides: JpegSides | None = None

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
        if self.check:
            lines.append(f"  {self.check}")
        if self.cache:
            lines.append(f"  {self.cache}")
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


# data.check=auto decodes every image below this many (minutes of decode above it on a few
# cores: ImageNet's 1.28 M files take hours) and reads only the headers from it on.
FULL_CHECK_BELOW = 50_000
SAVE_EVERY = 1000  # check results per write to the store


def check_level(cfg: DataConfig, images: int) -> str:
    """``data.check``, with ``auto`` made ``full`` or ``header`` by the number of images."""
    if cfg.check != "auto":
        return cfg.check
    return "full" if images < FULL_CHECK_BELOW else "header"


def check_text(level: str, cfg: DataConfig, images: int) -> str:
    """The data report's line on how thoroughly the files were checked, and why."""
    why = (f"data.check=auto: {images:,} images, {'under' if level == 'full' else 'from'}"
           f" {FULL_CHECK_BELOW:,}" if cfg.check == "auto" else f"data.check={level}")
    what = {"full": "every image decoded once by the pipeline's decoder",
            "header": "headers read, not decoded (data.check=full decodes each): a file that"
                      " fails to decode is dropped when an epoch reads it; copies filed under"
                      " two classes are not looked for",
            "none": "files trusted, none opened: EXIF orientation is not read (photos stored"
                    " turned stay turned), copies under two classes are not looked for, a"
                    " file that fails to decode is dropped when an epoch reads it"}[level]
    return f"check: {level} ({why}; {what})"


def _inspect(path: str, level: str) -> Result:
    reason = check_image(path, decode=level == "full")
    if reason:
        return (reason, None, 1, 0)
    # The bytes' hash finds copies filed under two classes: reading every byte is the full
    # check's cost, the header check's point is not to.
    return (None, file_digest(path) if level == "full" else None, *read_header(path))


def check_files(paths: list[str], root: Path, workers: int,
                level: str = "full", listing: bool = False) -> dict[str, Result]:
    """``(reason, digest, orientation, JPEG side)`` per file (:data:`check_store.Result`),
    checking only files not seen before.
    ``listing``: ``paths`` are every image under ``root`` now, so the stored rows of any
    other file (deleted or renamed since) are dropped.

    The store is keyed by size, mtime, ctime and inode. Size and mtime alone miss a file
    rewritten in place with its old mtime put back (``rsync --times``, a restore from backup,
    ``touch -r``): its stale "good" entry then fed the pipeline a corrupt file. ctime and the
    inode change on every write or replacement and cannot be set by a user. Readability is
    asked afresh every time, as chmod does not change the mtime.
    """
    if level == "none":
        return dict.fromkeys(paths, (None, None, 1, None))
    name = f"{hashlib.sha1(str(root).encode()).hexdigest()}.v{check_store.VERSION}.sqlite"
    store = check_store.CheckStore(cache_root() / "checks" / name)
    stamps, result = {}, {}
    for p in paths:
        try:
            st = Path(p).stat()
        except OSError as exc:
            result[p] = (f"cannot read: {exc.strerror or exc}", None, 1, 0)
            continue
        if not os.access(p, os.R_OK):
            result[p] = (PERMISSION_DENIED, None, 1, 0)
            continue
        stamps[p] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    known = store.known(stamps, level)
    result.update(known)
    todo = [p for p in stamps if p not in known]
    done: dict[str, Result] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for p, checked in zip(todo, pool.map(lambda p: _inspect(p, level), todo), strict=True):
            result[p] = done[p] = checked
            if len(done) == SAVE_EVERY:  # a check stopped half-way keeps what it did
                store.save({p: (stamps[p], level, r) for p, r in done.items()})
                done.clear()
    store.save({p: (stamps[p], level, r) for p, r in done.items()})
    if listing:  # result holds every path: known, checked now, or unreadable
        store.forget_all_but(result.__contains__)
    store.close()
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
    level = check_level(cfg, len(candidates))
    # Rows of files gone are dropped only when every folder could be listed: a folder that
    # failed to list (an I/O error, a half-done rsync) keeps its files' checks for next time.
    whole = not any(why.startswith(UNLISTABLE) for _, why in problems)
    checked = check_files([p for p, _ in candidates], root, cfg.check_workers, level,
                          listing=whole)
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
                        check=check_text(level, cfg, len(candidates)), check_level=level,
                        oriented={p: checked[p][2] for p, _ in usable if checked[p][2] != 1},
                        jpeg_sides=JpegSides.of([checked[p] for p, _ in usable]))
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
        if checked[path][1] is not None:  # None: not hashed (data.check=header or none)
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


def changed_since_scan(files: list[str], root: Path, cfg: DataConfig,
                       level: str = "full") -> list[tuple[str, str]]:
    """The files of ``files`` that no longer pass the check at ``level`` (the scan's), with
    why: the ones the pipeline dropped during the run. Cheap: only files whose stamps changed
    are checked again. (A file that passed a header check and fails to decode is dropped
    unnamed: naming it would take the full decode the header check is there to spare.)"""
    checked = check_files(files, root, cfg.check_workers, level)
    return [(f, checked[f][0]) for f in files if checked[f][0]]
