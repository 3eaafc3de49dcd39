"""The dashboard's numbers for a period: volume, containment, transfers, drop-off, ratings.

Every figure is over calls that *started* in the period (days in the hotline's
time zone). Rates are over finished calls (calls still in progress are counted
apart). `Dashboard.tables()` gives each figure as rows for charts and CSV.
"""

from __future__ import annotations

import datetime
from collections import Counter
from dataclasses import dataclass

import sqlalchemy as sa

from services.offload import off_the_loop

from ..calllog import calls, events
from . import outcomes
from .calls import Period

AUTH_FAILURES = outcomes.FAILED_AUTH
POSITIVE_RATINGS = frozenset({"satisfied", "very_satisfied", "good", "yes"})


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """A menu node: how many calls reached it, how many were abandoned there."""

    node: str
    reached: int
    abandoned: int

    @property
    def drop_rate(self) -> float | None:
        """Abandoned there, as a share of the calls that reached it."""
        return self.abandoned / self.reached if self.reached else None


@dataclass(frozen=True, slots=True)
class Dashboard:
    """Everything the dashboard shows for one period."""

    period: Period
    total: int
    finished: int
    by_label: dict[str, int]
    hourly: list[tuple[datetime.datetime, int]]
    funnel: list[FunnelStep]
    auth_failures: int
    auth_failed_calls: int
    locks: int
    avg_duration: float | None
    avg_duration_by_label: dict[str, float]
    ratings: dict[str, int]

    def share(self, label: str) -> float | None:
        """`label` calls as a share of finished calls."""
        return self.by_label.get(label, 0) / self.finished if self.finished else None

    @property
    def containment(self) -> float | None:
        """Finished calls completed in self-service."""
        return self.share("self_service")

    @property
    def transfer_rate(self) -> float | None:
        """Finished calls that reached an agent."""
        return self.share("transferred")

    @property
    def abandonment(self) -> float | None:
        """Finished calls that ended unserved."""
        return self.share("abandoned")

    @property
    def rated(self) -> int:
        """How many ratings were given."""
        return sum(self.ratings.values())

    @property
    def satisfaction(self) -> float | None:
        """Satisfied ratings as a share of all (numbers 1-5: 4 and 5 count as satisfied)."""
        good = sum(n for value, n in self.ratings.items() if _positive(value))
        return good / self.rated if self.rated else None

    def tables(self) -> dict[str, tuple[list[str], list[list[object]]]]:
        """Each figure as (header, rows), for CSV export and charts."""
        return {
            "summary": (["metric", "value"], self._summary()),
            "hourly": (
                ["hour", "calls"],
                [[hour.strftime("%Y-%m-%d %H:00"), n] for hour, n in self.hourly],
            ),
            "outcomes": (
                ["outcome", "calls", "share_of_finished", "avg_duration_s"],
                [
                    [
                        outcomes.describe(lbl),
                        n,
                        "" if lbl == "in_progress" else _pct(self.share(lbl)),
                        _round(self.avg_duration_by_label.get(lbl)),
                    ]
                    for lbl, n in sorted(self.by_label.items(), key=lambda kv: -kv[1])
                ],
            ),
            "funnel": (
                ["menu", "reached", "abandoned_there", "drop_rate"],
                [[s.node, s.reached, s.abandoned, _pct(s.drop_rate)] for s in self.funnel],
            ),
            "ratings": (["rating", "count"], [[k, v] for k, v in sorted(self.ratings.items())]),
        }

    def _summary(self) -> list[list[object]]:
        return [
            ["period_first_day", self.period.first.isoformat()],
            ["period_last_day", self.period.last.isoformat()],
            ["time_zone", str(self.period.zone)],
            ["calls", self.total],
            ["finished_calls", self.finished],
            ["containment_pct", _pct(self.containment)],
            ["transfer_rate_pct", _pct(self.transfer_rate)],
            ["abandonment_pct", _pct(self.abandonment)],
            ["auth_failures", self.auth_failures],
            ["calls_with_auth_failures", self.auth_failed_calls],
            ["locks", self.locks],
            ["avg_handling_time_s", _round(self.avg_duration)],
            ["ratings", self.rated],
            ["satisfaction_pct", _pct(self.satisfaction)],
        ]


