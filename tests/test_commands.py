"""The console scripts: cli's mains, ended without Python's last garbage collection."""

import gc
from pathlib import Path

import pytest
import tomllib

from alexnet_exp import cli, commands

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_console_script_is_a_command_around_a_main_of_cli():
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    for name, target in scripts.items():
        module, function = target.split(":")
        assert module == "alexnet_exp.commands", f"{name} = {target} keeps Python's last collection"
        command = getattr(commands, function)
        assert command.__doc__ == getattr(cli, command.__name__).__doc__, name


@pytest.mark.parametrize("ending", [None, SystemExit(3)])
def test_a_command_ends_as_its_main_did_with_the_objects_frozen(ending):
    def main():
        if ending is not None:
            raise ending

    try:
        if ending is None:
            commands._command(main)()
        else:
            with pytest.raises(SystemExit) as raised:
                commands._command(main)()
            assert raised.value.code == 3  # the exit code is the main's
        assert gc.get_freeze_count() > 0  # out of the collection Python runs at exit
    finally:
        gc.unfreeze()
