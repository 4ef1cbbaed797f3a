"""The identity of a run's data: its classes, every image file (size and mtime), the split.

A run's config hash says *how* it trains; the fingerprint says *on what*. Resume and the
sweep's skip of FINISHED jobs match on both, so a class folder added, an image replaced or
``data.val_split`` changed between a kill and the rerun never continues (or stands in for) a
run trained on other data.

The fingerprint is taken from the file system alone (names and ``stat``), without decoding or
TensorFlow, so the runner can compare it before TensorFlow loads. It covers every file with an
image suffix in a class folder, also the ones the check pass will skip: a broken file made
good is a change of data too. Size and mtime are what rsync and make trust for "same file";
reading every byte would cost minutes on a big data set at every start.
"""

import hashlib
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError
from alexnet_exp.folders import list_files
from alexnet_exp.sources import IMAGE_SUFFIXES


def _nfc(name: str) -> str:
    """macOS writes names decomposed (NFD), Linux keeps what it is given: compare them as NFC."""
    return unicodedata.normalize("NFC", name)


@dataclass(frozen=True)
class DataFingerprint:
    classes: tuple[str, ...]
    files: dict[str, tuple[int, int]]  # "<class>/<path in it>" -> (size, mtime_ns)
    split: dict[str, object]  # what decides the train/val split besides the files

    @cached_property  # compared per run and written to tags: hash the file list once
    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return {"classes": list(self.classes),
                "files": {k: list(v) for k, v in sorted(self.files.items())},
                "split": dict(self.split)}

    @classmethod
    def from_dict(cls, data: dict) -> "DataFingerprint":
        return cls(tuple(data["classes"]), {k: tuple(v) for k, v in data["files"].items()},
                   dict(data["split"]))

    def class_counts(self) -> dict[str, int]:
        """Image files per class folder (the ones the check pass may still skip included)."""
        counts = Counter(key.split("/", 1)[0] for key in self.files)
        return {c: counts.get(c, 0) for c in self.classes}

    def changes_since(self, old: "DataFingerprint") -> str:
        """What differs from ``old`` in a few words: ``classes +tulips, 12 files added``."""
        parts = []
        gained = [c for c in self.classes if c not in old.classes]
        lost = [c for c in old.classes if c not in self.classes]
        if gained or lost:
            parts.append("classes " + " ".join([*(f"+{c}" for c in gained),
                                                *(f"-{c}" for c in lost)]))
        added = len(self.files.keys() - old.files.keys())
        removed = len(old.files.keys() - self.files.keys())
        kept = [(old.files[k], v) for k, v in self.files.items() if k in old.files]
        changed = sum(was[0] != now[0] for was, now in kept)
        # Same size, new mtime: most often a copy that did not keep the times (cp without -p,
        # a re-extracted archive, a git checkout), which a stat cannot tell from an edit
        touched = sum(was[0] == now[0] and was != now for was, now in kept)
        for count, what in ((added, "added"), (removed, "removed"), (changed, "changed"),
                            (touched, "touched (same size, new modification time: copied"
                                      " without keeping times?)")):
            if count:
                parts.append(f"{count} file{'s' if count != 1 else ''} {what}")
        parts += [f"{key} {old.split.get(key)} -> {value}" for key, value in self.split.items()
                  if old.split.get(key) != value]
        return ", ".join(parts) or "same files, different fingerprint"


def fingerprint_folder(root: Path, cfg: DataConfig, seed: int) -> DataFingerprint:
    """The fingerprint of the class-folder tree at ``root`` as ``cfg`` and ``seed`` split it.

    A folder that is not there yet gets an empty fingerprint: the data scan that follows says
    what is wrong with it, in the words it has for that.
    """
    root = Path(root)
    try:
        class_dirs = sorted((d for d in root.iterdir() if d.is_dir()
                             and not d.name.startswith(".")), key=lambda d: d.name)
    except OSError:
        class_dirs = []
    # The scan's walk, with the scan's no-go folders: the fingerprint covers the files the
    # scan looks at (a link to the root or to another class is not followed by either).
    others = {root.resolve()} | {d.resolve() for d in class_dirs}
    files: dict[str, tuple[int, int]] = {}
    for folder in class_dirs:
        listed, _ = list_files(folder, others - {folder.resolve()})
        for path in (p for p in listed if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                st = path.stat()
            except OSError:  # gone since the listing: the scan will not find it either
                continue
            key = _nfc(path.relative_to(root).as_posix())
            files[key] = (st.st_size, st.st_mtime_ns)
    split = {"data.val_split": cfg.val_split, "seed": seed,
             "data.max_images_per_class": cfg.max_images_per_class}
    return DataFingerprint(tuple(_nfc(d.name) for d in class_dirs), files, split)


def require_two_per_class(counts: dict[str, int]) -> None:
    """A class folder with one image cannot give one to train on and one to validate.

    Checked on the file listing before TensorFlow loads (a second, not ten) and again on the
    images left after the check pass; a folder with none gets the scan's own message, which
    says why its files are not images.
    """
    few = {name: n for name, n in counts.items() if n == 1}
    if few:
        named = ", ".join(f"{name} ({n} image)" for name, n in few.items())
        raise DataError(
            f"cannot split into train/val: class folder(s) {named} need at least 2 usable"
            " images each (one to train, one to validate): add images or remove the folder"
        )
