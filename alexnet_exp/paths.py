"""Where files of ours live on this machine, and the one way a file of ours is replaced.

A plain module at the bottom of the house (standard library only): the data sources, the
image-check cache and the tracking outbox all name their folders through here, so moving the
cache is one change, and every "write a temporary file, then rename" is written once.
"""

import os
import threading
from pathlib import Path

from alexnet_exp.errors import redact

# The installed package's own folder: the code a logged model carries (code_paths) and where
# git_tags asks which commit ran.
PACKAGE_DIR = Path(__file__).resolve().parent


def find_config_dir(package_dir: Path) -> tuple[Path, Path | None]:
    """The YAML of every config group, and the checkout the package runs from (None when
    installed from a wheel).

    A wheel ships conf/ inside the package (pyproject maps ``alexnet_exp.conf`` to conf/); a
    checkout, or an editable install of one, keeps it beside the package. The folder on disk is
    asked, not the import system (``pkg://alexnet_exp.conf``): with ``PYTHONPATH=<checkout>``
    over another checkout's editable install, the import system would name the other conf/.
    """
    shipped = package_dir / "conf"
    if shipped.is_dir():
        return shipped, None
    return package_dir.parent / "conf", package_dir.parent


_CONFIG_DIR, CHECKOUT_DIR = find_config_dir(PACKAGE_DIR)
# The Hydra mains and the command line's preflight compose from it. CHECKOUT_DIR: the checkout
# the package runs from, None for an installed copy.
CONFIG_DIR = str(_CONFIG_DIR)


def cache_root() -> Path:
    """Per-user cache for materialised data sets, image-check results and the outbox."""
    env = os.environ.get("ALEXNET_EXP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "alexnet_exp"


def outbox_dir() -> Path:
    """Default folder of the tracking outbox (what a run logs while its server is away)."""
    return cache_root() / "outbox"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader (or a kill) sees the old file or the new one,
    never half of it: a temporary file beside it, then one rename.

    The temporary name carries the process and thread, as parallel sweep jobs write the same
    cache files; it is opened like any file (not ``mkstemp``'s 0600) so the result keeps the
    permissions the user's umask gives, as ``Path.write_text`` did.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def redact_files(*files: Path) -> None:
    """Rewrite each file that holds a URI's user info without it. For the files a library
    writes before our code runs (Hydra's copies of the config and overrides in the job's
    ``.hydra/`` and the sweep's ``multirun.yaml``): a password typed in ``tracking.uri`` would
    otherwise stay readable in the output folders, which are shared and copied far more often
    than the store. A missing file is skipped; the rewrite is atomic, so parallel jobs of one
    sweep may redact the same file."""
    for path in files:
        try:
            text = Path(path).read_text()
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            continue
        shown = redact(text)
        if shown != text:
            atomic_write_text(path, shown)
