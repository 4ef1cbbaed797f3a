"""Split the scanned images (or take a pack's split) and build the tf.data pipeline of a
training run.

:mod:`alexnet_exp.scan` finds and checks a folder's images first; a pack
(:mod:`alexnet_exp.packed`) was checked and split when it was written. The pipeline decodes
in parallel, turns each image upright, caches the resized uint8 images before any random op
(so every epoch draws fresh crops from the cache), then augments, batches and prefetches.
Without a cache only each training crop is decoded (:func:`cropping_decoder`).
"""

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from alexnet_exp import augment, packed
from alexnet_exp.checks import decode_pixels, read_orientation, upright
from alexnet_exp.config import AugmentConfig, DataConfig, limited_count
from alexnet_exp.data_cache import CacheChoice, choose_cache, writable_problem
from alexnet_exp.errors import DataError
from alexnet_exp.fingerprint import require_two_per_class
from alexnet_exp.scan import DataReport, scan_folder

log = logging.getLogger(__name__)
SHUFFLE_BUFFER = 2048


@dataclass
class Datasets:
    train: tf.data.Dataset
    val: tf.data.Dataset
    class_names: list[str]
    train_files: list[str]
    val_files: list[str]
    train_labels: np.ndarray
    val_labels: np.ndarray
    report: DataReport
    lighting: augment.LightingBasis | None = None
    # The validation images batched with their index into val_files (and val_labels), for
    # predictions that stay aligned with the files even if one is dropped mid-run.
    val_indexed: tf.data.Dataset | None = None
    train_steps: int = 0  # batches in one pass over train_files / val_files
    val_steps: int = 0
    cache: CacheChoice | None = None  # where the decoded images are kept, and why
    # The training images are this worker's own shards of a pack (a multi-worker job deals
    # them out): tf.distribute must not shard them again.
    own_shards: bool = False


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


def mapped(ds: tf.data.Dataset, fn) -> tf.data.Dataset:
    """``ds.map(fn)`` in parallel, ``fn`` traced as written, without AutoGraph.

    Our pipeline functions branch with ``tf.cond`` / ``tf.switch_case``, never with a Python
    ``if`` on a tensor, so AutoGraph's rewrite of them (parsing and recompiling their source)
    buys nothing and cost 0.7 s of every run's start (measured on a tiny run; a test whose
    function did need it would fail at tracing, not silently)."""
    return ds.map(tf.autograph.experimental.do_not_convert(fn),
                  num_parallel_calls=tf.data.AUTOTUNE)


def decoder(size: int, from_bytes: bool = False):
    """``fn(path, EXIF orientation, *rest) -> (uint8 image, *rest)``: every decode of a file
    (training, validation, evaluation, prediction, export) goes through it, so the pixels a
    model is trained on are the pixels it is later asked about, upright. ``from_bytes``: the
    first argument is the file's contents already (a pack's example), not its path."""

    def decode(source: tf.Tensor, orientation: tf.Tensor, *rest):
        contents = source if from_bytes else tf.io.read_file(source)
        image = upright(decode_pixels(contents, size), orientation)
        image = tf.image.resize(image, [size, size])
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return (tf.ensure_shape(image, [size, size, 3]), *rest)

    return decode


