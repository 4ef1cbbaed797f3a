"""Train-time augmentation and evaluation crops, as tf ops that run inside the tf.data graph.

Images arrive as uint8 at :func:`stored_size` (what the pipeline caches) and leave as float32
pixel values in [0, 255] at the model's input size; scaling to [0, 1] is the model's first
layer, so a logged model takes raw pixels. Every random op is a stateless one seeded by a
per-element seed pair that the pipeline draws from ``tf.data.Dataset.random``: the same seed
gives the same augmented stream, run after run, and each epoch draws fresh values.
"""

import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from alexnet_exp.config import AugmentConfig
from alexnet_exp.graphs import mapped

PAPER_RESIZE = 256 / 227  # the paper's 256 px resize for 224/227 px crops


@dataclass(frozen=True)
class LightingBasis:
    """Eigen-decomposition of the training set's RGB covariance (pixels scaled to [0, 1])."""

    eigenvalues: np.ndarray  # (3,)
    eigenvectors: np.ndarray  # (3, 3), columns are eigenvectors


def eval_resize(input_size: int, crop_scale: float = PAPER_RESIZE) -> int:
    """Side of the resize that an ``input_size`` crop is cut from: training's ``crop_scale``
    (so evaluation's centre crop sees what the random crops saw), recorded with the model; the
    paper's 256/227 for a model that recorded none and for ten-crop corners."""
    return int(round(input_size * crop_scale))


def stored_size(aug: AugmentConfig, input_size: int) -> int:
    """Side of the images the pipeline decodes and caches: the larger resize when cropping."""
    return max(input_size, eval_resize(input_size, aug.crop_scale))


def lighting_basis(images: np.ndarray) -> LightingBasis:
    """PCA of RGB values (paper section 4.1) from uint8 images of shape (N, H, W, 3)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(pixels, rowvar=False))
    return LightingBasis(eigenvalues.astype(np.float32), eigenvectors.astype(np.float32))


def _center_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    offset = (tf.shape(image)[0] - size) // 2
    return tf.image.crop_to_bounding_box(image, offset, offset, size, size)


def _rotate_and_zoom(image: tf.Tensor, angle: tf.Tensor, zoom: tf.Tensor) -> tf.Tensor:
    """Affine warp about the centre, nearest fill, like ImageDataGenerator's defaults."""
    size = tf.cast(tf.shape(image)[0], tf.float32)
    center = (size - 1.0) / 2.0
    cos, sin = tf.cos(angle) / zoom, tf.sin(angle) / zoom
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    transform = tf.stack(
        [
            cos, sin, center - cos * center - sin * center,
            -sin, cos, center + sin * center - cos * center,
            0.0, 0.0,
        ]
    )
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=transform[tf.newaxis],
        output_shape=tf.shape(image)[:2],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="NEAREST",
    )
    return warped[0]


def crop_box(aug: AugmentConfig, input_size: int):
    """``fn(seed, shape) -> (begin, extent)``: the (y, x) corner and (height, width) of the
    training crop in an image of ``shape`` (default: the stored image, a ``stored_size``
    square), or None when training does not crop.

    A plain crop is the window ``tf.image.stateless_random_crop`` takes with the same seed
    (its offset, drawn here without the image); a random-resized crop covers ``min_area``..1
    of the area, aspect 3/4..4/3 (Szegedy et al. 2015). Being a box and not a cut, it can be
    cut from the stored image or, in the source's coordinates, decoded alone from the JPEG.
    """
    stored = stored_size(aug, input_size)
    stored_shape = tf.constant([stored, stored, 3])
    if aug.min_area < 1.0:
        def box(seed, shape=stored_shape):
            begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
                shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seed,
                min_object_covered=0.0, aspect_ratio_range=(3 / 4, 4 / 3),
                area_range=(aug.min_area, 1.0), max_attempts=10,
                use_image_if_no_bounding_boxes=True)
            return begin[:2], extent[:2]
        return box
    if stored == input_size:
        return None
    size = tf.constant([input_size, input_size, 3])

    def box(seed, shape=stored_shape):
        offset = tf.random.stateless_uniform([3], seed, maxval=tf.int32.max,
                                             dtype=tf.int32) % (shape - size + 1)
        return offset[:2], size[:2]
    return box


def train_transform(aug: AugmentConfig, input_size: int, basis: LightingBasis | None):
    """``fn(uint8 image, seed pair) -> float32 image`` for the training stream."""
    box = crop_box(aug, input_size)
    finish = finishing_transform(aug, basis)

    def transform(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        # Crop and flip move bytes: on uint8 they touch a quarter of the memory float32 would.
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=5)
        if box is not None:
            begin, extent = box(seeds[0], tf.shape(image))
            image = tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([extent, [3]], 0))
            if aug.min_area < 1.0:
                image = tf.image.resize(image, [input_size, input_size])
            # The slice's dynamic extent loses the channel count, and a model fed
            # (None, h, w, None) trains 2.5x slower (measured): give the static shape back.
            image = tf.ensure_shape(image, [input_size, input_size, 3])
        return finish(image, seeds)

    return transform


