"""AccountStore against the real database: import and its validation, PIN checks, queries,
card loss."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.accounts import idnumber
from services.accounts.db import make_engine
from services.accounts.demo import load_demo
from services.accounts.errors import ImportFailed, NotFound
from services.accounts.models import AccountRow, CardRow, ContributionRow, TransactionRow
from services.accounts.store import AccountStore
from services.accounts.types import Card, LossReport, PinResult

PEPPER = "test-pepper"
ZHANG = "11010519491231002X"
LI = "440305199003151236"


@pytest.fixture
def store(database_url: str) -> Iterator[AccountStore]:
    engine = make_engine(database_url)
    store = AccountStore(engine, PEPPER)
    store.create_schema()
    yield store
    engine.dispose()


def account(id_number: str = ZHANG, **changes: Any) -> dict[str, Any]:
    """A valid SPEC 7 record, with some fields changed."""
    record: dict[str, Any] = {
        "id_number": id_number,
        "name": "张三",
        "pin": "135790",
        "phone": "+8613800138000",
        "card": {"number": "100000123456", "status": "active"},
        "balance": "1234.56",
        "transactions": [
            {
                "time": "2026-11-20T10:15:00+08:00",
                "place": "北京协和医院",
                "category": "outpatient",
                "total": "500.00",
                "pooled_fund": "300.00",
                "personal_account": "150.00",
                "cash": "50.00",
            },
            {
                "time": "2026-11-21T09:00:00+08:00",
                "place": "北京同仁堂王府井药店",
                "category": "pharmacy",
                "total": "86.50",
                "pooled_fund": "0.00",
                "personal_account": "86.50",
                "cash": "0.00",
            },
            {
                "time": "2026-10-02T08:00:00Z",
                "place": "北京朝阳医院",
                "category": "deposit",
                "total": "3000.00",
                "pooled_fund": "0.00",
                "personal_account": "0.00",
                "cash": "3000.00",
            },
        ],
        "contributions": [
            {
                "month": month,
                "employer": "北京某某科技有限公司",
                "base": "8000.00",
                "personal_account_credit": "320.00",
                "status": "paid",
            }
            for month in ("2026-08", "2026-10", "2026-09")
        ],
    }
    record.update(changes)
    return record


def count(store: AccountStore, row: type[Any]) -> int:
    with sa.orm.Session(store.engine) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(row)) or 0


def login(store: AccountStore, id_number: str = ZHANG, pin: str = "135790") -> int:
    result = store.verify_pin(store.digest(id_number), pin)
    assert result.ok and result.account_id is not None
    return result.account_id


# -- import --------------------------------------------------------------------------------


def test_import_stores_everything_and_normalises_the_phone(store: AccountStore) -> None:
    data = {"accounts": [account(), account(LI, name="李四", pin="246810", phone="139 1234 5678")]}
    assert store.import_data(data) == 2
    zhang, li = login(store), login(store, LI, "246810")
    assert zhang != li
    assert store.balance(zhang).amount == Decimal("1234.56")
    assert store.card(zhang) == Card(last4="3456", status="active")
    assert store.masked_id(zhang) == "110***********002X"
    with sa.orm.Session(store.engine) as session:
        phone, digest = session.execute(
            sa.select(AccountRow.phone, AccountRow.id_digest).where(AccountRow.id == li)
        ).one()
    assert phone == "+8613912345678"
    assert digest == idnumber.digest(PEPPER, LI)
    assert count(store, TransactionRow) == 6 and count(store, ContributionRow) == 6


def test_nothing_personal_is_stored_in_clear(store: AccountStore, database_url: str) -> None:
    store.import_data({"accounts": [account()]})
    with sa.orm.Session(store.engine) as session:
        row = session.scalars(sa.select(AccountRow)).one()
        stored = " ".join(str(getattr(row, c.key)) for c in sa.inspect(AccountRow).columns)
    assert ZHANG not in stored and "135790" not in stored


def test_reimport_upserts_and_replaces_card_transactions_and_contributions(
    store: AccountStore,
) -> None:
    store.import_data({"accounts": [account()]})
    first = login(store)
    changed = account(
        "11010519491231002x",  # the same person, keyed differently
        pin="000111",
        balance="99.00",
        card={"number": "100000999999", "status": "suspended"},
        transactions=[account()["transactions"][0]],
        contributions=[],
    )
    assert store.import_data({"accounts": [changed]}) == 1
    assert store.verify_pin(store.digest(ZHANG), "135790") == PinResult(ok=False, account_id=None)
    assert login(store, pin="000111") == first
    assert store.balance(first).amount == Decimal("99.00")
    assert store.card(first) == Card(last4="9999", status="suspended")
    assert len(store.transactions(first)) == 1 and store.contributions(first) == []
    assert (count(store, AccountRow), count(store, CardRow), count(store, TransactionRow)) == (
        1,
        1,
        1,
    )


def test_import_is_idempotent(store: AccountStore) -> None:
    data = {"accounts": [account(), account(LI, pin="246810")]}
    store.import_data(data)
    before = store.transactions(login(store))
    store.import_data(data)
    assert store.transactions(login(store)) == before
    assert count(store, AccountRow) == 2 and count(store, TransactionRow) == 6


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change to a record: set the value at a dotted path (`card.status`,
    `transactions.0.cash`)."""

    def change(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = record
        for key in parents:
            target = target[int(key) if key.isdigit() else key]
        if value is _DELETE:
            del target[last]
        else:
            target[int(last) if last.isdigit() else last] = value

    return change


_DELETE = object()

BAD_RECORDS = [
    ("id_number", "11010519491231002", "id_number"),  # a wrong check character
    ("id_number", "11010519490231002X", "id_number"),  # 31 February
    ("id_number", 110105194912310020, "id_number"),
    ("pin", "12345", "pin"),
    ("pin", "1357900", "pin"),
    ("pin", 135790, "pin"),
    ("pin", "13579a", "pin"),
    ("pin", _DELETE, "pin"),
    ("name", "  ", "name"),
    ("phone", "12345", "phone"),
    ("phone", "call me maybe", "phone"),
    ("balance", 1234.56, "balance"),
    ("balance", 1234, "balance"),
    ("balance", "1234.5", "balance"),
    ("balance", "1,234.56", "balance"),
    ("card", _DELETE, "card"),
    ("card", "100000123456", "card"),
    ("card.status", "lost", "card.status"),
    ("card.number", "", "card.number"),
    ("transactions", {}, "transactions"),
    ("transactions.1", "pharmacy", "transactions[1]"),
    ("transactions.1.category", "dental", "transactions[1].category"),
    ("transactions.1.time", "2026-11-21T09:00:00", "transactions[1].time"),
    ("transactions.1.time", "21/11/2026", "transactions[1].time"),
    ("transactions.1.cash", 0.0, "transactions[1].cash"),
    ("transactions.1.total", "86.51", "transactions[1].total"),
    ("transactions.1.place", _DELETE, "transactions[1].place"),
    ("transactions.1.tip", "1.00", "transactions[1].tip"),
    ("contributions.2.month", "2026-13", "contributions[2].month"),
    ("contributions.2.month", "2026-9", "contributions[2].month"),
    ("contributions.2.status", "late", "contributions[2].status"),
    ("contributions.2.base", "8000", "contributions[2].base"),
    ("ballance", "1.00", "ballance"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_RECORDS)
def test_a_bad_second_record_names_index_and_field_and_imports_nothing(
    store: AccountStore, path: str, value: Any, field: str
) -> None:
    bad = account(LI, pin="246810")
    _set(path, value)(bad)
    with pytest.raises(ImportFailed) as caught:
        store.import_data({"accounts": [account(), bad]})
    assert (caught.value.index, caught.value.field) == (1, field)
    message = str(caught.value)
    assert message.startswith(f"record 1, field '{field}': ")
    for secret in (LI, "246810", "135790", "1357900", "13579a", "12345", "call me maybe"):
        assert secret not in message
    assert count(store, AccountRow) == 0 and count(store, TransactionRow) == 0


def test_a_bad_record_leaves_existing_accounts_untouched(store: AccountStore) -> None:
    store.import_data({"accounts": [account()]})
    with pytest.raises(ImportFailed):
        store.import_data({"accounts": [account(balance="1.00"), account(LI, pin="x")]})
    assert store.balance(login(store)).amount == Decimal("1234.56")


def test_the_same_id_twice_in_one_file_is_refused(store: AccountStore) -> None:
    with pytest.raises(ImportFailed) as caught:
        store.import_data({"accounts": [account(), account(LI), account("11010519491231002x")]})
    assert str(caught.value) == "record 2, field 'id_number': same ID number as record 0"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ([account()], ""),
        ("accounts", ""),
        ({"records": [account()]}, ""),
        ({"accounts": [account()], "version": 2}, ""),
        ({"accounts": {"0": account()}}, "accounts"),
        ({"accounts": ["x"]}, "record"),
    ],
)
def test_a_bad_shape_is_refused(store: AccountStore, data: object, field: str) -> None:
    with pytest.raises(ImportFailed) as caught:
        store.import_data(data)
    assert caught.value.field == field
    assert caught.value.index == (0 if field == "record" else None)
    assert count(store, AccountRow) == 0


