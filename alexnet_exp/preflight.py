"""The command line, checked before Hydra runs it: one line and exit 2 for a mistake, never a
traceback, never a run started on a config that cannot work.

Apart from the Hydra mains (:mod:`alexnet_exp.cli`) because these checks are a job of their
own: they compose the config as Hydra will (for a sweep, every value of every swept key), turn
Hydra's multi-line errors into one line, and refuse a ``_target_`` from the command line. They
raise :class:`~alexnet_exp.errors.UserError`; the entry point owns how a process ends.
"""

import contextlib
import io
import re
import tempfile
from dataclasses import fields, is_dataclass
from difflib import get_close_matches
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from alexnet_exp.config import ExperimentConfig
from alexnet_exp.config_checks import validate
from alexnet_exp.errors import UserError, first_line
from alexnet_exp.paths import CONFIG_DIR
from alexnet_exp.user_configs import user_config_dir, with_search_path

TARGET_KEY = "_target_"
MULTIRUN_FLAGS = ("-m", "--multirun")


def to_experiment_config(cfg: DictConfig) -> ExperimentConfig:
    """The composed DictConfig as the typed dataclass tree the rest of the package takes."""
    refuse_added_keys(cfg)
    return OmegaConf.to_object(cfg)


def refuse_added_keys(cfg: DictConfig, path: str = "") -> None:
    """Refuse a key that no schema has under a typed section (``+trainer.epoch=3``).

    Hydra applies ``+key=value`` and ``++key=value`` with OmegaConf's ``force_add``, which
    lifts struct mode on every node of the path, typed dataclass nodes included; so the typo is
    added beside ``trainer.epochs`` and the run trains its default epochs as if it had been
    asked to. A ``+`` stays free where the config has no schema (``hydra.*``, a plain dict),
    and ``+group=option`` adds to the defaults list, not to a node.
    """
    schema = OmegaConf.get_type(cfg)
    known = {f.name for f in fields(schema)} if is_dataclass(schema) else None
    for key in cfg:
        if not path and key == "hydra":
            continue
        full = f"{path}{key}"
        if known is not None and key not in known:
            close = get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {path}{close[0]}?" if close else ""
            raise UserError(f"{full} is not a key of the config{hint} (a + adds no key to a"
                            " typed section; alexnet-exp --cfg job lists every key)")
        node = cfg._get_node(key)
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            refuse_added_keys(node, f"{full}.")


