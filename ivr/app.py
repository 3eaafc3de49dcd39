"""The application factory: settings in, a wired Flask app out."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from flask import Flask, Response, jsonify
from twilio.request_validator import RequestValidator

from services.accounts.breaker import CircuitBreaker
from services.accounts.client import AccountsClient, HttpAccounts, LocalAccounts
from services.accounts.db import create_tables, make_engine
from services.accounts.store import AccountStore

from . import calllog, catalog, embedded, hours, menu, metrics, store, supervisor, twiml, voice
from .callbacks import Callbacks
from .config import Settings
from .hotline import Hotline

log = logging.getLogger("ivr")


def create_app(
    settings: Settings | None = None,
    *,
    accounts: AccountsClient | None = None,
    redis_client: Any = None,
) -> Flask:
    """Build the hotline: Redis, the database, the account service and the webhooks."""
    settings = settings or Settings.from_env()
    _log_to_stderr()
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.config.update(SECRET_KEY=settings.secret_key, PUBLIC_BASE_URL=settings.public_base_url)
    _warn_about_signing(settings)
    if redis_client is None:
        url = settings.redis_url or embedded.ensure(settings.instance_path)
        redis_client = store.connect(url, settings.redis_timeout)
    engine = make_engine(settings.database_url)
    if accounts is None:
        accounts = _accounts(settings, engine)
    log_ = calllog.CallLog(engine, caller_key=_caller_key(settings.pin_pepper))
    _create_schema(log_.create_schema)
    app.extensions["ivr"] = Hotline(
        menu.load(),
        catalog.load(),
        store.Store(
            redis_client, settings.call_ttl, limits=_limits(settings),
            cooldown=settings.redis_cooldown,
        ),
        accounts,
        log_,
        pepper=settings.pin_pepper,
        agents=twiml.Agents(queue=settings.agent_queue, number=settings.agent_number),
        hours=hours.parse(settings.agent_hours, settings.timezone, settings.holidays),
        callbacks=Callbacks(engine),
        timezone=settings.timezone,
        caller_key=_caller_key(settings.pin_pepper),
    )
    app.extensions["ivr.settings"] = settings
    app.extensions["ivr.engine"] = engine
    supervisor.init_app(
        app,
        engine=engine,
        redis_client=redis_client,
        calllog=log_,
        caller_key=_caller_key(settings.pin_pepper),
        timezone=settings.timezone,
        create_schema=_create_schema,
        catch_up=app.extensions["ivr"].outbox.catch_up,
    )
    app.add_url_rule("/healthz", "healthz", _healthz)
    observer = metrics.init_app(app, settings.metrics_token)
    validator = RequestValidator(settings.signing_token) if settings.signing_token else None
    webhooks = voice.Webhooks(app.extensions["ivr"], validator, settings.public_base_url, observer)
    app.wsgi_app = voice.mount(webhooks, app.wsgi_app)  # type: ignore[method-assign,assignment]
    return app


def _accounts(settings: Settings, engine: sa.Engine) -> AccountsClient:
    if settings.accounts_url:
        breaker = CircuitBreaker(settings.accounts_breaker_failures,
                                 settings.accounts_breaker_cooldown)  # fmt: skip
        return HttpAccounts(settings.accounts_url, settings.accounts_timeout,
                            settings.accounts_token, breaker)  # fmt: skip
    accounts = AccountStore(engine, settings.pin_pepper)
    _create_schema(accounts.create_schema)
    return LocalAccounts(accounts)


def _limits(settings: Settings) -> store.Limits:
    return store.Limits(settings.limit_window, settings.limit_caller_calls,
                        settings.limit_caller_ids, settings.limit_id_checks)  # fmt: skip


def _create_schema(create: Any) -> None:
    """Create tables (a second worker racing the first just finds them made). A database that
    does not answer does not stop the hotline: callers hear apologies until it is back."""
    try:
        create_tables(create)
    except sa.exc.SQLAlchemyError as exc:
        log.error("could not create the database tables (%s); is DATABASE_URL right "
                  "and the database up?", type(exc).__name__)  # fmt: skip


def _caller_key(pepper: str) -> Any:
    import hashlib
    import hmac

    def key(number: str) -> str:
        return hmac.new(pepper.encode(), b"caller:" + number.encode(), hashlib.sha256).hexdigest()

    return key


def _log_to_stderr() -> None:
    """Unless logging is configured already (a root handler: pytest, a --log-config), the
    hotline's warnings and errors go to stderr with their time, process and level, beside
    gunicorn's own lines (alerts such as the PIN-guessing limits are WARNING lines)."""
    if logging.getLogger().handlers or log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S %z"
    ))  # fmt: skip
    log.addHandler(handler)


def _warn_about_signing(settings: Settings) -> None:
    if settings.dev_mode:
        log.warning(
            "DEVELOPMENT MODE: webhooks are checked against the local token in %s, "
            "not a Twilio auth token. Never run a public number like this.",
            settings.instance_path / "dev-auth-token",
        )
    elif not settings.signing_token:
        log.error(
            "TWILIO_AUTH_TOKEN is not set: every webhook will be refused with 403. "
            "Set it to your Twilio auth token (or IVR_DEV_MODE=1 for local development)."
        )


def _healthz() -> Response:
    from flask import current_app

    hotline: Hotline = current_app.extensions["ivr"]
    checks = {"redis": "ok", "database": "ok"}
    try:
        hotline.store.redis.ping()
    except Exception as exc:
        checks["redis"] = type(exc).__name__
    try:
        with current_app.extensions["ivr.engine"].connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        checks["database"] = type(exc).__name__
    healthy = all(v == "ok" for v in checks.values())
    response = jsonify(status="ok" if healthy else "degraded", **checks)
    response.status_code = 200 if healthy else 503
    return response
