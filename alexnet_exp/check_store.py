"""The check pass's result per file, kept between runs: one SQLite file per data root.

A file is checked again only when its stamps changed (size, mtime, ctime, inode: see
:func:`alexnet_exp.scan.check_files`). The store was one JSON file per root, read and
rewritten whole on every run: ~150 MB parsed at each start at ImageNet's 1.28 M files.
SQLite reads the rows it has and writes only the files checked now, in one transaction, and
lets several sweep jobs check the same root at once (WAL, a busy timeout) without losing rows.
"""

import sqlite3
from collections.abc import Callable
from pathlib import Path

# The meaning of a row: one of another version is never trusted (a row from before orientation
# was recorded would otherwise say "upright" for every photo). Version 3 added the level,
# 4 the JPEG's side.
VERSION = 4
# How thoroughly a file was checked: a row satisfies a request for its own level or a lower one.
LEVELS = {"header": 1, "full": 2}
_BUSY_MS = 60_000  # how long a job waits for another job's write before giving up on the store

Stamps = tuple[int, int, int, int]  # size, mtime_ns, ctime_ns, inode
# Why unusable (None: usable), digest of the bytes, EXIF orientation, and the shorter side of a
# JPEG (0: another format; None: not opened, data.check=none): what the pipeline decodes with.
Result = tuple[str | None, str | None, int, int | None]


class CheckStore:
    """Rows ``path -> (stamps, level, result)``; a store that cannot be opened or written
    (a read-only cache folder, a full disk) holds nothing and costs a re-check next time."""

    def __init__(self, path: Path):
        self.path = path
        self._db = None
        self._stored: list[str] | None = None  # every row's path, as known() last read them
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as exc:
            # Not a database (a torn copy, another program's file). Other errors (read-only,
            # locked: OperationalError and the like) are not the file's fault: it stays.
            if type(exc) is sqlite3.DatabaseError:
                self._start_afresh()
        except OSError:
            pass

    def _start_afresh(self) -> None:
        """A new, empty store in place of one that is no database or has torn pages: this run
        checks every file and saves what it finds, instead of every run re-checking them
        against a store it cannot read."""
        self.close()
        if self._drop(self.path):
            try:
                self._db = self._open(self.path)
            except (OSError, sqlite3.Error):
                self._db = None

    @staticmethod
    def _drop(path: Path) -> bool:
        """Remove a store that is no database (or a torn one); False if it cannot be."""
        try:
            for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
                stale.unlink(missing_ok=True)
        except OSError:
            return False
        return True

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=_BUSY_MS / 1000, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            db.execute("CREATE TABLE IF NOT EXISTS checked (path TEXT PRIMARY KEY, size INTEGER,"
                       " mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, level INTEGER,"
                       " reason TEXT, digest TEXT, orientation INTEGER, jpeg_side INTEGER)"
                       " WITHOUT ROWID")
        except BaseException:
            db.close()
            raise
        return db

    def known(self, stamps: dict[str, Stamps], level: str) -> dict[str, Result]:
        """The stored result of every file of ``stamps`` whose row has the same stamps and was
        checked at ``level`` or more thoroughly."""
        if self._db is None:
            return {}
        try:
            rows = self._db.execute("SELECT path, size, mtime_ns, ctime_ns, inode, level, reason,"
                                    " digest, orientation, jpeg_side FROM checked").fetchall()
        except sqlite3.Error as exc:
            if type(exc) is sqlite3.DatabaseError:  # "malformed": torn pages
                self._start_afresh()
            return {}
        self._stored = [row[0] for row in rows]  # for forget_all_but
        wanted, known = LEVELS[level], {}
        for path, *row_stamps, row_level, reason, digest, orientation, side in rows:
            if stamps.get(path) != tuple(row_stamps) or row_level < wanted:
                continue
            if row_level == wanted:
                known[path] = (reason, digest, orientation, side)
            elif reason is None:
                # A file a full check passed passes a header check, but the header check finds
                # no copies: the digest stays out, so what a level keeps never depends on which
                # checks ran before. A file the full check refused is checked again at the
                # lesser level (its header may be fine).
                known[path] = (None, None, orientation, side)
        return known

    def save(self, results: dict[str, tuple[Stamps, str, Result]]) -> None:
        """Store the files checked now (``path -> (stamps, level, result)``) in one
        transaction; rows of other files stay as they are."""
        if self._db is None or not results:
            return
        rows = [(path, *stamps, LEVELS[level], *result)
                for path, (stamps, level, result) in results.items()]
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO checked VALUES"
                                     " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error:
            pass  # the next run checks these files again

    def forget_all_but(self, listed: Callable[[str], bool]) -> int:
        """Delete the rows of files that are not ``listed`` (every image the root holds now:
        the others were deleted or renamed since they were checked); returns how many. Without
        it a root whose files come and go grows its store by a row per file it ever held. Only
        a whole listing may ask: a row forgotten wrongly costs one check again, never a wrong
        answer. The paths :meth:`known` has just read are reused: a second read of every row
        cost 1.2 s at 1.28 M files.
        """
        if self._db is None:
            return 0
        try:
            stored = self._stored
            if stored is None:
                stored = [path for (path,) in self._db.execute("SELECT path FROM checked")]
            gone = [(path,) for path in stored if not listed(path)]
            if gone:
                with self._db:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._db.executemany("DELETE FROM checked WHERE path = ?", gone)
                self._stored = None  # those rows are gone: a later call reads the rest afresh
        except sqlite3.Error:
            return 0  # kept for now: the next listing tries again
        return len(gone)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
