"""Callback requests (voice messages left outside agent hours), as the console needs them.

The console does not own the requests: the hotline records them (`ivr/callbacks.py`,
table `callback_requests`). The console reads them through `CallbackRequests`,
the small interface below: `StoredCallbacks` implements it over that table, and
`NoCallbacks` for a hotline that records none (the page then says so). The
caller's number is shown in full here, and only here: supervisors call it back.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from services.offload import off_the_loop

from ..callbacks import Callbacks, callback_requests


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A caller's request to be called back, already redacted (masked caller number)."""

    id: int
    call_sid: str  # the call that left it (its timeline is in the call log)
    requested_at: datetime.datetime
    caller: str  # in full: the number to call back
    id_masked: str | None  # the caller's ID number, masked, if they gave it
    lang: str
    duration: int | None  # seconds of message
    recording_url: str | None  # where the carrier keeps the recording, if anywhere
    done_at: datetime.datetime | None = None
    done_by: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A voice message's audio, for playing in the browser."""

    data: bytes
    mimetype: str  # "audio/wav", "audio/mpeg", ...


class CallbackRequests(Protocol):
    """What the console needs of the callback requests."""

    @property
    def recorded(self) -> bool:
        """Whether this hotline records callback requests at all."""
        ...

    def requests(
        self, *, done: bool | None, limit: int, offset: int
    ) -> tuple[list[CallbackRequest], int]:
        """Requests newest first (`done`: only done / only open / None: all), and their count."""
        ...

    def get(self, request_id: int) -> CallbackRequest | None:
        """One request, or None."""
        ...

    def mark_done(self, request_id: int, by: str) -> bool:
        """Mark a request done by supervisor `by`; False if there is no such open request."""
        ...

    def message(self, request_id: int) -> Message | None:
        """The message's audio if the hotline keeps it itself; None to link `recording_url`."""
        ...


class NoCallbacks:
    """A hotline that records no callback requests."""

    recorded = False

    def requests(
        self, *, done: bool | None, limit: int, offset: int
    ) -> tuple[list[CallbackRequest], int]:
        """No requests."""
        return [], 0

    def get(self, request_id: int) -> CallbackRequest | None:
        """No request."""
        return None

    def mark_done(self, request_id: int, by: str) -> bool:
        """Nothing to mark."""
        return False

    def message(self, request_id: int) -> Message | None:
        """No audio."""
        return None


class StoredCallbacks:
    """The hotline's callback requests (`ivr/callbacks.py`), for the console."""

    recorded = True

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.callbacks = Callbacks(engine)

    @off_the_loop
    def requests(
        self, *, done: bool | None, limit: int, offset: int
    ) -> tuple[list[CallbackRequest], int]:
        """Requests newest first, filtered by done-ness, and how many match."""
        t = callback_requests.c
        where = [] if done is None else [t.status == "done"] if done else [t.status != "done"]
        query = (
            callback_requests.select()
            .where(*where)
            .order_by(t.created_at.desc(), t.id.desc())
            .limit(limit)
            .offset(offset)
        )
        count = sa.select(sa.func.count()).select_from(callback_requests).where(*where)
        with self.engine.connect() as conn:
            rows = [_request(row) for row in conn.execute(query).mappings()]
            return rows, int(conn.execute(count).scalar_one())

    def get(self, request_id: int) -> CallbackRequest | None:
        """One request, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(callback_requests.select().where(callback_requests.c.id == request_id))
                .mappings()
                .first()
            )
        return None if row is None else _request(row)

    def mark_done(self, request_id: int, by: str) -> bool:
        """Mark a request called back by `by`."""
        return self.callbacks.mark_done(request_id, by, datetime.datetime.now(datetime.UTC))

    def message(self, request_id: int) -> Message | None:
        """The hotline keeps no audio itself: the carrier's recording is linked."""
        return None



def _request(row: sa.RowMapping) -> CallbackRequest:
    created = row["created_at"]
    assert created is not None
    return CallbackRequest(
        id=row["id"],
        call_sid=row["call_sid"],
        requested_at=created,
        caller=row["caller"],
        id_masked=row["id_masked"],
        lang=row["lang"],
        duration=row["duration"],
        recording_url=row["recording_url"] or None,
        done_at=row["done_at"],
        done_by=row["done_by"],
    )
