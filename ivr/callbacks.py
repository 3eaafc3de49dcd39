"""Callback requests: voice messages callers leave when no agent can answer.

Supervisors call these people back, so the caller's number is kept in full here
(and only here); an ID number only ever as its mask.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import sqlalchemy as sa

from services.accounts.models import UtcDateTime

from .calllog import metadata

callback_requests = sa.Table(
    "callback_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("call_sid", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("caller", sa.String(32), nullable=False),
    sa.Column("id_masked", sa.String(32), nullable=True),
    sa.Column("lang", sa.String(8), nullable=False),
    sa.Column("recording_url", sa.String(500), nullable=False),
    sa.Column("duration", sa.Integer, nullable=False),
    sa.Column("status", sa.String(8), nullable=False, default="open", index=True),
    sa.Column("done_at", UtcDateTime(), nullable=True),
    sa.Column("done_by", sa.String(64), nullable=True),
)


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """One voice message waiting for (or given) a call back."""

    id: int
    call_sid: str
    created_at: datetime.datetime
    caller: str
    id_masked: str | None
    lang: str
    recording_url: str
    duration: int
    status: str
    done_at: datetime.datetime | None
    done_by: str | None


class Callbacks:
    """The callback requests in the database (tables made by `CallLog.create_schema`)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(
        self, call_sid: str, caller: str, id_masked: str | None, lang: str,
        recording_url: str, duration: int, at: datetime.datetime,
    ) -> int:  # fmt: skip
        """Keep a voice message; its id."""
        row = {
            "call_sid": call_sid, "created_at": at.astimezone(datetime.UTC), "caller": caller,
            "id_masked": id_masked, "lang": lang, "recording_url": recording_url,
            "duration": duration, "status": "open",
        }  # fmt: skip
        with self.engine.begin() as conn:
            key = conn.execute(callback_requests.insert().values(**row)).inserted_primary_key
            assert key is not None
            return int(key[0])

    def list(self, *, include_done: bool = False, limit: int = 100) -> list[CallbackRequest]:
        """Newest first; only the open ones unless `include_done`."""
        query = callback_requests.select().order_by(callback_requests.c.created_at.desc())
        if not include_done:
            query = query.where(callback_requests.c.status == "open")
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [CallbackRequest(**row) for row in rows]

    def mark_done(self, request_id: int, by: str, at: datetime.datetime) -> bool:
        """Mark a request called back; False if there is no such open request."""
        with self.engine.begin() as conn:
            done = conn.execute(
                callback_requests.update()
                .where(callback_requests.c.id == request_id, callback_requests.c.status == "open")
                .values(status="done", done_at=at.astimezone(datetime.UTC), done_by=by)
            )
            return done.rowcount == 1
