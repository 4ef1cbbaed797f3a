"""Stand-ins for what the world does to files: a full disk, a rewrite that hides itself."""

import os
import signal
from pathlib import Path


def limit_file_size():
    """A stand-in for a full disk: writes past 4 MB fail with EFBIG instead of a signal."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4_000_000, 4_000_000))


def rewrite_keeping_stamps(path: Path, content: bytes) -> None:
    """Rewrite ``path`` in place with its old size and mtime put back (rsync --times, a restore
    from backup): only ctime and, for a replaced file, the inode tell that it changed."""
    st = path.stat()
    path.write_bytes(content[: st.st_size].ljust(st.st_size, b"\0"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
