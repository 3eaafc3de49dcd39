"""The call log's outbox against a real Redis and the real database: what a webhook hands to
Redis reaches the call log once, in the order it was handed over, whoever moves it."""

from __future__ import annotations

import datetime
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import sqlalchemy as sa
from gevent_worker import ticks_during

from ivr import outbox as outbox_module
from ivr import store as store_module
from ivr.calllog import Appended, CallLog, Ended, Entry, Moved, Noted, Opened, Started, events
from ivr.outbox import Outbox, decode
from ivr.store import Store
from services.accounts.db import make_engine

T0 = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.UTC)
CALLER = "+8613800138000"


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def key_of(number: str) -> str:
    return f"key:{number[-4:]}"  # as the `log` fixture keys callers


def an_outbox(redis_client: redis.Redis, log: CallLog, **kw: object) -> Outbox:
    return Outbox(Store(redis_client), log, key_of, **kw)  # type: ignore[arg-type]


def new_sid() -> str:
    return "CA" + uuid.uuid4().hex


def kinds(log: CallLog, sid: str) -> list[str]:
    record = log.get(sid)
    assert record is not None
    return [f"{e.kind}:{e.data.get('key', e.data.get('status', ''))}" for e in record.timeline]


def whole_call(box: Outbox, sid: str) -> None:
    """A call's writes as its webhooks hand them over: opened, two steps, ended."""
    box.put([Opened(sid, CALLER, at(0), (Entry(at(0), "prompt", {"key": "welcome"}),), "cmn-CN")])
    box.put([Appended(sid, (Entry(at(1), "key", {"key": "1"}),))])
    box.put([Appended(sid, (Entry(at(2), "prompt", {"key": "balance"}),))])
    box.put([Ended(sid, "completed", 9, at(9))])


def test_handed_over_writes_reach_the_log_in_order_with_the_caller_masked_in_redis_too(
    redis_client: redis.Redis, log: CallLog
) -> None:
    ended: list[str] = []
    box = an_outbox(redis_client, log, on_ended=ended.append)
    sid = new_sid()
    whole_call(box, sid)
    assert box.key is not None
    in_redis = b"".join(fields[b"w"] for _, fields in redis_client.xrange(box.key))
    assert CALLER.encode() not in in_redis and b"+86*******8000" in in_redis
    assert log.get(sid) is None, "nothing is written before it is moved"
    assert box.catch_up()
    record = log.get(sid)
    assert record is not None
    assert record.caller == "+86*******8000" and record.status == "completed"
    assert kinds(log, sid) == ["start:", "prompt:welcome", "key:1", "prompt:balance",
                               "end:completed"]  # fmt: skip
    assert ended == ["abandoned"]  # told the call's outcome as its end was moved
    with log.engine.connect() as conn:
        key = conn.execute(sa.text("SELECT caller_key FROM call_log_calls")).scalar()
    assert key == "key:8000"


def test_a_repeated_first_webhook_writes_nothing_more(
    redis_client: redis.Redis, log: CallLog
) -> None:
    box, sid = an_outbox(redis_client, log), new_sid()
    opened = Opened(sid, CALLER, at(0), (Entry(at(0), "prompt", {"key": "welcome"}),))
    box.put([opened])
    box.put([Opened(sid, CALLER, at(0.1), (Entry(at(0.1), "prompt", {"key": "welcome"}),))])
    assert box.catch_up()
    assert kinds(log, sid) == ["start:", "prompt:welcome"]


def test_a_write_moved_by_another_mover_is_not_written_twice(log: CallLog) -> None:
    """The log's place in the stream is checked and moved in the write's own transaction."""
    sid = new_sid()
    log.write([Started(sid, CALLER, at(0))])
    stream = "test-" + uuid.uuid4().hex[:8]
    was = log.outbox_moved(stream)
    assert was == "0-0"
    note = Noted(sid, (Entry(at(1), "prompt", {"key": "x"}),))
    log.write([note], moved=(stream, was, "5-0"))
    with pytest.raises(Moved):  # a second mover with the same place
        log.write([note], moved=(stream, was, "5-0"))
    assert log.outbox_moved(stream) == "5-0"
    assert kinds(log, sid) == ["start:", "prompt:x"]


