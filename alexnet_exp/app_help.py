"""``--help`` answered with one composition and one walk of the config groups.

Hydra 1.3's own help (``Hydra.app_help``) lists the config groups with a ``get_group_options``
call per group and per subgroup (121 for ``conf/`` with Hydra's and its plugins' groups), and
every call deep-copies the whole config repository, the ConfigStore's schemas included: 3 s
on a quiet machine and 10 s under load for a page of text. The same page comes from the same
search path walked once: Hydra's template (``hydra.help.template``) filled with the same four
fields, the same way. A command line this does not expect (``--config-name``,
``--config-path``) is left to Hydra, which answers as it always has; a composition that
fails is the one line a run's would be (Hydra prints a traceback for it).
"""

import contextlib
import copy
import io
import os
import string

from omegaconf import OmegaConf, flag_override

from alexnet_exp.errors import UserError, first_line
from alexnet_exp.paths import CONFIG_DIR
from alexnet_exp.preflight import composition_error

TASK_NAME = "cli"  # what hydra.main names a task function of alexnet_exp/cli.py


def help_text(args: list[str], config_name: str) -> str | None:
    """The page Hydra's ``--help`` prints for ``args`` (the command line after the program),
    or None when ``args`` asks for no help or for one Hydra must answer.

    Raises :class:`UserError` with one line when the command line does not compose."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    parser = get_args_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = parser.parse_args(args)
    except SystemExit:  # a command line argparse refuses: Hydra says so, its own way
        return None
    if not parsed.help or parsed.config_path or parsed.config_name \
            or parsed.experimental_rerun or GlobalHydra.instance().is_initialized():
        return None
    app = Hydra.create_main_hydra2(task_name=TASK_NAME,
                                   config_search_path=search_path(parsed.config_dir))
    try:
        cfg = app.compose_config(config_name, parsed.overrides, run_mode=RunMode.RUN)
        HydraConfig.instance().set_config(cfg)
        job = copy.deepcopy(cfg)
        with flag_override(job, ["struct", "readonly"], [False, False]):
            del job["hydra"]
        groups = config_groups(app.config_loader.repository)
        return string.Template(cfg.hydra.help.template).substitute(
            FLAGS_HELP=Hydra.format_args_help(parser),
            HYDRA_CONFIG_GROUPS=format_groups(groups, hydra=True),
            APP_CONFIG_GROUPS=format_groups(groups, hydra=False),
            CONFIG=OmegaConf.to_yaml(job, resolve=parsed.resolve),
        )
    except HydraException as exc:
        raise UserError(f"config: {composition_error(exc)}") from exc
    except OmegaConfBaseException as exc:
        raise UserError(f"config: {first_line(exc)}") from exc
    finally:
        GlobalHydra.instance().clear()


def search_path(config_dir: str | None):
    """The search path ``hydra.main(config_path=CONFIG_DIR)`` composes from, with
    ``--config-dir`` where Hydra puts it (before the ConfigStore's schemas)."""
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery

    path = create_config_search_path(CONFIG_DIR)  # CONFIG_DIR is absolute: taken as it is
    if config_dir is not None:
        path.prepend(provider="command-line", path=f"file://{os.path.abspath(config_dir)}",
                     anchor=SearchPathQuery(provider="schema"))
    return path


def config_groups(repo, parent: str = "") -> dict[str, list[str]]:
    """Every group that holds configs, with its options, from one repository: the walk of
    Hydra's ``list_all_config_groups`` without a copy of the repository per call."""
    from hydra.core.object_type import ObjectType

    groups: dict[str, list[str]] = {}
    for group in repo.get_group_options(parent, ObjectType.GROUP):
        name = f"{parent}/{group}" if parent else group
        options = repo.get_group_options(name, ObjectType.CONFIG)
        if options:
            groups[name] = sorted(options)
        groups.update(config_groups(repo, name))
    return groups


def format_groups(groups: dict[str, list[str]], hydra: bool) -> str:
    """``group: a, b, c`` a line, sorted, as Hydra's ``format_config_groups`` writes them."""
    return "".join(f"{name}: {', '.join(options)}\n" for name, options in sorted(groups.items())
                   if (name == "hydra" or name.startswith("hydra/")) == hydra)