def finishing_transform(aug: AugmentConfig, basis: LightingBasis | None):
    """``fn(cropped image, the five seeds of its pair) -> float32 image``: what training does
    to an image after the crop (flip, rotation and zoom, PCA lighting)."""
    if aug.pca_std > 0 and basis is None:
        raise ValueError("augment.pca_std > 0 needs the training set's lighting basis")
    max_angle = math.radians(aug.rotation_degrees)

    def finish(image: tf.Tensor, seeds: tf.Tensor) -> tf.Tensor:
        if aug.flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[1])
        image = tf.cast(image, tf.float32)
        if aug.rotation_degrees > 0 or aug.zoom > 0:
            angle = tf.random.stateless_uniform([], seeds[2], -max_angle, max_angle)
            zoom = tf.random.stateless_uniform([], seeds[3], 1.0 - aug.zoom, 1.0 + aug.zoom)
            image = _rotate_and_zoom(image, angle, zoom)
        if aug.pca_std > 0:
            alpha = tf.random.stateless_normal([3], seeds[4], stddev=aug.pca_std)
            shift = tf.linalg.matvec(basis.eigenvectors, alpha * basis.eigenvalues)
            image = image + 255.0 * shift
        if aug.pca_std > 0 or aug.rotation_degrees > 0 or aug.zoom > 0:
            image = tf.clip_by_value(image, 0.0, 255.0)  # only these can leave 0..255
        return image

    return finish


def eval_transform(aug: AugmentConfig, input_size: int):
    """``fn(uint8 image) -> float32 image``: the centre crop of the training-time resize."""
    crop = stored_size(aug, input_size) > input_size

    def transform(image: tf.Tensor) -> tf.Tensor:
        image = tf.cast(image, tf.float32)
        return _center_crop(image, input_size) if crop else image

    return transform


def resized_by_epoch(batches: tf.data.Dataset, sizes: list[int], steps: int,
                     first_epoch: int = 0) -> tf.data.Dataset:
    """The repeated training batches (``steps`` per epoch, from epoch ``first_epoch``, 0-based)
    resized to ``sizes[epoch]``: progressive resizing. Sizes come from the batch's place in
    the stream, not from a variable a callback sets, so batches prefetched across an epoch's
    end are the right size, and a resumed run continues the schedule where it stopped."""
    table = tf.constant(sizes, tf.int32)
    last = len(sizes) - 1

    def resize(index, batch):
        images, *rest = batch
        epoch = tf.minimum(first_epoch + tf.cast(index // steps, tf.int32), last)
        side = table[epoch]
        # antialias: a plain bilinear downscale skips pixels and aliases fine texture
        images = tf.cond(side == tf.shape(images)[1], lambda: images, lambda: tf.image.resize(
            images, tf.stack([side, side]), antialias=True))
        return (images, *rest)

    return mapped(batches.enumerate(), resize)


def batch_mix(aug: AugmentConfig):
    """``fn(images, one-hot labels, seed pair) -> (images, labels)`` mixing each image with
    the one at the mirrored place of its (shuffled) batch, or None when both mixes are off."""
    mixes = [(mix, cfg) for mix, cfg in (("mixup", aug.mixup), ("cutmix", aug.cutmix))
             if cfg.alpha > 0 and cfg.prob > 0]
    if not mixes:
        return None

    def mix_batch(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
        seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
        # Built inside the branches, so only the mix drawn for this batch is computed.
        options = [lambda name=name, cfg=cfg: _mixed(name, cfg, images, labels, seeds[1:])
                   for name, cfg in mixes]
        if len(options) == 1:
            return options[0]()
        return tf.cond(tf.random.stateless_uniform([], seeds[0]) < 0.5, *options)

    return mix_batch


def _mixed(name: str, cfg, images: tf.Tensor, labels: tf.Tensor, seeds: tf.Tensor):
    """One mix of a batch with its reverse; the label weight is the share of pixels kept."""
    ratio = _beta(cfg.alpha, seeds[0])
    ratio = tf.where(tf.random.stateless_uniform([], seeds[1]) < cfg.prob, ratio, 1.0)
    other, other_labels = tf.reverse(images, [0]), tf.reverse(labels, [0])
    if name == "mixup":
        mixed = ratio * images + (1.0 - ratio) * other
    else:
        inside, ratio = _box(tf.shape(images)[1], tf.shape(images)[2], ratio, seeds[2])
        mixed = tf.where(inside[None, :, :, None], other, images)
    return mixed, ratio * labels + (1.0 - ratio) * other_labels


def _beta(alpha: float, seed: tf.Tensor) -> tf.Tensor:
    """A Beta(alpha, alpha) draw from two Gamma draws (TensorFlow has no stateless Beta)."""
    pair = tf.random.stateless_gamma([2], seed, alpha=alpha)
    return pair[0] / tf.maximum(pair[0] + pair[1], 1e-12)


def _box(height: tf.Tensor, width: tf.Tensor, ratio: tf.Tensor, seed: tf.Tensor):
    """CutMix's box covering about ``1 - ratio`` of the image at a random centre (cut at the
    borders), and the share of the image left outside it."""
    side = tf.sqrt(1.0 - ratio)
    h = tf.cast(tf.round(side * tf.cast(height, tf.float32)), tf.int32)
    w = tf.cast(tf.round(side * tf.cast(width, tf.float32)), tf.int32)
    centre = tf.random.stateless_uniform([2], seed, maxval=1.0)
    cy = tf.cast(centre[0] * tf.cast(height, tf.float32), tf.int32)
    cx = tf.cast(centre[1] * tf.cast(width, tf.float32), tf.int32)
    y0, y1 = tf.maximum(cy - h // 2, 0), tf.minimum(cy - h // 2 + h, height)
    x0, x1 = tf.maximum(cx - w // 2, 0), tf.minimum(cx - w // 2 + w, width)
    rows, cols = tf.range(height)[:, None], tf.range(width)[None, :]
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(height * width, tf.float32)
    return inside, 1.0 - area