def test_two_movers_at_once_write_each_entry_once(
    redis_client: redis.Redis, log: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two movers that both think they hold the lease (one stalled past it) and start from
    the same place: the second's transaction finds the place moved and writes nothing."""
    first, second = an_outbox(redis_client, log), an_outbox(redis_client, log)
    for sid in [new_sid() for _ in range(30)]:
        whole_call(first, sid)
    assert first.key is not None
    stream = first.store.outbox_id(first.key)
    for box in (first, second):
        monkeypatch.setattr(box, "_hold", lambda key: True)
        box._stream, box._moved = stream, log.outbox_moved(stream)
    assert first.move() == 120
    assert second.move() == 0  # it read the same 120 entries, and wrote none of them
    assert first.catch_up() and second.catch_up()
    with log.engine.connect() as conn:
        written = conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()
    assert written == 30 * 5


def test_a_mover_that_stops_is_replaced_when_its_lease_lapses(
    redis_client: redis.Redis, log: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "LEASE", 0.5)
    gone, standby = an_outbox(redis_client, log), an_outbox(redis_client, log)
    sid = new_sid()
    gone.put([Opened(sid, CALLER, at(0), ())])
    assert gone.move() == 1  # it holds the lease now, then stops (its worker was killed)
    whole_call(gone, new_sid())
    assert standby.move() is None, "the lease is held: the stand-by waits"
    started = time.monotonic()
    assert standby.catch_up(timeout=3)
    assert 0.2 < time.monotonic() - started < 2.5


def test_hotlines_sharing_a_redis_but_not_a_database_keep_apart(
    redis_client: redis.Redis, log: CallLog, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other_engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('other')}/other.sqlite3")
    other = CallLog(other_engine, caller_key=key_of)
    other.create_schema()
    try:
        mine, theirs = an_outbox(redis_client, log), an_outbox(redis_client, other)
        assert mine.key != theirs.key
        a, b = new_sid(), new_sid()
        whole_call(mine, a)
        whole_call(theirs, b)
        assert mine.catch_up() and theirs.catch_up()
        assert log.get(a) and log.get(b) is None
        assert other.get(b) and other.get(a) is None
    finally:
        other_engine.dispose()


def test_a_redis_started_afresh_is_moved_from_its_own_beginning(
    redis_client: redis.Redis, log: CallLog
) -> None:
    box, before = an_outbox(redis_client, log), new_sid()
    whole_call(box, before)
    assert box.catch_up()
    assert box.key is not None
    redis_client.delete(box.key, f"{box.key}:id", f"{box.key}:mover")  # its data lost
    fresh = an_outbox(redis_client, log)
    after = new_sid()
    whole_call(fresh, after)
    assert fresh.catch_up()
    assert kinds(log, after)[-1] == "end:completed"


def test_an_apology_held_while_redis_was_down_follows_the_call_in_time(
    redis_client: redis.Redis, log: CallLog
) -> None:
    """Redis failing, the apology's entries go to the database directly; the call's start is
    still in the outbox, so the log does not take them yet: they are held, handed over when
    Redis is back, and read back in the order they happened."""
    box, sid = an_outbox(redis_client, log), new_sid()
    box.put([Opened(sid, CALLER, at(0), (Entry(at(0), "prompt", {"key": "welcome"}),))])
    apology = Noted(sid, (Entry(at(1), "prompt", {"key": "error.apology"}),))
    assert log.write([apology]) == [False]  # (the direct write, while Redis was down)
    box.hold([apology])
    box.put([Appended(sid, (Entry(at(2), "prompt", {"key": "main.menu"}),))])  # after it, moved
    assert box.catch_up()
    box.hand_held()
    assert box.catch_up()
    assert kinds(log, sid) == ["start:", "prompt:welcome", "prompt:error.apology",
                               "prompt:main.menu"]  # fmt: skip


def test_the_stream_keeps_each_write_as_it_was(redis_client: redis.Redis, log: CallLog) -> None:
    box = an_outbox(redis_client, log)
    writes = [
        Started("CA1", CALLER, at(0)),
        Opened("CA2", CALLER, at(0.5), (Entry(at(0.5), "menu", {"node": "main"}),), "en-US"),
        Appended("CA1", (Entry(at(1), "key", {"keys": "1", "中": [1, None]}),), "en-US"),
        Noted("CA1", (Entry(at(2), "prompt", {"key": "error.apology"}),)),
        Ended("CA1", "no-answer", None, at(3)),
    ]
    back = decode(box.encode(writes))
    masked = "+86*******8000"
    assert back == [
        Started("CA1", masked, at(0), "key:8000"),
        Opened("CA2", masked, at(0.5), writes[1].entries, "en-US", "key:8000"),  # type: ignore[union-attr]
        *writes[2:],
    ]


def test_webhooks_arriving_together_in_a_new_worker_all_use_the_outbox(
    redis_client: redis.Redis, log: CallLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's first webhooks come at once, while one of them asks the database for the
    outbox's name: the others wait for its answer rather than write to the database directly
    (which would put their entries ahead of their calls' starts still in the outbox)."""
    box = an_outbox(redis_client, log)
    ask = log.outbox_name

    def slow() -> str:
        time.sleep(0.2)
        return ask()

    monkeypatch.setattr(log, "outbox_name", slow)
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: box.key, range(8)))
    assert None not in keys and len(set(keys)) == 1, keys


def test_a_reader_that_caught_up_leaves_the_lease_to_the_movers(
    redis_client: redis.Redis, log: CallLog
) -> None:
    """`ivr calls list` moves what it must see, then goes: the hotline's mover goes on at
    once, not after the lease it took lapses."""
    reader, mover = an_outbox(redis_client, log), an_outbox(redis_client, log)
    whole_call(reader, new_sid())
    assert reader.catch_up()  # it moved them itself: no other process was moving
    later = new_sid()
    whole_call(mover, later)
    assert mover.move() == 4, "the lease was left behind"
    assert kinds(log, later)[-1] == "end:completed"


def test_an_outbox_the_database_does_not_take_says_how_full_it_grows(
    redis_client: redis.Redis, log: CallLog, tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """While the database is away, the outbox keeps the webhooks' entries, at most
    OUTBOX_MAXLEN of them: the operator is told when it is half full, and when it is full
    and the oldest entries are being dropped."""
    for module in (store_module, outbox_module):
        monkeypatch.setattr(module, "OUTBOX_MAXLEN", 300)
    monkeypatch.setattr(outbox_module, "RETRY", 0.02)
    box = an_outbox(redis_client, log)
    box._key = Store.outbox_key(uuid.uuid4().hex)  # an outbox of this test's alone
    gone = tmp_path_factory.mktemp("gone") / "no such folder" / "log.sqlite3"
    log.engine = sa.create_engine(f"sqlite:///{gone}")  # the database is away
    sid = new_sid()

    def said(words: str, within: float = 5) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if any(words in r.getMessage() for r in caplog.records):
                return True
            time.sleep(0.02)
        return False

    try:
        for n in range(100):
            box.put([Appended(sid, (Entry(at(n), "key", {"key": "1"}),))])
        box.start()
        assert said("moving the outbox to the database failed")
        assert not said("% of what it keeps", within=0.3)  # a third full: nothing to say yet
        for n in range(100, 200):
            box.put([Appended(sid, (Entry(at(n), "key", {"key": "1"}),))])
        # (said once, at whatever count from 150 on the mover's next look finds: a look
        # while these go in finds fewer than 200)
        assert said("% of what it keeps (300) while the database does not take them")
        for n in range(200, 500):
            box.put([Appended(sid, (Entry(at(n), "key", {"key": "1"}),))])
        assert said("the outbox is full")
        assert 300 <= redis_client.xlen(box._key) < 500  # Redis dropped the oldest
    finally:
        box.stop()  # (the database still away: it says so, and leaves the rest)
        redis_client.delete(box._key, f"{box._key}:id", f"{box._key}:mover")


def test_in_a_gevent_worker_the_webhooks_go_on_while_the_mover_writes(
    redis_url: str, database_url: str
) -> None:
    """The mover's transaction runs in one of gevent's native threads: the worker's webhooks
    are answered while the database writes (here some 6,000 rows), not after. In the loop's
    thread, only the mover's few Redis round trips would let the ticker in."""
    _, (during, moved, rows) = ticks_during("""
        import datetime, uuid
        from ivr import store
        from ivr.calllog import CallLog, Entry, Opened
        from ivr.outbox import Outbox
        from services.accounts.db import make_engine
        redis_url, database_url = sys.argv[1:]
        log = CallLog(make_engine(database_url), caller_key=lambda number: "k" + number[-4:])
        log.create_schema()
        client = store.Store(store.connect(redis_url, 1.0))
        box = Outbox(client, log, lambda number: "k" + number[-4:])
        t0 = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.UTC)
        keys = tuple(Entry(t0, "key", {"key": str(i % 10)}) for i in range(20))
        sids = ["CA" + uuid.uuid4().hex for _ in range(300)]
        for sid in sids:
            box.put([Opened(sid, "+8613800138000", t0, keys, "cmn-CN")])
        def work():
            before = ticks
            moved = box.move()
            during = ticks - before
            box.stop()
            return during, moved, sum(len(log.get(sid).timeline) for sid in sids)
    """, redis_url, database_url)
    assert int(moved) == 300 and int(rows) == 300 * 21  # every call's start and 20 keys, once
    assert int(during) >= 15, f"the loop ran {during} times while 300 calls' entries were moved"
