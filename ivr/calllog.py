"""Durable, redacted call timelines in the database (SPEC 8).

Entries arrive already redacted (the engine masks ID numbers and PINs when it
makes them); this module also masks the caller's number before it is written.
Writes (a call started, a webhook's entries, a note, the call's end) are applied
in order, many in one transaction, with the call's summary row (last menu,
authentication result, outcome) kept up to date beside them. Webhooks hand their
writes to the outbox (`ivr.outbox`, a Redis stream) and its mover writes them here;
the outbox's place in the stream is kept here too, in the same transaction.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from services.accounts.db import WriterTurns
from services.accounts.models import UtcDateTime

metadata = sa.MetaData()

calls = sa.Table(
    "call_log_calls",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("started_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("caller", sa.String(32), nullable=False, default=""),
    sa.Column("caller_key", sa.String(64), nullable=False, default="", index=True),
    sa.Column("lang", sa.String(8), nullable=False, default="cmn-CN"),
    sa.Column("last_node", sa.String(64), nullable=False, default=""),
    sa.Column("auth", sa.String(16), nullable=False, default=""),
    sa.Column("outcome", sa.String(32), nullable=False, default="in-progress"),
    sa.Column("status", sa.String(16), nullable=False, default=""),
    sa.Column("duration", sa.Integer, nullable=True),
    sa.Column("ended_at", UtcDateTime(), nullable=True),
)

events = sa.Table(
    "call_log_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("call_sid", sa.String(64), nullable=False, index=True),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

# The outbox's name (`name`: its stream's key names it) and, for each Redis whose stream is
# moved here (`moved:<the stream's id>`), the last of its entries written here.
outbox = sa.Table(
    "call_log_outbox",
    metadata,
    sa.Column("slot", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(64), nullable=False),
)

# Call SIDs a process remembers having seen in the log: beyond this many it starts afresh.
KNOWN_CALLS = 100_000
# The caller_key of a call whose webhooks reached the log before its start did (written
# directly while the outbox was out of reach): its start, when it comes, fills the row in.
UNRECORDED = "(unrecorded)"  # (no keyed hash looks like this)
# What an entry of each kind says about the whole call.
_OUTCOMES = {"transfer": "transferred", "hangup": "completed"}
_TALKED = ("completed", "bridged")  # a transfer that reached a person


def mask_number(number: str) -> str:
    """A phone number with all but its first 3 and last 4 characters hidden."""
    if len(number) <= 7:
        return "*" * len(number)
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


@dataclass(frozen=True, slots=True)
class Entry:
    """One timeline entry: when, what kind, and its (redacted) data."""

    at: datetime.datetime
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Started:
    """A call came in (from `caller`, masked when written). `key`: the caller's keyed hash,
    when `caller` is masked already (it came through the outbox)."""

    call_sid: str
    caller: str
    at: datetime.datetime
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Opened:
    """A call's first webhook: its start and its entries, written only if the log does not
    have the call yet (a repeated delivery of the first webhook writes nothing)."""

    call_sid: str
    caller: str
    at: datetime.datetime
    entries: tuple[Entry, ...]
    lang: str | None = None
    key: str | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """A webhook's entries, and the call's language after it."""

    call_sid: str
    entries: tuple[Entry, ...]
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class Noted:
    """Entries for a call only if the log knows it (an apology heard)."""

    call_sid: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True)
class Ended:
    """The call's final status (the first one counts)."""

    call_sid: str
    status: str
    duration: int | None
    at: datetime.datetime


Write = Started | Opened | Appended | Noted | Ended


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A call's summary row and, when asked for, its timeline."""

    call_sid: str
    started_at: datetime.datetime
    caller: str
    lang: str
    last_node: str
    auth: str
    outcome: str
    status: str
    duration: int | None
    ended_at: datetime.datetime | None
    timeline: tuple[Entry, ...] = ()


