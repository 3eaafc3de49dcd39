"""AccountStore: the account database behind the IVR (import, PIN checks, queries, card loss)."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import idnumber, security
from .errors import ImportFailed, NotFound
from .models import AccountRow, Base, CardRow, ContributionRow, TransactionRow
from .records import AccountRecord, parse_accounts
from .types import Balance, Card, Contribution, LossReport, PinResult, Transaction

_T = TypeVar("_T", Transaction, Contribution)


def _from_row(kind: type[_T], row: object) -> _T:
    return kind(**{f.name: getattr(row, f.name) for f in fields(kind)})


class AccountStore:
    """Accounts in a SQLAlchemy database; PINs and ID numbers hashed with the pepper.

    The caller owns `engine` (and disposes of it).
    """

    def __init__(self, engine: sa.Engine, pepper: str) -> None:
        self.engine = engine
        self._pepper = pepper
        self._sessions = sessionmaker(engine, expire_on_commit=False)

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
        """Import a SPEC 7 JSON file (see `import_data`); unreadable or invalid JSON is ImportFailed."""
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
        """Validate everything, then upsert every account by ID number in one transaction; the count."""
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

    def verify_pin(self, id_digest: str, pin: str) -> PinResult:
        """Check a PIN for the account named by `id_digest`; an unknown one costs the same and fails."""
        with self._sessions() as session:
            row = session.execute(
                sa.select(AccountRow.id, AccountRow.pin_hash).where(
                    AccountRow.id_digest == id_digest
                )
            ).first()
        if row is None:
            security.dummy_check(self._pepper)
            return PinResult(ok=False, account_id=None)
        ok = security.check_pin(self._pepper, pin, row.pin_hash)
        return PinResult(ok=ok, account_id=row.id if ok else None)

    def _account(self, session: Session, account_id: int) -> AccountRow:
        account = session.get(AccountRow, account_id)
        if account is None:
            raise NotFound(f"no account {account_id}")
        return account

    def balance(self, account_id: int) -> Balance:
        """The personal-account balance."""
        with self._sessions() as session:
            account = self._account(session, account_id)
            return Balance(amount=account.balance, as_of=account.updated_at)

    def masked_id(self, account_id: int) -> str:
        """The account's ID number masked to its first 3 and last 4 characters."""
        with self._sessions() as session:
            return self._account(session, account_id).id_masked

    def transactions(self, account_id: int, limit: int = 20) -> list[Transaction]:
        """The latest transactions, newest first."""
        with self._sessions() as session:
            self._account(session, account_id)
            rows = session.scalars(
                sa.select(TransactionRow)
                .where(TransactionRow.account_id == account_id)
                .order_by(TransactionRow.time.desc(), TransactionRow.id.desc())
                .limit(limit)
            )
            return [_from_row(Transaction, row) for row in rows]

    def contributions(self, account_id: int, limit: int = 36) -> list[Contribution]:
        """The latest contribution records, newest month first."""
        with self._sessions() as session:
            self._account(session, account_id)
            rows = session.scalars(
                sa.select(ContributionRow)
                .where(ContributionRow.account_id == account_id)
                .order_by(ContributionRow.month.desc(), ContributionRow.id.desc())
                .limit(limit)
            )
            return [_from_row(Contribution, row) for row in rows]

    def card(self, account_id: int) -> Card:
        """The account's card: last 4 characters of its number and its status."""
        with self._sessions() as session:
            card = self._account(session, account_id).card
            if card is None:
                raise NotFound(f"account {account_id} has no card")
            return Card(last4=card.number[-4:], status=card.status)

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
