"""The command line cannot name a Python object for Hydra to call (``make ui`` and
``make server`` listening on 127.0.0.1 only are tested in test_services.py)."""

import pytest
from helpers import cli


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
