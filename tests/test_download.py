"""data=flowers: download, verify and unpack, tested against a local HTTP server."""

import contextlib
import hashlib
import http.server
import socket
import tarfile
import threading
from functools import partial
from pathlib import Path

import pytest

from alexnet_exp import scan, sources
from alexnet_exp.config import DataConfig
from alexnet_exp.errors import DataError

CLASSES = {"daisy": 3, "roses": 2, "tulips": 2}


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Requests to 127.0.0.1 must never go through a proxy from the environment."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def archive(tmp_path_factory, image_folder):
    """A small flower_photos.tgz (top folder flower_photos/, real JPEGs, LICENSE.txt)."""
    build = tmp_path_factory.mktemp("archive_src")
    image_folder(build / "flower_photos", classes=CLASSES, size=(24, 20))
    (build / "flower_photos" / "LICENSE.txt").write_text("All photos CC-BY\n")
    serve = tmp_path_factory.mktemp("served")
    path = serve / "flower_photos.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(build / "flower_photos", arcname="flower_photos")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


class _Server:
    def __init__(self, directory: Path):
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), partial(Handler, directory=str(directory))
        )
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, name: str = "flower_photos.tgz") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"


@pytest.fixture
def server(archive):
    srv = _Server(archive[0].parent)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)


def flowers_cfg(target: Path, url: str, sha256: str | None) -> DataConfig:
    """An explicit data.dir must exist (empty) to be downloaded into."""
    target.mkdir(parents=True, exist_ok=True)
    return DataConfig(name="flowers", dir=str(target), url=url, sha256=sha256)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def class_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def test_download_verifies_extracts_and_is_reused(tmp_path, archive, server):
    _, sha = archive
    target = tmp_path / "flower_photos"
    cfg = flowers_cfg(target, server.url(), sha)

    root = sources.resolve_data_dir(cfg)

    assert root == target
    assert server.requests == ["/flower_photos.tgz"]
    assert class_dirs(root) == sorted(CLASSES)
    assert {d: len(list((root / d).glob("*.jpg"))) for d in CLASSES} == CLASSES
    assert (root / "LICENSE.txt").is_file()
    assert not list(tmp_path.glob(".extract-*")), "temporary extraction folder left behind"
    files, _, report = scan.scan_folder(root, cfg)
    assert report.class_names == sorted(CLASSES)
    assert report.ignored == [str(root / "LICENSE.txt")]
    assert len(files) == sum(CLASSES.values())

    assert sources.resolve_data_dir(cfg) == target
    assert server.requests == ["/flower_photos.tgz"], "second call downloaded again"


def test_wrong_sha256_is_a_data_error_and_leaves_no_class_folders(tmp_path, archive, server):
    target = tmp_path / "flower_photos"
    url = server.url()

    with pytest.raises(DataError) as info:
        sources.resolve_data_dir(flowers_cfg(target, url, "0" * 64))

    assert url in str(info.value)
    assert server.requests, "the server was never asked"
    assert not target.exists() or not class_dirs(target)
    assert not list(tmp_path.glob(".extract-*"))
    assert not [p for p in tmp_path.rglob("*") if p.is_dir() and p != target], "unpacked"


def test_unreachable_url_tells_how_to_use_a_local_copy(tmp_path):
    target = tmp_path / "flower_photos"
    url = f"http://127.0.0.1:{closed_port()}/flower_photos.tgz"

    with pytest.raises(DataError) as info:
        sources.resolve_data_dir(flowers_cfg(target, url, None))

    message = str(info.value)
    assert url in message
    assert "data.dir" in message
    assert not target.exists() or not class_dirs(target)


def test_missing_file_on_the_server_is_a_data_error(tmp_path, server):
    url = server.url("nothing_here.tgz")
    with pytest.raises(DataError, match="data.dir") as info:
        sources.resolve_data_dir(flowers_cfg(tmp_path / "flower_photos", url, None))
    assert url in str(info.value)
    assert server.requests == ["/nothing_here.tgz"]


def test_existing_class_folders_are_used_in_place(tmp_path, server, image_folder):
    root = image_folder(tmp_path / "my_flowers", classes={"daisy": 2, "roses": 2})
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))

    resolved = sources.resolve_data_dir(flowers_cfg(root, server.url(), "0" * 64))

    assert resolved == root
    assert server.requests == []
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_download_never_deletes_a_users_existing_folder(tmp_path, archive, server, image_folder):
    _, sha = archive
    mine = tmp_path / "photos"
    image_folder(mine / "2023" / "holiday", classes={"beach": 2})  # nested, not class folders
    (mine / "notes.txt").write_text("keep me\n")

    with contextlib.suppress(DataError):
        sources.resolve_data_dir(flowers_cfg(mine, server.url(), sha))

    assert (mine / "notes.txt").exists()
    assert len(list(mine.rglob("*.jpg"))) >= 2


def test_a_mistyped_data_dir_never_starts_a_download(tmp_path, server):
    cfg = DataConfig(name="flowers", dir=str(tmp_path / "flower_phtos"), url=server.url(),
                     sha256=None)
    with pytest.raises(DataError, match="flower_phtos does not exist"):
        sources.resolve_data_dir(cfg)
    assert server.requests == [] and not (tmp_path / "flower_phtos").exists()


def test_default_location_downloads_without_data_dir(tmp_path, archive, server, monkeypatch):
    _, sha = archive
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    root = sources.resolve_data_dir(DataConfig(name="flowers", url=server.url(), sha256=sha))
    assert root == tmp_path / "keras" / "datasets" / "flower_photos"
    assert any(p.is_dir() for p in root.iterdir())