class CallLog:
    """Append-only call timelines with a summary row per call."""

    def __init__(self, engine: sa.Engine, caller_key: Any = None) -> None:
        self.engine = engine
        self._caller_key = caller_key
        self._turns = WriterTurns(engine)
        self._known: dict[str, None] = {}  # calls this process has seen in the log

    def create_schema(self) -> None:
        """Create the call-log tables if they are missing."""
        metadata.create_all(self.engine)

    def start(self, call_sid: str, caller: str, at: datetime.datetime) -> None:
        """A call came in: its row, with the caller's number masked."""
        self.write([Started(call_sid, caller, at)])

    def append(self, call_sid: str, entries: Sequence[Entry], lang: str | None = None) -> None:
        """Add entries to a call's timeline and bring its summary up to date."""
        self.write([Appended(call_sid, tuple(entries), lang)])

    def note(self, call_sid: str, entries: Sequence[Entry]) -> bool:
        """Add entries to the timeline of a call the log has (an apology heard); entries for a
        call it does not know are dropped (a webhook naming no real call). True if added."""
        return bool(self.write([Noted(call_sid, tuple(entries))])[0])

    def end(self, call_sid: str, status: str, duration: int | None, at: datetime.datetime) -> bool:
        """The call's final status arrived; False if it had already ended (a repeat)."""
        return bool(self.write([Ended(call_sid, status, duration, at)])[0])

    def write(
        self, writes: Sequence[Write], moved: tuple[str, str, str] | None = None
    ) -> list[bool | str]:
        """Apply writes in order, in one transaction; for each, whether it changed the log
        (for a call's end: the call's outcome, or "" if it had ended before). `moved`: the
        outbox stream's id, and its place before and after these writes, kept in the same
        transaction; if the log's place is no longer the one before (another mover wrote
        them), nothing is written and Moved is raised.

        Built for many writes at once (the outbox's mover, or a group commit when Redis is
        failing): one query finds which of their calls
        the log has (only those this process has not seen there before: a call's rows are
        never deleted, so most webhooks of a call need not ask); new call rows, summary
        updates and timeline entries each go in one statement for the lot (statements built
        once, run with many parameter sets, in the writes' order). A call's end is applied
        alone, so that of two ends racing for one call exactly one is written."""
        timeline: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        summaries: list[dict[str, Any]] = []
        done: list[bool | str] = []
        with self._turns.turn(), self.engine.begin() as conn:
            if moved is not None:
                stream, was, now = moved
                params = {"b_slot": f"moved:{stream}", "b_was": was, "b_now": now}
                if conn.execute(_MOVED, params).rowcount != 1:
                    raise Moved(f"the outbox was moved past {was} by another mover")
            sids = {write.call_sid for write in writes}
            unsure = sorted(sids.difference(self._known))
            known = sids.difference(unsure)
            unstarted: set[str] = set()  # calls in the log whose start is not (placeholders)
            if unsure:
                for sid, key in conn.execute(_KNOWN, {"sids": unsure}):
                    known.add(sid)
                    if key == UNRECORDED:
                        unstarted.add(sid)

            def flush() -> None:  # what is pending, in order, before a write that reads it
                if new:
                    conn.execute(_NEW_CALLS, new)
                    new.clear()
                if summaries:
                    conn.execute(_SUMMARY, summaries)
                    summaries.clear()

            for write in writes:
                sid = write.call_sid
                if isinstance(write, Ended):
                    flush()
                    done.append(self._end(conn, write, timeline))
                    continue
                if isinstance(write, Noted):
                    done.append(sid in known and bool(write.entries))
                    if done[-1]:
                        timeline.extend(_row(sid, e) for e in write.entries)
                    continue
                if isinstance(write, Started | Opened) and sid in unstarted:
                    unstarted.discard(sid)  # its start, late: fill in the call's row
                    flush()
                    done.append(self._fill(conn, write, timeline))
                    continue
                if isinstance(write, Started | Opened):
                    done.append(sid not in known)
                    if done[-1]:
                        known.add(sid)
                        new.append(self._call_row(sid, write.caller, write.at, write.key))
                        masked = new[-1]["caller"]
                        timeline.append(_row(sid, Entry(write.at, "start", {"caller": masked})))
                    if isinstance(write, Started) or not done[-1] or not write.entries:
                        continue
                    summaries.append(_summary(sid, write))
                    timeline.extend(_row(sid, e) for e in write.entries)
                    continue
                done.append(bool(write.entries))
                if not write.entries:
                    continue
                if sid not in known:  # the call's start is not written (the database was down
                    known.add(sid)  # then, or it is still in the outbox): keep its timeline
                    unstarted.add(sid)  # whole from here, and its start's place
                    at = write.entries[0].at
                    new.append({"call_sid": sid, "started_at": at, "caller": "",
                                "caller_key": UNRECORDED})  # fmt: skip
                    note = {"caller": "", "note": "start not recorded"}
                    timeline.append(_row(sid, Entry(at, "start", note)))
                summaries.append(_summary(sid, write))
                timeline.extend(_row(sid, e) for e in write.entries)
            flush()
            if timeline:
                conn.execute(_EVENTS, timeline)
        if len(self._known) > KNOWN_CALLS:  # committed: remember what the log now has
            self._known.clear()
        self._known.update(dict.fromkeys(known.difference(unstarted)))
        return done

    def _fill(
        self, conn: sa.Connection, write: Started | Opened, timeline: list[dict[str, Any]]
    ) -> bool:
        """A call's start that reached the log after some of its webhooks: the caller and the
        start time go into the call's row, the start replaces "start not recorded" at the head
        of its timeline, and an Opened's entries go in before the later ones (by their time).
        Its summary stays: the later webhooks' is newer. True if the row was still unfilled."""
        row = self._call_row(write.call_sid, write.caller, write.at, write.key)
        params = {f"b_{name}": value for name, value in row.items()}
        if conn.execute(_FILL, {**params, "b_unrecorded": UNRECORDED}).rowcount != 1:
            return False
        conn.execute(_UNRECORDED_START, {"b_sid": write.call_sid})
        timeline[:] = [r for r in timeline
                       if r["call_sid"] != write.call_sid or r["kind"] != "start"]  # fmt: skip
        timeline.append(_row(write.call_sid, Entry(write.at, "start", {"caller": row["caller"]})))
        if isinstance(write, Opened):
            timeline.extend(_row(write.call_sid, e) for e in write.entries)
        return True

    def _call_row(
        self, call_sid: str, caller: str, at: datetime.datetime, key: str | None
    ) -> dict[str, Any]:  # fmt: skip
        if key is None:
            key = self._caller_key(caller) if self._caller_key else ""
        return {"call_sid": call_sid, "started_at": at, "caller": mask_number(caller),
                "caller_key": key}  # fmt: skip

    def outbox_name(self) -> str:
        """The outbox's name: one for every process and machine writing to this database."""
        return self._outbox("name", secrets.token_hex(8))

    def outbox_moved(self, stream: str) -> str:
        """The last entry of the outbox stream `stream` (an id its Redis keeps) written here."""
        return self._outbox(f"moved:{stream}", "0-0")

    def _outbox(self, slot: str, first: str) -> str:
        """A value of the outbox's row, made `first` on first ask."""
        with self.engine.connect() as conn:
            value = conn.execute(_OUTBOX, {"b_slot": slot}).scalar()
        if value is not None:
            return str(value)
        try:
            with self._turns.turn(), self.engine.begin() as conn:
                conn.execute(outbox.insert(), {"slot": slot, "value": first})
        except sa.exc.IntegrityError:  # another process made it a moment ago
            pass
        with self.engine.connect() as conn:
            return str(conn.execute(_OUTBOX, {"b_slot": slot}).scalar_one())

    def _end(self, conn: sa.Connection, write: Ended, timeline: list[dict[str, Any]]) -> str:
        """The call's end, if it had not ended: its outcome then, "" otherwise."""
        final = "abandoned" if write.status == "completed" else write.status
        outcome = conn.execute(_END, {"b_sid": write.call_sid, "b_status": write.status,
                                      "b_duration": write.duration, "b_at": write.at,
                                      "b_final": final}).scalar()  # fmt: skip
        if outcome is None:
            return ""
        data = {"status": write.status, "duration": write.duration}
        timeline.append(_row(write.call_sid, Entry(write.at, "end", data)))
        return str(outcome)

    def recent(self, limit: int = 20, offset: int = 0) -> list[CallRecord]:
        """The newest calls first."""
        query = calls.select().order_by(calls.c.started_at.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def get(self, call_sid: str) -> CallRecord | None:
        """One call with its whole timeline, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(calls.select().where(calls.c.call_sid == call_sid)).mappings()
            found = row.first()
            if found is None:
                return None
            timeline = conn.execute(
                events.select()
                .where(events.c.call_sid == call_sid)
                .order_by(events.c.at, events.c.id)  # (written late: an apology held back)
            ).mappings()
            entries = tuple(Entry(e["at"], e["kind"], dict(e["data"])) for e in timeline)
        return _record(found, entries)


class Moved(Exception):
    """Another mover wrote these outbox entries first: this transaction wrote nothing."""


def _summary(call_sid: str, write: Appended | Opened) -> dict[str, Any]:
    """The parameters of _SUMMARY for one webhook's entries (None: leave as it is)."""
    params: dict[str, Any] = {"b_sid": call_sid, "b_lang": write.lang, "b_node": None,
                              "b_auth": None, "b_outcome": None, "b_sticky": False}  # fmt: skip
    for entry in write.entries:
        if entry.kind == "menu":
            params["b_node"] = entry.data.get("node", "")
        elif entry.kind == "auth":
            params["b_auth"] = entry.data.get("result", "")
        elif outcome := _OUTCOMES.get(entry.kind):  # a later goodbye does not undo a transfer
            params["b_outcome"], params["b_sticky"] = outcome, True
        if entry.kind == "transfer_ended" and entry.data.get("status") not in _TALKED:
            params["b_outcome"], params["b_sticky"] = "transfer_failed", False  # nobody answered
    return params


def _param(name: str, kind: Any = sa.String) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=kind)


