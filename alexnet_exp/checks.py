"""Which files under a class folder can be trained on, and in words why the others cannot.

The test of an image is TensorFlow's own decoder (:func:`decode_pixels`, the one the tf.data
pipeline runs), because Pillow and TensorFlow disagree at the edges: Pillow reads a PNG that
lost its last bytes, TensorFlow does not, and that file would kill an epoch. Pillow reads the
header first (format, mode, size) and names the problem when TensorFlow refuses a file.
"""

import contextlib
import functools
import hashlib
import os
import re
import threading
import warnings

import tensorflow as tf
from PIL import ExifTags, Image, UnidentifiedImageError

from alexnet_exp.errors import first_line
from alexnet_exp.graphs import traced

# Pillow's names for the formats tf.io.decode_image reads (MPO is a camera JPEG).
DECODABLE_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF"}
# Pillow's own decompression-bomb error threshold (2 x Image.MAX_IMAGE_PIXELS, ~179 MP, e.g.
# 13000x13000). Up to it an image is used: a JPEG is decoded DCT-scaled (a few MB), a
# PNG/BMP/GIF in full (width x height x 3 bytes, 300 MB at 10000x10000) once per decode.
MAX_PIXELS = 2 * 89_478_485
BIG_PIXELS = 32_000_000
CHECK_SIZE = 1024  # the check decodes a JPEG scaled down to no less than this
PERMISSION_DENIED = "permission denied: make the file readable (chmod a+r)"
# One full-size decode of a big non-JPEG at a time bounds the check's memory to one image.
_one_big_decode = threading.Semaphore(1)
_trace_lock = threading.Lock()


