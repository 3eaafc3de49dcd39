"""The Twilio webhooks: thin. Check the signature, turn the form into an event, answer TwiML.

They are a WSGI app of their own, mounted in front of the Flask app (`mount`): every request
under /voice comes here, everything else (the console, /metrics, /healthz) goes on to Flask.
A webhook is a small signed form POST answered by a few hundred bytes of XML, thousands a
second; Flask's per-request machinery (request and app contexts, blueprint dispatch, the
form parser, response objects) cost a fifth of a webhook's CPU for nothing these routes use.
Werkzeug, the library under Flask, still does what is worth a library: routing, the form's
multi-dict and the HTTP errors.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import Forbidden, HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.wsgi import get_host
from yarl import query_to_pairs

from . import twiml
from .hotline import Hotline, Webhook
from .state import Event, Keys, NoInput, Recorded, Start, TransferEnded

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("ivr.voice")

PREFIX = "/voice"
MAX_BODY = 500_000  # bytes of form, as Flask allows; Twilio's largest is a few kilobytes
MAX_KEYS = 40  # an ID number and its finish key fit many times over
_NOT_A_KEY = re.compile(r"[^0-9*#]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CALL_SID = re.compile(r"[A-Za-z0-9:._-]{1,64}")  # Twilio's CA…, Telnyx's v3:…, and the like
_HEADERS = [("Content-Type", twiml.CONTENT_TYPE)]


class Observer(Protocol):
    """What the metrics want to know of each webhook (`ivr.metrics.Metrics`)."""

    def webhook(self, route: str, seconds: float) -> None:
        """A webhook of `route` was answered in `seconds`."""


class Form(MultiDict[str, str]):
    """The webhook's form: werkzeug's multi-dict, also under aiohttp's name for all of a
    field's values, which twilio's signature check asks for first (the other name costs it an
    exception for every field)."""

    getall = MultiDict.getlist


@dataclass(frozen=True, slots=True)
class Request:
    """A webhook as the handlers see it: its form and where the app's URLs start."""

    form: Form
    base: str  # the app's script root, for the URLs in the reply

    def field(self, name: str, limit: int) -> str:
        """A form field, cut to `limit` characters, without control characters (no database
        takes a NUL, and no real Twilio field holds one)."""
        return _CONTROL.sub("", self.form.get(name, "")[:limit])

    def call_sid(self) -> str:
        """The CallSid, or "" when there is none or it is not shaped like one (it names Redis
        keys, call-log rows and console URLs, so nothing else gets in)."""
        sid = self.form.get("CallSid", "")
        return sid if _CALL_SID.fullmatch(sid) else ""

    def number(self, name: str, default: int) -> int:
        """A field holding a count of seconds or a position; `default` unless plain digits."""
        raw = self.form.get(name, "")
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else default

    def keys(self) -> str:
        """The keys the caller pressed, cleaned: only telephone keys, never an absurd length."""
        return _NOT_A_KEY.sub("?", self.form.get("Digits", "")[:MAX_KEYS])


Handler = Callable[..., str]


def _answer(hotline: Hotline, req: Request, seq: int, event: Event) -> str:
    call_sid = req.call_sid()
    if not call_sid:
        return hotline.apology(req.base)
    return hotline.answer(Webhook(call_sid, seq, req.field("From", 32), req.base), event)


def incoming(hotline: Hotline, req: Request) -> str:
    """A call comes in."""
    return _answer(hotline, req, 0, Start())


def keys(hotline: Hotline, req: Request, seq: int) -> str:
    """The caller pressed keys at step `seq`."""
    pressed = req.keys()
    return _answer(hotline, req, seq, Keys(pressed) if pressed else NoInput())


def silence(hotline: Hotline, req: Request, seq: int) -> str:
    """The Gather of step `seq` timed out."""
    return _answer(hotline, req, seq, NoInput())


def transfer(hotline: Hotline, req: Request, seq: int) -> str:
    """The agent leg of step `seq` ended (Dial action or Enqueue action)."""
    status = req.field("DialCallStatus", 32) or req.field("QueueResult", 32) or "completed"
    return _answer(hotline, req, seq, TransferEnded(status))


def recorded(hotline: Hotline, req: Request, seq: int) -> str:
    """The voice message of step `seq` was recorded."""
    url = req.field("RecordingUrl", 500)
    seconds = req.number("RecordingDuration", 0)
    return _answer(hotline, req, seq, Recorded(url, seconds) if url and seconds > 0 else NoInput())


def wait(hotline: Hotline, req: Request, lang: str) -> str:
    """The agent queue's hold TwiML: the caller's position and the expected wait."""
    return hotline.hold(lang, req.number("QueuePosition", 1), req.number("AvgQueueTime", 0))


def recover(hotline: Hotline, req: Request) -> str:
    """The apology's keys: try again, or a person."""
    return hotline.recover(req.base, req.keys(), req.call_sid())


