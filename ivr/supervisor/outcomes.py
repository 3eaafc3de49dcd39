"""What happened to a call, in the words supervisors use, as one SQL expression.

The call log's summary row says how a call ended technically (`outcome`:
transferred, completed by the hotline's goodbye, abandoned by the caller, or a
carrier status) and the last authentication result (`auth`). Supervisors ask
other questions: did the caller get served without a person, get stuck, fail to
prove who they are? `label()` answers with exactly one of `LABELS` per call, the
first rule that matches, so the list, its filter and the dashboard always agree.
"""

from __future__ import annotations

import sqlalchemy as sa

from ..calllog import calls

LABELS = {
    "self_service": "completed self-service",
    "transferred": "transferred",
    "abandoned": "abandoned",
    "failed_auth": "failed authentication",
    "locked": "ID number locked",
    "not_connected": "not connected",
    "in_progress": "in progress",
}
FAILED_AUTH = ("wrong", "invalid_id")
CARRIER_FAILURES = ("busy", "failed", "no-answer", "canceled")
# The summary outcomes the call log writes; anything else (a newer kind) is shown as it is.
KNOWN_OUTCOMES = ("in-progress", "transferred", "completed", "abandoned", *CARRIER_FAILURES)


def label() -> sa.ColumnElement[str]:
    """The label of each row of `call_log_calls`:

    1. transferred: reached the agents' line (whatever happened before);
    2. in_progress: no final status yet;
    3. an outcome this console does not know: that outcome, as written;
    4. locked: the ID number was (or became) locked;
    5. self_service: authenticated, so the caller heard their account data;
    6. failed_auth: the last ID or PIN attempt was wrong and the caller gave up;
    7. not_connected: the carrier reports busy, failed, no-answer or canceled;
    8. abandoned: anything else: the caller hung up (or went silent) unserved.
    """
    c = calls.c
    return sa.case(
        (c.outcome == "transferred", sa.literal("transferred")),
        (c.ended_at.is_(None), sa.literal("in_progress")),
        (c.outcome.not_in(KNOWN_OUTCOMES), c.outcome),
        (c.auth == "locked", sa.literal("locked")),
        (c.auth == "ok", sa.literal("self_service")),
        (c.auth.in_(FAILED_AUTH), sa.literal("failed_auth")),
        (c.outcome.in_(CARRIER_FAILURES), sa.literal("not_connected")),
        else_=sa.literal("abandoned"),
    )


def describe(value: str) -> str:
    """A label in words (an unknown one as it is)."""
    return LABELS.get(value, value.replace("_", " ").replace("-", " "))