def test_an_empty_list_imports_nothing(store: AccountStore) -> None:
    assert store.import_data({"accounts": []}) == 0


def test_import_file(store: AccountStore, tmp_path: Path) -> None:
    good = tmp_path / "accounts.json"
    good.write_text(json.dumps({"accounts": [account()]}, ensure_ascii=False), encoding="utf-8")
    assert store.import_file(good) == 1
    assert store.import_file(str(good)) == 1

    broken = tmp_path / "broken.json"
    broken.write_text('{"accounts": [\n  {"id_number": "11010519491231002X",}\n]}')
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"accounts": [{"name": "Zoë"}]}'.encode("latin-1"))
    for path, reason in [
        (tmp_path / "missing.json", "cannot read"),
        (tmp_path, "cannot read"),
        (broken, "not valid JSON: Expecting property name enclosed in double quotes at line 2"),
        (latin, "is not UTF-8"),
    ]:
        with pytest.raises(ImportFailed) as caught:
            store.import_file(path)
        assert caught.value.index is None and reason in str(caught.value)
        assert ZHANG not in str(caught.value)


def test_import_failed_message() -> None:
    error = ImportFailed(2, "card.status", "must be one of active, suspended, cancelled")
    assert (
        str(error) == "record 2, field 'card.status': must be one of active, suspended, cancelled"
    )
    assert str(ImportFailed(None, "", "the file is empty")) == "the file is empty"