def cropping_decoder(aug_cfg: AugmentConfig, input_size: int, from_bytes: bool):
    """``fn(path or bytes, EXIF orientation, seed pair) -> (cropped image, its five seeds)``:
    the training crop of a file without decoding all of it, for the stream that caches
    nothing (every epoch decodes every file). :func:`augment.finishing_transform` does the rest.

    The crop's box is drawn in the stored image's coordinates with the seeds the cached stream
    uses (:func:`augment.crop_box`), mapped onto the JPEG's own pixels, and only that window is
    decoded (``tf.image.decode_and_crop_jpeg``: a 227 crop of a 256 resize skips a fifth of the
    pixels) and resized once, straight to the input size. Same images, same draws, same boxes
    as the cached stream; the pixels differ only by where the one resampling falls (under half
    a source pixel). A non-JPEG, a JPEG stored turned (EXIF) or one big enough for a scaled
    decode is decoded whole as :func:`decoder` does and cut as the cached stream cuts it.
    """
    size = augment.stored_size(aug_cfg, input_size)
    box = augment.crop_box(aug_cfg, input_size)
    whole = decoder(size, from_bytes=True)

    def window(contents: tf.Tensor, begin: tf.Tensor, extent: tf.Tensor) -> tf.Tensor:
        # (y, x, height, width) of the stored square's box on the JPEG's height x width
        shape = tf.io.extract_jpeg_shape(contents)[:2]
        scale = tf.cast(shape, tf.float32) / size
        side = tf.cast(tf.round(tf.cast(extent, tf.float32) * scale), tf.int32)
        side = tf.clip_by_value(side, 1, shape)
        corner = tf.cast(tf.round(tf.cast(begin, tf.float32) * scale), tf.int32)
        return tf.concat([tf.minimum(corner, shape - side), side], 0)

    def decode(source: tf.Tensor, orientation: tf.Tensor, pair: tf.Tensor):
        seeds = tf.random.experimental.stateless_split(tf.cast(pair, tf.int64), num=5)
        contents = source if from_bytes else tf.io.read_file(source)
        if box is None:  # training does not crop: the stored image is the input
            return whole(contents, orientation)[0], seeds
        begin, extent = box(seeds[0])

        def fused():
            return tf.image.decode_and_crop_jpeg(contents, window(contents, begin, extent),
                                                 channels=3)

        def cut():
            return tf.slice(whole(contents, orientation)[0], tf.concat([begin, [0]], 0),
                            tf.concat([extent, [3]], 0))

        def unscaled():  # decode_pixels decodes a JPEG of twice the stored side scaled down
            return tf.reduce_min(tf.io.extract_jpeg_shape(contents)[:2]) < 2 * size

        plain = tf.io.is_jpeg(contents) & (tf.cast(orientation, tf.int32) == 1)
        image = tf.cond(tf.cond(plain, unscaled, lambda: tf.constant(False)), fused, cut)
        image = tf.image.resize(image, [input_size, input_size])
        return tf.ensure_shape(image, [input_size, input_size, 3]), seeds

    return decode


def orientations_of(files: list[str], known: dict[str, int] | None = None) -> list[int]:
    """The EXIF orientation of each file: from ``known`` (a scan's report) or read now."""
    if known is not None:
        return [known.get(f, 1) for f in files]
    return [read_orientation(f) for f in files]


def _disk_cache_folder(cfg: DataConfig, cache_dir: Path) -> Path:
    return Path(cfg.cache_path).expanduser() if cfg.cache_path else cache_dir


def _cached(ds: tf.data.Dataset, mode: str, folder: Path, key: str) -> tf.data.Dataset:
    if mode == "memory":
        return ds.cache()
    if mode == "disk":
        problem = writable_problem(folder)
        if problem:  # before TensorFlow's own error, which names a lock file mid-epoch
            raise DataError(f"data.cache=disk: {problem}; set data.cache_path to a writable"
                            " folder, or data.cache=memory|none")
        _clear_stale_locks(folder, key)
        return ds.cache(str(folder / key))
    return ds


_held_cache_locks: list = []  # open for the life of the process: the flock is held until exit


def _clear_stale_locks(folder: Path, key: str) -> None:
    """Remove the lock files tf.data left for ``key`` if no live run of ours is using it.

    tf.data writes ``<key>_<shard>.lockfile`` while it fills a disk cache and refuses to
    start when one exists, so a run killed mid-epoch (kill -9, a node lost) left a cache path
    no later run could use. Each run holds an flock on ``<key>.alexnet-exp.lock`` (released by
    the kernel however the process ends): when this run gets it, no live run is writing the
    cache and any lock file there is stale. When another run holds it, its lock files are live
    and stay (tf.data then says another iterator is caching, as before).
    """
    import fcntl

    guard = open(folder / f"{key}.alexnet-exp.lock", "a")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        guard.close()
        return
    _held_cache_locks.append(guard)
    for stale in folder.glob(f"{key}_*.lockfile"):
        stale.unlink(missing_ok=True)


@dataclass
class SplitInput:
    """One split as the pipeline reads it: ``records`` of (path or bytes, EXIF orientation,
    label, index into ``files``), what :func:`decoder` takes, and the files they are."""

    records: tf.data.Dataset
    files: list[str]
    labels: np.ndarray
    # names its decoded images at a size in a disk cache (a folder's costs a stat per file)
    cache_key: Callable[[int], str]
    own_shards: bool = False  # records of this worker's own shards of a pack, no one else's


