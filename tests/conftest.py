"""Shared fixtures: a real database (SQLite file, or DATABASE_URL) and a real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
import sqlalchemy as sa
from hotline_server import Server, serve
from twilio_sim import Simulator

if TYPE_CHECKING:
    from ivr.calllog import CallLog


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
        search_path = {"options": f"-csearch_path={schema}"}
        scoped = sa.make_url(_normalise(url)).update_query_dict(search_path)
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


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    """An engine on that database (disposed afterwards)."""
    from services.accounts.db import make_engine

    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def log(engine: sa.Engine) -> CallLog:
    """The call log on that database, its tables made; a caller's key is `key:` and the
    number's last 4 digits."""
    from ivr.calllog import CallLog

    calllog = CallLog(engine, caller_key=lambda number: f"key:{number[-4:]}")
    calllog.create_schema()
    return calllog


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: REDIS_URL when set, else an embedded server of the session's own."""
    from ivr import embedded

    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    folder = tmp_path_factory.mktemp("redis")
    try:
        yield embedded.ensure(folder)
    finally:
        embedded.stop(folder)


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the real Redis, as the hotline makes it (closed afterwards)."""
    from ivr import store

    client = store.connect(redis_url, 1.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def hotline(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline under gunicorn with the test accounts and an agent queue named `agents`."""
    folder = tmp_path_factory.mktemp("hotline")
    with (
        fresh_database(folder) as url,
        serve(folder, redis_url, url, extra_env={"IVR_AGENT_QUEUE": "agents"}) as server,
    ):
        yield server


@pytest.fixture
def sim(hotline: Server) -> Simulator:
    """A Twilio that calls the hotline, signing with its auth token."""
    return Simulator(hotline.url, hotline.token)
