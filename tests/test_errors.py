"""The user's errors: one line on stderr and exit code 2, what every entry point ends with."""

import pytest

from alexnet_exp.errors import ConfigError, DataError, UserError, exit_with


def test_exit_with_prints_one_prefixed_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        exit_with("data.dir=/nowhere does not exist")
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "alexnet-exp: error: data.dir=/nowhere does not exist\n"


def test_exit_with_names_the_program_and_code(capsys):
    with pytest.raises(SystemExit) as info:
        exit_with("no run", program="alexnet-exp-eval", code=3)
    assert info.value.code == 3
    assert capsys.readouterr().err == "alexnet-exp-eval: error: no run\n"


def test_config_and_data_errors_are_user_errors_and_a_bad_value_is_a_value_error():
    """The entry points catch UserError; code that validates values may catch ValueError."""
    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(DataError, UserError) and not issubclass(DataError, ValueError)
