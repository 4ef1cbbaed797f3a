"""The packed data set (packed, the format; pack, alexnet-exp-pack's writer) and the training
pipeline on one (data=records), against the same folder read as class folders. No training:
the command line end to end is in test_pack.py."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers.configs import folder_cfg

from alexnet_exp import data, distribute, inputs, pack, packed, scan
from alexnet_exp.config import AugmentConfig, DataConfig, DistributeConfig
from alexnet_exp.errors import DataError
from alexnet_exp.tool_config import PackConfig

CLASSES = {"apple": 10, "kiwi": 10, "plum": 10}


def write_pack(root: Path, output: Path, **overrides) -> packed.Manifest:
    data_cfg = folder_cfg(root, **overrides.pop("data", {}))
    cfg = PackConfig(data=data_cfg, output=str(output), **overrides)
    return pack.run_pack(cfg, Path.cwd())


@pytest.fixture
def folder(tmp_path, image_folder):
    return image_folder(tmp_path / "data", classes=CLASSES, size=(48, 40))


def examples(pack_dir: Path, manifest: packed.Manifest, split: str) -> list[tuple]:
    records = packed.read_split(pack_dir, manifest, split, seed=0, shuffle=False)
    return [(c, int(o), int(y), int(i)) for c, o, y, i in records.as_numpy_iterator()]


# ------------------------------------------------------------------------------- the format


def test_a_pack_holds_each_image_as_it_was_stored_with_the_folders_own_split(folder, tmp_path):
    manifest = write_pack(folder, tmp_path / "pack", shard_size="10KB")
    pack_dir = tmp_path / "pack"
    # the split is the one training on the folder makes with the same seed
    files, labels, report = scan.scan_folder(folder, folder_cfg(folder))
    train_idx, val_idx = inputs.stratified_split(labels, 0.25, 42, report.class_names)
    for split, idx in (("train", train_idx), ("val", val_idx)):
        names, split_labels = packed.read_index(pack_dir, manifest, split)
        want = {Path(files[i]).relative_to(folder).as_posix(): int(labels[i]) for i in idx}
        assert dict(zip(names, split_labels, strict=True)) == want
        got = examples(pack_dir, manifest, split)
        assert [i for *_, i in got] == list(range(len(names)))  # shards in index order
        for contents, orientation, label, index in got:  # the bytes, not a re-encoding
            assert contents == (folder / names[index]).read_bytes()
            assert (label, orientation) == (split_labels[index], 1)
        assert manifest.splits[split].images == len(idx)
        assert sum(s.images for s in manifest.splits[split].shards) == len(idx)
    assert manifest.class_names == ["apple", "kiwi", "plum"]
    assert sum(manifest.splits["train"].counts.values()) == len(train_idx)
    # ~10 KB shards of ~1.7 KB images, equal counts; shuffled across classes when packed
    shards = manifest.splits["train"].shards
    assert len(shards) > 2 and max(s.images for s in shards) - min(
        s.images for s in shards) <= 1
    first = packed.read_index(pack_dir, manifest, "train")[1][:shards[0].images]
    assert len(set(first)) > 1
    assert manifest.source["fingerprint"] == pack.fingerprint_folder(
        folder, folder_cfg(folder), 42).digest


def test_a_pack_keeps_the_scans_count_of_jpegs_for_the_uncached_crop(folder, tmp_path):
    """A pack's training crop is chosen as the folder's is (decode.crop_decode_for), from the
    source scan's count in the manifest; a pack written before it was counted says nothing,
    and each image is then sent its own way."""
    write_pack(folder, tmp_path / "pack")
    records = DataConfig(name="records", dir=str(tmp_path / "pack"), val_split=0.25)
    report = inputs.read_inputs(records, tmp_path / "pack", 42, 4, (None, None), (0, 1))[2]
    want = scan.scan_folder(folder, folder_cfg(folder))[2].jpeg_sides
    assert report.jpeg_sides == want == scan.JpegSides(jpegs=30, smallest=40, largest=40)
    manifest = tmp_path / "pack" / packed.MANIFEST
    older = json.loads(manifest.read_text())
    del older["source"]["report"]["jpeg_sides"]
    manifest.write_text(json.dumps(older))
    report = inputs.read_inputs(records, tmp_path / "pack", 42, 4, (None, None), (0, 1))[2]
    assert report.jpeg_sides is None


def test_a_test_set_is_packed_whole_and_a_training_run_refuses_it(folder, tmp_path):
    manifest = write_pack(folder, tmp_path / "test", data={"val_split": 0.0})
    assert list(manifest.splits) == ["test"] and manifest.splits["test"].images == 30
    with pytest.raises(DataError, match="is a test set"):
        packed.require_training_pack(tmp_path / "test", manifest, 0.0, None)


def test_a_run_may_not_ask_for_another_split_than_the_packs(folder, tmp_path):
    manifest = write_pack(folder, tmp_path / "pack")
    packed.require_training_pack(tmp_path / "pack", manifest, 0.25, None)
    with pytest.raises(DataError, match=r"data.val_split=0.2, but .* data.val_split=0.25"):
        packed.require_training_pack(tmp_path / "pack", manifest, 0.2, None)
    with pytest.raises(DataError, match="applies when packing"):
        packed.require_training_pack(tmp_path / "pack", manifest, 0.25, 5)


def test_what_is_not_a_readable_pack_is_refused_saying_what_to_do(folder, tmp_path):
    with pytest.raises(DataError, match="holds class folders: train on it with data=folder"):
        packed.open_pack(folder)
    write_pack(folder, tmp_path / "pack")
    manifest_file = tmp_path / "pack" / packed.MANIFEST
    saved = manifest_file.read_text()
    manifest_file.write_text(saved.replace('"version": 1', '"version": 99'))
    with pytest.raises(DataError, match="format version 99"):
        packed.open_pack(tmp_path / "pack")
    manifest_file.write_text(saved[:40])
    with pytest.raises(DataError, match="not a readable pack manifest"):
        packed.open_pack(tmp_path / "pack")
    manifest_file.write_text(saved.replace('"class_names": [', '"class_names": "cat", "x": ['))
    with pytest.raises(DataError, match="class_names is 'cat', not a list"):
        packed.open_pack(tmp_path / "pack")
    without_val = json.loads(saved)
    del without_val["splits"]["val"]
    manifest_file.write_text(json.dumps(without_val))
    with pytest.raises(DataError, match="holds the splits train, not train and val"):
        packed.open_pack(tmp_path / "pack")
    manifest_file.write_text(saved)
    manifest = packed.open_pack(tmp_path / "pack")
    index = tmp_path / "pack" / "train.files.json"
    kept = index.read_text()
    index.write_text("{")
    with pytest.raises(DataError, match="train.files.json is not a readable index"):
        packed.read_index(tmp_path / "pack", manifest, "train")
    index.write_text(json.dumps({"files": ["a/1.jpg"], "labels": [0]}))
    with pytest.raises(DataError, match="1 files and 1 labels for the 22 images"):
        packed.read_index(tmp_path / "pack", manifest, "train")
    index.write_text(kept)
    shard = tmp_path / "pack" / json.loads(saved)["splits"]["train"]["shards"][0]["file"]
    whole = shard.read_bytes()
    shard.write_bytes(whole[:-100])  # a copy cut short: TFRecord reads it short, silently
    with pytest.raises(DataError, match="damaged: train-00000.* not the size it was written"):
        packed.open_pack(tmp_path / "pack")
    shard.write_bytes(whole)
    (tmp_path / "pack" / json.loads(saved)["splits"]["val"]["shards"][0]["file"]).unlink()
    with pytest.raises(DataError, match="incomplete: val-00000"):
        packed.open_pack(tmp_path / "pack")


def test_pack_writes_only_a_new_folder_or_over_an_earlier_pack(folder, tmp_path):
    with pytest.raises(DataError, match="one inside the other"):
        write_pack(folder, folder / "pack")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a pack"):
        write_pack(folder, busy)
    with pytest.raises(DataError, match="one inside the other"):  # replacing it: data lost
        write_pack(folder, tmp_path)
    first = write_pack(folder, tmp_path / "pack")
    with pytest.raises(DataError, match="overwrite=true"):
        write_pack(folder, tmp_path / "pack")
    second = write_pack(folder, tmp_path / "pack", overwrite=True, seed=3)
    assert second.split["seed"] == 3 != first.split["seed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "data", "pack"]
    # a pack folder a user launched training from holds their runs: never replaced with it
    (tmp_path / "pack" / "mlruns").mkdir()
    (tmp_path / "pack" / "mlruns" / "mlflow.db").write_text("runs")
    with pytest.raises(DataError, match=r"holds a pack and other things \(mlruns\)"):
        write_pack(folder, tmp_path / "pack", overwrite=True)
    assert (tmp_path / "pack" / "mlruns" / "mlflow.db").read_text() == "runs"


def test_a_pack_is_readable_as_the_umask_says_and_an_unwritable_place_is_one_line(
        folder, tmp_path):
    import os

    manifest = write_pack(folder, tmp_path / "pack")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "pack").stat().st_mode & 0o777 == 0o777 & ~umask
    assert manifest.splits["train"].shards[0].size == (
        tmp_path / "pack" / manifest.splits["train"].shards[0].file).stat().st_size
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataError, match="cannot write beside output=.*a-file/pack"):
        write_pack(folder, tmp_path / "a-file" / "pack")


def test_a_pack_stopped_half_way_leaves_nothing_where_the_pack_goes(folder, tmp_path,
                                                                     monkeypatch):
    calls = []

    def stop_on_the_fifth(*args):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return b""

    monkeypatch.setattr(packed, "example_bytes", stop_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        write_pack(folder, tmp_path / "pack")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no partial folder either


def test_a_file_gone_between_the_check_and_the_write_is_one_line(folder, tmp_path,
                                                                    monkeypatch):
    scan = pack.scan_folder

    def scan_then_delete(*args, **kwargs):
        found = scan(*args, **kwargs)
        Path(found[0][3]).unlink()
        return found

    monkeypatch.setattr(pack, "scan_folder", scan_then_delete)
    with pytest.raises(DataError, match="cannot be read any more .* since it was checked"):
        write_pack(folder, tmp_path / "pack")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_the_fingerprint_of_a_pack_changes_with_any_of_its_files(folder, tmp_path):
    manifest = write_pack(folder, tmp_path / "pack")
    before = packed.fingerprint(tmp_path / "pack", manifest)
    assert before.digest == packed.fingerprint(tmp_path / "pack", manifest).digest
    shard = tmp_path / "pack" / manifest.splits["train"].shards[0].file
    shard.write_bytes(shard.read_bytes() + b"\0")
    after = packed.fingerprint(tmp_path / "pack", manifest)
    assert after.digest != before.digest
    assert after.changes_since(before) == "1 file changed"


# ----------------------------------------------------------------- the pipeline on a pack


def build(root: Path, tmp_path: Path, name: str, limits=(None, None), worker=(0, 1),
          **data_kw):
    cfg = DataConfig(name=name, dir=str(root), val_split=0.25, **data_kw)
    return data.make_datasets(cfg, AugmentConfig(name="none", flip=False, crop_scale=1.0,
                                                 pca_std=0.0), root, 32, 4, 42,
                              tmp_path / "cache", limits=limits, worker=worker)


def decoded_val(datasets) -> dict[str, np.ndarray]:
    images = {}
    for batch, index in datasets.val_indexed.as_numpy_iterator():
        for image, i in zip(batch, index, strict=True):
            images[datasets.val_files[i]] = image
    return images


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_training_from_a_pack_sees_the_images_and_split_of_the_folder(folder, tmp_path, cache):
    write_pack(folder, tmp_path / "pack")
    from_pack = build(tmp_path / "pack", tmp_path, "records", cache=cache)
    from_folder = build(folder, tmp_path, "folder", cache=cache)
    assert from_pack.cache.mode == cache
    relative = [Path(f).relative_to(folder).as_posix() for f in from_folder.val_files]
    assert sorted(from_pack.val_files) == sorted(relative)
    assert sorted(from_pack.train_files) == sorted(
        Path(f).relative_to(folder).as_posix() for f in from_folder.train_files)
    pixels = decoded_val(from_folder)
    for name, image in decoded_val(from_pack).items():
        np.testing.assert_array_equal(image, pixels[str(folder / name)])
    seen = [int(y) for _, labels in from_pack.train.take(from_pack.train_steps)
            for y in np.argmax(labels, 1)]
    assert sorted(seen) == sorted(from_pack.train_labels.tolist())  # one pass: every image once
    report = from_pack.report.to_text()
    assert "packed from" in report and "train 22, val 8" in report


def test_a_pack_too_big_for_the_memory_budget_is_cached_on_disk(folder, tmp_path):
    write_pack(folder, tmp_path / "pack")
    datasets = build(tmp_path / "pack", tmp_path, "records", cache_max_memory="1KB")
    assert datasets.cache.mode == "disk"
    list(datasets.val.as_numpy_iterator())
    assert list((tmp_path / "cache").glob("val*.index"))


def test_limited_batches_of_a_pack_are_its_first_images(folder, tmp_path):
    manifest = write_pack(folder, tmp_path / "pack", shard_size="10KB")
    datasets = build(tmp_path / "pack", tmp_path, "records", limits=(2, 1))
    names, _ = packed.read_index(tmp_path / "pack", manifest, "train")
    assert datasets.train_files == names[:8] and len(datasets.val_files) == 4
    indices = sorted(int(i) for _, batch in datasets.val_indexed for i in batch)
    assert indices == [0, 1, 2, 3]


def test_a_multi_worker_job_deals_out_the_shards_of_a_pack(folder, tmp_path):
    """Each worker reads its own shards (every other one of two), so no image is decoded
    twice, and tf.distribute is told not to shard them again; validation, and a pack with
    fewer shards than workers, are sharded by data as class folders are."""
    write_pack(folder, tmp_path / "pack", shard_size="10KB")
    multi = DistributeConfig(strategy="multi_worker")
    policy = tf.data.experimental.AutoShardPolicy
    seen = []
    for index in (0, 1):
        datasets = build(tmp_path / "pack", tmp_path, "records", cache="none",
                         worker=(index, 2))
        shared = distribute.shard_datasets(multi, datasets)
        assert shared.train.options().experimental_distribute.auto_shard_policy == policy.OFF
        assert shared.val.options().experimental_distribute.auto_shard_policy == policy.DATA
        labels = [np.argmax(y, 1) for _, y in shared.train]
        seen.append(sum(len(y) for y in labels))
        assert len(datasets.train_files) == 22  # the split's files; the worker reads its part
    shards = packed.open_pack(tmp_path / "pack").splits["train"].shards
    assert seen == [sum(s.images for s in shards[0::2]), sum(s.images for s in shards[1::2])]
    crowded = build(tmp_path / "pack", tmp_path, "records", worker=(0, len(shards) + 1))
    assert not crowded.own_shards
    assert distribute.shard_datasets(multi, crowded).train.options(
    ).experimental_distribute.auto_shard_policy == policy.DATA
    folder_sets = build(folder, tmp_path, "folder", worker=(0, 2))
    assert distribute.shard_datasets(multi, folder_sets).train.options(
    ).experimental_distribute.auto_shard_policy == policy.DATA


def test_read_split_reads_a_workers_own_shards_in_turn(folder, tmp_path):
    manifest = write_pack(folder, tmp_path / "pack", shard_size="10KB")
    parts = [sorted(int(i) for *_, i in packed.read_split(
        tmp_path / "pack", manifest, "train", 0, shuffle=True, part=(w, 2)).as_numpy_iterator())
        for w in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(manifest.splits["train"].images))
