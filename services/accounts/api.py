"""The account service's own small JSON API, served by `create_app()` (the HttpAccounts peer).

    POST /v1/pin-checks                          {"id_digest", "pin"} -> {"ok", "account_id"}
    GET  /v1/accounts/<id>/balance|transactions|contributions|card
    POST /v1/accounts/<id>/card/loss-reports     -> {"outcome"}
    GET  /healthz

With a token, every /v1 request needs `Authorization: Bearer <token>`. Errors are
`{"error": "..."}` with 400, 401, 404 or 503; never a traceback, a PIN or an ID number.
"""

from __future__ import annotations

import hmac
import logging
import traceback
from typing import Any

from flask import Blueprint, Flask, current_app, request
from werkzeug.exceptions import HTTPException

from .client import LocalAccounts
from .db import create_tables, make_engine
from .errors import AccountsUnavailable, NotFound
from .store import AccountStore

log = logging.getLogger(__name__)

Answer = tuple[dict[str, Any], int]

bp = Blueprint("accounts", __name__)


def _accounts() -> LocalAccounts:
    accounts: LocalAccounts = current_app.extensions["accounts"]
    return accounts


@bp.before_request
def _require_token() -> Answer | None:
    token: str | None = current_app.config["ACCOUNTS_TOKEN"]
    if token is None or request.path == "/healthz":
        return None
    given = request.headers.get("Authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    return {"error": "unauthorized"}, 401


@bp.get("/healthz")
def healthz() -> Answer:
    """200 when the database answers, else 503."""
    _accounts().ping()
    return {"status": "ok"}, 200


@bp.post("/v1/pin-checks")
def pin_check() -> Answer:
    """Check a PIN for an ID-number digest."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not all(
        isinstance(body.get(name), str) for name in ("id_digest", "pin")
    ):
        return {"error": "expected a JSON object with string fields id_digest and pin"}, 400
    return _accounts().verify_pin(body["id_digest"], body["pin"]).to_json(), 200


@bp.get("/v1/accounts/<int:account_id>/balance")
def balance(account_id: int) -> Answer:
    """The balance."""
    return _accounts().balance(account_id).to_json(), 200


@bp.get("/v1/accounts/<int:account_id>/transactions")
def transactions(account_id: int) -> Answer:
    """Recent transactions, newest first."""
    return {"transactions": [t.to_json() for t in _accounts().transactions(account_id)]}, 200


@bp.get("/v1/accounts/<int:account_id>/contributions")
def contributions(account_id: int) -> Answer:
    """Contribution records, newest month first."""
    return {"contributions": [c.to_json() for c in _accounts().contributions(account_id)]}, 200


@bp.get("/v1/accounts/<int:account_id>/card")
def card(account_id: int) -> Answer:
    """The card's last 4 characters and status."""
    return _accounts().card(account_id).to_json(), 200


@bp.post("/v1/accounts/<int:account_id>/card/loss-reports")
def report_card_lost(account_id: int) -> Answer:
    """Report the card lost: suspend it if it is active."""
    return _accounts().report_card_lost(account_id).to_json(), 200


@bp.app_errorhandler(NotFound)
def _not_found(_exc: NotFound) -> Answer:
    return {"error": "not found"}, 404


@bp.app_errorhandler(AccountsUnavailable)
def _unavailable(exc: AccountsUnavailable) -> Answer:
    log.warning("accounts unavailable on %s: %s", request.path, exc)
    return {"error": "account service unavailable"}, 503


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Answer:
    return {"error": (exc.name or "error").lower()}, exc.code or 500


@bp.app_errorhandler(Exception)
def _internal_error(exc: Exception) -> Answer:
    # The kind and place only: an exception's text may quote a value (a PIN, say).
    where = traceback.extract_tb(exc.__traceback__)[-1]
    log.error(
        "internal error on %s: %s at %s:%s",
        request.path,
        type(exc).__name__,
        where.filename,
        where.lineno,
    )
    return {"error": "internal error"}, 500


def create_app(store: AccountStore | None = None, token: str | None = None) -> Flask:
    """The API app; without a store, one (schema created) and the token come from the
    environment."""
    if store is None:
        from ivr.config import Settings  # here: importing `ivr` loads the whole hotline app

        settings = Settings.from_env()
        store = AccountStore(make_engine(settings.database_url), settings.pin_pepper)
        create_tables(store.create_schema)  # other workers may be creating them too
        token = token or settings.accounts_token
    app = Flask(__name__)
    app.config.update(ACCOUNTS_TOKEN=token or None, MAX_CONTENT_LENGTH=4096)
    app.extensions["accounts"] = LocalAccounts(store)
    app.extensions["accounts.store"] = store
    app.register_blueprint(bp)
    return app
