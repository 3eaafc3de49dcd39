"""Group commit: webhook threads' writes share transactions, none is lost or reordered, and a
database that is away holds the writes (and the webhook at most `wait`) instead of losing them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ivr.groupcommit import GroupCommit


class Away(Exception):
    """The database does not answer (retryable)."""


class Refused(Exception):
    """The database refuses the batch (not retryable)."""


class Database:
    """A write function: records each batch; can be away, slow or refuse one item."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list[str]] = []
        self.away = False
        self.refuse = ""
        self.delay = delay
        self.lock = threading.Lock()

    def write(self, items: list[str]) -> None:
        time.sleep(self.delay)
        if self.away:
            raise Away
        if self.refuse in items:
            raise Refused
        with self.lock:
            self.batches.append(list(items))

    @property
    def written(self) -> list[str]:
        return [item for batch in self.batches for item in batch]


def commit(db: Database, **options: float) -> GroupCommit[str]:
    return GroupCommit(db.write, lambda exc: isinstance(exc, Away), name="test", retry=0.02,
                       **options)  # type: ignore[arg-type]  # fmt: skip


def test_many_threads_writes_share_transactions_and_keep_each_threads_order() -> None:
    db = Database(delay=0.002)  # each transaction takes a little while, as a real one does
    group = commit(db)

    def webhook(thread: int) -> None:
        for n in range(50):
            assert group.put([f"{thread}:{n}:a", f"{thread}:{n}:b"])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(webhook, range(16)))
    written = db.written
    assert sorted(written) == sorted(f"{t}:{n}:{x}" for t in range(16) for n in range(50)
                                     for x in "ab")  # fmt: skip
    for thread in range(16):
        mine = [w for w in written if w.startswith(f"{thread}:")]
        assert mine == [f"{thread}:{n}:{x}" for n in range(50) for x in "ab"]
    assert len(db.batches) < 16 * 50 / 2, "writes were not grouped"
    for batch in db.batches:  # a webhook's writes are never split between transactions
        assert all(f"{w[:-1]}{'b' if w.endswith('a') else 'a'}" in batch for w in batch)


def test_a_database_away_holds_the_writes_and_the_webhook_at_most_wait() -> None:
    db = Database()
    group = commit(db, wait=0.2)
    assert group.put(["before"])
    db.away = True
    started = time.monotonic()
    assert group.put(["during 1"]) is False
    assert group.put(["during 2"]) is False
    assert time.monotonic() - started < 1.0
    assert db.written == ["before"]
    db.away = False
    assert group.flush(timeout=5)
    assert db.written == ["before", "during 1", "during 2"]


def test_a_refused_write_is_dropped_alone_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    db = Database(delay=0.01)
    group = commit(db)
    db.refuse = "bad"
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(group.put, [["good 1"], ["bad"], ["good 2"]]))
    assert group.flush()
    assert sorted(db.written) == ["good 1", "good 2"]
    assert "dropped 1 writes the database refused (Refused)" in caplog.text


def test_past_the_limit_the_oldest_held_writes_are_dropped_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = Database()
    group = commit(db, wait=0.01, limit=3)
    db.away = True
    assert group.put(["held by the writer"]) is False  # taken: retried until the database is back
    time.sleep(0.05)
    for n in range(5):
        group.put([f"queued {n}"])
    db.away = False
    assert group.flush(timeout=5)
    assert db.written == ["held by the writer", "queued 3", "queued 4"]  # 3 held at most
    assert "test: dropped 1 writes the database could not take in time" in caplog.text
