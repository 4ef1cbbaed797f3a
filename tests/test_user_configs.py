"""user_configs: a user's own config folder (--config-dir) taken out of the command line and put on
Hydra's search path."""

import pytest
from helpers.configs import my_conf

from alexnet_exp.errors import UserError
from alexnet_exp.user_configs import user_config_dir, with_search_path


def test_config_dir_is_taken_out_of_the_command_line_in_each_spelling(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    conf = my_conf(tmp_path)
    for args in (["--config-dir", "my_conf", "seed=1"], ["-cd", "my_conf", "seed=1"],
                 ["--config-dir=my_conf", "seed=1"]):
        assert user_config_dir(args) == (["seed=1"], str(conf))
    assert user_config_dir(["seed=1", "-m"]) == (["seed=1", "-m"], None)


def test_a_missing_config_dir_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="--config-dir nowhere: no such folder"):
        user_config_dir(["--config-dir", "nowhere", "experiment=my_study"])


def test_the_config_dir_joins_a_search_path_the_command_line_gives():
    assert with_search_path(["seed=1"], "/u/conf") == ["seed=1",
                                                       "hydra.searchpath=['file:///u/conf']"]
    assert with_search_path(["hydra.searchpath=[pkg://a.conf]", "seed=1"], "/u/conf") == [
        "seed=1", "hydra.searchpath=['pkg://a.conf','file:///u/conf']"]
    assert with_search_path(["seed=1"], None) == ["seed=1"]
