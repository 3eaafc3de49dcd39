"""Supervisor accounts in the database: usernames and werkzeug password hashes.

A password is only ever kept as a salted scrypt hash. Each account has a
`session_version`: changing the password bumps it, which ends every session
opened with the old one (sessions remember the version they were opened with).
"""

from __future__ import annotations

import datetime
import functools
import re
from dataclasses import dataclass

import sqlalchemy as sa
from werkzeug.security import check_password_hash, generate_password_hash

from services.accounts.models import UtcDateTime
from services.offload import off_the_loop

metadata = sa.MetaData()

supervisors = sa.Table(
    "supervisors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("session_version", sa.Integer, nullable=False, default=1),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_login_at", UtcDateTime(), nullable=True),
)

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
MIN_PASSWORD = 10
HASH_METHOD = "scrypt"


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the username is unknown, so both answers take as long."""
    return generate_password_hash("not a password of anyone", method=HASH_METHOD)


class AccountError(ValueError):
    """A username or password that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Supervisor:
    """A supervisor as the console sees one (never the password hash)."""

    id: int
    username: str
    session_version: int
    created_at: datetime.datetime
    last_login_at: datetime.datetime | None


def normalize_username(username: str) -> str:
    """The stored form of a username: trimmed and lower-case."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """The normalized username, or AccountError saying what is wrong with it."""
    name = normalize_username(username)
    if not USERNAME.fullmatch(name):
        raise AccountError(
            "a username is 2-64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_password(password: str) -> str:
    """The password, or AccountError when it is too weak to protect call data."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if password.strip() != password:
        raise AccountError("a password may not start or end with whitespace")
    return password


class SupervisorAccounts:
    """Add, check, list and remove supervisor accounts."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        """Create the supervisors table if it is missing."""
        metadata.create_all(self.engine)

    def add(self, username: str, password: str) -> Supervisor:
        """A new account; AccountError if the name is taken or name or password unfit."""
        name, secret = check_username(username), check_password(password)
        row = {
            "username": name,
            "password_hash": generate_password_hash(secret, method=HASH_METHOD),
            "session_version": 1,
            "created_at": _now(),
        }
        try:
            with self.engine.begin() as conn:
                conn.execute(supervisors.insert().values(**row))
        except sa.exc.IntegrityError:
            raise AccountError(f"there is already a supervisor called {name!r}") from None
        found = self.get(name)
        assert found is not None
        return found

    def set_password(self, username: str, password: str) -> bool:
        """Change a password and end the account's sessions; False if there is no such account."""
        secret = check_password(password)
        with self.engine.begin() as conn:
            done = conn.execute(
                supervisors.update()
                .where(supervisors.c.username == normalize_username(username))
                .values(
                    password_hash=generate_password_hash(secret, method=HASH_METHOD),
                    session_version=supervisors.c.session_version + 1,
                )
            )
        return done.rowcount > 0

    def remove(self, username: str) -> bool:
        """Delete an account (its audit trail stays); False if there is no such account."""
        with self.engine.begin() as conn:
            done = conn.execute(
                supervisors.delete().where(supervisors.c.username == normalize_username(username))
            )
        return done.rowcount > 0

    def get(self, username: str) -> Supervisor | None:
        """The account called `username`, or None."""
        return self._one(supervisors.c.username == normalize_username(username))

    def by_id(self, supervisor_id: int) -> Supervisor | None:
        """The account with this id, or None."""
        return self._one(supervisors.c.id == supervisor_id)

    def all(self) -> list[Supervisor]:
        """Every account, by username."""
        with self.engine.connect() as conn:
            rows = conn.execute(supervisors.select().order_by(supervisors.c.username)).mappings()
            return [_supervisor(row) for row in rows]

    @off_the_loop  # the hash: some 75 ms that would hold a gevent worker's webhooks
    def authenticate(self, username: str, password: str) -> Supervisor | None:
        """The account if the password is right, else None (taking as long either way)."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    supervisors.select().where(
                        supervisors.c.username == normalize_username(username)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            check_password_hash(_dummy_hash(), password)
            return None
        if not check_password_hash(row["password_hash"], password):
            return None
        with self.engine.begin() as conn:
            conn.execute(
                supervisors.update()
                .where(supervisors.c.id == row["id"])
                .values(last_login_at=_now())
            )
        return _supervisor(row)

    def _one(self, where: sa.ColumnElement[bool]) -> Supervisor | None:
        with self.engine.connect() as conn:
            row = conn.execute(supervisors.select().where(where)).mappings().first()
        return None if row is None else _supervisor(row)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)



def _supervisor(row: sa.RowMapping) -> Supervisor:
    created = row["created_at"]
    assert created is not None
    return Supervisor(
        id=row["id"],
        username=row["username"],
        session_version=row["session_version"],
        created_at=created,
        last_login_at=row["last_login_at"],
    )