# -- the caller's queries ------------------------------------------------------------------


def test_verify_pin_right_wrong_and_unknown(store: AccountStore) -> None:
    store.import_data({"accounts": [account()]})
    right = store.verify_pin(store.digest(ZHANG), "135790")
    assert right.ok and isinstance(right.account_id, int)
    assert store.verify_pin(store.digest(ZHANG), "135791") == PinResult(ok=False, account_id=None)
    assert store.verify_pin(store.digest(LI), "135790") == PinResult(ok=False, account_id=None)
    assert store.verify_pin(ZHANG, "135790") == PinResult(ok=False, account_id=None)


def test_transactions_newest_first_with_a_limit(store: AccountStore) -> None:
    store.import_data({"accounts": [account()]})
    account_id = login(store)
    found = store.transactions(account_id)
    assert [t.time for t in found] == [
        datetime.fromisoformat("2026-11-21T09:00:00+08:00"),
        datetime.fromisoformat("2026-11-20T10:15:00+08:00"),
        datetime.fromisoformat("2026-10-02T08:00:00+00:00"),
    ]
    assert all(t.time.utcoffset() is not None for t in found)
    first = found[0]
    assert (first.place, first.category, first.total, first.personal_account) == (
        "北京同仁堂王府井药店",
        "pharmacy",
        Decimal("86.50"),
        Decimal("86.50"),
    )
    assert store.transactions(account_id, limit=1) == found[:1]


def test_contributions_newest_month_first(store: AccountStore) -> None:
    store.import_data({"accounts": [account()]})
    account_id = login(store)
    assert [c.month for c in store.contributions(account_id)] == ["2026-10", "2026-09", "2026-08"]
    assert [c.month for c in store.contributions(account_id, limit=2)] == ["2026-10", "2026-09"]
    assert store.contributions(account_id)[0].personal_account_credit == Decimal("320.00")


def test_unknown_accounts_are_not_found(store: AccountStore) -> None:
    queries: list[Callable[[int], object]] = [
        store.balance,
        store.transactions,
        store.contributions,
        store.card,
        store.report_card_lost,
        store.masked_id,
    ]
    for query in queries:
        with pytest.raises(NotFound):
            query(12345)


def test_report_card_lost_transitions(store: AccountStore) -> None:
    store.import_data(
        {
            "accounts": [
                account(),
                account(LI, pin="246810", card={"number": "100000654321", "status": "cancelled"}),
            ]
        }
    )
    zhang, li = login(store), login(store, LI, "246810")
    assert store.report_card_lost(zhang) == LossReport(outcome="suspended")
    assert store.card(zhang).status == "suspended"
    assert store.report_card_lost(zhang) == LossReport(outcome="already_suspended")
    assert store.card(zhang).status == "suspended"
    assert store.report_card_lost(li) == LossReport(outcome="cancelled")
    assert store.card(li).status == "cancelled"


def test_report_card_lost_records_when_the_status_changed(store: AccountStore) -> None:
    store.import_data({"accounts": [account()]})
    zhang = login(store)

    def changed_at() -> datetime:
        with sa.orm.Session(store.engine) as session:
            card = session.get_one(CardRow, zhang)
            return card.status_changed_at

    imported = changed_at()
    store.report_card_lost(zhang)
    suspended = changed_at()
    store.report_card_lost(zhang)
    assert imported < suspended == changed_at()


# -- demo data -----------------------------------------------------------------------------

DEMO = {
    ZHANG: "135790",
    LI: "246810",
    "310104198507084566": "112358",
    "110108200104057895": "080808",
}


def test_demo_accounts_load_and_match_the_docstring(store: AccountStore) -> None:
    from services.accounts import demo

    assert load_demo(store) == 4
    assert load_demo(store) == 4  # upsert: loading twice is harmless
    assert count(store, AccountRow) == 4
    ids = {}
    for id_number, pin in DEMO.items():
        assert idnumber.is_valid(id_number)
        assert f"`{id_number}` | `{pin}`" in (demo.__doc__ or "")
        ids[id_number] = login(store, id_number, pin)
    zhang = ids[ZHANG]
    assert store.balance(zhang).amount == Decimal("1234.56")
    assert len(store.transactions(zhang)) >= 6 and len(store.contributions(zhang)) >= 8
    assert {t.category for t in store.transactions(zhang)} >= {
        "outpatient",
        "pharmacy",
        "inpatient",
    }
    assert all(t.time.year == 2026 for t in store.transactions(zhang))
    assert not LI.endswith("X")
    assert store.card(ids["310104198507084566"]).status == "suspended"
    empty = ids["110108200104057895"]
    assert store.transactions(empty) == [] and store.contributions(empty) == []
