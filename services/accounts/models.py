"""The account service's tables (prefixed `acct_`), on a MetaData of their own; SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

CARD_STATUSES = ("active", "suspended", "cancelled")
CATEGORIES = ("outpatient", "inpatient", "pharmacy", "deposit", "other")
CONTRIBUTION_STATUSES = ("paid", "unpaid", "pending")

Money = sa.Numeric(12, 2)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC, read back aware (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Refuse naive datetimes; convert to UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """An aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> sa.CheckConstraint:
    return sa.CheckConstraint(sa.column(column).in_(values), name=f"{column}_valid")


class Base(DeclarativeBase):
    """Declarative base of the account tables."""

    metadata = sa.MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class AccountRow(Base):
    """An insured person: named by the digest of their ID number, PIN kept as a hash."""

    __tablename__ = "acct_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    id_digest: Mapped[str] = mapped_column(sa.String(64), unique=True)
    id_masked: Mapped[str] = mapped_column(sa.String(18))
    name: Mapped[str] = mapped_column(sa.String(100))
    phone: Mapped[str | None] = mapped_column(sa.String(16))
    pin_hash: Mapped[str] = mapped_column(sa.String(128))
    balance: Mapped[Decimal] = mapped_column(Money)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    card: Mapped[CardRow | None] = relationship(cascade="all, delete-orphan", passive_deletes=True)
    transactions: Mapped[list[TransactionRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    contributions: Mapped[list[ContributionRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


def _account_fk() -> sa.ForeignKey:
    return sa.ForeignKey("acct_accounts.id", ondelete="CASCADE")


class CardRow(Base):
    """An account's one insurance card."""

    __tablename__ = "acct_cards"
    __table_args__ = (_one_of("status", CARD_STATUSES),)

    account_id: Mapped[int] = mapped_column(_account_fk(), primary_key=True)
    number: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16))
    status_changed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TransactionRow(Base):
    """One use of the card."""

    __tablename__ = "acct_transactions"
    __table_args__ = (
        _one_of("category", CATEGORIES),
        sa.Index("ix_acct_transactions_account_time", "account_id", "time"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(_account_fk())
    time: Mapped[datetime] = mapped_column(UtcDateTime)
    place: Mapped[str] = mapped_column(sa.String(200))
    category: Mapped[str] = mapped_column(sa.String(16))
    total: Mapped[Decimal] = mapped_column(Money)
    pooled_fund: Mapped[Decimal] = mapped_column(Money)
    personal_account: Mapped[Decimal] = mapped_column(Money)
    cash: Mapped[Decimal] = mapped_column(Money)


class ContributionRow(Base):
    """One month's contribution record."""

    __tablename__ = "acct_contributions"
    __table_args__ = (
        _one_of("status", CONTRIBUTION_STATUSES),
        sa.Index("ix_acct_contributions_account_month", "account_id", "month"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(_account_fk())
    month: Mapped[str] = mapped_column(sa.String(7))
    employer: Mapped[str] = mapped_column(sa.String(200))
    base: Mapped[Decimal] = mapped_column(Money)
    personal_account_credit: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[str] = mapped_column(sa.String(16))