def upright(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """``image`` turned the way its EXIF orientation tag (1..8) says it is seen, as Pillow's
    ``ImageOps.exif_transpose`` and every photo viewer turn it; other values leave it as is.

    TensorFlow's decoders ignore the tag, so a phone's portrait photo (orientation 6: stored
    sideways, to be turned 90 degrees clockwise) would be trained on lying on its side.
    """
    # Each turn is a transpose (5-8) then flips, in straight-line ops: an eight-branch switch
    # took ~0.25 s to trace into every pipeline and check graph, this ~0.02 s.
    #   1 as is, 2 mirrored, 3 upside down (both flips), 4 flipped vertically;
    #   5 transposed, 6 then mirrored (90 degrees clockwise), 7 both (the anti-diagonal),
    #   8 flipped vertically (90 degrees counter-clockwise).
    # Most photos are upright (1) and skip the turn, which would copy their pixels.
    tag = tf.cast(orientation, tf.int32)
    tag = tf.where((tag >= 1) & (tag <= 8), tag, 1)

    def turn():
        step = (tag - 1) % 4
        transposed = tf.transpose(image, tf.where(tag >= 5, [1, 0, 2], [0, 1, 2]))
        flip_axes = tf.boolean_mask([1, 0], tf.stack([(step == 1) | (step == 2), step >= 2]))
        return tf.reverse(transposed, flip_axes)

    turned = tf.cond(tag == 1, lambda: image, turn)
    return tf.ensure_shape(turned, [None, None, image.shape[-1]])


def read_orientation(path: str) -> int:
    """The file's EXIF orientation (1..8), 1 when it has none or cannot be read."""
    return read_header(path)[0]


def read_header(path: str) -> tuple[int, int]:
    """(EXIF orientation, the shorter side if the file is a JPEG, else 0), from the header:
    ``(1, 0)`` when it cannot be read. The side says whether a training crop of the file can be
    decoded alone (:func:`alexnet_exp.decode.cropping_decoder`)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # the header only
                side = min(image.size) if image.format == "JPEG" else 0
                return _orientation(image), side
    except Exception:  # check_image names the unreadable files; upright is all this says
        return 1, 0


def _orientation(image: Image.Image) -> int:
    # A PNG's eXIf chunk after the pixel data would cost a full decode to find (Pillow loads
    # the image for it); one before them is read with the header, like a JPEG's APP1.
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a malformed EXIF block: the pixels are still fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def decode_pixels(contents: tf.Tensor, size: int) -> tf.Tensor:
    """uint8 (height, width, 3) pixels of a JPEG, PNG, BMP or GIF (first frame).

    A JPEG whose sides are at least 2, 4 or 8 times ``size`` is decoded at 1/2, 1/4 or 1/8
    scale by libjpeg's DCT scaling: a 10000x10000 photo then costs 4.7 MB instead of 300 MB,
    and the scaled decode averages pixels where the bilinear resize alone would alias. Grey,
    CMYK, palette, alpha (dropped) and 16-bit (scaled to 8) inputs all come out as RGB.
    """

    def jpeg():
        short = tf.reduce_min(tf.io.extract_jpeg_shape(contents)[:2])
        scale = tf.reduce_sum(tf.cast(short // tf.constant([2, 4, 8]) >= size, tf.int32))
        ratios = (1, 2, 4, 8)
        return tf.switch_case(
            scale, [lambda r=r: tf.io.decode_jpeg(contents, channels=3, ratio=r) for r in ratios]
        )

    def other():
        return tf.io.decode_image(contents, channels=3, expand_animations=False)

    return tf.cond(tf.io.is_jpeg(contents), jpeg, other)


@functools.cache
def _check_graph():
    # One graph call instead of a dozen eager ops: the check is twice as fast. A pixel is
    # returned so that nothing can optimise the decode away.
    decode = traced(lambda path: decode_pixels(tf.io.read_file(path), CHECK_SIZE)[0, 0])
    return decode.get_concrete_function(tf.TensorSpec([], tf.string))


def _decode_file(path: str) -> None:
    with _trace_lock:  # traced once, not once per checking thread
        graph = _check_graph()
    graph(tf.constant(path))


def check_image(path: str, decode: bool = True) -> str | None:
    """Why ``path`` cannot be trained on, or None when TensorFlow decodes it; with ``decode``
    false (``data.check=header``), None when its header says TensorFlow can read it."""
    try:
        if os.stat(path).st_size == 0:
            return "empty file (0 bytes)"
        with open(path, "rb") as f:
            head = f.read(64)
    except PermissionError:
        return PERMISSION_DENIED
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    try:
        # Over Image.MAX_IMAGE_PIXELS Pillow warns; MAX_PIXELS is our own, explicit limit.
        # (The filter list is process-wide: a concurrent check can at worst leave this one
        # harmless filter installed.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # reads the header only
    except UnidentifiedImageError:
        return _not_an_image(head)
    except Image.DecompressionBombError as exc:  # over twice Image.MAX_IMAGE_PIXELS
        return f"too large: {str(exc).rstrip('.')}; downscale it"
    except Exception as exc:  # Pillow raises many types for bad headers
        return f"cannot decode: {type(exc).__name__}: {exc}".splitlines()[0]
    with image:
        fmt, mode, (width, height) = image.format, image.mode, image.size
    if fmt not in DECODABLE_FORMATS:
        return f"format {fmt} is not JPEG, PNG, BMP or GIF"
    if fmt == "BMP" and mode not in ("RGB", "RGBA", "L"):
        # TF's BMP decoder cannot read 1-bit BMPs and reads palette indices as grey.
        return f"{mode}-mode BMP: TensorFlow cannot decode it faithfully; save as RGB"
    if width * height > MAX_PIXELS:
        return (f"too large: {width}x{height} is {width * height / 1e6:.0f} megapixels, over the"
                f" {MAX_PIXELS / 1e6:.0f} MP limit; downscale it")
    if not decode:
        return None
    failure = _tensorflow_error(path, width * height > BIG_PIXELS and fmt not in ("JPEG", "MPO"))
    if failure is None:
        return None
    return _pillow_error(path) or f"TensorFlow cannot decode it ({failure}); re-save the image"


def _tensorflow_error(path: str, big: bool) -> str | None:
    try:
        with _one_big_decode if big else contextlib.nullcontext():
            _decode_file(path)
    except tf.errors.OpError as exc:
        # A graph error wraps the decoder's one line in node names and a call stack.
        lines = [re.sub(r"\{\{.*?\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]", "", line).strip()
                 for line in exc.message.splitlines()]
        noise = ("Graph execution error", "Detected at node", "File ")
        useful = [line for line in lines if line and not line.startswith(noise)]
        return useful[0] if useful else type(exc).__name__
    return None


def _pillow_error(path: str) -> str | None:
    """Pillow's words for a file TensorFlow refused (a truncated file says so), if any."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.draft(image.mode, (CHECK_SIZE, CHECK_SIZE))  # a big JPEG, scaled
                image.load()
    except Exception as exc:
        text = first_line(exc)
        if "truncated" in text:
            return f"truncated file ({text}); copy or download it again"
        return f"cannot decode: {type(exc).__name__}: {text}"
    return None


def _not_an_image(head: bytes) -> str:
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml")):
        return "not an image: an HTML or XML page saved under an image name"
    if b"\0" not in head and all(b >= 0x20 or b in b"\t\n\r" for b in head):
        return "not an image: a text file with an image name"
    return f"not an image: unknown content (starts {head[:8].hex(' ')})"


def file_digest(path: str) -> str:
    """A hash of the file's bytes, to find the same image filed under two classes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
