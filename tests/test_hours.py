"""Agent hours: parsing IVR_AGENT_HOURS / IVR_TIMEZONE / IVR_HOLIDAYS, open or not, read aloud."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from ivr.config import ConfigError
from ivr.hours import parse

SHANGHAI = datetime.timezone(datetime.timedelta(hours=8))


def at(day: int, hour: int, minute: int = 0) -> datetime.datetime:
    """2026-11-23 is a Monday; `day` counts from it, in Shanghai time."""
    return datetime.datetime(2026, 11, 23 + day, hour, minute, tzinfo=SHANGHAI)


def test_unset_is_always_open_and_says_so() -> None:
    hours = parse(None, "Asia/Shanghai")
    assert hours.is_open(at(6, 3))
    assert hours.describe("cmn-CN") == "全天" and hours.describe("en-US") == "at any time"


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (at(0, 9), True), (at(0, 8, 59), False), (at(0, 16, 59), True), (at(0, 17), False),
        (at(0, 12, 30), False), (at(4, 13, 30), True), (at(5, 10), True), (at(5, 12), False),
        (at(6, 10), False),
    ],
)  # fmt: skip
def test_windows_by_day_and_time(moment: datetime.datetime, open_: bool) -> None:
    hours = parse("Mon-Fri 09:00-12:00; Mon-Fri 13:30-17:00; Sat 09:00-12:00", "Asia/Shanghai")
    assert hours.is_open(moment) is open_


def test_the_time_zone_decides_the_local_time() -> None:
    hours = parse("Mon-Fri 09:00-17:00", "Asia/Shanghai")
    utc_morning = datetime.datetime(2026, 11, 23, 2, 0, tzinfo=datetime.UTC)  # 10:00 in Shanghai
    assert hours.is_open(utc_morning)
    assert not parse("Mon-Fri 09:00-17:00", "America/New_York").is_open(utc_morning)


def test_holidays_are_closed(tmp_path: Path) -> None:
    holidays = tmp_path / "holidays.txt"
    holidays.write_text("# public holidays\n2026-11-24  a Tuesday off\n\n")
    hours = parse("Mon-Fri 09:00-17:00", "Asia/Shanghai", str(holidays))
    assert hours.is_open(at(0, 10)) and not hours.is_open(at(1, 10))


def test_hours_are_read_out_in_both_languages() -> None:
    hours = parse("Mon-Fri 09:00-17:30; Sat,Sun 10:00-12:00", "Asia/Shanghai")
    assert hours.describe("cmn-CN") == "周一至周五9点整至17点30分；周六、周日10点整至12点整"
    assert hours.describe("en-US") == (
        "Monday to Friday, 9:00 AM to 5:30 PM; Saturday, Sunday, 10:00 AM to 12:00 PM"
    )


@pytest.mark.parametrize(
    ("spec", "zone", "message"),
    [
        ("Mon-Fri 9-17", "Asia/Shanghai", "should look like"),
        ("Funday 09:00-17:00", "Asia/Shanghai", "is not a day"),
        ("Mon 17:00-09:00", "Asia/Shanghai", "ends before it starts"),
        ("Mon 09:00-17:00", "Mars/Olympus", "unknown time zone"),
    ],
)
def test_malformed_hours_are_a_plain_error(spec: str, zone: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse(spec, zone)


def test_an_unreadable_or_malformed_holiday_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        parse("Mon 09:00-17:00", "Asia/Shanghai", str(tmp_path / "missing.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text("2026-13-01\n")
    with pytest.raises(ConfigError, match="line 1"):
        parse("Mon 09:00-17:00", "Asia/Shanghai", str(bad))
