"""Durable, redacted call timelines in the database (SPEC 8).

Entries arrive already redacted (the engine masks ID numbers and PINs when it
makes them); this module also masks the caller's number before it is written.
Each webhook's entries are written in one transaction, with the call's summary
row (last menu, authentication result, outcome) kept up to date beside them.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

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

    def create_schema(self) -> None:
        """Create the call-log tables if they are missing."""
        metadata.create_all(self.engine)

    def start(self, call_sid: str, caller: str, at: datetime.datetime) -> None:
        """A call came in: its row, with the caller's number masked."""
        key = self._caller_key(caller) if self._caller_key else ""
        row = {"call_sid": call_sid, "started_at": at, "caller": mask_number(caller)}
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(calls.c.call_sid).where(calls.c.call_sid == call_sid))
            if exists.first() is None:
                conn.execute(calls.insert().values(**row, caller_key=key))
                conn.execute(events.insert().values(
                    call_sid=call_sid, at=at, kind="start", data={"caller": row["caller"]}
                ))  # fmt: skip

    def append(self, call_sid: str, entries: Sequence[Entry], lang: str | None = None) -> None:
        """Add entries to a call's timeline and bring its summary up to date."""
        if not entries:
            return
        summary: dict[str, Any] = {} if lang is None else {"lang": lang}
        for entry in entries:
            if entry.kind == "menu":
                summary["last_node"] = entry.data.get("node", "")
            elif entry.kind == "auth":
                summary["auth"] = entry.data.get("result", "")
            elif outcome := _OUTCOMES.get(entry.kind):  # a later goodbye does not undo a transfer
                summary["outcome"] = sa.case(
                    (calls.c.outcome == "transferred", calls.c.outcome),
                    else_=sa.literal(outcome),
                )
            if entry.kind == "transfer_ended" and entry.data.get("status") not in _TALKED:
                summary["outcome"] = "transfer_failed"  # nobody answered: not a transfer after all
        with self.engine.begin() as conn:
            known = conn.execute(
                calls.update().where(calls.c.call_sid == call_sid).values(**summary)
            ).rowcount if summary else 1  # fmt: skip
            if not known:  # the call's start was never written (the database was down then):
                row = {"call_sid": call_sid, "started_at": entries[0].at, "caller": ""}
                conn.execute(calls.insert().values(**row))  # keep its timeline whole from here
                start = Entry(entries[0].at, "start", {"caller": "", "note": "start not recorded"})
                conn.execute(events.insert().values(**_row(call_sid, start)))
                conn.execute(calls.update().where(calls.c.call_sid == call_sid).values(**summary))
            conn.execute(events.insert(), [_row(call_sid, e) for e in entries])

    def note(self, call_sid: str, entries: Sequence[Entry]) -> bool:
        """Add entries to the timeline of a call the log has (an apology heard); entries for a
        call it does not know are dropped (a webhook naming no real call). True if added."""
        if not entries:
            return False
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(calls.c.call_sid).where(calls.c.call_sid == call_sid))
            if known.first() is None:
                return False
            conn.execute(events.insert(), [_row(call_sid, e) for e in entries])
            return True

    def end(self, call_sid: str, status: str, duration: int | None, at: datetime.datetime) -> bool:
        """The call's final status arrived; False if it had already ended (a repeat)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                calls.update()
                .where(calls.c.call_sid == call_sid, calls.c.ended_at.is_(None))
                .values(status=status, duration=duration, ended_at=at, outcome=_final(status))
            )
            if done.rowcount == 0:
                return False
            data = {"status": status, "duration": duration}
            conn.execute(events.insert().values(call_sid=call_sid, at=at, kind="end", data=data))
            return True

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
                events.select().where(events.c.call_sid == call_sid).order_by(events.c.id)
            ).mappings()
            entries = tuple(Entry(e["at"], e["kind"], dict(e["data"])) for e in timeline)
        return _record(found, entries)


def _final(status: str) -> sa.ColumnElement[str]:
    """The outcome once the call ended: transferred and completed stay, anything else is abandoned."""
    return sa.case(
        (calls.c.outcome.in_(("transferred", "completed")), calls.c.outcome),
        else_=sa.literal("abandoned" if status == "completed" else status),
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
