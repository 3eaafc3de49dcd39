"""The Twilio webhooks: thin. Check the signature, turn the form into an event, answer TwiML."""

from __future__ import annotations

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
        if validator is None or not validator.validate(signed_url(), params, signature):
            current_app.logger.warning("refused an unsigned or wrongly signed request to %s",
                                       request.path)  # fmt: skip
            abort(403)
        return view(*args, **kwargs)

    return cast(F, checked)


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


def _keys() -> str:
    """The keys the caller pressed, cleaned: only telephone keys, never an absurd length."""
    return _NOT_A_KEY.sub("?", request.form.get("Digits", "")[:MAX_KEYS])


def _answer(seq: int, event: Event) -> Response:
    hotline = _hotline()
    call_sid = request.form.get("CallSid", "")[:64]
    if not call_sid:
        return _xml(hotline.apology(request.script_root))
    hook = Webhook(call_sid, seq, request.form.get("From", "")[:32], request.script_root)
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
    status = request.form.get("DialCallStatus") or request.form.get("QueueResult") or "completed"
    return _answer(seq, TransferEnded(status[:32]))


@bp.post("/voice/recorded/<int:seq>")
@twilio_signed
def recorded(seq: int) -> Response:
    """The voice message of step `seq` was recorded."""
    url = request.form.get("RecordingUrl", "")[:500]
    duration = request.form.get("RecordingDuration", "")
    seconds = int(duration) if duration.isdigit() else 0
    return _answer(seq, Recorded(url, seconds) if url and seconds > 0 else NoInput())


@bp.post("/voice/wait/<lang>")
@twilio_signed
def wait(lang: str) -> Response:
    """The agent queue's hold TwiML: the caller's position and the expected wait."""
    position = request.form.get("QueuePosition", "")
    average = request.form.get("AvgQueueTime", "")
    return _xml(_hotline().hold(lang, int(position) if position.isdigit() else 1,
                                int(average) if average.isdigit() else 0))  # fmt: skip


@bp.post("/voice/recover")
@twilio_signed
def recover() -> Response:
    """The apology's keys: try again, or a person."""
    return _xml(_hotline().recover(request.script_root, _keys()))


@bp.post("/voice/status")
@twilio_signed
def status() -> Response:
    """The call's status callback: record how it ended."""
    duration = request.form.get("CallDuration", "")
    _hotline().status(
        request.form.get("CallSid", "")[:64],
        request.form.get("CallStatus", "")[:32],
        int(duration) if duration.isdigit() else None,
    )
    return _xml(twiml.empty())
