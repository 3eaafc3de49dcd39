"""The supervisor console (SPEC 8): calls, their timelines and replays, callbacks, a dashboard.

`init_app` wires it into the hotline's app: the `/supervisor` blueprint, its
tables (supervisors, audit trail), its Redis sessions and throttles.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from flask import Flask
from itsdangerous import URLSafeTimedSerializer

from ..calllog import CallLog
from .accounts import SupervisorAccounts
from .audio import Speech
from .audit import AuditTrail
from .auth import ConsoleSessionInterface
from .callbacks import CallbackRequests, StoredCallbacks
from .calls import CallFinder
from .console import Console
from .metrics import Metrics
from .store import ConsoleStore, Limits

__all__ = ["Console", "init_app"]


def init_app(
    app: Flask,
    *,
    engine: sa.Engine,
    redis_client: redis.Redis,
    calllog: CallLog,
    caller_key: Callable[[str], str],
    timezone: str,
    create_schema: Callable[[Callable[[], Any]], None],
    callbacks: CallbackRequests | None = None,
    limits: Limits | None = None,
    espeak: str | None = None,
    catch_up: Callable[[], object] = lambda: True,
) -> Console:
    """Add the console to `app` (its tables are made with `create_schema`)."""
    from .views import bp

    accounts, audit = SupervisorAccounts(engine), AuditTrail(engine)
    create_schema(accounts.create_schema)
    create_schema(audit.create_schema)
    zone = zoneinfo.ZoneInfo(timezone)
    console = Console(
        accounts=accounts,
        audit=audit,
        store=ConsoleStore(redis_client, limits=limits),
        calls=CallFinder(engine, caller_key, zone),
        calllog=calllog,
        metrics=Metrics(engine),
        speech=Speech(Path(app.instance_path) / "supervisor-audio", espeak),
        callbacks=callbacks or StoredCallbacks(engine),
        zone=zone,
        signer=URLSafeTimedSerializer(app.secret_key or "", salt="ivr.supervisor.replay"),
        catch_up=catch_up,
    )
    app.extensions["ivr.supervisor"] = console
    app.session_interface = ConsoleSessionInterface()
    app.register_blueprint(bp)
    return console
