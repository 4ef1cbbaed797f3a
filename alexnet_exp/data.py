"""The tf.data pipelines of a training run, from the two splits' records
(:mod:`alexnet_exp.inputs`).

:mod:`alexnet_exp.scan` finds and checks a folder's images first; a pack
(:mod:`alexnet_exp.packed`) was checked and split when it was written. The pipeline decodes
in parallel (:mod:`alexnet_exp.decode`), turns each image upright, caches the resized uint8
images before any random op (so every epoch draws fresh crops from the cache), then augments,
batches and prefetches. Without a cache only each training crop is decoded
(:func:`alexnet_exp.decode.cropping_decoder`).
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from alexnet_exp import augment
from alexnet_exp.config import AugmentConfig, DataConfig
from alexnet_exp.data_cache import CacheChoice, cached, choose_cache, disk_cache_folder
from alexnet_exp.decode import cropping_decoder, decoder
from alexnet_exp.graphs import mapped
from alexnet_exp.inputs import SplitInput, read_inputs
from alexnet_exp.scan import DataReport, JpegSides

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


def _decoded(split: SplitInput, decode, size: int, cache: CacheChoice, folder: Path,
             name: str) -> tf.data.Dataset:
    """(uint8 image, label, index into ``files``) of every image of ``split`` that decodes,
    in order."""
    ds = mapped(split.records, decode)
    # Every file passed the same decoder in scan_folder; one rewritten or deleted since then is
    # dropped rather than ending the run with a traceback naming no file, in both splits. The
    # index says which files came through; changed_since_scan names the others.
    ds = ds.ignore_errors(log_warning=True)
    return cached(ds, cache.mode, folder,
                  f"{name}-{split.cache_key(size)}" if cache.mode == "disk" else name)


def _train_stream(records: tf.data.Dataset, decoded: tf.data.Dataset, cache: CacheChoice,
                  count: int, seed: int, batch_size: int, augment_one,
                  crop_and_augment) -> tf.data.Dataset:
    """The shuffled, augmented training images in batches, each image with its seed pair.

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
        return mapped(pairs, lambda item, pair: augment_one(item[0], item[1], pair)).batch(
            batch_size)

    pairs = tf.data.Dataset.zip((records.shuffle(buffer, seed=seed), seeds))
    batches = mapped(pairs, lambda record, pair: crop_and_augment(*record, pair)).batch(batch_size)
    # As in _decoded, a file broken since the scan is dropped instead of ending the run, here
    # with the rest of its batch: errors ignored after the batch, not between it and the map,
    # let tf.data fuse the two (the pipeline's CPU per image: 0.735 ms against 0.775,
    # measured). A file changed mid-run costs one batch of each epoch.
    return batches.ignore_errors(log_warning=True)


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


def _mixed_batches(batches: tf.data.Dataset, aug_cfg: AugmentConfig, seed: int) -> tf.data.Dataset:
    """Training batches through mixup / cutmix when either is on, with a seed stream of their
    own, so the per-image draws stay what they are without them."""
    mix = augment.batch_mix(aug_cfg)
    if mix is None:
        return batches
    seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
    return mapped(tf.data.Dataset.zip((batches, seeds)), lambda batch, pair: mix(*batch, pair))


def _training_batches(train_in: SplitInput, decoded: tf.data.Dataset, cache: CacheChoice,
                      aug_cfg: AugmentConfig, input_size: int,
                      lighting: augment.LightingBasis | None, num_classes: int, batch_size: int,
                      seed: int, from_bytes: bool, sides: JpegSides | None) -> tf.data.Dataset:
    """The augmented, one-hot training batches: crops of the cached images, or each file's crop
    decoded alone when nothing is cached; then mixup / cutmix."""
    train_fn = augment.train_transform(aug_cfg, input_size, lighting)
    crop = cropping_decoder(aug_cfg, input_size, from_bytes, sides)
    finish = augment.finishing_transform(aug_cfg, lighting)

    def augment_one(image, label, pair):
        return train_fn(image, pair), tf.one_hot(label, num_classes)

    def crop_and_augment(source, orientation, label, _, pair):
        return finish(*crop(source, orientation, pair)), tf.one_hot(label, num_classes)

    batches = _train_stream(train_in.records, decoded, cache, len(train_in.files), seed,
                            batch_size, augment_one, crop_and_augment)
    return _mixed_batches(batches, aug_cfg, seed)


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
    train_in, val_in, report = read_inputs(data_cfg, root, seed, batch_size, limits, worker)
    decode = decoder(size, from_bytes=data_cfg.name == "records")
    num_classes = len(report.class_names)
    folder = disk_cache_folder(data_cfg, cache_dir)
    cache = choose_cache(data_cfg, len(train_in.files) + len(val_in.files), size, folder)
    report.cache = cache.to_text()
    train_base = _decoded(train_in, decode, size, cache, folder, "train")
    val_base = _decoded(val_in, decode, size, cache, folder, "val")

    lighting = _lighting(aug_cfg, train_base, len(train_in.files), fit_lighting)
    train = _training_batches(train_in, train_base, cache, aug_cfg, input_size, lighting,
                              num_classes, batch_size, seed, data_cfg.name == "records",
                              report.jpeg_sides)
    eval_fn = augment.eval_transform(aug_cfg, input_size)

    def batched(ds: tf.data.Dataset) -> tf.data.Dataset:  # aligned with val_files, val_labels
        return with_options(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), data_cfg, True)

    val = mapped(val_base, lambda image, label, _: (eval_fn(image), tf.one_hot(label, num_classes)))
    val_indexed = mapped(val_base, lambda image, _, index: (eval_fn(image), index))
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
