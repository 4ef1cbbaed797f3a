"""``--help`` is Hydra's own page, composed once: the same text as Hydra's path, without its
copy of the config repository per group (what made ``alexnet-exp --help`` take 3-10 s)."""

import sys

import pytest
from helpers import cli

from alexnet_exp import app_help
from alexnet_exp import cli as mains


@pytest.fixture
def user_conf(tmp_path):
    """A ``--config-dir`` with a preset of its own and a group ours does not have."""
    conf = tmp_path / "my_conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "my_study.yaml").write_text(
        "# @package _global_\ntrainer:\n  epochs: 3\n")
    (conf / "widget").mkdir()
    (conf / "widget" / "w1.yaml").write_text("size: 1\n")
    return conf


@pytest.fixture
def repository_copies(monkeypatch):
    """How often Hydra's loader lists a group and copies its config repository."""
    from hydra._internal import config_loader_impl, config_repository

    counts = {"get_group_options": 0, "repository copies": 0}
    listing = config_loader_impl.ConfigLoaderImpl.get_group_options
    copying = config_repository.CachingConfigRepository.__init__

    def counted_listing(self, *args, **kwargs):
        counts["get_group_options"] += 1
        return listing(self, *args, **kwargs)

    def counted_copy(self, *args, **kwargs):
        counts["repository copies"] += 1
        copying(self, *args, **kwargs)

    monkeypatch.setattr(config_loader_impl.ConfigLoaderImpl, "get_group_options",
                        counted_listing)
    monkeypatch.setattr(config_repository.CachingConfigRepository, "__init__", counted_copy)
    return counts


def hydras_own_help(monkeypatch, capsys, args: list[str]) -> str:
    """The page Hydra's ``app_help`` prints for the training main."""
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setattr(sys, "argv", ["alexnet-exp", *args])
    with pytest.raises(SystemExit) as done:
        mains._train()
    GlobalHydra.instance().clear()
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["--help", "--config-dir", "{conf}"],
    ["-cd", "{conf}", "experiment=my_study", "norm=bn", "--help", "--resolve"],
])
def test_help_is_hydras_page_from_one_composition(monkeypatch, capsys, user_conf,
                                                  repository_copies, args):
    args = [a.format(conf=user_conf) for a in args]
    expected = hydras_own_help(monkeypatch, capsys, args)
    assert repository_copies["get_group_options"] > 100  # Hydra's walk, for the record
    repository_copies.update({"get_group_options": 0, "repository copies": 0})
    monkeypatch.setattr(sys, "argv", ["alexnet-exp", *args])
    mains.train_main()
    assert capsys.readouterr().out == expected
    assert "widget: w1\n" in expected and "my_study" in expected  # the user's groups listed
    assert repository_copies == {"get_group_options": 0, "repository copies": 1}


@pytest.mark.parametrize("main, program", [
    (mains.eval_main, "alexnet-exp-eval"), (mains.pack_main, "alexnet-exp-pack")])
def test_a_tools_help_is_composed_once_too(monkeypatch, capsys, repository_copies, main,
                                           program):
    monkeypatch.setattr(sys, "argv", [program, "--help"])
    main()
    assert capsys.readouterr().out.startswith(f"{program}: ")
    assert repository_copies == {"get_group_options": 0, "repository copies": 1}


def test_no_help_asked_or_hydra_answers_it():
    assert app_help.help_text(["experiment=demo"], "config") is None
    assert app_help.help_text(["--cfg", "job"], "config") is None
    assert app_help.help_text(["--help", "--config-name", "eval"], "config") is None


def test_help_for_a_command_line_that_does_not_compose_is_one_line(tmp_path):
    result = cli(tmp_path, "--help", "norm=nope")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == ("alexnet-exp: error: config: norm=nope is not an option"
                                     " of norm: choose one of bn, lrn, none")


@pytest.mark.parametrize("program", [
    "alexnet-exp", "alexnet-exp-eval", "alexnet-exp-pack", "alexnet-exp-export"])
def test_help_examples_write_home_as_bash_expands_it_after_key_equals(tmp_path, program):
    helped = cli(tmp_path, "--help", program=program)
    assert helped.returncode == 0, helped.stderr
    assert "=~" not in helped.stdout  # bash leaves data.dir=~/... unexpanded
    assert "=$HOME/data/" in helped.stdout