c = calls.c
_NEW_CALLS = calls.insert()  # statements built once: their cache keys are worked out once
_EVENTS = events.insert()
_KNOWN = sa.select(c.call_sid, c.caller_key).where(
    c.call_sid.in_(sa.bindparam("sids", expanding=True))
)
# A late start, into its call's row (still the placeholder its webhooks made).
_FILL = (
    calls.update()
    .where(c.call_sid == _param("b_call_sid"), c.caller_key == _param("b_unrecorded"))
    .values(
        started_at=_param("b_started_at", UtcDateTime()),
        caller=_param("b_caller"),
        caller_key=_param("b_caller_key"),
    )
)
# A webhook's summary: each value given replaces the row's; a "sticky" outcome (completed)
# does not replace "transferred" (a goodbye after a transfer leaves it a transfer).
_SUMMARY = (
    calls.update()
    .where(c.call_sid == _param("b_sid"))
    .values(
        lang=sa.func.coalesce(_param("b_lang"), c.lang),
        last_node=sa.func.coalesce(_param("b_node"), c.last_node),
        auth=sa.func.coalesce(_param("b_auth"), c.auth),
        outcome=sa.case(
            (_param("b_outcome").is_(None), c.outcome),
            (sa.and_(_param("b_sticky", sa.Boolean), c.outcome == "transferred"), c.outcome),
            else_=_param("b_outcome"),
        ),
    )
)
# The call's end, once: transferred and completed stay the outcome, anything else becomes
# `b_final` (abandoned for a completed call, or the status: busy, failed, no-answer...).
_END = (
    calls.update()
    .where(c.call_sid == _param("b_sid"), c.ended_at.is_(None))
    .values(
        status=_param("b_status"),
        duration=_param("b_duration", sa.Integer),
        ended_at=_param("b_at", UtcDateTime()),
        outcome=sa.case(
            (c.outcome.in_(("transferred", "completed")), c.outcome), else_=_param("b_final")
        ),
    )
    .returning(c.outcome)  # the call's outcome, written at its end
)
del c
_UNRECORDED_START = events.delete().where(
    events.c.call_sid == sa.bindparam("b_sid"), events.c.kind == "start"
)
_OUTBOX = sa.select(outbox.c.value).where(outbox.c.slot == sa.bindparam("b_slot"))
_MOVED = (
    outbox.update()
    .where(outbox.c.slot == sa.bindparam("b_slot"), outbox.c.value == sa.bindparam("b_was"))
    .values(value=sa.bindparam("b_now"))
)


def _row(call_sid: str, entry: Entry) -> dict[str, Any]:
    return {"call_sid": call_sid, "at": entry.at, "kind": entry.kind, "data": entry.data}


def _record(row: Any, timeline: Iterable[Entry] = ()) -> CallRecord:
    return CallRecord(
        call_sid=row["call_sid"],
        started_at=row["started_at"],
        caller=row["caller"],
        lang=row["lang"],
        last_node=row["last_node"],
        auth=row["auth"],
        outcome=row["outcome"],
        status=row["status"],
        duration=row["duration"],
        ended_at=row["ended_at"],
        timeline=tuple(timeline),
    )
