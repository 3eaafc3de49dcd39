"""AccountStore: the account database behind the IVR (import, PIN checks, queries, card loss)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import idnumber, security
from .errors import ImportFailed, NotFound
from .models import AccountRow, Base, CardRow, ContributionRow, TransactionRow
from .records import AccountRecord, parse_accounts
from .types import Balance, Card, Contribution, LossReport, PinResult, Transaction

_T = TypeVar("_T", Transaction, Contribution)


def _listing_query(
    kind: type[Transaction | Contribution], rows: type[TransactionRow | ContributionRow],
    newest: str,
) -> sa.Select[Any]:  # fmt: skip
    """An account's records of one kind, newest first (by `newest`, then as entered)."""
    table = rows.__table__.c
    return (
        sa.select(*(table[f.name] for f in fields(kind)))
        .where(table.account_id == sa.bindparam("account_id"))
        .order_by(table[newest].desc(), table.id.desc())
        .limit(sa.bindparam("limit"))
    )


_ACCOUNTS = AccountRow.__table__.c
_PIN_HASH = sa.select(_ACCOUNTS.id, _ACCOUNTS.pin_hash).where(
    _ACCOUNTS.id_digest == sa.bindparam("id_digest")
)
_BALANCE = sa.select(_ACCOUNTS.balance, _ACCOUNTS.updated_at).where(
    _ACCOUNTS.id == sa.bindparam("account_id")
)
_MASKED = sa.select(_ACCOUNTS.id_masked).where(_ACCOUNTS.id == sa.bindparam("account_id"))
_CARD = sa.select(CardRow.__table__.c.number, CardRow.__table__.c.status).where(
    CardRow.__table__.c.account_id == sa.bindparam("account_id")
)
_TRANSACTIONS = _listing_query(Transaction, TransactionRow, "time")
_CONTRIBUTIONS = _listing_query(Contribution, ContributionRow, "month")


class AccountStore:
    """Accounts in a SQLAlchemy database; PINs and ID numbers hashed with the pepper.

    The caller owns `engine` (and disposes of it).
    """

    def __init__(self, engine: sa.Engine, pepper: str) -> None:
        self.engine = engine
        self._pepper = pepper
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        security.fastest()  # which scrypt to use, timed now rather than on a caller's first PIN

    def create_schema(self) -> None:
        """Create the account tables that do not exist yet."""
        Base.metadata.create_all(self.engine)

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def digest(self, id_number: str) -> str:
        """The digest naming an ID number, with this store's pepper."""
        return idnumber.digest(self._pepper, id_number)

    # -- import ---------------------------------------------------------------------------

    def import_file(self, path: str | Path) -> int:
        """Import a SPEC 7 JSON file (see `import_data`); unreadable or invalid JSON is
        ImportFailed."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ImportFailed(None, "", f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ImportFailed(None, "", f"{path} is not UTF-8 (byte {exc.start})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFailed(
                None,
                "",
                f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            ) from None
        return self.import_data(data)

    def import_data(self, data: object) -> int:
        """Validate everything, then upsert every account by ID number in one transaction;
        the count."""
        records = parse_accounts(data)
        now = datetime.now(UTC)
        with self._sessions.begin() as session:
            for record in records:
                self._upsert(session, record, now)
        return len(records)

    def _upsert(self, session: Session, record: AccountRecord, now: datetime) -> None:
        digest = self.digest(record.id_number)
        account = session.scalar(sa.select(AccountRow).where(AccountRow.id_digest == digest))
        if account is None:
            account = AccountRow(id_digest=digest)
            session.add(account)
        account.id_masked = idnumber.mask(record.id_number)
        account.name = record.name
        account.phone = record.phone
        account.pin_hash = security.hash_pin(self._pepper, record.pin)
        account.balance = record.balance
        account.updated_at = now
        card = account.card
        if card is None or card.number != record.card.number or card.status != record.card.status:
            account.card = CardRow(
                number=record.card.number, status=record.card.status, status_changed_at=now
            )
        account.transactions = [TransactionRow(**asdict(t)) for t in record.transactions]
        account.contributions = [ContributionRow(**asdict(c)) for c in record.contributions]

    # -- the caller's queries -------------------------------------------------------------
    # Each is one of the statements below, built once, on a pooled connection: no ORM session
    # and no statement built per call (these run on every webhook that reads an account).

    def verify_pin(self, id_digest: str, pin: str) -> PinResult:
        """Check a PIN for the account named by `id_digest`; an unknown one costs the same and
        fails."""
        row = self._first(_PIN_HASH, id_digest=id_digest)
        if row is None:
            security.dummy_check(self._pepper)
            return PinResult(ok=False, account_id=None)
        ok = security.check_pin(self._pepper, pin, row.pin_hash)
        return PinResult(ok=ok, account_id=row.id if ok else None)

    def _first(self, query: sa.Select[Any], **params: object) -> sa.Row[Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(query, params).first()

    def _one(self, query: sa.Select[Any], what: str, **params: object) -> sa.Row[Any]:
        """The one row `query` finds, or NotFound naming `what`."""
        row = self._first(query, **params)
        if row is None:
            raise NotFound(f"no {what}")
        return row

    def balance(self, account_id: int) -> Balance:
        """The personal-account balance."""
        row = self._one(_BALANCE, f"account {account_id}", account_id=account_id)
        return Balance(amount=row.balance, as_of=row.updated_at)

    def masked_id(self, account_id: int) -> str:
        """The account's ID number masked to its first 3 and last 4 characters."""
        return str(self._one(_MASKED, f"account {account_id}", account_id=account_id).id_masked)

    def transactions(self, account_id: int, limit: int = 20) -> list[Transaction]:
        """The latest transactions, newest first."""
        return self._listing(Transaction, _TRANSACTIONS, account_id, limit)

    def contributions(self, account_id: int, limit: int = 36) -> list[Contribution]:
        """The latest contribution records, newest month first."""
        return self._listing(Contribution, _CONTRIBUTIONS, account_id, limit)

    def _listing(
        self, kind: type[_T], query: sa.Select[Any], account_id: int, limit: int
    ) -> list[_T]:  # fmt: skip
        """An account's records of one kind, newest first; NotFound if there is no such
        account."""
        with self.engine.connect() as connection:
            found = connection.execute(query, {"account_id": account_id, "limit": limit}).all()
        if not found:
            self.balance(account_id)  # NotFound if the account is not there either
        return [kind(**row._mapping) for row in found]

    def card(self, account_id: int) -> Card:
        """The account's card: last 4 characters of its number and its status."""
        row = self._one(_CARD, f"card of account {account_id}", account_id=account_id)
        return Card(last4=row.number[-4:], status=row.status)

    def report_card_lost(self, account_id: int) -> LossReport:
        """Suspend an active card (atomically); a suspended or cancelled card stays as it is."""
        with self._sessions.begin() as session:
            suspended = session.scalar(
                sa.update(CardRow)
                .where(CardRow.account_id == account_id, CardRow.status == "active")
                .values(status="suspended", status_changed_at=datetime.now(UTC))
                .returning(CardRow.account_id)
            )
        if suspended is not None:
            return LossReport(outcome="suspended")
        status = self.card(account_id).status
        return LossReport(outcome="already_suspended" if status == "suspended" else "cancelled")
