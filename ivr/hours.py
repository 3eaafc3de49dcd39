"""When agents answer: `IVR_AGENT_HOURS` in `IVR_TIMEZONE`, less the days in `IVR_HOLIDAYS`.

The hours are windows separated by `;`, each days then times:
`Mon-Fri 09:00-12:00; Mon-Fri 13:30-17:00; Sat 09:00-12:00`. Days are `Mon`..`Sun`,
ranges (`Mon-Fri`) or lists (`Mon,Wed`). Unset means always open. The holiday
file lists one `YYYY-MM-DD` a line (anything after it, and `#` lines, are comments).
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

from . import speech
from .config import ConfigError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_CN_DAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
_EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WINDOW = re.compile(r"^\s*([A-Za-z,\- ]+?)\s+(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class Window:
    """Some days of the week, from one time of day to another."""

    days: tuple[int, ...]
    start: datetime.time
    end: datetime.time


@dataclass(frozen=True, slots=True)
class AgentHours:
    """The agents' working hours; no windows means always open."""

    windows: tuple[Window, ...] = ()
    zone: datetime.tzinfo = datetime.UTC
    holidays: frozenset[datetime.date] = frozenset()

    def is_open(self, now: datetime.datetime) -> bool:
        """Whether an agent answers at `now` (an aware datetime)."""
        if not self.windows:
            return True
        local = now.astimezone(self.zone)
        if local.date() in self.holidays:
            return False
        moment = local.time().replace(tzinfo=None)
        return any(
            local.weekday() in w.days and w.start <= moment < w.end for w in self.windows
        )

    def describe(self, lang: str) -> str:
        """The hours as a caller should hear them."""
        if not self.windows:
            return "全天" if lang == "cmn-CN" else "at any time"
        parts = [_describe(w, lang) for w in self.windows]
        return "；".join(parts) if lang == "cmn-CN" else "; ".join(parts)


def _describe(window: Window, lang: str) -> str:
    names = _CN_DAYS if lang == "cmn-CN" else _EN_DAYS
    days = window.days
    contiguous = len(days) > 2 and days == tuple(range(days[0], days[-1] + 1))
    if contiguous:
        joint = "至" if lang == "cmn-CN" else " to "
        day_text = f"{names[days[0]]}{joint}{names[days[-1]]}"
    else:
        day_text = ("、" if lang == "cmn-CN" else ", ").join(names[d] for d in days)
    start = speech.time_of_day(window.start, lang)
    end = speech.time_of_day(window.end, lang)
    if lang == "cmn-CN":
        return f"{day_text}{start}至{end}"
    return f"{day_text}, {start} to {end}"


def _days(text: str) -> tuple[int, ...]:
    days: set[int] = set()
    for part in text.replace(" ", "").split(","):
        first, _, last = part.partition("-")
        try:
            a = DAYS.index(first.capitalize())
            b = DAYS.index(last.capitalize()) if last else a
        except ValueError:
            raise ConfigError(
                f"IVR_AGENT_HOURS: {part!r} is not a day or range of days (Mon..Sun)"
            ) from None
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return tuple(sorted(days))


def _time(text: str) -> datetime.time:
    try:
        hour, minute = (int(x) for x in text.split(":"))
        return datetime.time(hour, minute) if hour < 24 else datetime.time.max
    except ValueError:
        raise ConfigError(f"IVR_AGENT_HOURS: {text!r} is not a time like 09:00") from None


def parse(spec: str | None, timezone: str, holidays: str | None = None) -> AgentHours:
    """Read the agents' hours; ConfigError with a plain message when they are malformed."""
    try:
        zone = zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"IVR_TIMEZONE: unknown time zone {timezone!r}") from None
    windows = []
    for chunk in (spec or "").split(";"):
        if not chunk.strip():
            continue
        match = _WINDOW.match(chunk)
        if match is None:
            raise ConfigError(
                f"IVR_AGENT_HOURS: {chunk.strip()!r} should look like 'Mon-Fri 09:00-17:00'"
            )
        start, end = _time(match[2]), _time(match[3])
        if end <= start:
            raise ConfigError(f"IVR_AGENT_HOURS: {chunk.strip()!r} ends before it starts")
        windows.append(Window(_days(match[1]), start, end))
    return AgentHours(tuple(windows), zone, _holidays(holidays))


def _holidays(path: str | None) -> frozenset[datetime.date]:
    if not path:
        return frozenset()
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"IVR_HOLIDAYS: cannot read {path}: {exc.strerror}") from None
    days = set()
    for number, line in enumerate(lines, 1):
        word = line.split("#", 1)[0].split()
        if not word:
            continue
        try:
            days.add(datetime.date.fromisoformat(word[0]))
        except ValueError:
            where = f"IVR_HOLIDAYS: {path} line {number}"
            raise ConfigError(f"{where}: not a date YYYY-MM-DD") from None
    return frozenset(days)
