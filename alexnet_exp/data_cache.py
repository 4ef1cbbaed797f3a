"""Where the pipeline keeps the decoded images between epochs: memory, a disk file, or nowhere.

``data.cache=auto`` (the default) picks memory when the decoded images fit in
``data.cache_max_memory`` (a quarter of the machine's memory unless set), the disk cache when
they do not and the disk has room, and no cache at all otherwise: a data set too big for
memory then costs decode time each epoch, never an out-of-memory death after most of one.
The estimate is exact, not a guess: every image is stored as ``side x side x 3`` uint8 pixels.
"""

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from alexnet_exp.config import DataConfig, parse_bytes
from alexnet_exp.errors import DataError

log = logging.getLogger(__name__)

# The disk cache is written beside other files: leave this much of the disk free after it.
DISK_HEADROOM = 0.10
_CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
_PROBE = ".alexnet-exp-write-probe"


@dataclass(frozen=True)
class CacheChoice:
    """The cache a run uses and why, for the data report (printed and logged with the run)."""

    mode: str  # memory | disk | none
    decoded_bytes: int  # the decoded images the cache would hold (train and val)
    memory_budget: int  # data.cache_max_memory in bytes
    reason: str

    def to_text(self) -> str:
        return f"cache: {self.mode} ({self.reason})"


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or the lowest memory limit of
    its cgroup and the cgroups above it (a container, a SLURM job, a systemd slice) when
    lower. psutil and ``os.sysconf`` report the host's memory there, which is what a memory
    cache sized from them would run out of."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in _cgroup_limit_files():
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _cgroup_limit_files() -> list[Path]:
    """The memory limit files of this process's cgroup and its ancestors, v2 and v1, as
    ``/proc/self/cgroup`` names them (at the root too: inside a container's namespace the
    process's own cgroup is the root)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return [Path(name) for name in _CGROUP_LIMITS]
    files = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified hierarchy
            base, name = Path("/sys/fs/cgroup"), ("memory.max", "memory.high")
        elif "memory" in controllers.split(","):
            base, name = Path("/sys/fs/cgroup/memory"), ("memory.limit_in_bytes",)
        else:
            continue
        folder = base / path.lstrip("/")
        for level in (folder, *folder.parents):
            files += [level / n for n in name]
            if level == base:
                break
    return files


def memory_budget(cfg: DataConfig) -> int:
    """``data.cache_max_memory`` in bytes; a quarter of :func:`machine_memory` when unset
    (the model, TensorFlow and the prefetched batches need the rest)."""
    if cfg.cache_max_memory is None:
        return machine_memory() // 4
    return parse_bytes(cfg.cache_max_memory)


def decoded_bytes(images: int, side: int) -> int:
    return images * side * side * 3


def choose_cache(cfg: DataConfig, images: int, side: int, disk_folder: Path) -> CacheChoice:
    """The cache for ``images`` decoded ``side`` px images: ``data.cache`` itself unless it is
    ``auto``; for ``auto``, memory if they fit the budget, else disk if ``disk_folder``'s disk
    has room for them, else none."""
    need, budget = decoded_bytes(images, side), memory_budget(cfg)
    sizes = f"{images:,} images decoded at {side}x{side} take {human_bytes(need)}"
    if cfg.cache != "auto":
        return CacheChoice(cfg.cache, need, budget, f"data.cache={cfg.cache}; {sizes}")
    if need <= budget:
        return CacheChoice("memory", need, budget,
                           f"data.cache=auto: {sizes}, within data.cache_max_memory"
                           f" {human_bytes(budget)}")
    over = f"{sizes}, over data.cache_max_memory {human_bytes(budget)}"
    unwritable = writable_problem(disk_folder)
    if unwritable:
        return CacheChoice("none", need, budget, f"data.cache=auto: {over}, and {unwritable}:"
                           " every epoch decodes again (set data.cache_path to a writable"
                           " folder to cache)")
    free = _free_disk(disk_folder)
    if free is not None and need <= free * (1 - DISK_HEADROOM):
        return CacheChoice("disk", need, budget, f"data.cache=auto: {over}; cached on disk"
                           f" under {disk_folder} ({human_bytes(free)} free)")
    room = "unknown" if free is None else human_bytes(free)
    return CacheChoice("none", need, budget, f"data.cache=auto: {over}, and {disk_folder}'s disk"
                       f" has {room} free: every epoch decodes again (set data.cache_path to a"
                       " larger disk to cache)")


def writable_problem(folder: Path) -> str | None:
    """Why the disk cache cannot be written under ``folder`` (made if missing), or None: a
    file is made and removed there, as permission bits do not tell (root, read-only mounts,
    immutable folders)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f"{_PROBE}-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return f"{folder} cannot be written ({exc.strerror or exc})"
    return None


def _free_disk(folder: Path) -> int | None:
    """Free bytes on the disk of ``folder`` (which :func:`writable_problem` made), if known."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def human_bytes(count: int) -> str:
    """``1.2 GB``: decimal units, as disks and ``data.cache_max_memory=8GB`` count them."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def disk_cache_folder(cfg: DataConfig, cache_dir: Path) -> Path:
    """Where ``data.cache=disk`` writes: ``data.cache_path`` when set, else ``cache_dir``."""
    return Path(cfg.cache_path).expanduser() if cfg.cache_path else cache_dir


def cached(ds, mode: str, folder: Path, key: str):
    """``ds`` (a tf.data.Dataset) kept in ``mode``'s cache; a disk cache is named ``key`` in
    ``folder``, and its lock files from a run killed mid-epoch are cleared first."""
    if mode == "memory":
        return ds.cache()
    if mode == "disk":
        problem = writable_problem(folder)
        if problem:  # before TensorFlow's own error, which names a lock file mid-epoch
            raise DataError(f"data.cache=disk: {problem}; set data.cache_path to a writable"
                            " folder, or data.cache=memory|none")
        _clear_stale_locks(folder, key)
        return ds.cache(str(folder / key))
    return ds


_held_cache_locks: list = []  # open for the life of the process: the flock is held until exit


def _clear_stale_locks(folder: Path, key: str) -> None:
    """Remove the lock files tf.data left for ``key`` if no live run of ours is using it.

    tf.data writes ``<key>_<shard>.lockfile`` while it fills a disk cache and refuses to
    start when one exists, so a run killed mid-epoch (kill -9, a node lost) left a cache path
    no later run could use. Each run holds an flock on ``<key>.alexnet-exp.lock`` (released by
    the kernel however the process ends): when this run gets it, no live run is writing the
    cache and any lock file there is stale. When another run holds it, its lock files are live
    and stay (tf.data then says another iterator is caching, as before).
    """
    import fcntl

    guard = open(folder / f"{key}.alexnet-exp.lock", "a")  # noqa: SIM115 (held until exit)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        guard.close()
        return
    _held_cache_locks.append(guard)
    for stale in folder.glob(f"{key}_*.lockfile"):
        stale.unlink(missing_ok=True)
