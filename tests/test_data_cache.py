"""data.cache=auto: memory when the decoded images fit the budget, else disk, else none."""

from pathlib import Path

import pytest
from helpers.configs import folder_cfg

from alexnet_exp import data, data_cache
from alexnet_exp.config import AugmentConfig, DataConfig
from alexnet_exp.errors import DataError

UNCROPPED = AugmentConfig(name="none", crop_scale=1.0)  # images stored at the input size


def test_auto_takes_memory_when_the_decoded_images_fit_the_budget(tmp_path):
    cfg = DataConfig(cache="auto", cache_max_memory="1MB")
    choice = data_cache.choose_cache(cfg, 10, 100, tmp_path)  # 10 x 100 x 100 x 3 = 300 KB
    assert (choice.mode, choice.decoded_bytes, choice.memory_budget) == (
        "memory", 300_000, 1_000_000)
    assert choice.to_text() == ("cache: memory (data.cache=auto: 10 images decoded at 100x100"
                                " take 300.0 KB, within data.cache_max_memory 1.0 MB)")


def test_auto_takes_the_disk_when_they_do_not_and_says_where(tmp_path):
    cfg = DataConfig(cache="auto", cache_max_memory="1MB")
    choice = data_cache.choose_cache(cfg, 100, 100, tmp_path / "not-yet" / "made")
    assert choice.mode == "disk"
    assert "3.0 MB, over data.cache_max_memory 1.0 MB; cached on disk under" in choice.reason
    assert str(tmp_path / "not-yet" / "made") in choice.reason


def test_auto_caches_nothing_when_the_disk_has_no_room_either(tmp_path, monkeypatch):
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(data_cache.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 2_000_000))
    choice = data_cache.choose_cache(DataConfig(cache_max_memory="1MB"), 100, 100, tmp_path)
    assert choice.mode == "none"
    assert "has 2.0 MB free: every epoch decodes again (set data.cache_path" in choice.reason


@pytest.mark.parametrize("mode", ["memory", "disk", "none"])
def test_a_cache_named_is_the_cache_used_whatever_the_size(tmp_path, mode):
    choice = data_cache.choose_cache(DataConfig(cache=mode, cache_max_memory="1KB"), 10**6,
                                     256, tmp_path)
    assert choice.mode == mode and choice.reason.startswith(f"data.cache={mode}; ")


def test_the_default_budget_is_a_quarter_of_the_memory_this_process_may_use():
    physical = Path("/proc/meminfo").read_text().split()[1]  # MemTotal in kB
    assert 0 < data_cache.machine_memory() <= int(physical) * 1024
    assert data_cache.memory_budget(DataConfig()) == data_cache.machine_memory() // 4


def test_over_the_budget_a_real_pipeline_caches_on_disk_and_reports_it(tmp_path,
                                                                       image_folder):
    root = image_folder(tmp_path / "data", classes={"a": 6, "b": 6}, size=(40, 40))
    cfg = folder_cfg(root, cache_max_memory="10KB")  # 12 images at 36x36 px: 46.7 KB
    built = data.make_datasets(cfg, UNCROPPED, Path(root), 36, 4, 0,
                               cache_dir=tmp_path / "tfdata-cache")
    assert built.cache.mode == "disk" and built.cache.decoded_bytes == 12 * 36 * 36 * 3
    assert "cache: disk (data.cache=auto: 12 images decoded at 36x36 take 46.7 KB" in (
        built.report.to_text())
    assert built.report.to_dict()["cache"] == built.cache.to_text()  # logged with the run
    list(built.train.as_numpy_iterator())
    assert any(p.name.startswith("train-") for p in (tmp_path / "tfdata-cache").iterdir())

    fits = data.make_datasets(folder_cfg(root), UNCROPPED, Path(root), 36, 4, 0,
                              cache_dir=tmp_path / "other-cache")
    assert fits.cache.mode == "memory"
    list(fits.train.as_numpy_iterator())
    assert not (tmp_path / "other-cache").exists()


def test_auto_caches_nothing_where_it_cannot_write_and_a_named_disk_cache_says_so(
        tmp_path, image_folder):
    (tmp_path / "a-file").write_text("where the cache folder would go")
    unwritable = tmp_path / "a-file" / "cache"
    choice = data_cache.choose_cache(DataConfig(cache_max_memory="1KB"), 100, 100, unwritable)
    assert choice.mode == "none"
    assert f"{unwritable} cannot be written (Not a directory): every epoch decodes" in (
        choice.reason)
    root = image_folder(tmp_path / "data", classes={"a": 3, "b": 3})
    with pytest.raises(DataError, match=f"data.cache=disk: {unwritable} cannot be written"
                                        r" \(Not a directory\); set data.cache_path"):
        data.make_datasets(folder_cfg(root, cache="disk", cache_path=str(unwritable)),
                           UNCROPPED, Path(root), 36, 4, 0, cache_dir=tmp_path / "c")
