"""Finding calls in the call log: filters, paging, and the caller's number by its keyed hash.

Read-only over the call log's tables (`ivr/calllog.py`). A caller's number is
never stored in full: the filter hashes the number a supervisor types with the
hotline's caller key and matches `caller_key`, so the list shows only masks.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import phonenumbers
import sqlalchemy as sa

from services.offload import off_the_loop

from ..calllog import calls, mask_number
from . import outcomes

PAGE_SIZE = 50
DEFAULT_REGION = "CN"  # numbers typed without a country code are Chinese numbers
CALLER_KEY = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Period:
    """A range of whole days in the hotline's time zone: [first, last] inclusive."""

    first: datetime.date
    last: datetime.date
    zone: zoneinfo.ZoneInfo

    @property
    def start(self) -> datetime.datetime:
        """The first instant, in UTC."""
        return _midnight(self.first, self.zone)

    @property
    def end(self) -> datetime.datetime:
        """The instant after the last day, in UTC."""
        return _midnight(self.last + datetime.timedelta(days=1), self.zone)

    def where(self) -> sa.ColumnElement[bool]:
        """Calls started within the period."""
        return sa.and_(calls.c.started_at >= self.start, calls.c.started_at < self.end)


@dataclass(frozen=True, slots=True)
class CallFilter:
    """What a supervisor narrowed the list to; empty fields do not filter."""

    first: datetime.date | None = None
    last: datetime.date | None = None
    outcome: str = ""
    node: str = ""
    lang: str = ""
    auth: str = ""
    caller_keys: tuple[str, ...] = ()
    caller_given: bool = False  # a number was typed (and matches nothing when it hashes to none)

    def where(self, zone: zoneinfo.ZoneInfo) -> list[sa.ColumnElement[bool]]:
        """The SQL conditions of this filter."""
        c = calls.c
        where: list[sa.ColumnElement[bool]] = []
        if self.first is not None:
            where.append(c.started_at >= _midnight(self.first, zone))
        if self.last is not None:
            where.append(c.started_at < _midnight(self.last + datetime.timedelta(days=1), zone))
        if self.outcome:
            where.append(outcomes.label() == self.outcome)
        if self.node:
            where.append(c.last_node == self.node)
        if self.lang:
            where.append(c.lang == self.lang)
        if self.auth:
            where.append(c.auth == ("" if self.auth == "none" else self.auth))
        if self.caller_given:
            where.append(c.caller_key.in_(self.caller_keys or ("-",)))
        return where


@dataclass(frozen=True, slots=True)
class CallRow:
    """A call as the list shows it: nothing but masks and summaries."""

    call_sid: str
    started_at: datetime.datetime
    caller: str
    lang: str
    last_node: str
    auth: str
    label: str
    status: str
    duration: int | None


@dataclass(frozen=True, slots=True)
class CallPage:
    """One page of the list, and where it sits in the whole."""

    rows: list[CallRow]
    total: int
    page: int
    size: int = PAGE_SIZE
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pages", max(1, -(-self.total // self.size)))


class CallFinder:
    """Queries over the call log for the console."""

    def __init__(
        self, engine: sa.Engine, caller_key: Callable[[str], str], zone: zoneinfo.ZoneInfo
    ) -> None:
        self.engine = engine
        self.caller_key = caller_key
        self.zone = zone

    def caller_keys(self, typed: str) -> tuple[str, ...]:
        """The keyed hashes a typed number may be logged under (none if it is not a number)."""
        return tuple(self.caller_key(n) for n in caller_variants(typed))

    def filter(
        self, args: Mapping[str, str], keys: Sequence[str] = ()
    ) -> tuple[CallFilter, list[str]]:
        """A filter from query arguments (a typed `caller`, or its hashes in `keys`), and what
        in them could not be understood."""
        problems: list[str] = []
        first = _date(args.get("from", ""), "from", problems)
        last = _date(args.get("to", ""), "to", problems)
        caller = args.get("caller", "").strip()
        hashed = tuple(k for k in keys if CALLER_KEY.fullmatch(k))
        typed = self.caller_keys(caller) if caller else ()
        if caller and not typed:
            problems.append("caller: not a phone number")
        return CallFilter(
            first=first,
            last=last,
            outcome=args.get("outcome", "").strip(),
            node=args.get("node", "").strip(),
            lang=args.get("lang", "").strip(),
            auth=args.get("auth", "").strip(),
            caller_keys=typed + hashed,
            caller_given=bool(caller or keys),
        ), problems

    @off_the_loop
    def page(self, flt: CallFilter, page: int = 1, size: int = PAGE_SIZE) -> CallPage:
        """The calls matching `flt`, newest first, page `page` (from 1)."""
        page = max(1, page)
        where = flt.where(self.zone)
        label = outcomes.label().label("label")
        query = (
            sa.select(calls, label)
            .where(*where)
            .order_by(calls.c.started_at.desc(), calls.c.call_sid)
            .limit(size)
            .offset((page - 1) * size)
        )
        count = sa.select(sa.func.count()).select_from(calls).where(*where)
        with self.engine.connect() as conn:
            rows = [_row(r) for r in conn.execute(query).mappings()]
            total = int(conn.execute(count).scalar_one())
        return CallPage(rows, total, page, size)

    def row(self, call_sid: str) -> CallRow | None:
        """One call's summary, or None."""
        query = sa.select(calls, outcomes.label().label("label")).where(
            calls.c.call_sid == call_sid
        )
        with self.engine.connect() as conn:
            found = conn.execute(query).mappings().first()
        return None if found is None else _row(found)

    @off_the_loop
    def choices(self) -> dict[str, list[str]]:
        """The values the list can be filtered by that occur in the log: nodes, languages."""
        with self.engine.connect() as conn:
            nodes = conn.execute(
                sa.select(calls.c.last_node).where(calls.c.last_node != "").distinct()
            ).scalars()
            langs = conn.execute(sa.select(calls.c.lang).distinct()).scalars()
            return {"nodes": sorted(nodes), "langs": sorted(langs)}


def caller_variants(typed: str) -> list[str]:
    """The forms a typed number may have been logged in: as typed (digits and +), with a + in
    front, and in E.164 (a number without a country code taken as Chinese)."""
    raw = "".join(ch for ch in typed if ch.isdigit() or ch == "+")
    if not raw.strip("+"):
        return []
    variants = [raw] if raw.startswith("+") else [raw, "+" + raw]  # "+" may be lost in a URL
    try:
        parsed = phonenumbers.parse(raw, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return variants
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 not in variants:
        variants.append(e164)
    return variants


def masked(typed: str) -> str:
    """A typed number as the call log shows callers: masked (in E.164 where it parses)."""
    variants = caller_variants(typed)
    return mask_number(variants[-1]) if variants else ""


def _midnight(day: datetime.date, zone: zoneinfo.ZoneInfo) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), zone).astimezone(datetime.UTC)


def _date(value: str, name: str, problems: list[str]) -> datetime.date | None:
    value = value.strip()
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: not a date (YYYY-MM-DD)")
        return None



def _row(row: sa.RowMapping) -> CallRow:
    return CallRow(
        call_sid=row["call_sid"],
        started_at=row["started_at"],
        caller=row["caller"],
        lang=row["lang"],
        last_node=row["last_node"],
        auth=row["auth"],
        label=row["label"],
        status=row["status"],
        duration=row["duration"],
    )
