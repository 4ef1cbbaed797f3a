"""``alexnet-exp-pack``: write a class-folder data set as a pack (:mod:`alexnet_exp.packed`).

The folder is checked as training checks it (``data.check``: broken files and copies filed
under two classes are left out and listed), split as training splits it (seeded, stratified,
``data.val_split``; 0 packs a test set), and each split's images are shuffled across classes
(seeded) and written in that order into shards of about ``shard_size`` bytes, as their own
encoded bytes. The pack is written beside ``output`` and renamed into place when complete, so
a pack stopped half-way (Ctrl-C, a full disk) never stands where a complete one is expected.
"""

import datetime
import json
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from alexnet_exp import packed
from alexnet_exp.config import parse_bytes
from alexnet_exp.errors import DataError
from alexnet_exp.fingerprint import fingerprint_folder
from alexnet_exp.inputs import stratified_split
from alexnet_exp.scan import DataReport, scan_folder
from alexnet_exp.sources import resolve_data_dir
from alexnet_exp.tool_config import PackConfig

log = logging.getLogger(__name__)
WRITERS = 4  # shards written at once: reading the images is most of the time


def run_pack(cfg: PackConfig, launch_dir: Path) -> packed.Manifest:
    output = (launch_dir / Path(cfg.output).expanduser()).resolve()
    root = resolve_data_dir(cfg.data)
    _refuse_output(output, root, cfg.overwrite)
    scratch = _scratch_beside(output)  # before the check pass: a folder it cannot write is news
    try:
        source = fingerprint_folder(root, cfg.data, cfg.seed)
        files, labels, report = scan_folder(root, cfg.data, min_classes=1 if _test(cfg) else 2)
        splits = _splits(labels, report, cfg)
        log.info(report.to_text())
        shuffle = np.random.default_rng(cfg.seed)
        written = {}
        for name, indices in splits.items():
            order = indices[shuffle.permutation(len(indices))]
            written[name] = _write_split(scratch, name, root, [files[i] for i in order],
                                         labels[order], report, parse_bytes(cfg.shard_size))
        manifest = packed.Manifest(
            class_names=report.class_names, splits=written,
            split={"data.val_split": cfg.data.val_split, "seed": cfg.seed,
                   "data.max_images_per_class": cfg.data.max_images_per_class},
            source={"root": str(root), "fingerprint": source.digest,
                    "report": _source_report(report)},
            created_by={"tool": "alexnet-exp-pack", "version": _version(),
                        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")},
        )
        (scratch / packed.MANIFEST).write_text(manifest.to_json())
        _move_into_place(scratch, output)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    shards = sum(len(info.shards) for info in manifest.splits.values())
    size = sum(s.size for info in manifest.splits.values() for s in info.shards)
    parts = ", ".join(f"{name} {info.images:,}" for name, info in manifest.splits.items())
    log.info(f"alexnet-exp-pack: {output}: {sum(i.images for i in manifest.splits.values()):,}"
             f" images ({parts}) in {shards} shards, {size / 1e6:,.1f} MB; train on it with"
             f" alexnet-exp data=records data.dir={output}"
             if not manifest.is_test_set else
             f"alexnet-exp-pack: {output}: {manifest.splits[packed.TEST_SPLIT].images:,} test"
             f" images in {shards} shard(s), {size / 1e6:,.1f} MB; evaluate on it with"
             f" alexnet-exp-eval run_id=<run> data.dir={output}")
    return manifest


def _scratch_beside(output: Path) -> Path:
    """The folder the pack is written in, beside ``output`` (renamed to it when complete),
    readable as a folder made with the user's umask would be (mkdtemp makes it 0700)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.partial-"))
    except OSError as exc:
        raise DataError(f"cannot write beside output={output} ({exc.strerror or exc}): name a"
                        " folder in a place you can write") from None
    umask = os.umask(0)
    os.umask(umask)
    scratch.chmod(0o777 & ~umask)
    return scratch


def _test(cfg: PackConfig) -> bool:
    return cfg.data.val_split == 0


def _refuse_output(output: Path, root: Path, overwrite: bool) -> None:
    """Only a new or empty folder, or an earlier pack with ``overwrite=true`` that holds nothing
    but the pack's own files, is ours to fill; never the data's folder, one inside it or one
    that holds it."""
    if output == root or root in output.parents or output in root.parents:
        raise DataError(f"output={output} and the data folder {root} are one inside the other:"
                        " the pack would be read as a class folder, or replacing it would"
                        " delete the images; put it elsewhere")
    if not output.exists():
        return
    if not output.is_dir():
        raise DataError(f"output={output} is a file: name a new folder")
    present = {p.name for p in output.iterdir()}
    if not present:
        return
    if not packed.is_pack(output):
        raise DataError(f"output={output} is a folder with files in it, not a pack: name a"
                        " new or empty folder")
    if not overwrite:
        raise DataError(f"output={output} holds a pack already: pass overwrite=true to"
                        " replace it, or name a new folder")
    try:
        others = present - set(packed.open_pack(output).files())
    except DataError:  # a damaged pack: replaced only if nothing else looks like user files
        others = {n for n in present if n != packed.MANIFEST and not n.endswith(
            (".tfrecord", ".files.json"))}
    if others:
        named = ", ".join(sorted(others)[:3]) + (" ..." if len(others) > 3 else "")
        raise DataError(f"output={output} holds a pack and other things ({named}):"
                        " overwrite=true replaces a pack folder whole, so move them out first,"
                        " or name a new folder")


def _splits(labels: np.ndarray, report: DataReport, cfg: PackConfig) -> dict[str, np.ndarray]:
    if _test(cfg):
        return {packed.TEST_SPLIT: np.arange(len(labels))}
    train, val = stratified_split(labels, cfg.data.val_split, cfg.seed, report.class_names)
    report.train_size, report.val_size = len(train), len(val)
    return {"train": np.asarray(train), "val": np.asarray(val)}


def _source_report(report: DataReport) -> dict:
    """The source folder's data report, without the per-file orientations: each example
    carries its own, and they would make the manifest as long as the file list."""
    kept = report.to_dict()
    kept.pop("oriented")
    kept["turned_upright"] = len(report.oriented)
    return kept


def _write_split(folder: Path, split: str, root: Path, files: list[str], labels: np.ndarray,
                 report: DataReport, shard_bytes: int) -> packed.SplitInfo:
    """The shards of one split, of about ``shard_bytes`` each (equal image counts, so the
    workers of a multi-worker job that each read some shards take the same number of steps)."""
    count = max(1, min(len(files), -(-sum(map(_size_since_checked, files)) // shard_bytes)))
    bounds = np.linspace(0, len(files), count + 1).round().astype(int)
    names = [f"{split}-{k:05d}-of-{count:05d}.tfrecord" for k in range(count)]

    def write(k: int) -> packed.Shard:
        import tensorflow as tf

        written = 0
        with tf.io.TFRecordWriter(str(folder / names[k])) as writer:
            for i in range(bounds[k], bounds[k + 1]):
                try:
                    contents = Path(files[i]).read_bytes()
                except OSError as exc:
                    raise _gone(files[i], exc) from None
                writer.write(packed.example_bytes(contents, int(labels[i]), i,
                                                  report.oriented.get(files[i], 1)))
                written += len(contents)
        log.info(f"alexnet-exp-pack: {names[k]}: {bounds[k + 1] - bounds[k]:,} images")
        return packed.Shard(names[k], int(bounds[k + 1] - bounds[k]), written,
                            (folder / names[k]).stat().st_size)

    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        shards = list(pool.map(write, range(count)))
    relative = [Path(f).relative_to(root).as_posix() for f in files]
    (folder / packed.Manifest.index_file(split)).write_text(
        json.dumps({"files": relative, "labels": labels.tolist()}))
    counts = np.bincount(labels, minlength=len(report.class_names))
    return packed.SplitInfo(len(files), dict(zip(report.class_names, counts.tolist(),
                                                 strict=True)), shards)


def _size_since_checked(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise _gone(path, exc) from None


def _gone(path: str, exc: OSError) -> DataError:
    """A file the check pass read that cannot be read now (deleted, made unreadable)."""
    return DataError(f"{path} cannot be read any more ({exc.strerror or exc}) since it was"
                     " checked: pack again")


def _move_into_place(scratch: Path, output: Path) -> None:
    """The finished pack takes ``output``'s place in renames: an earlier pack there is moved
    aside first and removed only once the new one stands."""
    old = None
    if output.exists():
        old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old-"))
        output.rename(old / "pack")
    scratch.rename(output)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("alexnet-exp")
    except PackageNotFoundError:
        return "unknown"
