"""Who is asking: session cookies, sign-in and sign-out, CSRF tokens, the access guard.

Every request to the console passes `guard()`: without a live session a page
redirects to the sign-in page and an API answers 401; every unsafe method
(POST, ...) needs the session's CSRF token, in the form field `csrf_token` or
the `X-CSRF-Token` header. Only the sign-in page and static files are open.

The Flask session cookie is signed, HttpOnly, SameSite=Lax, limited to the
console's path, and Secure when the console is served over HTTPS. It carries a
random session id (rotated at every sign-in) and the CSRF token; who the
session belongs to is kept in Redis (`store.py`), so signing out ends it.
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, jsonify, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from werkzeug.wrappers import Response

from .accounts import Supervisor

if TYPE_CHECKING:
    from .console import Console

COOKIE = "ivr_supervisor"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
OPEN_ENDPOINTS = frozenset({"supervisor.login", "supervisor.static"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with the console's cookie rules."""

    def get_cookie_name(self, app: Flask) -> str:
        return COOKIE

    def get_cookie_path(self, app: Flask) -> str:
        return (request.script_root or "") + "/supervisor"

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Lax"

    def get_cookie_secure(self, app: Flask) -> bool:
        public = app.config.get("PUBLIC_BASE_URL") or ""
        return public.startswith("https://") or request.is_secure


def console() -> Console:
    """The console's parts, from the app."""
    found: Console = current_app.extensions["ivr.supervisor"]
    return found


def current() -> Supervisor:
    """The signed-in supervisor (only inside a guarded request)."""
    supervisor: Supervisor = g.supervisor
    return supervisor


def client_address() -> str:
    """The address the request came from (the proxy's, behind one that is not trusted)."""
    return request.remote_addr or "unknown"


def csrf_token() -> str:
    """This browser session's CSRF token (made when first needed)."""
    token = session.get("csrf")
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    """Whether the request carries this session's CSRF token."""
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and bool(expected) and hmac.compare_digest(expected, sent)


def guard() -> Response | None:
    """Before every console request: refuse it without a session or a right CSRF token."""
    if request.endpoint in OPEN_ENDPOINTS:
        if request.method not in SAFE_METHODS and not csrf_ok():
            abort(400, description="The form has expired; reload the page and try again.")
        return None
    supervisor = signed_in()
    if supervisor is None:
        if is_api():
            response = jsonify(error="sign in first")
            response.status_code = 401
            return response
        return redirect(url_for("supervisor.login", next=_here()))
    if request.method not in SAFE_METHODS and not csrf_ok():
        abort(400, description="The form has expired; reload the page and try again.")
    g.supervisor = supervisor
    return None


def sign_in(supervisor: Supervisor) -> None:
    """Open a new session: a fresh session id and CSRF token (nothing from before survives)."""
    old = session.get("sup")
    if isinstance(old, str):
        console().store.close_session(old)
    session.clear()
    session["sup"] = console().store.open_session(
        supervisor.id, supervisor.session_version, supervisor.username
    )
    session["csrf"] = secrets.token_urlsafe(32)


def sign_out() -> None:
    """End the session here and in Redis."""
    old = session.get("sup")
    if isinstance(old, str):
        console().store.close_session(old)
    session.clear()


def is_api() -> bool:
    """Whether this request is for the JSON API (401s rather than redirects)."""
    prefix = (request.script_root or "") + "/supervisor/api/"
    return (request.script_root + request.path).startswith(prefix)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path inside the console, never another site."""
    default = url_for("supervisor.calls")
    if not target:
        return default
    parts = urlsplit(target)
    root = (request.script_root or "") + "/supervisor/"
    if parts.scheme or parts.netloc or not parts.path.startswith(root) or "\\" in target:
        return default
    if parts.path.startswith(root + "api/"):
        return default
    return target


def signed_in() -> Supervisor | None:
    """The supervisor whose live session this request carries, or None."""
    session_id = session.get("sup")
    if not isinstance(session_id, str):
        return None
    parts = console()
    found = parts.store.session(session_id)
    if found is None:
        session.pop("sup", None)
        return None
    supervisor = parts.accounts.by_id(found.supervisor_id)
    if supervisor is None or supervisor.session_version != found.version:
        parts.store.close_session(session_id)  # removed, or the password changed since
        session.pop("sup", None)
        return None
    return supervisor


def _here() -> str:
    path = request.full_path if request.query_string else request.path
    return (request.script_root or "") + path
