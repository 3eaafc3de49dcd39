"""What the account service returns to the IVR: frozen dataclasses with a JSON form.

In JSON, amounts are decimal strings with 2 places and datetimes are ISO 8601 with an offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Self, TypeAlias, get_type_hints

JsonScalar: TypeAlias = str | int | bool | None

_CENT = Decimal("0.01")


def _dump(value: object) -> JsonScalar:
    if isinstance(value, Decimal):
        return str(value.quantize(_CENT))
    if isinstance(value, datetime):
        return value.isoformat()
    assert value is None or isinstance(value, str | int), type(value)
    return value


def _load(kind: Any, value: Any) -> object:
    if kind is Decimal:
        if not isinstance(value, str):
            raise TypeError("amounts are strings")
        return Decimal(value).quantize(_CENT)
    if kind is datetime:
        return datetime.fromisoformat(value)
    if not isinstance(value, kind):
        raise TypeError(f"expected {kind}")
    return value


@dataclass(frozen=True, slots=True)
class _Json:
    """Base of the result types: `to_json`/`from_json` derived from the fields."""

    def to_json(self) -> dict[str, JsonScalar]:
        """This value as a JSON object."""
        return {f.name: _dump(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Self:
        """The value of a JSON object made by `to_json`; ValueError if it is malformed."""
        hints = get_type_hints(cls)
        try:
            return cls(**{f.name: _load(hints[f.name], d[f.name]) for f in fields(cls)})
        except (KeyError, TypeError, ArithmeticError) as exc:
            raise ValueError(f"malformed {cls.__name__}: {type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class Balance(_Json):
    """The personal-account balance and when it was last updated."""

    amount: Decimal
    as_of: datetime


@dataclass(frozen=True, slots=True)
class Transaction(_Json):
    """One use of the card: total = pooled_fund + personal_account + cash."""

    time: datetime
    place: str
    category: str  # outpatient, inpatient, pharmacy, deposit, other
    total: Decimal
    pooled_fund: Decimal
    personal_account: Decimal
    cash: Decimal


@dataclass(frozen=True, slots=True)
class Contribution(_Json):
    """One month's contribution record."""

    month: str  # YYYY-MM
    employer: str
    base: Decimal
    personal_account_credit: Decimal
    status: str  # paid, unpaid, pending


@dataclass(frozen=True, slots=True)
class Card(_Json):
    """The insurance card, named by the last 4 characters of its number."""

    last4: str
    status: str  # active, suspended, cancelled


@dataclass(frozen=True, slots=True)
class PinResult(_Json):
    """The outcome of a PIN check: the account on success, else None."""

    ok: bool
    account_id: int | None


@dataclass(frozen=True, slots=True)
class LossReport(_Json):
    """The outcome of reporting a card lost: suspended (now), already_suspended or cancelled."""

    outcome: str
