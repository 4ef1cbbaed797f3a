"""Cache locations and the one atomic write every module uses."""

import os

import pytest

from alexnet_exp import paths


def test_cache_root_is_the_env_folder_else_xdg_else_home(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXNET_EXP_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_root() == tmp_path / "mine"
    monkeypatch.delenv("ALEXNET_EXP_CACHE_DIR")
    assert paths.cache_root() == tmp_path / "xdg" / "alexnet_exp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.cache_root() == tmp_path / "home" / ".cache" / "alexnet_exp"


def test_the_outbox_is_under_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ALEXNET_EXP_CACHE_DIR", str(tmp_path))
    assert paths.outbox_dir() == tmp_path / "outbox"


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    paths.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_atomic_write_cut_short_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_text("old")

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        paths.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # the temporary is gone


def test_atomic_write_keeps_the_umask_permissions(tmp_path):
    """Not mkstemp's 0600: an exported model's sidecar is read by whoever reads the model."""
    target = tmp_path / "model.keras.json"
    paths.atomic_write_text(target, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_redact_files_rewrites_only_files_holding_credentials(tmp_path):
    secret, plain = tmp_path / "overrides.yaml", tmp_path / "config.yaml"
    secret.write_text("- tracking.uri=http://alice:pw@host:5999\n")
    plain.write_text("seed: 42\n")
    before = plain.stat().st_mtime_ns
    paths.redact_files(secret, plain, tmp_path / "missing.yaml")
    assert secret.read_text() == "- tracking.uri=http://***@host:5999\n"
    assert plain.stat().st_mtime_ns == before  # untouched, not rewritten the same
