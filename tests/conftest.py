"""Shared fixtures: a real database (SQLite file, or DATABASE_URL) and a real Redis."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


def _normalise(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@contextmanager
def fresh_database(folder: Path) -> Iterator[str]:
    """A database URL with nothing in it: a SQLite file in `folder`, or, when DATABASE_URL is
    set, a schema of its own in that database (dropped afterwards), so tests never share tables."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield f"sqlite:///{folder / 'test.sqlite3'}"
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(_normalise(url))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        scoped = sa.make_url(_normalise(url)).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database URL with an empty schema of its own (SQLite file, or a schema in DATABASE_URL)."""
    with fresh_database(tmp_path) as url:
        yield url