def composition_error(exc: Exception) -> str:
    """Hydra's multi-line composition error as one line: the key, the value, what is allowed."""
    text = str(exc)
    missing = re.search(r"Could not find '([^/']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        choices = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.M)
        return f"{group}={option} is not an option of {group}: choose one of {', '.join(choices)}"
    unknown = re.search(r"Could not override '([^']+)'", text)
    if unknown:
        key = unknown.group(1)
        return f"{key} is not a key of the config (alexnet-exp --cfg job lists every key)"
    tilde = re.search(r"LexerNoViableAltException: (\S+?)=(\S*~\S*)", text)
    if tilde:  # bash expands ~ only at the start of a word, never after key=
        key, value = tilde.groups()
        fix = f"quote it for Hydra: '{key}=\"{value}\"'"
        if value.startswith("~/"):
            fix = f"write {key}=$HOME{value[1:]} (bash expands $HOME there) or {fix}"
        return f"{key}={value}: Hydra cannot read an unquoted ~ in a value: {fix}"
    cause = exc.__cause__
    override = re.search(r"Error merging override (\S+)", text)
    if override and cause is not None:
        return f"{override.group(1)}: {first_line(cause)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.startswith("See https://")]
    return f"cannot parse the command line ({'; '.join(lines)}): write overrides as key=value"


def refuse_target_overrides(args: list[str]) -> None:
    """Refuse any command-line ``_target_``: Hydra would import and call whatever it names
    (``hydra.callbacks.x._target_=os.system``), so a pasted or generated command line could run
    arbitrary code. Classes are chosen in config files under ``conf/``, which are reviewed code.

    Hydra's own parse is checked, not the text, so quoting, a dict value
    (``+hydra.callbacks.x={_target_: ...}``) or a sweep over dicts does not slip through while a
    folder that happens to be called ``_target_`` is still a plain value.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    for arg in user_config_dir(args)[0]:
        if arg.startswith("-"):
            continue
        try:
            (override,) = OverridesParser.create().parse_overrides([arg])
        except HydraException as exc:  # malformed: composing it fails before anything runs
            if "~" in arg:  # bash left ~ after key=: say how to write it (sweeps, tools too)
                raise UserError(f"config: {composition_error(exc)}") from exc
            continue
        if TARGET_KEY in override.key_or_group.split(".") or names_a_target(override.value()):
            raise UserError(f"{arg}: a {TARGET_KEY} cannot be set on the command line (Hydra"
                            " would import and call it); choose a config option instead, or add"
                            f" a YAML file under {CONFIG_DIR}")


def names_a_target(value) -> bool:
    """Whether a parsed override value holds a ``_target_`` key at any depth."""
    if isinstance(value, dict):
        return TARGET_KEY in value or any(names_a_target(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(names_a_target(v) for v in value)
    choices = getattr(value, "list", None)  # ChoiceSweep / GlobChoiceSweep of a -m sweep
    return isinstance(choices, list) and names_a_target(choices)


def preflight(args: list[str]) -> None:
    """Compose the config before Hydra does, so a mistyped key, value or option is one line
    and exit 2 (Hydra prints several lines and exits 1). For a sweep (``-m``) every value of
    every swept key is composed and validated, before the sweep's parent run exists.

    Raises :class:`UserError` with that line; the entry point prints it and exits.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args, folder = user_config_dir(args)
    refuse_two_modes(args)
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    overrides = [a for a in args if a not in MULTIRUN_FLAGS]
    if any(a.startswith("-") for a in overrides):  # --cfg, --help, ...: Hydra's own business
        return
    overrides = with_search_path(overrides, folder)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        try:
            jobs = sweep_jobs(overrides, compose) if multirun else [(overrides, None)]
            for job, swept in jobs:
                try:
                    cfg = compose(config_name="config", overrides=job, return_hydra_config=True)
                    refuse_added_keys(cfg)
                    if multirun:
                        validate(to_experiment_config(_without_hydra(cfg)))
                except (HydraException, UserError, OmegaConfBaseException) as exc:
                    where = f" (in the sweep {swept})" if swept else ""
                    message = composition_error(exc) if isinstance(exc, HydraException) \
                        else first_line(exc)
                    key = getattr(exc, "full_key", None)  # OmegaConf names the key apart
                    message = f"{key}: {message}" if key else message
                    raise UserError(f"config: {message}{where}") from exc
        except HydraException as exc:
            raise UserError(f"config: {composition_error(exc)}") from exc
    if not multirun:
        problem = unwritable(Path(cfg.hydra.run.dir))
        if problem:
            raise UserError(f"hydra.run.dir={cfg.hydra.run.dir} {problem}: pass"
                            " hydra.run.dir=<a writable folder>")


def refuse_two_modes(args: list[str]) -> None:
    """One of Hydra's modes per command (two make Hydra raise a ValueError, a traceback).
    Read with Hydra's own parser, as Hydra reads them (``--multi``, ``-mc job``), and let
    through what Hydra answers first (``--help``) or refuses itself (an unknown ``--cfg``).
    ``-m`` with ``--cfg`` is the likely pair, to see a sweep's config."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra says it again, its own way
            parsed, _ = get_args_parser().parse_known_args(args)
    except SystemExit:
        return
    if parsed.help or parsed.hydra_help:
        return
    modes = [mode for mode, given in (
        ("--run", parsed.run), ("--multirun", parsed.multirun), ("--cfg", parsed.cfg),
        ("--info", parsed.info), ("--shell-completion", parsed.shell_completion)) if given]
    if len(modes) < 2:
        return
    hint = "choose one"
    if modes == ["--multirun", "--cfg"]:
        hint = ("drop -m and give one job's values in place of the sweep's lists: --cfg job"
                " shows that job's config, --cfg hydra the sweep's params"
                " (hydra.sweeper.params)")
    raise UserError(f"{' and '.join(modes)} cannot be used together (Hydra runs one mode per"
                    f" command): {hint}")


def _without_hydra(cfg: DictConfig) -> DictConfig:
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def sweep_jobs(overrides: list[str], compose) -> list[tuple[list[str], str | None]]:
    """Override lists that together try every value a ``-m`` command sweeps, each with the
    sweep it tests (``norm=bn,lnr``): the other swept keys stay at their first value, so a
    sweep of n values over k keys costs n compositions, not the n^k jobs it will run.

    The swept keys of a preset (``hydra.sweeper.params`` of ``experiment=six_ideas``) are
    tried too; Optuna's ``interval(a, b)`` is tried at both ends.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    base = compose(config_name="config", overrides=fixed, return_hydra_config=True)
    preset = OmegaConf.select(base, "hydra.sweeper.params") or {}
    command_keys = {o.key_or_group for o in parsed}
    swept = [o for o in parsed if o.is_sweep_override()]
    swept += [o for o in parser.parse_overrides([f"{k}={v}" for k, v in preset.items()])
              if o.key_or_group not in command_keys and o.is_sweep_override()]
    choices = [(o, _values(o)) for o in swept]
    firsts = [f"{o.get_key_element()}={values[0]}" for o, values in choices]
    jobs: list[tuple[list[str], str | None]] = [(fixed + firsts, None)]
    for i, (override, values) in enumerate(choices):
        for value in values[1:]:
            job = [*firsts[:i], f"{override.get_key_element()}={value}", *firsts[i + 1:]]
            jobs.append((fixed + job, override.input_line))
    return jobs


def _values(override) -> list[str]:
    value = override.value()
    if hasattr(value, "start") and hasattr(value, "end") and not hasattr(value, "step"):
        return [str(value.start), str(value.end)]  # an Optuna interval: both ends
    return list(override.sweep_string_iterator())


def unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or where it would be created), else None."""
    existing = folder.expanduser().absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            return None
    except OSError as exc:
        return f"is not writable ({exc.strerror} in {existing})"