class Metrics:
    """Computes the dashboard from the call log."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @off_the_loop
    def dashboard(self, period: Period) -> Dashboard:
        """The dashboard for `period`."""
        in_period = period.where()
        label = outcomes.label()
        ids = sa.select(calls.c.call_sid).where(in_period)
        with self.engine.connect() as conn:
            by_label = {
                lbl: int(n)
                for lbl, n in conn.execute(
                    sa.select(label, sa.func.count()).where(in_period).group_by(label)
                )
            }
            durations = {
                lbl: float(avg)
                for lbl, avg in conn.execute(
                    sa.select(label, sa.func.avg(calls.c.duration))
                    .where(in_period, calls.c.duration.is_not(None))
                    .group_by(label)
                )
                if avg is not None
            }
            overall = conn.execute(
                sa.select(sa.func.avg(calls.c.duration)).where(
                    in_period, calls.c.duration.is_not(None)
                )
            ).scalar_one()
            starts = list(conn.execute(sa.select(calls.c.started_at).where(in_period)).scalars())
            funnel = self._funnel(conn, in_period, ids)
            failures, failed_calls, locks = self._auth(conn, ids)
            ratings = self._ratings(conn, ids)
        total = sum(by_label.values())
        return Dashboard(
            period=period,
            total=total,
            finished=total - by_label.get("in_progress", 0),
            by_label=by_label,
            hourly=_hourly(period, starts),
            funnel=funnel,
            auth_failures=failures,
            auth_failed_calls=failed_calls,
            locks=locks,
            avg_duration=None if overall is None else float(overall),
            avg_duration_by_label=durations,
            ratings=ratings,
        )

    def _funnel(
        self, conn: sa.Connection, in_period: sa.ColumnElement[bool], ids: sa.Select[tuple[str]]
    ) -> list[FunnelStep]:
        node = events.c.data["node"].as_string()
        reached: dict[str, int] = dict(
            conn.execute(
                sa.select(node, sa.func.count(sa.distinct(events.c.call_sid)))
                .where(events.c.kind == "menu", events.c.call_sid.in_(ids))
                .group_by(node)
            ).all()
        )
        abandoned: dict[str, int] = dict(
            conn.execute(
                sa.select(calls.c.last_node, sa.func.count())
                .where(in_period, outcomes.label() == "abandoned")
                .group_by(calls.c.last_node)
            ).all()
        )
        names = set(reached) | set(abandoned)
        steps = [
            FunnelStep(
                name or "(before any menu)", int(reached.get(name, 0)), int(abandoned.get(name, 0))
            )
            for name in names
            if name is not None
        ]
        return sorted(steps, key=lambda s: (-s.reached, -s.abandoned, s.node))

    def _auth(self, conn: sa.Connection, ids: sa.Select[tuple[str]]) -> tuple[int, int, int]:
        result = events.c.data["result"].as_string()
        rows = conn.execute(
            sa.select(result, sa.func.count(), sa.func.count(sa.distinct(events.c.call_sid)))
            .where(events.c.kind == "auth", events.c.call_sid.in_(ids))
            .group_by(result)
        ).all()
        failures = sum(int(n) for r, n, _ in rows if r in AUTH_FAILURES)
        locks = sum(int(n) for r, n, _ in rows if r == "locked")
        failed_calls = conn.execute(
            sa.select(sa.func.count(sa.distinct(events.c.call_sid))).where(
                events.c.kind == "auth", events.c.call_sid.in_(ids), result.in_(AUTH_FAILURES)
            )
        ).scalar_one()
        return failures, int(failed_calls), locks

    def _ratings(self, conn: sa.Connection, ids: sa.Select[tuple[str]]) -> dict[str, int]:
        data = conn.execute(
            sa.select(events.c.data).where(events.c.kind == "rating", events.c.call_sid.in_(ids))
        ).scalars()
        counted: Counter[str] = Counter()
        for entry in data:
            value = rating_value(entry)
            if value:
                counted[value] += 1
        return dict(counted)


def rating_value(data: object) -> str:
    """The rating a `rating` entry holds (`value`, or `score`/`rating`), as text."""
    if not isinstance(data, dict):
        return ""
    for name in ("value", "score", "rating"):
        value = data.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    return ""


def _positive(value: str) -> bool:
    if value.isdigit():
        return int(value) >= 4
    return value in POSITIVE_RATINGS


def _hourly(period: Period, starts: list[datetime.datetime]) -> list[tuple[datetime.datetime, int]]:
    """Calls per local hour over the whole period, hours without calls included."""
    counted: Counter[datetime.datetime] = Counter()
    for start in starts:
        aware = start if start.tzinfo else start.replace(tzinfo=datetime.UTC)
        local = aware.astimezone(period.zone)
        counted[local.replace(minute=0, second=0, microsecond=0)] += 1
    hours: list[tuple[datetime.datetime, int]] = []
    moment = period.start
    while moment < period.end:
        local = moment.astimezone(period.zone).replace(minute=0, second=0, microsecond=0)
        hours.append((local, counted.get(local, 0)))
        moment += datetime.timedelta(hours=1)
    return hours


def _pct(share: float | None) -> str:
    return "" if share is None else f"{share * 100:.1f}"


def _round(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"
