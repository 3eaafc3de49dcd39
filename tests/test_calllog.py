"""The call log against the real database (SQLite, or DATABASE_URL): a durable, redacted
timeline per call, with a summary row supervisors list and filter."""

from __future__ import annotations

import datetime
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa

from ivr.calllog import (
    Appended,
    CallLog,
    Ended,
    Entry,
    Noted,
    Opened,
    Started,
    Write,
    calls,
    events,
    mask_number,
)
from services.accounts.db import make_engine

T0 = datetime.datetime(2026, 11, 23, 2, 0, tzinfo=datetime.UTC)
CALLER = "+8613800138000"


def at(seconds: int) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


@pytest.fixture
def sid() -> str:
    return "CA" + uuid.uuid4().hex


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613800138000", "+86*******8000"),
        ("13800138000", "138****8000"),
        ("+15551234567", "+15*****4567"),
        ("12345678", "123*5678"),
        ("1234567", "*******"),
        ("12333", "*****"),
        ("", ""),
    ],
)
def test_mask_number_keeps_only_the_first_3_and_last_4(number: str, masked: str) -> None:
    assert mask_number(number) == masked


def test_a_call_starts_with_the_caller_masked(log: CallLog, engine: sa.Engine, sid: str) -> None:
    log.start(sid, CALLER, T0)
    record = log.get(sid)
    assert record is not None
    assert (record.call_sid, record.caller, record.started_at) == (sid, "+86*******8000", T0)
    assert (record.lang, record.last_node, record.auth) == ("cmn-CN", "", "")
    assert (record.outcome, record.status, record.duration, record.ended_at) == (
        "in-progress", "", None, None,
    )  # fmt: skip
    assert [(e.kind, e.data, e.at) for e in record.timeline] == [
        ("start", {"caller": "+86*******8000"}, T0)
    ]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(calls.c.caller, calls.c.caller_key)).all()
        data = conn.execute(sa.select(events.c.data)).scalars().all()
    assert stored == [("+86*******8000", "key:8000")]
    assert CALLER not in repr(stored) + repr(data)


@pytest.mark.parametrize("offset", [0, 8, -5], ids=["utc", "beijing", "new-york"])
def test_times_come_back_as_the_same_instants(log: CallLog, sid: str, offset: int) -> None:
    zone = datetime.timezone(datetime.timedelta(hours=offset))
    start, pressed, ended = (moment.astimezone(zone) for moment in (T0, at(5), at(9)))
    log.start(sid, CALLER, start)
    log.append(sid, [Entry(pressed, "key", {"node": "main", "keys": "1"})])
    log.end(sid, "completed", 9, ended)
    record = log.get(sid)
    assert record is not None
    assert (record.started_at, record.ended_at) == (T0, at(9))
    assert [e.at for e in record.timeline] == [T0, at(5), at(9)]


def test_a_repeated_start_changes_nothing(log: CallLog, sid: str) -> None:
    log.start(sid, CALLER, T0)
    log.start(sid, "+8613900000000", at(5))
    record = log.get(sid)
    assert record is not None
    assert (record.caller, record.started_at) == ("+86*******8000", T0)
    assert [e.kind for e in record.timeline] == ["start"]


