"""A user's own configs beside ours: Hydra's ``--config-dir <folder>`` (or ``hydra.searchpath``)
adds their ``experiment/``, ``model/``, ``augment/`` files to the groups conf/ ships. The
command line's checks (:mod:`alexnet_exp.preflight`) compose with the same search path, so a
user's preset is checked, and listed among the choices, like ours.
"""

from pathlib import Path

from alexnet_exp.errors import UserError

CONFIG_DIR_FLAGS = ("--config-dir", "-cd")  # Hydra's: a user's folder of configs beside ours
SEARCHPATH_KEY = "hydra.searchpath"


def user_config_dir(args: list[str]) -> tuple[list[str], str | None]:
    """The command line without Hydra's ``--config-dir <folder>`` (``-cd``, ``--config-dir=``),
    and that folder made absolute (None when not given).

    Raises :class:`UserError` when the folder is missing, as Hydra would, in one line.
    """
    rest, folder = [], None
    it = iter(args)
    for arg in it:
        if arg in CONFIG_DIR_FLAGS:
            folder = next(it, "")
        elif arg.startswith(f"{CONFIG_DIR_FLAGS[0]}="):
            folder = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if folder is None:
        return rest, None
    absolute = Path(folder).expanduser().absolute()
    if not folder or not absolute.is_dir():
        raise UserError(f"--config-dir {folder}: no such folder (it holds your own config"
                        " groups, e.g. experiment/my_study.yaml)")
    return rest, str(absolute)


def with_search_path(overrides: list[str], folder: str | None) -> list[str]:
    """``overrides`` composing as ``--config-dir <folder>`` makes Hydra: the folder added to
    ``hydra.searchpath`` (after any the command line already gives), so the compose API sees
    the user's config groups beside ours."""
    if folder is None:
        return overrides
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    given: list[str] = []
    rest = []
    for arg in overrides:
        key = arg.split("=", 1)[0].lstrip("+~")
        if key == SEARCHPATH_KEY:
            (override,) = parser.parse_overrides([arg])
            given = list(override.value() or [])
        else:
            rest.append(arg)
    entries = ",".join(f"'{entry}'" for entry in [*given, f"file://{folder}"])
    return [*rest, f"{SEARCHPATH_KEY}=[{entries}]"]
