"""make_engine: SQLite pragmas and folder, PostgreSQL through psycopg, pre-ping."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from services.accounts.db import WriterTurns, make_engine


def test_sqlite_gets_wal_normal_sync_busy_timeout_foreign_keys_and_its_folder(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "folder" / "hotline.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
        assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 5000,
                           "foreign_keys": 1}  # fmt: skip
        assert path.exists()
        assert not engine.pool._pre_ping, "a file has no connection to go stale"
    finally:
        engine.dispose()


def test_postgres_urls_use_psycopg_with_a_connect_timeout() -> None:
    for url in ("postgres://u@127.0.0.1:1/db", "postgresql://u@127.0.0.1:1/db"):
        engine = make_engine(url)
        assert engine.dialect.driver == "psycopg"
        assert engine.pool._pre_ping
        engine.dispose()
    engine = make_engine("postgresql+psycopg://u@127.0.0.1:1/db")
    try:
        with engine.connect():
            raise AssertionError("port 1 answered")
    except sa.exc.OperationalError:
        pass
    finally:
        engine.dispose()



def test_writers_of_one_sqlite_file_take_turns_across_processes(tmp_path: Path) -> None:
    """While another process holds the file's writer turn, this one waits for it, and goes
    on the moment the other is done (not after SQLite's next sleep)."""
    database = str(tmp_path / "log.sqlite3")
    fork = multiprocessing.get_context("fork")
    holding, release = fork.Event(), fork.Event()
    other = fork.Process(target=_hold_turn, args=(database, holding, release))
    other.start()
    try:
        assert holding.wait(10)
        started = time.monotonic()
        threading.Timer(0.3, release.set).start()
        with WriterTurns(make_engine(f"sqlite:///{database}")).turn():
            waited = time.monotonic() - started
        assert 0.29 <= waited < 0.45, waited
    finally:
        release.set()
        other.join(10)
    assert WriterTurns(make_engine("sqlite://")).path is None  # in memory: nothing to share


def _hold_turn(database: str, holding: Any, release: Any) -> None:
    with WriterTurns(make_engine(f"sqlite:///{database}")).turn():
        holding.set()
        release.wait(10)
