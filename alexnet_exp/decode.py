"""How a file becomes the pixels a model sees: every decode of an image (training,
validation, evaluation, prediction, export) goes through :func:`decoder`, so the pixels a model
is trained on are the pixels it is later asked about, upright; :func:`cropping_decoder` is the
training crop of the stream that caches nothing. :mod:`alexnet_exp.data` builds the pipelines
around them.
"""

import tensorflow as tf

from alexnet_exp import augment
from alexnet_exp.checks import decode_pixels, read_orientation, upright
from alexnet_exp.config import AugmentConfig
from alexnet_exp.scan import JpegSides


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


def crop_decode_for(sides: JpegSides | None, size: int) -> str:
    """How the uncached training crop decodes the images of a set whose images are ``sides``,
    stored at ``size``: ``fused`` (each crop alone: every image is an upright JPEG small enough
    to need no scaled decode), ``whole`` (each decoded whole, then cut: none is), or ``either``
    (a branch per image picks; also when the set is not known). Chosen once for the set: a
    ``tf.cond`` in a tf.data map is a function call per image, 6% of the pipeline's CPU
    (measured)."""
    # decode_pixels decodes a JPEG of twice the stored side scaled down: cut as it does
    if sides is not None:
        if not sides.others and sides.jpegs and sides.largest < 2 * size:
            return "fused"
        if not sides.jpegs or sides.smallest >= 2 * size:
            return "whole"
    return "either"


def cropping_decoder(aug_cfg: AugmentConfig, input_size: int, from_bytes: bool,
                     sides: JpegSides | None = None):
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
    ``sides`` (the scan's :class:`JpegSides`) says which of the two a set's images need, when
    they all need the same (:func:`crop_decode_for`).
    """
    size = augment.stored_size(aug_cfg, input_size)
    box = augment.crop_box(aug_cfg, input_size)
    whole = decoder(size, from_bytes=True)
    way = crop_decode_for(sides, size)
    # The header read of a file that is no plain JPEG: a 1x1 JPEG's, so that which decode an
    # image needs is one test and one tf.cond (a nested pair cost 5% of the pipeline's CPU)
    stand_in = tf.io.encode_jpeg(tf.zeros([1, 1, 3], tf.uint8)) if way == "either" else None

    def window(shape: tf.Tensor, begin: tf.Tensor, extent: tf.Tensor) -> tf.Tensor:
        # (y, x, height, width) of the stored square's box on the JPEG's height x width
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

        def fused(shape: tf.Tensor) -> tf.Tensor:
            return tf.image.decode_and_crop_jpeg(contents, window(shape, begin, extent),
                                                 channels=3)

        def cut() -> tf.Tensor:
            return tf.slice(whole(contents, orientation)[0], tf.concat([begin, [0]], 0),
                            tf.concat([extent, [3]], 0))

        if way == "fused":
            image = fused(tf.io.extract_jpeg_shape(contents)[:2])
        elif way == "whole":
            image = cut()
        else:
            plain = tf.io.is_jpeg(contents) & (tf.cast(orientation, tf.int32) == 1)
            shape = tf.io.extract_jpeg_shape(tf.where(plain, contents, stand_in))[:2]
            image = tf.cond(plain & (tf.reduce_min(shape) < 2 * size), lambda: fused(shape),
                            cut)
        image = tf.image.resize(image, [input_size, input_size])
        return tf.ensure_shape(image, [input_size, input_size, 3]), seeds

    return decode


def orientations_of(files: list[str], known: dict[str, int] | None = None) -> list[int]:
    """The EXIF orientation of each file: from ``known`` (a scan's report) or read now."""
    if known is not None:
        return [known.get(f, 1) for f in files]
    return [read_orientation(f) for f in files]
