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
    assert group.put(["oldest"]) is False  # held, tried again until the database is back
    time.sleep(0.05)
    for n in range(5):
        group.put([f"queued {n}"])
    db.away = False
    assert group.flush(timeout=5)
    assert db.written == ["queued 2", "queued 3", "queued 4"]  # the 3 newest: 3 held at most
    assert "test: dropped 1 writes the database could not take in time" in caplog.text


def test_alone_a_thread_writes_its_own_entries_itself() -> None:
    """No hand-over to another thread when nobody else is writing: the write runs in the
    thread that puts it, as a plain write would."""
    writers: list[int] = []
    group = GroupCommit(lambda items: writers.append(threading.get_ident()),
                        lambda exc: False, name="test")  # fmt: skip
    assert group.put(["a"]) and group.put(["b"])
    assert writers == [threading.get_ident()] * 2


def test_writes_whose_threads_stopped_waiting_are_still_written() -> None:
    db = Database(delay=0.3)  # a slow database: the second thread gives up waiting
    group = commit(db, wait=0.05)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(group.put, ["first"])
        time.sleep(0.05)
        second = pool.submit(group.put, ["second"])
        assert second.result() is False
        assert first.result() is True
    assert db.written == ["first", "second"], "the writer went on with what was left queued"


def test_each_thread_gets_back_what_the_write_said_of_its_own_items() -> None:
    """Batched with others, a thread still learns the result of each of its own writes (the
    call log says which call ended with which outcome), in its own order."""
    db = Database(delay=0.002)

    def write(items: list[str]) -> list[str]:
        db.write(items)
        return [f"ok {item}" for item in items]

    group = GroupCommit(write, lambda exc: False, name="test")

    def webhook(thread: int) -> None:
        for n in range(30):
            mine = [f"{thread}:{n}:a", f"{thread}:{n}:b"]
            assert group.submit(mine) == [f"ok {item}" for item in mine]

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(webhook, range(8)))
    assert len(db.batches) < 8 * 30, "writes were not grouped"
    assert group.submit([]) == ()