def status(hotline: Hotline, req: Request) -> str:
    """The call's status callback: record how it ended."""
    duration = req.number("CallDuration", -1)
    hotline.status(req.call_sid(), req.field("CallStatus", 32), duration if duration >= 0 else None)
    return twiml.empty()


ROUTES = Map(
    [
        Rule(PREFIX, endpoint=incoming, methods=["POST"]),
        Rule(f"{PREFIX}/in/<int:seq>", endpoint=keys, methods=["POST"]),
        Rule(f"{PREFIX}/silence/<int:seq>", endpoint=silence, methods=["POST"]),
        Rule(f"{PREFIX}/transfer/<int:seq>", endpoint=transfer, methods=["POST"]),
        Rule(f"{PREFIX}/recorded/<int:seq>", endpoint=recorded, methods=["POST"]),
        Rule(f"{PREFIX}/wait/<lang>", endpoint=wait, methods=["POST"]),
        Rule(f"{PREFIX}/recover", endpoint=recover, methods=["POST"]),
        Rule(f"{PREFIX}/status", endpoint=status, methods=["POST"]),
    ],
    strict_slashes=False,
)


class Webhooks:
    """The webhooks' WSGI app: route, check the signature, answer; never Twilio's
    "application error" for a bug (the apology instead, the code path logged)."""

    def __init__(
        self,
        hotline: Hotline,
        validator: RequestValidator | None,
        public_base_url: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.hotline = hotline
        self.validator = validator  # None: no signing token, every webhook is refused
        self.public_base_url = public_base_url
        self.observer = observer
        # The routes name no host and no scheme: one adapter matches every request's path
        # (binding one to each request's environ cost more than the match itself).
        self._routes = ROUTES.bind("hotline")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        try:
            rule, args = self._routes.match(
                environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET"),
                return_rule=True,
            )  # fmt: skip
        except HTTPException as exc:  # no such webhook (404), or not a POST (405)
            return exc(environ, start_response)
        try:
            body = self._handle(rule.endpoint, self._request(environ), args, environ)
        except HTTPException as exc:  # refused: unsigned (403), too large (413)
            answer: Iterable[bytes] = exc(environ, start_response)
        else:
            start_response("200 OK", [*_HEADERS, ("Content-Length", str(len(body)))])
            answer = [body]
        if self.observer is not None:  # every webhook of a route, refused ones too
            self.observer.webhook(rule.rule, time.perf_counter() - started)
        return answer

    def _request(self, environ: WSGIEnvironment) -> Request:
        length = environ.get("CONTENT_LENGTH") or "0"
        size = int(length) if length.isdigit() else 0
        if size > MAX_BODY:
            raise RequestEntityTooLarge()
        form = Form()
        kind = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if size and kind == "application/x-www-form-urlencoded":
            raw = environ["wsgi.input"].read(size).decode("utf-8", "replace")
            form = Form(query_to_pairs(raw))  # as parse_qsl, unquoted in C: a third the cost
        return Request(form, environ.get("SCRIPT_NAME", "").rstrip("/"))

    def _handle(
        self, handler: Handler, req: Request, args: Mapping[str, Any], environ: WSGIEnvironment
    ) -> bytes:
        signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
        url = self.signed_url(environ)
        if self.validator is None or not _signed(self.validator, url, req.form, signature):
            log.warning("refused an unsigned or wrongly signed request to %s",
                        environ.get("PATH_INFO", ""))  # fmt: skip
            raise Forbidden()
        try:
            return handler(self.hotline, req, **args).encode()
        except Exception as exc:
            where = "".join(traceback.format_tb(exc.__traceback__))  # the code path, not the text
            log.error("webhook %s failed with %s at\n%s", environ.get("PATH_INFO", ""),
                      type(exc).__name__, where)  # fmt: skip
            return self.hotline.apology(req.base).encode()

    def signed_url(self, environ: WSGIEnvironment) -> str:
        """The URL Twilio signed: PUBLIC_BASE_URL (behind a proxy) or this request's own,
        with its raw query."""
        base = self.public_base_url or f"{environ['wsgi.url_scheme']}://{get_host(environ)}"
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        query = environ.get("QUERY_STRING", "")
        return f"{base}{environ.get('SCRIPT_NAME', '')}{path}" + (f"?{query}" if query else "")


def _signed(validator: RequestValidator, url: str, params: object, signature: str) -> bool:
    """Whether `signature` signs the request. The URL as Twilio requested it is tried first
    (one HMAC, the usual case); only a mismatch goes on to the library's full check, which
    also tries the URL with and without its default port (Twilio signs either)."""
    computed = validator.compute_signature(url, params)
    if hmac.compare_digest(computed.encode(), signature.encode()):
        return True
    return bool(validator.validate(url, params, signature))


def mount(webhooks: WSGIApplication, rest: WSGIApplication) -> WSGIApplication:
    """One WSGI app: requests under /voice to `webhooks`, the others to `rest` (Flask)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PREFIX or path.startswith(PREFIX + "/"):
            return webhooks(environ, start_response)
        return rest(environ, start_response)

    return app
