"""How the console words things: timeline entries, times in the hotline's zone, durations, rates.

Entries are redacted when they are written; as a second line of defence
anything shaped like a full ID number is masked again before it is shown.
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Any

from ..calllog import Entry

_ID_LIKE = re.compile(r"(?<![0-9])([0-9]{3})([0-9]{11,13})([0-9]{3}[0-9Xx])(?![0-9])")

KIND_NAMES = {
    "start": "call started",
    "menu": "menu",
    "prompt": "prompt",
    "key": "keys",
    "silence": "no input",
    "service": "account service",
    "auth": "authentication",
    "transfer": "transfer",
    "transfer_ended": "agent call ended",
    "language": "language",
    "hangup": "hotline hung up",
    "end": "call ended",
    "rating": "rating",
    "act": "request",
}


def scrub(text: str) -> str:
    """`text` with anything shaped like a full ID number masked to its first 3 and last 4."""
    return _ID_LIKE.sub(lambda m: m[1] + "*" * len(m[2]) + m[3], text)


def local(moment: datetime.datetime | None, zone: zoneinfo.ZoneInfo) -> str:
    """A moment as `YYYY-MM-DD HH:MM:SS` in the hotline's zone."""
    if moment is None:
        return ""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)
    return aware.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    """Seconds as `m:ss` (or `h:mm:ss`)."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def percent(share: float | None) -> str:
    """A share as a percentage with one decimal, or a dash."""
    return "–" if share is None else f"{share * 100:.1f} %"


def kind_name(kind: str) -> str:
    """An entry kind in words."""
    return KIND_NAMES.get(kind, kind.replace("_", " "))


def describe(entry: Entry) -> str:
    """One line saying what an entry records (masked values as logged)."""
    d = entry.data
    kind = entry.kind
    if kind == "start":
        text = f"from {_v(d, 'caller')}"
    elif kind == "menu":
        text = _v(d, "node")
    elif kind == "prompt":
        text = _v(d, "text")
    elif kind == "key":
        text = f"{_v(d, 'keys')} in {_v(d, 'node')}"
    elif kind == "silence":
        text = f"in {_v(d, 'node')} ({_v(d, 'count')} in a row)"
    elif kind == "service":
        ms = d.get("ms")
        took = f" in {ms} ms" if ms is not None else ""
        text = f"{_v(d, 'call') or _v(d, 'what')}: {_v(d, 'outcome')}{took}"
    elif kind == "auth":
        masked = f" (ID {_v(d, 'id')})" if d.get("id") else ""
        text = f"{_v(d, 'result')}{masked}"
    elif kind == "transfer":
        text = f"to {_v(d, 'to') or 'agent'}"
    elif kind in ("transfer_ended", "end"):
        secs = f", {_v(d, 'duration')} s" if d.get("duration") is not None else ""
        text = f"{_v(d, 'status')}{secs}"
    elif kind == "language":
        text = _v(d, "lang")
    elif kind == "hangup":
        text = _v(d, "reason")
    elif kind == "act":
        text = f"{_v(d, 'name')}: {_v(d, 'outcome')}"
    else:
        text = "  ".join(f"{k}={_text(v)}" for k, v in d.items())
    return scrub(text)


def _v(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    return "" if value is None else _text(value)


def _text(value: object) -> str:
    return value if isinstance(value, str) else str(value)
