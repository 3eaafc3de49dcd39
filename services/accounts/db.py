"""Engines for the account database: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

# WAL with synchronous=NORMAL: a commit survives the process (a worker killed, the app
# restarted) without waiting for the disk; the last commits before a power cut may be lost
# (PostgreSQL is the database for a service that must keep them too).
_SQLITE_PRAGMAS = (
    "journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON"
)  # fmt: skip


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def make_engine(url: str) -> sa.Engine:
    """An engine for `url`: PostgreSQL through psycopg, its pooled connections pinged before
    use (a server restart leaves them dead); SQLite with its pragmas and folder."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 2})
    engine = sa.create_engine(parsed)  # a file: no connection to go stale, nothing to ping
    if backend == "sqlite":
        if path := sqlite_file(parsed):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def sqlite_file(url: sa.URL) -> str | None:
    """The path of the SQLite file `url` names; None for another database, SQLite in memory
    or a `file:` URI."""
    database = url.database if url.get_backend_name() == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


class WriterTurns:
    """Turns at writing one SQLite file, for the processes that write it often (the call log's
    writer in every web worker). SQLite lets one writer in at a time, and one that finds the
    file taken sleeps in steps of 1, 2, 5, 10 ... ms before it looks again: under load two
    workers' writers kept meeting, and a webhook waited 10-40 ms behind a lock held for one.
    An exclusive `flock` on `<file>-writer` wakes the next writer the moment the last one is
    done. Outside SQLite files (PostgreSQL locks rows, not the database) it does nothing."""

    def __init__(self, engine: sa.Engine) -> None:
        database = sqlite_file(engine.url)
        self.path = f"{database}-writer" if database else None
        self._fd: int | None = None
        self._pid = 0
        self._lock = threading.Lock()  # one writer per process takes the file's turn

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the file's writer turn (blocks, without the GIL, until it is this one's)."""
        if self.path is None:
            yield
            return
        with self._lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self) -> int:
        """The lock file, opened by this process (a descriptor inherited over fork would share
        its lock with the parent's)."""
        if self._fd is None or self._pid != os.getpid():
            assert self.path is not None
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        return self._fd


def create_tables(create: Callable[[], None], attempts: int = 4) -> None:
    """Run `create` (a `create_all`), retrying while other processes do the same at the same
    moment (SQLite: "database is locked"; both: "already exists"); raise the last error."""
    for attempt in range(1, attempts + 1):
        try:
            create()
            return
        except sa.exc.SQLAlchemyError:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
