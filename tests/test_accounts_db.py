"""make_engine: SQLite pragmas and folder, PostgreSQL through psycopg, pre-ping."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from services.accounts.db import make_engine


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