def test_append_keeps_the_summary_up_to_date(log: CallLog, sid: str) -> None:
    log.start(sid, CALLER, T0)
    log.append(sid, [
        Entry(at(1), "menu", {"node": "welcome"}),
        Entry(at(1), "menu", {"node": "main"}),
        Entry(at(1), "prompt", {"key": "welcome", "text": "您好"}),
    ])  # fmt: skip
    record = log.get(sid)
    assert record is not None
    assert (record.last_node, record.auth, record.outcome, record.lang) == (
        "main", "", "in-progress", "cmn-CN",
    )  # fmt: skip

    log.append(sid, [
        Entry(at(20), "key", {"node": "auth.id", "keys": "110***********002X"}),
        Entry(at(30), "auth", {"result": "wrong", "id": "110***********002X"}),
    ], lang="en-US")  # fmt: skip
    log.append(sid, [
        Entry(at(40), "auth", {"result": "ok", "id": "110***********002X"}),
        Entry(at(40), "menu", {"node": "balance"}),
    ])  # fmt: skip
    record = log.get(sid)
    assert record is not None
    assert (record.last_node, record.auth, record.outcome, record.lang) == (
        "balance", "ok", "in-progress", "en-US",
    )  # fmt: skip

    log.append(sid, [Entry(at(50), "transfer", {"to": "agent"})])
    assert log.get(sid).outcome == "transferred"  # type: ignore[union-attr]
    log.append(sid, [])  # nothing to add: nothing changes
    assert len(log.get(sid).timeline) == 1 + 3 + 2 + 2 + 1  # type: ignore[union-attr]


def test_the_timeline_comes_back_in_order(log: CallLog, sid: str) -> None:
    log.start(sid, CALLER, T0)
    written = [
        Entry(at(1), "menu", {"node": "main"}),
        Entry(at(1), "prompt", {"key": "main.menu", "text": "查询医保个人账户余额…"}),
        Entry(at(4), "key", {"node": "main", "keys": "1"}),
        Entry(at(9), "key", {"node": "auth.pin", "keys": "******"}),
        Entry(at(9), "service", {"call": "verify_pin", "outcome": "ok", "ms": 12.5}),
        Entry(at(12), "hangup", {"reason": "goodbye"}),
    ]
    log.append(sid, written[:2])
    log.append(sid, written[2:])
    assert log.end(sid, "completed", 15, at(15))
    record = log.get(sid)
    assert record is not None
    assert list(record.timeline) == [
        Entry(T0, "start", {"caller": "+86*******8000"}),
        *written,
        Entry(at(15), "end", {"status": "completed", "duration": 15}),
    ]


@pytest.mark.parametrize(
    ("entries", "status", "outcome"),
    [
        ([Entry(T0, "hangup", {"reason": "goodbye"})], "completed", "completed"),
        ([Entry(T0, "transfer", {"to": "agent"})], "completed", "transferred"),
        ([Entry(T0, "menu", {"node": "main"})], "completed", "abandoned"),
        ([], "no-answer", "no-answer"),
        ([], "failed", "failed"),
    ],
)
def test_a_call_ends_once_with_its_outcome(
    log: CallLog, sid: str, entries: list[Entry], status: str, outcome: str
) -> None:
    log.start(sid, CALLER, T0)
    log.append(sid, entries)
    assert log.end(sid, status, 42, at(42)) is True
    assert log.end(sid, "failed", 99, at(99)) is False
    record = log.get(sid)
    assert record is not None
    assert (record.status, record.duration, record.ended_at, record.outcome) == (
        status, 42, at(42), outcome,
    )  # fmt: skip
    assert [e.kind for e in record.timeline].count("end") == 1


def test_ending_an_unknown_call_does_nothing(log: CallLog, sid: str) -> None:
    assert log.end(sid, "completed", 3, T0) is False
    assert log.get(sid) is None


def test_recent_lists_the_newest_calls_first(log: CallLog) -> None:
    sids = [f"CA{n:02d}" + uuid.uuid4().hex[:8] for n in range(5)]
    for n in (2, 0, 4, 1, 3):  # started out of order
        log.start(sids[n], CALLER, at(60 * n))
    log.append(sids[1], [Entry(at(61), "menu", {"node": "main"})])
    recent = log.recent()
    assert [r.call_sid for r in recent] == sids[::-1]
    assert all(r.timeline == () for r in recent), "lists carry no timelines"
    assert recent[3].last_node == "main"
    assert [r.call_sid for r in log.recent(limit=2)] == [sids[4], sids[3]]
    assert [r.call_sid for r in log.recent(limit=2, offset=2)] == [sids[2], sids[1]]
    assert all(r.started_at.tzinfo is not None for r in recent)


