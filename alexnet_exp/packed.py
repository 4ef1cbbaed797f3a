"""The packed form of a data set: sharded TFRecord files of each image's own encoded bytes (no
re-encoding, so no quality is lost and the pack is as big as the images), and a manifest.

A folder of 100k images is 100k opens and reads per epoch, scattered over the disk, and 100k
stats at every start (fingerprint, check store, disk-cache key); a network file system makes
each one a round trip. A pack is a few hundred sequential files of ~128 MB, read several at
once (interleaved), and its identity is the stat of those files alone. Written by
``alexnet-exp-pack`` (:mod:`alexnet_exp.pack`); trained from with ``data=records``, evaluated
on by ``alexnet-exp-eval data.dir=<pack>``.

Layout of a pack folder::

    manifest.json                      what the pack holds (:class:`Manifest`)
    train-00000-of-00012.tfrecord ...  the examples of each split (:data:`FEATURES`), in the
    val-00000-of-00003.tfrecord ...    order of their index, shuffled across classes once
    train.files.json, val.files.json   per split, the source path and label of index i

The split is made once, when packing (``data.val_split``, ``seed``): a training run on a pack
uses the pack's split whatever its own ``seed`` (which still seeds the model and the draws).
A pack of a test set (``data.val_split=0``) has one split, ``test``.
"""

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from alexnet_exp.errors import DataError
from alexnet_exp.fingerprint import DataFingerprint
from alexnet_exp.folders import PACK_MANIFEST as MANIFEST

FORMAT = "alexnet-exp-pack"
VERSION = 1
TRAINING_SPLITS = ("train", "val")
TEST_SPLIT = "test"
# Shards read at once when training: enough to keep reads sequential per file and the cores
# busy decoding, few enough that each keeps its read-ahead buffer warm.
INTERLEAVE = 8
READ_BUFFER = 8 << 20  # bytes of read-ahead per open shard


@dataclass
class Shard:
    file: str  # name in the pack folder
    images: int
    bytes: int  # of the images in it
    size: int  # of the file: a shard cut short (a copy stopped half-way) is refused by it


@dataclass
class SplitInfo:
    images: int
    counts: dict[str, int]  # images per class
    shards: list[Shard]


@dataclass
class Manifest:
    """What a pack holds: its classes, splits and shards, how the split was made, and where
    the images came from (the source folder's fingerprint and what its check found)."""

    class_names: list[str]
    splits: dict[str, SplitInfo]
    split: dict  # data.val_split, seed, data.max_images_per_class at packing
    source: dict  # root, fingerprint (digest), report (the source folder's data report)
    format: str = FORMAT
    version: int = VERSION
    created_by: dict = field(default_factory=dict)  # tool version, date

    @staticmethod
    def index_file(split: str) -> str:
        return f"{split}.files.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        names = data["class_names"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"class_names is {names!r}, not a list of names")
        splits = {}
        for name, info in data["splits"].items():
            shards = [Shard(str(s["file"]), int(s["images"]), int(s["bytes"]), int(s["size"]))
                      for s in info["shards"]]
            if not shards or "/" in "".join(s.file for s in shards):
                raise ValueError(f"split {name} names no shard, or one outside the pack")
            splits[name] = SplitInfo(int(info["images"]), dict(info["counts"]), shards)
        return cls(list(names), splits, dict(data["split"]), dict(data["source"]),
                   data["format"], data["version"], dict(data.get("created_by", {})))

    def files(self) -> list[str]:
        """Every file of the pack, by name: its manifest, and each split's shards and index."""
        return [MANIFEST] + [name for split, info in self.splits.items()
                             for name in [self.index_file(split), *(s.file for s in info.shards)]]

    @property
    def is_test_set(self) -> bool:
        return TEST_SPLIT in self.splits


def is_pack(root: Path) -> bool:
    return (Path(root) / MANIFEST).is_file()


