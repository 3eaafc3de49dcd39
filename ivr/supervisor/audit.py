"""The audit trail: who looked at which call, replayed it, exported data, signed in.

Rows are only ever added. The supervisor's name is kept as text, so the trail
outlives a removed account.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import sqlalchemy as sa

from services.accounts.models import UtcDateTime
from services.offload import off_the_loop

metadata = sa.MetaData()

audit = sa.Table(
    "supervisor_audit",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("at", UtcDateTime(), nullable=False, index=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("call_sid", sa.String(64), nullable=False, default="", index=True),
    sa.Column("detail", sa.String(200), nullable=False, default=""),
    sa.Column("client", sa.String(64), nullable=False, default=""),
)

# What each action means, for the audit page.
ACTIONS = {
    "view": "viewed a call",
    "replay": "replayed a call",
    "callbacks": "viewed callback requests",
    "callback-play": "played a callback message",
    "callback-done": "marked a callback done",
    "export": "exported data",
    "login": "signed in",
    "login-failed": "sign-in refused",
    "logout": "signed out",
    "account": "account changed (ivr supervisors)",
}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the trail."""

    id: int
    at: datetime.datetime
    username: str
    action: str
    call_sid: str
    detail: str
    client: str


class AuditTrail:
    """Append to and read the audit trail."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        """Create the audit table if it is missing."""
        metadata.create_all(self.engine)

    def record(
        self, username: str, action: str, *, call_sid: str = "", detail: str = "", client: str = ""
    ) -> None:
        """Add one line: `username` did `action` (to `call_sid`) now."""
        row = {
            "at": datetime.datetime.now(datetime.UTC),
            "username": username[:64],
            "action": action[:32],
            "call_sid": call_sid[:64],
            "detail": detail[:200],
            "client": client[:64],
        }
        with self.engine.begin() as conn:
            conn.execute(audit.insert().values(**row))

    @off_the_loop
    def page(
        self,
        *,
        username: str = "",
        call_sid: str = "",
        action: str = "",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[AuditEntry], int]:
        """The newest lines first, filtered; and how many match in all."""
        where: list[sa.ColumnElement[bool]] = []
        if username:
            where.append(audit.c.username == username)
        if call_sid:
            where.append(audit.c.call_sid == call_sid)
        if action:
            where.append(audit.c.action == action)
        query = audit.select().where(*where).order_by(audit.c.id.desc()).limit(limit).offset(offset)
        count = sa.select(sa.func.count()).select_from(audit).where(*where)
        with self.engine.connect() as conn:
            rows = [_entry(row) for row in conn.execute(query).mappings()]
            total = int(conn.execute(count).scalar_one())
        return rows, total


def _entry(row: sa.RowMapping) -> AuditEntry:
    at = row["at"]
    return AuditEntry(
        id=row["id"],
        at=at if at.tzinfo else at.replace(tzinfo=datetime.UTC),
        username=row["username"],
        action=row["action"],
        call_sid=row["call_sid"],
        detail=row["detail"],
        client=row["client"],
    )
