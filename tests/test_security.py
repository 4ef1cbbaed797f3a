"""Security switches a user relies on without seeing them: the command line cannot name a
Python object for Hydra to call, and ``make ui`` listens on the loopback interface only."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("program, args", [
    ("alexnet-exp", ["hydra.callbacks.mlflow_sweep._target_=os.mkdir",
                     "+hydra.callbacks.mlflow_sweep.path={pwned}"]),
    ("alexnet-exp", ["+hydra.callbacks.evil={{_target_:os.mkdir,path:{pwned}}}"]),
    ("alexnet-exp", ["-m", "+hydra.callbacks.evil={{a:1}},{{_target_:os.mkdir,path:'{pwned}'}}"]),
    ("alexnet-exp-report", ["+hydra.callbacks.evil={{_target_:os.mkdir,path:{pwned}}}"]),
])
def test_command_line_cannot_set_a_target(tmp_path, program, args):
    """If the guard let it through, Hydra would instantiate os.mkdir and create ``pwned``."""
    pwned = tmp_path / "pwned"
    result = cli(tmp_path, *[a.format(pwned=pwned) for a in args], program=program,
                 timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{program}: error: ") and "_target_ cannot be set" in line
    assert not pwned.exists()
    assert not (tmp_path / "mlruns").exists()


def test_a_folder_named_target_is_still_a_plain_value(tmp_path):
    folder = tmp_path / "_target_"
    result = cli(tmp_path, "data=folder", f"data.dir={folder}", "dry_run=true", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot be set" not in result.stderr and str(folder) in result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of sockets in LISTEN state on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_make_ui_listens_on_loopback_only(tmp_path):
    port = free_port()
    bin_dir = Path(sys.executable).parent
    # -o: never reinstall from here; BIN: the venv running this test; STORE: a scratch store.
    server = subprocess.Popen(
        ["make", "-s", "-C", str(REPO), "-o", ".venv/.installed-stamp", "ui", f"PORT={port}",
         f"BIN={bin_dir}", f"STORE={tmp_path}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 90
        while not listening_addresses(port):
            assert server.poll() is None, server.stdout.read()[-2000:]
            assert time.monotonic() < deadline, "make ui did not start listening in 90 s"
            time.sleep(0.5)
        # 0100007F is 127.0.0.1 as the kernel writes it; 00000000 would be 0.0.0.0 (every
        # interface) and an IPv6 entry would be :: or a routable address.
        assert listening_addresses(port) == {"0100007F"}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