def open_pack(root: Path) -> Manifest:
    """The manifest of the pack at ``root``; a folder that is no pack, a pack of another format
    version or one with a shard missing is refused with what to do."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        hint = (" it holds class folders: train on it with data=folder, or pack it with"
                f" alexnet-exp-pack data.dir={root} output=<new folder>"
                if root.is_dir() and any(p.is_dir() for p in root.iterdir()) else
                " make one with alexnet-exp-pack data.dir=<class folders> output=<new folder>")
        raise DataError(f"{root} is not a pack (no {MANIFEST}):{hint}")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, not {FORMAT!r}")
        if data.get("version") != VERSION:
            raise DataError(f"{path} is a pack of format version {data.get('version')}; this"
                            f" alexnet-exp reads version {VERSION}: pack the folder again")
        manifest = Manifest.from_dict(data)
    except DataError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable pack manifest ({type(exc).__name__}: {exc});"
                        " pack the folder again") from None
    if set(manifest.splits) not in ({TEST_SPLIT}, set(TRAINING_SPLITS)):
        raise DataError(f"{path} holds the splits {', '.join(manifest.splits)}, not train and"
                        " val (or test): pack the folder again")
    for name, info in manifest.splits.items():
        missing = [s.file for s in info.shards if not (root / s.file).is_file()]
        missing += [] if (root / manifest.index_file(name)).is_file() else [
            manifest.index_file(name)]
        cut = [s.file for s in info.shards if s.file not in missing
               and (root / s.file).stat().st_size != s.size]
        if cut:
            raise DataError(f"the pack at {root} is damaged: {', '.join(cut[:3])}"
                            f"{' ...' if len(cut) > 3 else ''} not the size it was written at"
                            " (a copy cut short?); copy it again, or pack it again")
        if missing:
            raise DataError(f"the pack at {root} is incomplete: {', '.join(missing[:3])}"
                            f"{' ...' if len(missing) > 3 else ''} missing; pack it again")
    return manifest


def require_training_pack(root: Path, manifest: Manifest, val_split: float,
                          max_images_per_class: int | None) -> None:
    """A pack trains only on the split it was packed with: a different ``data.val_split`` (or
    a per-class cap, applied when packing) would otherwise be recorded but not done."""
    if manifest.is_test_set:
        raise DataError(f"the pack at {root} is a test set (packed with data.val_split=0): it"
                        " has no train/val split. Evaluate on it with alexnet-exp-eval"
                        f" data.dir={root}, or pack the training folder with data.val_split>0")
    packed = manifest.split.get("data.val_split")
    if packed != val_split:
        raise DataError(f"data.val_split={val_split}, but the pack at {root} was split with"
                        f" data.val_split={packed} when it was packed: pass"
                        f" data.val_split={packed}, or pack again with the split you want")
    if max_images_per_class is not None:
        raise DataError("data.max_images_per_class applies when packing (alexnet-exp-pack"
                        " data.max_images_per_class=...), not to a pack: drop it here")


def read_index(root: Path, manifest: Manifest, split: str) -> tuple[list[str], list[int]]:
    """The source path (``<class>/<file>``) and label of each image of ``split``, by index."""
    path = Path(root) / Manifest.index_file(split)
    try:
        data = json.loads(path.read_text())
        files, labels = list(data["files"]), [int(y) for y in data["labels"]]
        if len(files) != len(labels) or len(files) != manifest.splits[split].images:
            raise ValueError(f"{len(files)} files and {len(labels)} labels for the"
                             f" {manifest.splits[split].images} images of the manifest")
        if not all(0 <= y < len(manifest.class_names) for y in labels):
            raise ValueError("a label that is no class of the manifest")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a readable index of the pack ({type(exc).__name__}:"
                        f" {exc}); pack the folder again") from None
    return files, labels


def fingerprint(root: Path, manifest: Manifest) -> DataFingerprint:
    """The identity of a pack: its files by stat (the shards, their index and the manifest),
    its classes, and the split it was packed with together with the fingerprint of the folder
    it was packed from. A pack written again from changed images is other data."""
    root = Path(root)
    files = {}
    for name in manifest.files():
        st = os.stat(root / name)
        files[name] = (st.st_size, st.st_mtime_ns)
    split = {**manifest.split, "packed_from": manifest.source.get("fingerprint")}
    return DataFingerprint(tuple(manifest.class_names), files, split)


FEATURES = {  # one tf.train.Example per image
    "image": ("bytes", "the file's own bytes: JPEG, PNG, BMP or GIF as it was stored"),
    "label": ("int64", "index into manifest class_names"),
    "index": ("int64", "position in the split: line of <split>.files.json"),
    "orientation": ("int64", "EXIF orientation 1..8 read when packing (the pixels are not"
                             " turned: the decoder turns them, as for a folder)"),
}


def example_bytes(contents: bytes, label: int, index: int, orientation: int) -> bytes:
    """One serialised ``tf.train.Example`` of :data:`FEATURES`."""
    import tensorflow as tf

    def ints(value: int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    features = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[contents])),
                "label": ints(label), "index": ints(index), "orientation": ints(orientation)}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def read_split(root: Path, manifest: Manifest, split: str, seed: int, shuffle: bool,
               take: int | None = None, part: tuple[int, int] = (0, 1)):
    """``(bytes, orientation, label, index)`` of every image of ``split``: what
    :func:`alexnet_exp.decode.decoder` takes with ``from_bytes``.

    ``shuffle``: the shard order is drawn afresh each epoch (seeded) and :data:`INTERLEAVE`
    shards are read at once, their examples taken in turn; the images were shuffled across
    classes when packing, so the pipeline's shuffle buffer mixes a stream that is mixed
    already. Otherwise the shards are read one after the other: index order, so the first
    ``take`` images are those of index 0 .. take-1. ``part``: (i, n), only every n-th shard
    from the i-th (a worker's own share of a multi-worker job).
    """
    import tensorflow as tf

    from alexnet_exp.graphs import interleaved, mapped

    paths = [str(Path(root) / s.file) for s in manifest.splits[split].shards]
    paths = paths[part[0]::part[1]]
    files = tf.data.Dataset.from_tensor_slices(paths)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
        examples = interleaved(
            files, lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER),
            cycle_length=min(INTERLEAVE, len(paths)))
    else:
        examples = tf.data.TFRecordDataset(files, buffer_size=READ_BUFFER)
    if take is not None:
        examples = examples.take(take)
    spec = {name: tf.io.FixedLenFeature([], tf.string if kind == "bytes" else tf.int64)
            for name, (kind, _) in FEATURES.items()}

    def parse(serialised):
        ex = tf.io.parse_single_example(serialised, spec)
        return ex["image"], ex["orientation"], tf.cast(ex["label"], tf.int32), ex["index"]

    return mapped(examples, parse)
