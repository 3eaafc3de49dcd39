"""Engines for the account database: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
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
        if (
            parsed.database
            and parsed.database != ":memory:"
            and not parsed.database.startswith("file:")
        ):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