def _folder_input(files: list[str], labels: np.ndarray, oriented: dict[str, int]) -> SplitInput:
    orientations = orientations_of(files, oriented)
    indices = np.arange(len(files), dtype=np.int64)
    records = tf.data.Dataset.from_tensor_slices((files, orientations, labels, indices))

    def cache_key(size: int) -> str:
        # The disk cache is reused by name: key it on every file's stamps (as the check store)
        # and orientation too, so an image replaced in place is decoded afresh, not served stale.
        stamps = [(f, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
                  for f in files for st in [Path(f).stat()]]
        return _key([stamps, orientations, size])

    return SplitInput(records, files, labels, cache_key)


def _packed_inputs(root: Path, cfg: DataConfig, seed: int, batch_size: int, limits,
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
                                 lambda size, split=split, count=count, own=own: _key(
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
        check=(f"packed from {manifest.source.get('root')} with data.val_split="
               f"{manifest.split.get('data.val_split')}, seed {manifest.split.get('seed')}"
               f" (the pack's split, whatever this run's seed); {source.get('check', '')}"))
    return inputs[0], inputs[1], report


def _decoded(split: SplitInput, decode, size: int, cache: CacheChoice, folder: Path,
             name: str) -> tf.data.Dataset:
    """(uint8 image, label, index into ``files``) of every image of ``split`` that decodes,
    in order."""
    ds = mapped(split.records, decode)
    # Every file passed the same decoder in scan_folder; one rewritten or deleted since then is
    # dropped rather than ending the run with a traceback naming no file, in both splits. The
    # index says which files came through; changed_since_scan names the others.
    ds = ds.ignore_errors(log_warning=True)
    return _cached(ds, cache.mode, folder,
                   f"{name}-{split.cache_key(size)}" if cache.mode == "disk" else name)


def _key(identity: list) -> str:
    return hashlib.sha1(json.dumps(identity).encode()).hexdigest()[:16]


def _train_stream(records: tf.data.Dataset, decoded: tf.data.Dataset, cache: CacheChoice,
                  count: int, seed: int, augment_one, crop_and_augment) -> tf.data.Dataset:
    """The shuffled, augmented training images (one by one), each with its seed pair.

    With a cache the decoded images are shuffled. Without one (a set too big to keep) the file
    records are shuffled instead and only each image's crop is decoded, then augmented, in one
    map (:func:`cropping_decoder`): the same images in the same order with the same draws (a
    shuffle's draws do not depend on what it holds, and the same seed pair meets the same
    image), one parallel stage instead of two, and a buffer of file names instead of
    ``SHUFFLE_BUFFER`` decoded images.
    """
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    buffer = min(count, SHUFFLE_BUFFER)
    if cache.mode != "none":
        pairs = tf.data.Dataset.zip((decoded.shuffle(buffer, seed=seed), seeds))
        return mapped(pairs, lambda item, pair: augment_one(item[0], item[1], pair))

    pairs = tf.data.Dataset.zip((records.shuffle(buffer, seed=seed), seeds))
    stream = mapped(pairs, lambda record, pair: crop_and_augment(*record, pair))
    return stream.ignore_errors(log_warning=True)  # as _decoded: a file broken since the scan


def _sample_lighting(decoded: tf.data.Dataset, count: int, limit: int) -> augment.LightingBasis:
    """Fit the PCA colour basis on up to ``limit`` training images; the pass fills the cache."""
    stride = max(1, count // max(limit, 1))
    chunks, seen = [], 0
    for images, *_ in decoded.batch(64).as_numpy_iterator():
        for image in images:
            if seen % stride == 0:
                chunks.append(image[::4, ::4])
            seen += 1
    return augment.lighting_basis(np.stack(chunks))


def with_options(ds: tf.data.Dataset, cfg: DataConfig, ordered: bool) -> tf.data.Dataset:
    """tf.data's threading and ordering switches from ``data.threads`` / ``data.ordered``."""
    options = tf.data.Options()
    options.deterministic = ordered
    if cfg.threads:
        options.threading.private_threadpool_size = cfg.threads
    return ds.with_options(options)


def _lighting(aug_cfg: AugmentConfig, train_base: tf.data.Dataset, count: int,
              fit: bool) -> augment.LightingBasis | None:
    """The PCA colour basis of ``augment.pca_std``; a dry run builds the graph without the pass
    over the data that fitting needs (an identity basis stands in)."""
    if aug_cfg.pca_std <= 0:
        return None
    if not fit:
        return augment.LightingBasis(np.zeros(3, np.float32), np.eye(3, dtype=np.float32))
    return _sample_lighting(train_base, count, aug_cfg.pca_sample_images)


def _split(labels, report, val_split: float, seed: int, batch_size: int, limits):
    """The seeded stratified split (its sizes go in the data report), then each part cut to
    ``limits`` (whole batches, or a fraction of them)."""
    train_idx, val_idx = stratified_split(labels, val_split, seed, report.class_names)
    report.train_size, report.val_size = len(train_idx), len(val_idx)  # the split, unlimited
    return (train_idx[:limited_count(limits[0], len(train_idx), batch_size)],
            val_idx[:limited_count(limits[1], len(val_idx), batch_size)])


def _mixed_batches(batches: tf.data.Dataset, aug_cfg: AugmentConfig, seed: int) -> tf.data.Dataset:
    """Training batches through mixup / cutmix when either is on, with a seed stream of their
    own, so the per-image draws stay what they are without them."""
    mix = augment.batch_mix(aug_cfg)
    if mix is None:
        return batches
    seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
    return mapped(tf.data.Dataset.zip((batches, seeds)), lambda batch, pair: mix(*batch, pair))


def make_datasets(
    data_cfg: DataConfig,
    aug_cfg: AugmentConfig,
    root: Path,
    input_size: int,
    batch_size: int,
    seed: int,
    cache_dir: Path,
    fit_lighting: bool = True,
    limits: tuple[int | float | None, int | float | None] = (None, None),
    worker: tuple[int, int] = (0, 1),
) -> Datasets:
    """Scan ``root`` and split it (or read the pack there, split when packed), and build the
    train and validation pipelines.

    ``limits`` (``trainer.limit_train_batches``, ``limit_val_batches``) keep the first images
    of each seeded split: taken before the pipelines are built, so the cache holds only them,
    every epoch sees the same ones and the step counts Keras is given stay exact.
    """
    size = augment.stored_size(aug_cfg, input_size)
    if data_cfg.name == "records":
        train_in, val_in, report = _packed_inputs(root, data_cfg, seed, batch_size, limits,
                                                  worker)
        decode = decoder(size, from_bytes=True)
    else:
        files, labels, report = scan_folder(root, data_cfg)
        train_idx, val_idx = _split(labels, report, data_cfg.val_split, seed, batch_size, limits)
        train_in, val_in = (_folder_input([files[i] for i in idx], labels[idx], report.oriented)
                            for idx in (train_idx, val_idx))
        decode = decoder(size)
    num_classes = len(report.class_names)
    folder = _disk_cache_folder(data_cfg, cache_dir)
    cache = choose_cache(data_cfg, len(train_in.files) + len(val_in.files), size, folder)
    report.cache = cache.to_text()
    train_base = _decoded(train_in, decode, size, cache, folder, "train")
    val_base = _decoded(val_in, decode, size, cache, folder, "val")

    lighting = _lighting(aug_cfg, train_base, len(train_in.files), fit_lighting)
    train_fn = augment.train_transform(aug_cfg, input_size, lighting)
    eval_fn = augment.eval_transform(aug_cfg, input_size)

    crop = cropping_decoder(aug_cfg, input_size, from_bytes=data_cfg.name == "records")
    finish = augment.finishing_transform(aug_cfg, lighting)

    def augment_one(image, label, pair):
        return train_fn(image, pair), tf.one_hot(label, num_classes)

    def crop_and_augment(source, orientation, label, _, pair):
        return finish(*crop(source, orientation, pair)), tf.one_hot(label, num_classes)

    def batched(ds: tf.data.Dataset) -> tf.data.Dataset:  # aligned with val_files, val_labels
        return with_options(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), data_cfg, True)

    train = _train_stream(train_in.records, train_base, cache, len(train_in.files), seed,
                          augment_one, crop_and_augment)
    val = mapped(val_base, lambda image, label, _: (eval_fn(image), tf.one_hot(label, num_classes)))
    val_indexed = mapped(val_base, lambda image, _, index: (eval_fn(image), index))
    train = _mixed_batches(train.batch(batch_size), aug_cfg, seed)
    return Datasets(
        train=with_options(train.prefetch(tf.data.AUTOTUNE), data_cfg, ordered=data_cfg.ordered),
        val=batched(val),
        val_indexed=batched(val_indexed),
        train_steps=math.ceil(len(train_in.files) / batch_size),
        val_steps=math.ceil(len(val_in.files) / batch_size),
        class_names=report.class_names,
        train_files=train_in.files,
        val_files=val_in.files,
        train_labels=train_in.labels,
        val_labels=val_in.labels,
        report=report,
        lighting=lighting,
        cache=cache,
        own_shards=train_in.own_shards,
    )
