"""Shared fixtures: a real database (SQLite file, or DATABASE_URL) and a real Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


def _normalise(url: str) -> str:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A database URL with an empty schema: DATABASE_URL when set (its tables dropped), else SQLite."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'test.sqlite3'}"
        return
    url = _normalise(url)
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    meta.drop_all(engine)
    engine.dispose()
    yield url
