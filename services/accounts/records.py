"""Validation of account data in the SPEC 7 import format, before anything is written.

Every failure is an ImportFailed naming the record index and the field; no message
ever repeats a value (an ID number, PIN or phone number could be in it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NoReturn

import phonenumbers

from . import idnumber
from .errors import ImportFailed
from .models import CARD_STATUSES, CATEGORIES, CONTRIBUTION_STATUSES
from .types import Contribution, Transaction

_AMOUNT = re.compile(r"-?[0-9]{1,10}\.[0-9]{2}")
_PIN = re.compile(r"[0-9]{6}")
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
_CARD_NUMBER = re.compile(r"[0-9A-Za-z]{4,32}")


@dataclass(frozen=True, slots=True)
class CardRecord:
    """A validated card."""

    number: str
    status: str


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """A validated account; `id_number` normalised, `phone` in E.164."""

    id_number: str
    name: str
    pin: str
    phone: str | None
    balance: Decimal
    card: CardRecord
    transactions: tuple[Transaction, ...]
    contributions: tuple[Contribution, ...]


@dataclass(frozen=True, slots=True)
class _Fields:
    """The fields of one JSON object inside record `index`, named with `prefix` in errors."""

    index: int
    prefix: str
    data: Mapping[str, object]

    @classmethod
    def of(cls, index: int, prefix: str, data: object, known: frozenset[str]) -> _Fields:
        """Check `data` is an object with only `known` fields."""
        if not isinstance(data, dict):
            raise ImportFailed(index, prefix.rstrip(".") or "record", "must be an object")
        for name in data:
            if name not in known:
                raise ImportFailed(index, f"{prefix}{name}", "unknown field")
        return cls(index, prefix, data)

    def fail(self, name: str, reason: str) -> NoReturn:
        """Refuse the import, naming this field."""
        raise ImportFailed(self.index, f"{self.prefix}{name}", reason)

    def raw(self, name: str, required: bool = True) -> object:
        """The field's value; a missing required field (or null) fails."""
        value = self.data.get(name)
        if value is None and required:
            self.fail(name, "is required")
        return value

    def text(self, name: str, max_length: int = 200) -> str:
        """A non-blank string, stripped."""
        value = self.raw(name)
        if not isinstance(value, str) or not value.strip():
            self.fail(name, "must be a non-empty string")
        if len(value.strip()) > max_length:
            self.fail(name, f"must be at most {max_length} characters")
        return value.strip()

    def matching(self, name: str, pattern: re.Pattern[str], reason: str) -> str:
        """A string matching `pattern` whole."""
        value = self.raw(name)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            self.fail(name, reason)
        return value

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        """One of `options`."""
        value = self.raw(name)
        if value not in options:
            self.fail(name, f"must be one of {', '.join(options)}")
        return str(value)

    def amount(self, name: str) -> Decimal:
        """A decimal string with 2 places; a JSON number is refused (floats lose cents)."""
        reason = 'must be a string with 2 decimal places like "12.34", not a number'
        return Decimal(self.matching(name, _AMOUNT, reason))

    def time(self, name: str) -> datetime:
        """An ISO 8601 date and time with a UTC offset."""
        value = self.raw(name)
        try:
            parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            self.fail(
                name,
                "must be an ISO 8601 date and time with an offset, like 2026-11-20T10:15:00+08:00",
            )
        return parsed

    def items(self, name: str, known: frozenset[str]) -> list[_Fields]:
        """The objects of an optional list field."""
        value = self.raw(name, required=False)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(name, "must be a list")
        return [
            _Fields.of(self.index, f"{self.prefix}{name}[{i}].", v, known)
            for i, v in enumerate(value)
        ]


_ACCOUNT_FIELDS = frozenset(
    {"id_number", "name", "pin", "phone", "card", "balance", "transactions", "contributions"}
)
_CARD_FIELDS = frozenset({"number", "status"})
_TRANSACTION_FIELDS = frozenset(
    {"time", "place", "category", "total", "pooled_fund", "personal_account", "cash"}
)
_CONTRIBUTION_FIELDS = frozenset({"month", "employer", "base", "personal_account_credit", "status"})


def _phone(f: _Fields) -> str | None:
    value = f.raw("phone", required=False)
    if value is None:
        return None
    try:
        number = phonenumbers.parse(value if isinstance(value, str) else "", "CN")
    except phonenumbers.NumberParseException:
        f.fail("phone", "is not a phone number")
    if not phonenumbers.is_valid_number(number):
        f.fail("phone", "is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _transaction(f: _Fields) -> Transaction:
    record = Transaction(
        time=f.time("time"),
        place=f.text("place"),
        category=f.choice("category", CATEGORIES),
        total=f.amount("total"),
        pooled_fund=f.amount("pooled_fund"),
        personal_account=f.amount("personal_account"),
        cash=f.amount("cash"),
    )
    if record.total != record.pooled_fund + record.personal_account + record.cash:
        f.fail("total", "must equal pooled_fund + personal_account + cash")
    return record


def _contribution(f: _Fields) -> Contribution:
    return Contribution(
        month=f.matching("month", _MONTH, "must be a month like 2026-10"),
        employer=f.text("employer"),
        base=f.amount("base"),
        personal_account_credit=f.amount("personal_account_credit"),
        status=f.choice("status", CONTRIBUTION_STATUSES),
    )


def _account(index: int, data: object) -> AccountRecord:
    f = _Fields.of(index, "", data, _ACCOUNT_FIELDS)
    raw_id = f.raw("id_number")
    if not isinstance(raw_id, str) or not idnumber.is_valid(raw_id):
        f.fail("id_number", "is not a valid ID number (18 characters, birth date, check digit)")
    card = _Fields.of(index, "card.", f.raw("card"), _CARD_FIELDS)
    return AccountRecord(
        id_number=idnumber.normalize(raw_id),
        name=f.text("name", 100),
        pin=f.matching("pin", _PIN, "must be exactly 6 digits"),
        phone=_phone(f),
        balance=f.amount("balance"),
        card=CardRecord(
            number=card.matching("number", _CARD_NUMBER, "must be 4 to 32 letters or digits"),
            status=card.choice("status", CARD_STATUSES),
        ),
        transactions=tuple(_transaction(t) for t in f.items("transactions", _TRANSACTION_FIELDS)),
        contributions=tuple(
            _contribution(c) for c in f.items("contributions", _CONTRIBUTION_FIELDS)
        ),
    )


def parse_accounts(data: object) -> list[AccountRecord]:
    """Validate a whole import document `{"accounts": [...]}`; ImportFailed at the first error."""
    if not isinstance(data, dict) or set(data) != {"accounts"}:
        raise ImportFailed(None, "", 'the file must be a JSON object {"accounts": [...]}')
    if not isinstance(data["accounts"], list):
        raise ImportFailed(None, "accounts", "must be a list of records")
    records: list[AccountRecord] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(data["accounts"]):
        record = _account(index, item)
        if record.id_number in first_index:
            raise ImportFailed(
                index, "id_number", f"same ID number as record {first_index[record.id_number]}"
            )
        first_index[record.id_number] = index
        records.append(record)
    return records
