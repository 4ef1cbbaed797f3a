"""Where files of ours live on this machine, and the one way a file of ours is replaced.

A plain module at the bottom of the house (standard library only): the data sources, the
image-check cache and the tracking outbox all name their folders through here, so moving the
cache is one change, and every "write a temporary file, then rename" is written once.
"""

import os
import threading
from pathlib import Path

# The installed package's own folder: the code a logged model carries (code_paths) and where
# git_tags asks which commit ran.
PACKAGE_DIR = Path(__file__).resolve().parent
# The YAML of every config group (conf/ beside the package): the Hydra mains and the
# command line's preflight compose from it.
CONFIG_DIR = str(PACKAGE_DIR.parent / "conf")


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
