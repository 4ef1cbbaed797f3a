"""A data set's two splits as the records the pipeline reads: a class folder split here (seeded
and stratified, each part cut to the run's batch limits), or a pack's own split read from its
shards. :mod:`alexnet_exp.data` decodes, caches and augments them.
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from alexnet_exp import packed
from alexnet_exp.config import DataConfig, limited_count
from alexnet_exp.decode import orientations_of
from alexnet_exp.errors import DataError
from alexnet_exp.fingerprint import require_two_per_class
from alexnet_exp.scan import DataReport, JpegSides, scan_folder

log = logging.getLogger(__name__)


def read_inputs(data_cfg: DataConfig, root: Path, seed: int, batch_size: int, limits,
                worker: tuple[int, int]) -> tuple["SplitInput", "SplitInput", DataReport]:
    """The two splits' records and the data report: a pack's own split, or the folder scanned
    (every image checked) and split here, each cut to ``limits``."""
    if data_cfg.name == "records":
        return packed_inputs(root, data_cfg, seed, batch_size, limits, worker)
    files, labels, report = scan_folder(root, data_cfg)
    train_idx, val_idx = split_indices(labels, report, data_cfg.val_split, seed, batch_size,
                                       limits)
    train_in, val_in = (folder_input([files[i] for i in idx], labels[idx], report.oriented)
                        for idx in (train_idx, val_idx))
    return train_in, val_in, report


def stratified_split(labels: np.ndarray, val_split: float, seed: int,
                     class_names: list[str] | None = None):
    """Index arrays (train, val), each class split in the same proportion, fixed by ``seed``.

    ``class_names`` (label index -> folder name) lets the error name the folder that is too
    small; sklearn's own message names the label index, which the user never saw.
    """
    from sklearn.model_selection import train_test_split

    if class_names:
        counts = Counter(labels.tolist())
        require_two_per_class({class_names[i]: n for i, n in sorted(counts.items())})
    try:
        return train_test_split(
            np.arange(len(labels)), test_size=val_split, stratify=labels, random_state=seed
        )
    except ValueError as exc:
        raise DataError(
            f"cannot split {len(labels)} images into train/val with data.val_split={val_split}"
            f" ({exc}); add images or change data.val_split"
        ) from exc


def split_indices(labels, report, val_split: float, seed: int, batch_size: int, limits):
    """The seeded stratified split (its sizes go in the data report), then each part cut to
    ``limits`` (whole batches, or a fraction of them)."""
    train_idx, val_idx = stratified_split(labels, val_split, seed, report.class_names)
    report.train_size, report.val_size = len(train_idx), len(val_idx)  # the split, unlimited
    return (train_idx[:limited_count(limits[0], len(train_idx), batch_size)],
            val_idx[:limited_count(limits[1], len(val_idx), batch_size)])


@dataclass
class SplitInput:
    """One split as the pipeline reads it: ``records`` of (path or bytes, EXIF orientation,
    label, index into ``files``), what :func:`alexnet_exp.decode.decoder` takes, and the files
    they are."""

    records: tf.data.Dataset
    files: list[str]
    labels: np.ndarray
    # names its decoded images at a size in a disk cache (a folder's costs a stat per file)
    cache_key: Callable[[int], str]
    own_shards: bool = False  # records of this worker's own shards of a pack, no one else's


def folder_input(files: list[str], labels: np.ndarray, oriented: dict[str, int]) -> SplitInput:
    """One split of a scanned folder; ``oriented``: the scan's EXIF orientations by file."""
    orientations = orientations_of(files, oriented)
    indices = np.arange(len(files), dtype=np.int64)
    records = tf.data.Dataset.from_tensor_slices((files, orientations, labels, indices))

    def cache_key(size: int) -> str:
        # The disk cache is reused by name: key it on every file's stamps (as the check store)
        # and orientation too, so an image replaced in place is decoded afresh, not served stale.
        stamps = [(f, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                  for f in files for st in [Path(f).stat()]]
        return cache_key_of([stamps, orientations, size])

    return SplitInput(records, files, labels, cache_key)


def packed_inputs(root: Path, cfg: DataConfig, seed: int, batch_size: int, limits,
                  worker: tuple[int, int]) -> tuple[SplitInput, SplitInput, DataReport]:
    """The train and val splits of the pack at ``root``, cut to ``limits`` (the first images
    by index), and a data report from its manifest. ``worker``: (index, workers) of a
    multi-worker job, whose workers each read their own training shards when there are
    enough to go round (and no limit, which takes the first images of all)."""
    manifest = packed.open_pack(root)
    packed.require_training_pack(root, manifest, cfg.val_split, cfg.max_images_per_class)
    digest = packed.fingerprint(root, manifest).digest  # the shards' stamps: a few stats
    inputs = []
    for split, limit in zip(packed.TRAINING_SPLITS, limits, strict=True):
        files, labels = packed.read_index(root, manifest, split)
        count = limited_count(limit, len(files), batch_size)
        take = count if count < len(files) else None
        shards = len(manifest.splits[split].shards)
        own = split == "train" and take is None and 1 < worker[1] <= shards
        if split == "train" and worker[1] > shards:
            log.warning(f"alexnet-exp: the pack has {shards} training shards for {worker[1]}"
                        " workers: every worker reads all of them (pack again with a smaller"
                        " shard_size for a shard per worker)")
        records = packed.read_split(root, manifest, split, seed, shuffle=split == "train"
                                    and take is None, take=take,
                                    part=worker if own else (0, 1))
        inputs.append(SplitInput(records, files[:count], np.array(labels[:count], np.int32),
                                 lambda size, split=split, count=count, own=own: cache_key_of(
                                     [digest, split, count, size, worker if own else 0]),
                                 own))
    source = manifest.source.get("report", {})
    counts = {c: sum(info.counts.get(c, 0) for info in manifest.splits.values())
              for c in manifest.class_names}
    report = DataReport(
        str(root), manifest.class_names, counts,
        skipped=[tuple(item) for item in source.get("skipped", [])],
        duplicates=source.get("duplicates", []), train_size=manifest.splits["train"].images,
        val_size=manifest.splits["val"].images, check_level="none",
        jpeg_sides=JpegSides(**source["jpeg_sides"]) if source.get("jpeg_sides") else None,
        check=(f"packed from {manifest.source.get('root')} with data.val_split="
               f"{manifest.split.get('data.val_split')}, seed {manifest.split.get('seed')}"
               f" (the pack's split, whatever this run's seed); {source.get('check', '')}"))
    return inputs[0], inputs[1], report


def cache_key_of(identity: list) -> str:
    """A short, stable name for what ``identity`` lists (a disk cache's file name)."""
    return hashlib.sha1(json.dumps(identity).encode()).hexdigest()[:16]
