"""The user's errors: one line on stderr and exit code 2, what every entry point ends with."""

import pytest

from alexnet_exp.errors import ConfigError, DataError, UserError, exit_with, redact


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


def test_redact_drops_the_user_info_of_uris_hydra_escaped_too():
    assert redact("store https://alice:pw@host:5000/x and s3://key@bucket") == (
        "store https://***@host:5000/x and s3://***@bucket")
    # Hydra lists a sweep's jobs with the colons of each override escaped
    assert redact(r"#0 : tracking.uri=http\://alice\:pw@127.0.0.1\:5999") == (
        r"#0 : tracking.uri=http\://***@127.0.0.1\:5999")
    assert redact("no uri, no@change, http://host/a@b") == "no uri, no@change, http://host/a@b"
