"""The Twilio webhooks: thin. Check the signature, turn the form into an event, answer TwiML."""

from __future__ import annotations

import hmac
import re
import traceback
from collections.abc import Callable
from functools import wraps
from typing import TypeVar, cast

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException

from . import twiml
from .hotline import Hotline, Webhook
from .state import Event, Keys, NoInput, Recorded, Start, TransferEnded

bp = Blueprint("voice", __name__)

MAX_KEYS = 40  # an ID number and its finish key fit many times over
_NOT_A_KEY = re.compile(r"[^0-9*#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CALL_SID = re.compile(r"[A-Za-z0-9:._-]{1,64}")  # Twilio's CA…, Telnyx's v3:…, and the like

F = TypeVar("F", bound=Callable[..., Response])


def _hotline() -> Hotline:
    return cast(Hotline, current_app.extensions["ivr"])


def signed_url() -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL (behind a proxy) or this request's own, raw query."""
    base = current_app.config.get("PUBLIC_BASE_URL") or f"{request.scheme}://{request.host}"
    return f"{base}{request.script_root}{request.full_path}".removesuffix("?")


def twilio_signed(view: F) -> F:
    """Refuse (403) any request whose X-Twilio-Signature does not match."""

    @wraps(view)
    def checked(*args: object, **kwargs: object) -> Response:
        validator: RequestValidator | None = current_app.extensions.get("ivr.validator")
        params = request.form if request.method == "POST" else {}
        signature = request.headers.get("X-Twilio-Signature", "")
        if validator is None or not _signed(validator, signed_url(), params, signature):
            current_app.logger.warning("refused an unsigned or wrongly signed request to %s",
                                       request.path)  # fmt: skip
            abort(403)
        return view(*args, **kwargs)

    return cast(F, checked)


def _signed(validator: RequestValidator, url: str, params: object, signature: str) -> bool:
    """Whether `signature` signs the request. The URL as Twilio requested it is tried first
    (one HMAC, the usual case); only a mismatch goes on to the library's full check, which
    also tries the URL with and without its default port (Twilio signs either)."""
    computed = validator.compute_signature(url, params)
    if hmac.compare_digest(computed.encode(), signature.encode()):
        return True
    return bool(validator.validate(url, params, signature))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    """A bug must not reach the caller as Twilio's "application error": apologise, log the place."""
    if isinstance(exc, HTTPException):
        return cast(Response, exc.get_response())
    where = "".join(traceback.format_tb(exc.__traceback__))  # the code path, not the message
    current_app.logger.error("webhook %s failed with %s at\n%s", request.path, type(exc).__name__,
                             where)  # fmt: skip
    return _xml(_hotline().apology(request.script_root))


def _xml(body: str) -> Response:
    return Response(body, mimetype="text/xml")


def _field(name: str, limit: int) -> str:
    """A form field, cut to `limit` characters, without control characters (no database takes
    a NUL, and no real Twilio field holds one)."""
    return _CONTROL.sub("", request.form.get(name, "")[:limit])


def _call_sid() -> str:
    """The CallSid, or "" when there is none or it is not shaped like one (it names Redis keys,
    call-log rows and console URLs, so nothing else gets in)."""
    sid = request.form.get("CallSid", "")
    return sid if _CALL_SID.fullmatch(sid) else ""


def _number(name: str, default: int) -> int:
    """A form field holding a count of seconds or a position; `default` unless plain digits."""
    raw = request.form.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else default


def _keys() -> str:
    """The keys the caller pressed, cleaned: only telephone keys, never an absurd length."""
    return _NOT_A_KEY.sub("?", request.form.get("Digits", "")[:MAX_KEYS])


def _answer(seq: int, event: Event) -> Response:
    hotline = _hotline()
    call_sid = _call_sid()
    if not call_sid:
        return _xml(hotline.apology(request.script_root))
    hook = Webhook(call_sid, seq, _field("From", 32), request.script_root)
    return _xml(hotline.answer(hook, event))


@bp.post("/voice")
@twilio_signed
def incoming() -> Response:
    """A call comes in."""
    return _answer(0, Start())


@bp.post("/voice/in/<int:seq>")
@twilio_signed
def keys(seq: int) -> Response:
    """The caller pressed keys at step `seq`."""
    pressed = _keys()
    return _answer(seq, Keys(pressed) if pressed else NoInput())


@bp.post("/voice/silence/<int:seq>")
@twilio_signed
def silence(seq: int) -> Response:
    """The Gather of step `seq` timed out."""
    return _answer(seq, NoInput())


@bp.post("/voice/transfer/<int:seq>")
@twilio_signed
def transfer(seq: int) -> Response:
    """The agent leg of step `seq` ended (Dial action or Enqueue action)."""
    status = _field("DialCallStatus", 32) or _field("QueueResult", 32) or "completed"
    return _answer(seq, TransferEnded(status))


@bp.post("/voice/recorded/<int:seq>")
@twilio_signed
def recorded(seq: int) -> Response:
    """The voice message of step `seq` was recorded."""
    url = _field("RecordingUrl", 500)
    seconds = _number("RecordingDuration", 0)
    return _answer(seq, Recorded(url, seconds) if url and seconds > 0 else NoInput())


@bp.post("/voice/wait/<lang>")
@twilio_signed
def wait(lang: str) -> Response:
    """The agent queue's hold TwiML: the caller's position and the expected wait."""
    return _xml(_hotline().hold(lang, _number("QueuePosition", 1), _number("AvgQueueTime", 0)))


@bp.post("/voice/recover")
@twilio_signed
def recover() -> Response:
    """The apology's keys: try again, or a person."""
    return _xml(_hotline().recover(request.script_root, _keys(), _call_sid()))


@bp.post("/voice/status")
@twilio_signed
def status() -> Response:
    """The call's status callback: record how it ended."""
    duration = _number("CallDuration", -1)
    _hotline().status(_call_sid(), _field("CallStatus", 32), duration if duration >= 0 else None)
    return _xml(twiml.empty())