def test_get_of_an_unknown_call_is_none(log: CallLog) -> None:
    assert log.get("CA-nothing") is None


def test_the_log_survives_a_new_engine(database_url: str, log: CallLog, sid: str) -> None:
    log.start(sid, CALLER, T0)
    log.append(sid, [Entry(at(1), "menu", {"node": "main"})])
    other = make_engine(database_url)
    try:
        record = CallLog(other).get(sid)
    finally:
        other.dispose()
    assert record is not None and record.last_node == "main"


def test_entries_for_a_call_whose_start_was_lost_still_make_a_whole_timeline(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    try:
        log = CallLog(engine)
        log.create_schema()
        at = datetime.datetime(2026, 11, 23, 8, 0, tzinfo=datetime.UTC)
        log.append("CAlost", [Entry(at, "menu", {"node": "main"})], "cmn-CN")
        record = log.get("CAlost")
        assert record is not None and record.last_node == "main"
        assert [e.kind for e in record.timeline] == ["start", "menu"]
    finally:
        engine.dispose()


def _scenario(sids: list[str]) -> list[Write]:
    """Writes of three calls interleaved, as a busy worker hands them over: starts, entries,
    a transfer and its failure, a goodbye after a transfer, repeated starts and ends, a note
    for an unknown call, entries for a call whose start was lost, an end racing an append."""
    a, b, c, lost, unknown = sids
    return [
        Started(a, CALLER, T0), Started(b, "+8613900139000", at(1)),
        Appended(a, (Entry(at(2), "menu", {"node": "main"}),), "cmn-CN"),
        Started(a, CALLER, at(3)),  # a repeat: nothing
        Appended(b, (Entry(at(3), "auth", {"result": "ok", "id": "110***********002X"}),
                     Entry(at(3), "menu", {"node": "balance"})), "en-US"),
        Appended(lost, (Entry(at(4), "menu", {"node": "main"}),), "cmn-CN"),
        Noted(unknown, (Entry(at(4), "prompt", {"key": "error.apology", "text": "抱歉"}),)),
        Noted(a, (Entry(at(5), "prompt", {"key": "error.apology", "text": "抱歉"}),)),
        Appended(a, (Entry(at(6), "transfer", {"to": "agent"}),)),
        Appended(a, (Entry(at(7), "hangup", {"reason": "goodbye"}),)),  # still a transfer
        Started(c, CALLER, at(8)),
        Appended(c, (Entry(at(8), "transfer", {"to": "agent"}),)),
        Appended(c, (Entry(at(9), "transfer_ended", {"status": "no-answer"}),)),
        Ended(b, "completed", 10, at(10)),
        Appended(b, (Entry(at(11), "menu", {"node": "main"}),)),  # after its end (a race)
        Ended(b, "completed", 12, at(12)),  # a repeat: nothing
        Ended(a, "completed", 13, at(13)), Ended(unknown, "failed", 1, at(13)),
    ]  # fmt: skip


def test_many_writes_in_one_transaction_are_as_the_same_writes_one_at_a_time(
    engine: sa.Engine,
) -> None:
    """The group commit hands the log many webhooks' writes at once: each call's row and
    timeline must come out as if each had been written on its own, and each write's answer
    (did it change the log? for a call's end, the outcome it wrote) must be the same."""
    alone, together = CallLog(engine), CallLog(engine)
    alone.create_schema()
    sids = [[f"CA{uuid.uuid4().hex}" for _ in range(5)] for _ in range(2)]
    answers_alone = [alone.write([w])[0] for w in _scenario(sids[0])]
    answers_together = together.write(_scenario(sids[1]))
    assert answers_together == answers_alone
    assert answers_alone == [True, True, True, False, True, True, False, True, True, True,
                             True, True, True, "abandoned", True, "", "transferred",
                             ""]  # fmt: skip  # a call's end: its outcome, or "" for a repeat
    for one, other in zip(sids[0], sids[1], strict=True):
        first, second = alone.get(one), together.get(other)
        if first is None:
            assert second is None
            continue
        assert second is not None
        assert replace(second, call_sid=one) == first
    outcomes = [alone.get(sid).outcome for sid in sids[0][:4]]  # type: ignore[union-attr]
    assert outcomes == ["transferred", "abandoned", "transfer_failed", "in-progress"]


def test_a_call_started_by_one_worker_is_known_to_every_other(log: CallLog) -> None:
    """Each worker remembers the calls it has seen in the log, to ask the database less; a
    call another worker started is still found there (no "start not recorded"), a call nobody
    started is still told apart, and a repeated start is still not a second start."""
    other = CallLog(log.engine)  # another gunicorn worker on the same database
    sid, never = f"CA{uuid.uuid4().hex}", f"CA{uuid.uuid4().hex}"
    assert log.write([Started(sid, "+8613800138000", at(0))]) == [True]
    menu = (Entry(at(1), "menu", {"node": "main"}),)
    assert other.write([Appended(sid, menu), Appended(never, menu)]) == [True, True]
    assert other.write([Started(sid, "+8613800138000", at(2))]) == [False]  # a repeat
    assert log.write([Started(sid, "+8613800138000", at(3))]) == [False]
    assert other.note(f"CA{uuid.uuid4().hex}", menu) is False  # a call the log does not have
    started = log.get(sid)
    assert started is not None and started.caller != ""
    assert [e.kind for e in started.timeline] == ["start", "menu"]
    assert "note" not in started.timeline[0].data
    orphan = other.get(never)
    assert orphan is not None and orphan.timeline[0].data["note"] == "start not recorded"


@pytest.mark.parametrize("where", ["same worker", "other worker", "same batch"])
@pytest.mark.parametrize("kind", [Opened, Started])
def test_a_start_that_arrives_after_its_calls_webhooks_fills_in_the_call(
    log: CallLog, where: str, kind: type[Opened] | type[Started]
) -> None:
    """A worker that could not reach the outbox writes a webhook's entries directly, and they
    can reach the log before the call's start, still in the outbox. The call then shows
    "start not recorded" until its start arrives: the start then fills in the caller, the start
    time and (for a call's first webhook) its entries, in their place on the timeline; a
    repeated start after that still writes nothing."""
    sid = f"CA{uuid.uuid4().hex}"
    later = Appended(sid, (Entry(at(5), "menu", {"node": "balance"}),), "en-US")
    first: Write
    if kind is Opened:
        welcome = (Entry(at(0), "prompt", {"key": "welcome", "text": "Welcome"}),)
        first = Opened(sid, CALLER, at(0), welcome, "cmn-CN")
    else:
        first = Started(sid, CALLER, at(0))
    if where == "same batch":
        assert log.write([later, first]) == [True, True]
    else:
        assert log.write([later]) == [True]
        unfilled = log.get(sid)
        assert unfilled is not None and unfilled.timeline[0].data["note"] == "start not recorded"
        writer = log if where == "same worker" else CallLog(log.engine, log._caller_key)
        assert writer.write([first]) == [True]
    assert log.write([first]) == [False]  # a repeated delivery of the first webhook
    assert CallLog(log.engine).write([first]) == [False]  # ... reaching another worker
    record = log.get(sid)
    assert record is not None
    assert (record.caller, record.started_at) == ("+86*******8000", T0)
    kinds = ["start", "prompt", "menu"] if kind is Opened else ["start", "menu"]
    assert [e.kind for e in record.timeline] == kinds
    assert record.timeline[0].data == {"caller": "+86*******8000"}
    assert (record.last_node, record.lang) == ("balance", "en-US")  # the later webhook's
    with log.engine.connect() as conn:
        key = conn.scalar(sa.select(calls.c.caller_key).where(calls.c.call_sid == sid))
    assert key == "key:8000"  # found by the caller's number again
