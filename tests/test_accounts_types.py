"""Result types: JSON with 2-place amount strings and ISO 8601 datetimes, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.accounts.types import (
    Balance,
    Card,
    Contribution,
    LossReport,
    PinResult,
    Transaction,
)

_amounts = st.decimals(min_value=-(10**10) + 1, max_value=10**10 - 1, places=2)
_times = st.datetimes(timezones=st.just(UTC)) | st.datetimes(
    timezones=st.just(timezone(timedelta(hours=8)))
)


def test_json_form() -> None:
    t = Transaction(
        time=datetime(2026, 11, 20, 10, 15, tzinfo=timezone(timedelta(hours=8))),
        place="北京协和医院",
        category="outpatient",
        total=Decimal(500),
        pooled_fund=Decimal("300.00"),
        personal_account=Decimal("150.0"),
        cash=Decimal("50.00"),
    )
    assert t.to_json() == {
        "time": "2026-11-20T10:15:00+08:00",
        "place": "北京协和医院",
        "category": "outpatient",
        "total": "500.00",
        "pooled_fund": "300.00",
        "personal_account": "150.00",
        "cash": "50.00",
    }
    assert PinResult(ok=False, account_id=None).to_json() == {"ok": False, "account_id": None}
    assert Card(last4="3456", status="active").to_json() == {"last4": "3456", "status": "active"}


@given(amount=_amounts, as_of=_times, credit=_amounts)
def test_round_trips(amount: Decimal, as_of: datetime, credit: Decimal) -> None:
    values = [
        Balance(amount=amount, as_of=as_of),
        Transaction(as_of, "药店", "pharmacy", amount, credit, amount, credit),
        Contribution("2026-10", "北京某某科技有限公司", amount, credit, "paid"),
        Card("3456", "suspended"),
        PinResult(True, 7),
        PinResult(False, None),
        LossReport("already_suspended"),
    ]
    for value in values:
        assert type(value).from_json(value.to_json()) == value


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"amount": 12.5, "as_of": "2026-11-20T10:15:00+08:00"},
        {"amount": "abc", "as_of": "2026-11-20T10:15:00+08:00"},
        {"amount": "1.00", "as_of": "yesterday"},
    ],
)
def test_malformed_json_is_a_value_error(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Balance.from_json(bad)
    with pytest.raises(ValueError):
        PinResult.from_json({"ok": "yes", "account_id": None})
