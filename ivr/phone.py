"""A Twilio-faithful phone: calls a voice webhook as Twilio does and runs the TwiML verb by verb.

`Call.run()` is a generator: it performs every HTTP exchange and every verb itself and yields
only where the caller must decide something (a `GatherWait`, `DialWait`, `EnqueueWait` or
`RecordWait`); the caller's answer is sent back in. `drive()` runs a call against a `Caller`
object (the `ivr call` console phone); the test simulator steps the generator directly.
Time is virtual: speech, pauses and timeouts advance `Call.t`, nothing sleeps.
"""

from __future__ import annotations

import math
import re
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Protocol, TextIO
from urllib.parse import urldefrag, urlencode, urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from twilio.request_validator import RequestValidator

FORM_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"
TWIML_TYPES = frozenset({"text/xml", "application/xml", "text/html"})
MAX_TWIML_BYTES = 64 * 1024
KEYS = frozenset("0123456789*#")
DIAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
QUEUE_RESULTS = frozenset({"bridged", "hangup", "leave", "queue-full", "redirected", "error"})
APPLICATION_ERROR = "We are sorry, an application error has occurred. Goodbye."
SSML_TAGS = frozenset(
    {"break", "emphasis", "lang", "p", "phoneme", "prosody", "s", "say-as", "sub", "w"}
)
_VERBS = """
Say: voice language loop
Play: loop digits
Pause: length
Gather: action method timeout finishOnKey numDigits input actionOnEmptyResult partialResultCallback
  partialResultCallbackMethod language hints speechTimeout speechModel enhanced profanityFilter
  bargeIn maxSpeechTime debug
Redirect: method
Hangup:
Reject: reason
Leave:
Dial: action method timeout timeLimit callerId hangupOnStar record trim answerOnBridge ringTone
  recordingStatusCallback recordingStatusCallbackMethod recordingStatusCallbackEvent recordingTrack
  sequential referUrl referMethod events
Enqueue: action method waitUrl waitUrlMethod workflowSid maxQueueSize
Record: action method timeout finishOnKey maxLength playBeep trim transcribe transcribeCallback
  recordingStatusCallback recordingStatusCallbackMethod recordingStatusCallbackEvent storageUrl
  storageUrlMethod
"""
ATTRIBUTES: Mapping[str, frozenset[str]] = {
    verb.strip(): frozenset(names.split())
    for verb, _, names in (
        entry.partition(":") for entry in _VERBS.replace("\n  ", " ").split("\n")
    )
    if verb.strip()
}
UNSIMULATED = frozenset(
    {"Connect", "Pay", "Refer", "Sms", "Start", "Stop", "Prompt", "Echo", "Queue"}
)
GEO_FIELDS = tuple(
    f"{who}{what}"
    for who in ("From", "To", "Caller", "Called")
    for what in ("City", "State", "Zip", "Country")
)
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def sign(token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature of a request: POST body params, or {} for GET (params in `url`)."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def speech_seconds(text: str) -> float:
    """How long TTS takes to say `text`: 0.25 s per CJK character, 150 words a minute otherwise."""
    return 0.25 * len(_CJK.findall(text)) + 0.4 * len(_CJK.sub(" ", text).split())


# ---- what the caller hears ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Say:
    """A <Say>: whitespace-collapsed text as spoken."""

    text: str
    voice: str = "man"
    language: str = "en-US"
    loop: int = 1

    @property
    def seconds(self) -> float:
        """Virtual playing time."""
        return speech_seconds(self.text) * max(self.loop, 1)


@dataclass(frozen=True, slots=True)
class Play:
    """A <Play>: an audio URL (never fetched) or DTMF `digits` sent down the line."""

    url: str
    loop: int = 1
    digits: str = ""
    clip: float = 5.0

    @property
    def seconds(self) -> float:
        """Virtual playing time: `clip` seconds per loop, or 0.5 s per `w` and 0.1 s per digit."""
        if self.digits:
            return 0.5 * self.digits.count("w") + 0.1 * len(self.digits.replace("w", ""))
        return self.clip * max(self.loop, 1)


@dataclass(frozen=True, slots=True)
class Pause:
    """A <Pause>."""

    length: float = 1.0

    @property
    def seconds(self) -> float:
        """Virtual silence."""
        return self.length


Prompt = Say | Play | Pause


# ---- where the call waits for the caller, and the caller's answers ------------------------------


@dataclass(frozen=True, slots=True)
class GatherWait:
    """A <Gather> waiting for DTMF: its effective attributes and the prompts nested in it."""

    action: str
    method: str = "POST"
    timeout: int = 5
    finish_on_key: str = "#"
    num_digits: int | None = None
    action_on_empty_result: bool = False
    prompts: tuple[Prompt, ...] = ()

    def split(self, keys: str) -> tuple[str, str, str]:
        """Split pressed keys into (Digits, FinishedOnKey, keys left over after input ended)."""
        digits = ""
        for i, key in enumerate(keys):
            if self.finish_on_key and key == self.finish_on_key:
                return digits, key, keys[i + 1 :]
            digits += key
            if self.num_digits is not None and len(digits) >= self.num_digits:
                return digits, "", keys[i + 1 :]
        return digits, "", ""

    @property
    def hint(self) -> str:
        """What input ends this Gather, e.g. '4 digits' or 'digits, end with #'."""
        n = self.num_digits
        parts = [f"{n} digit{'s' if n != 1 else ''}" if n else "digits"]
        if self.finish_on_key:
            parts.append(f"end with {self.finish_on_key}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class DialWait:
    """A <Dial> ringing its target (a number, or `kind` client/sip/conference/queue)."""

    target: str
    kind: str = "number"
    action: str | None = None
    method: str = "POST"
    timeout: int = 30
    time_limit: int = 14400


@dataclass(frozen=True, slots=True)
class EnqueueWait:
    """An <Enqueue> caller in `queue`, asked before each waitUrl poll (`polls` done so far)."""

    queue: str
    polls: int
    waited: float
    wait_url: str | None = None


@dataclass(frozen=True, slots=True)
class RecordWait:
    """A <Record> waiting for the caller's message."""

    action: str
    method: str = "POST"
    timeout: int = 5
    finish_on_key: str = "1234567890*#"
    max_length: int = 3600


Wait = GatherWait | DialWait | EnqueueWait | RecordWait


@dataclass(frozen=True, slots=True)
class Press:
    """Keys for a Gather: pressed during its first prompt (`barge_in`) or after all prompts."""

    keys: str
    barge_in: bool = False

    def __post_init__(self) -> None:
        if not self.keys or set(self.keys) - KEYS:
            raise ValueError(f"keys must be a non-empty string of 0-9 * #, got {self.keys!r}")


@dataclass(frozen=True, slots=True)
class DialResult:
    """How a <Dial> ends: `completed` after `duration` seconds of talk, or busy/no-answer/…"""

    status: str = "completed"
    duration: int = 60

    def __post_init__(self) -> None:
        if self.status not in DIAL_STATUSES:
            raise ValueError(
                f"dial status must be one of {sorted(DIAL_STATUSES)}, got {self.status!r}"
            )


@dataclass(frozen=True, slots=True)
class QueueResult:
    """How an <Enqueue> ends: `bridged` to an agent for `talk` seconds, `leave`, `hangup`, …"""

    result: str = "bridged"
    talk: int = 60

    def __post_init__(self) -> None:
        if self.result not in QUEUE_RESULTS:
            raise ValueError(
                f"queue result must be one of {sorted(QUEUE_RESULTS)}, got {self.result!r}"
            )


@dataclass(frozen=True, slots=True)
class Recording:
    """A recorded message: its length and what ended it (a key, or 'hangup')."""

    duration: int = 5
    digits: str = "#"


class Hangup:
    """The caller hangs up (answer `HANGUP` to any wait)."""

    def __repr__(self) -> str:
        return "HANGUP"


HANGUP = Hangup()
Answer = Press | DialResult | QueueResult | Recording | Hangup | None


class Caller(Protocol):
    """The person on the phone, as `drive()` consults them."""

    def notice(self, event: Event) -> None:
        """Told each transcript event as it happens (Says, warnings…), except Gather prompts."""

    def gather(self, wait: GatherWait) -> Press | Hangup | None:
        """Hear the Gather's prompts and press keys, stay silent (None) or hang up."""

    def dial(self, wait: DialWait) -> DialResult | Hangup:
        """Decide how the transfer ends."""

    def enqueue(self, wait: EnqueueWait) -> QueueResult | Hangup | None:
        """Decide how the wait in the queue ends, or None to hear the waitUrl (again)."""

    def record(self, wait: RecordWait) -> Recording | Hangup | None:
        """Leave a message, or None for silence (nothing recorded)."""


# ---- the record of a call -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """The number being called (its webhooks and signing token) and who calls it."""

    url: str
    token: str
    from_: str
    to: str
    method: str = "POST"
    status_url: str | None = None
    status_method: str = "POST"
    fallback_url: str | None = None
    fallback_method: str = "POST"
    account_sid: str = field(default_factory=lambda: new_sid("AC"))
    extra_params: Mapping[str, str] = field(default_factory=dict)
    max_requests: int = 200
    http_timeout: float = 15.0
    play_seconds: float = 5.0
    empty_digits: bool = False  # actionOnEmptyResult: send Digits="" (True) or omit it (False)


@dataclass(slots=True)
class Exchange:
    """One HTTP request "Twilio" made during the call, and what came back."""

    kind: str
    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    t: float
    status: int = 0
    content: bytes = b""
    content_type: str = ""
    elapsed: float = 0.0
    error: str = ""
    request: requests.PreparedRequest | None = field(default=None, repr=False)

    @property
    def body(self) -> str:
        """The response body as text."""
        return self.content.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the transcript at virtual time `t`."""

    t: float
    kind: str  # say play pause input silence request dial queue record warning error end
    text: str
    say: Say | None = None
    prompt: bool = False  # a Say nested in a Gather (presented to Caller.gather, not notice)
    code: str = ""


@dataclass(frozen=True, slots=True)
class Document:
    """A TwiML document and the URL it came from (the base for relative URLs)."""

    url: str
    root: Element


class TwimlError(Exception):
    """A fatal error fetching or reading TwiML, with Twilio's error code."""

    def __init__(self, code: str, message: str, url: str) -> None:
        super().__init__(f"{code} {message} ({url})")
        self.code, self.message, self.url = code, message, url


class _Next:
    """Marker: the verb is done, go on with the next one."""


NEXT = _Next()
Flow = Document | _Next | None  # a new document / the next verb / the call is over


def _int(el: Element, name: str, default: int, low: int = 0) -> int:
    raw = el.get(name)
    try:
        return default if raw is None else max(int(raw.strip()), low)
    except ValueError:
        return default


def _method(el: Element, name: str = "method") -> str:
    method = (el.get(name) or "POST").strip().upper()
    return method if method in ("GET", "POST") else "POST"


class Call:
    """One call from `line.from_` to `line.to`: run it with `run()` (a generator) or `drive()`."""

    def __init__(self, line: Line, session: requests.Session | None = None) -> None:
        """`session`: how requests travel (default a plain one; tests put a load balancer here)."""
        self.line = line
        self.sid = new_sid("CA")
        self.t = 0.0
        self.status = "ringing"
        self.events: list[Event] = []
        self.exchanges: list[Exchange] = []
        self.error: TwimlError | None = None
        self.last_twiml = ""
        self._session = session if session is not None else requests.Session()
        self._session.headers.clear()
        self._sequence = 0
        self._started = datetime.now(UTC)
        self._redirects: dict[tuple[str, str], float] = {}

    @property
    def ended(self) -> bool:
        """Whether the call is over."""
        return self.status not in ("ringing", "in-progress")

    @property
    def duration(self) -> int:
        """The call's length in whole seconds of virtual time (rounded up)."""
        return math.ceil(round(self.t, 3))

    @property
    def warnings(self) -> list[Event]:
        """The warnings (12200 and others) recorded so far."""
        return [e for e in self.events if e.kind == "warning"]

    def transcript(self) -> str:
        """The transcript as text, one event a line."""
        return "\n".join(f"{e.t:7.1f}s {e.kind:8} {e.text}" for e in self.events)

    # ---- running ----

    def run(self) -> Generator[Wait, Answer, None]:
        """Run the call to its end, yielding wherever the caller must answer."""
        doc = self._fetch(self.line.url, self.line.method, {}, "voice")
        while doc is not None and not self.ended:
            flow = yield from self._execute(doc)
            doc = flow if isinstance(flow, Document) else None
        self._finish("completed", "end of TwiML")

    def _execute(self, doc: Document) -> Generator[Wait, Answer, Flow]:
        """Run one document's verbs; NEXT when it runs off its end."""
        for el in doc.root:
            verb = el.tag
            if verb not in ATTRIBUTES:
                why = "is not simulated" if verb in UNSIMULATED else "is not a TwiML verb"
                self._warn("12200", f"<{verb}> {why}: skipped")
                continue
            self._check_attributes(el)
            if verb in ("Say", "Play", "Pause"):
                self._hear(self._prompt(el, doc))
                continue
            if verb == "Gather":
                flow = yield from self._gather(el, doc)
            elif verb == "Dial":
                flow = yield from self._dial(el, doc)
            elif verb == "Enqueue":
                flow = yield from self._enqueue(el, doc)
            elif verb == "Record":
                flow = yield from self._record(el, doc)
            elif verb == "Redirect":
                flow = self._redirect(el, doc)
            elif verb in ("Hangup", "Reject"):
                self._finish(self._hangup_status(el), f"<{verb}>")
                return None
            else:
                self._warn("12200", f"<{verb}> outside a queue's waitUrl: skipped")
                flow = NEXT
            if not isinstance(flow, _Next):
                return flow
        return NEXT

    def _hangup_status(self, el: Element) -> str:
        """How the call ends: an unanswered <Reject> leaves it busy or no-answer, else completed."""
        answered = any(
            e.kind in ("say", "play", "input", "silence", "dial", "queue", "record")
            for e in self.events
        )
        if el.tag != "Reject" or answered:
            return "completed"
        return "busy" if el.get("reason") == "busy" else "no-answer"

    def _prompt(self, el: Element, doc: Document) -> Prompt:
        """Read a Say, Play or Pause element."""
        if el.tag == "Say":
            for child in el.iter():
                if child is not el and child.tag not in SSML_TAGS:
                    self._warn("12200", f"<{child.tag}> is not SSML that <Say> accepts")
            text = " ".join("".join(el.itertext()).split())
            voice, language = el.get("voice", "man"), el.get("language", "en-US")
            return Say(text, voice, language, _int(el, "loop", 1))
        if el.tag == "Play":
            url = urljoin(doc.url, (el.text or "").strip())
            digits = el.get("digits", "")
            return Play(
                url if not digits else "", _int(el, "loop", 1), digits, self.line.play_seconds
            )
        return Pause(float(_int(el, "length", 1)))

    def _hear(self, prompt: Prompt, *, in_gather: bool = False, cut: bool = False) -> None:
        """Play a prompt to the caller: the transcript gets it and the clock advances."""
        if isinstance(prompt, Say):
            self._event(
                "say", prompt.text + (" [cut off]" if cut else ""), say=prompt, prompt=in_gather
            )
        elif isinstance(prompt, Play):
            self._event("play", f"digits {prompt.digits}" if prompt.digits else prompt.url)
        else:
            self._event("pause", f"{prompt.length:g} s")
        self.t += prompt.seconds / 2 if cut else prompt.seconds

    def _gather(self, el: Element, doc: Document) -> Generator[Wait, Answer, Flow]:
        """<Gather>: prompts, DTMF with barge-in, then the action request or fall-through."""
        finish = el.get("finishOnKey", "#")
        if len(finish) > 1 or (finish and finish not in KEYS):
            self._warn("13310", f"invalid finishOnKey {finish!r}: using '#'")
            finish = "#"
        num = el.get("numDigits")
        if num is not None and not (num.strip().isdigit() and int(num) >= 1):
            self._warn("13314", f"invalid numDigits {num!r}: ignored")
            num = None
        if "dtmf" not in el.get("input", "dtmf"):
            self._warn("12200", "speech input is not simulated: only DTMF is gathered")
        prompts: list[Prompt] = []
        for child in el:
            if child.tag in ("Say", "Play", "Pause"):
                self._check_attributes(child)
                prompts.append(self._prompt(child, doc))
            else:
                self._warn("12200", f"<{child.tag}> cannot be nested in <Gather>: skipped")
        wait = GatherWait(
            action=urljoin(doc.url, (el.get("action") or "").strip()),
            method=_method(el),
            timeout=_int(el, "timeout", 5, 1),
            finish_on_key=finish,
            num_digits=int(num) if num is not None else None,
            action_on_empty_result=el.get("actionOnEmptyResult", "false").strip().lower() == "true",
            prompts=tuple(prompts),
        )
        answer = yield wait
        if isinstance(answer, Hangup):
            for prompt in wait.prompts:
                self._hear(prompt, in_gather=True)
            self._finish("completed", "caller hung up")
            return None
        press = answer if isinstance(answer, Press) else None
        if press is not None and press.barge_in and wait.prompts:
            self._hear(wait.prompts[0], in_gather=True, cut=True)
        else:
            for prompt in wait.prompts:
                self._hear(prompt, in_gather=True)
        digits, finished, extra = wait.split(press.keys if press else "")
        if extra:
            self._warn("sim", f"keys {extra!r} pressed after the Gather ended were dropped")
        self.t += 0.3 * (len(digits) + len(finished))
        if not finished and (wait.num_digits is None or len(digits) < wait.num_digits):
            self.t += wait.timeout
        if press is None:
            self._event("silence", f"no keys in {wait.timeout} s")
        else:
            self._event("input", press.keys + (" (barge-in)" if press.barge_in else ""))
        if not digits and not wait.action_on_empty_result:
            return NEXT
        params = {"Digits": digits} if digits or self.line.empty_digits else {}
        params |= {"FinishedOnKey": finished, "msg": "Gather End"}
        return self._fetch(wait.action, wait.method, params, "gather")

    def _redirect(self, el: Element, doc: Document) -> Flow:
        """<Redirect>: fetch the URL, refusing a loop that makes no progress in time."""
        target = (el.text or "").strip()
        if not target:
            self._warn("12200", "<Redirect> without a URL: skipped")
            return NEXT
        url, method = urljoin(doc.url, target), _method(el)
        if self._redirects.get((method, url)) == self.t:
            self._fail(TwimlError("sim", "Redirect loop: same URL again with no time passed", url))
            return None
        self._redirects[(method, url)] = self.t
        return self._fetch(url, method, {}, "redirect")

    def _dial(self, el: Element, doc: Document) -> Generator[Wait, Answer, Flow]:
        """<Dial>: ring the target; the caller decides the outcome; action or fall-through."""
        nouns = list(el)
        noun = nouns[0] if nouns else None
        target = ((noun.text if noun is not None else el.text) or "").strip()
        action = el.get("action")
        wait = DialWait(
            target=target,
            kind=noun.tag.lower() if noun is not None else "number",
            action=urljoin(doc.url, action.strip()) if action is not None else None,
            method=_method(el),
            timeout=_int(el, "timeout", 30, 1),
            time_limit=_int(el, "timeLimit", 14400, 1),
        )
        answer = yield wait
        if isinstance(answer, Hangup):
            self._finish("completed", "caller hung up while the transfer rang")
            return None
        result = answer if isinstance(answer, DialResult) else DialResult()
        talk = min(result.duration, wait.time_limit) if result.status == "completed" else 0
        ring = {"completed": 5, "no-answer": wait.timeout, "busy": 2}.get(result.status, 0)
        self.t += ring + talk
        self._event(
            "dial", f"{wait.kind} {target}: {result.status}" + (f" {talk} s" if talk else "")
        )
        if wait.action is None:
            return NEXT
        params = {
            "DialCallStatus": result.status,
            "DialCallSid": new_sid("CA"),
            "DialCallDuration": str(talk),
            "DialBridged": "true" if result.status == "completed" else "false",
        }
        return self._fetch(wait.action, wait.method, params, "dial")

    def _enqueue(self, el: Element, doc: Document) -> Generator[Wait, Answer, Flow]:
        """<Enqueue>: hold with the waitUrl until the caller says how the queue ends."""
        name = (el.text or "").strip()
        wait_url = el.get("waitUrl")
        wait_url = urljoin(doc.url, wait_url.strip()) if wait_url else None
        action = el.get("action")
        queue_sid, start, polls = new_sid("QU"), self.t, 0
        self._event("queue", f"enqueued in {name!r}")
        while True:
            answer = yield EnqueueWait(name, polls, self.t - start, wait_url)
            if answer is not None:
                break
            polls += 1
            left = self._hold(wait_url, el, queue_sid, start)
            if left:
                answer = QueueResult(left)
                break
        outcome = answer if isinstance(answer, QueueResult) else QueueResult("hangup")
        queue_time = str(round(self.t - start))
        self._event("queue", f"{name!r}: {outcome.result} after {queue_time} s")
        if outcome.result == "bridged":
            self.t += outcome.talk
        params = {"QueueResult": outcome.result, "QueueSid": queue_sid, "QueueTime": queue_time}
        if outcome.result == "hangup":
            if action is not None:
                self._request(urljoin(doc.url, action.strip()), _method(el), params, "enqueue")
            self._finish("completed", "caller hung up in the queue")
            return None
        if action is None:
            return NEXT
        return self._fetch(urljoin(doc.url, action.strip()), _method(el), params, "enqueue")

    def _hold(self, wait_url: str | None, el: Element, queue_sid: str, start: float) -> str:
        """Play the waitUrl's TwiML once (hold music without one); '' or 'leave'/'hangup'."""
        if wait_url is None:
            self._hear(Play("hold-music", clip=30.0))
            return ""
        waited = str(round(self.t - start))
        params = {
            "QueuePosition": "1",
            "QueueSid": queue_sid,
            "QueueTime": waited,
            "AvgQueueTime": waited,
            "CurrentQueueSize": "1",
        }
        url, method = wait_url, _method(el, "waitUrlMethod")
        for _ in range(10):  # the waitUrl document, then up to 9 of its Redirects
            try:
                doc = self._load(url, method, params, "wait")
            except TwimlError as exc:
                self._warn(exc.code, f"waitUrl failed: {exc.message}: hold music instead")
                self._hear(Play("hold-music", clip=30.0))
                return ""
            redirect = None
            for verb in doc.root:
                if verb.tag in ("Say", "Play", "Pause"):
                    self._hear(self._prompt(verb, doc))
                elif verb.tag in ("Leave", "Hangup"):
                    return "leave" if verb.tag == "Leave" else "hangup"
                elif verb.tag == "Redirect":
                    redirect = verb
                    break
                else:
                    self._warn("12200", f"<{verb.tag}> is not simulated in a waitUrl: skipped")
            if redirect is None:
                return ""
            url, method = urljoin(doc.url, (redirect.text or "").strip()), _method(redirect)
        return ""

    def _record(self, el: Element, doc: Document) -> Generator[Wait, Answer, Flow]:
        """<Record>: the caller leaves a message (or not); then the action request."""
        wait = RecordWait(
            action=urljoin(doc.url, (el.get("action") or "").strip()),
            method=_method(el),
            timeout=_int(el, "timeout", 5, 1),
            finish_on_key=el.get("finishOnKey", "1234567890*#"),
            max_length=_int(el, "maxLength", 3600, 1),
        )
        answer = yield wait
        if isinstance(answer, Hangup):
            self._finish("completed", "caller hung up instead of recording")
            return None
        if not isinstance(answer, Recording):  # [INF] nothing recorded: no action, next verb
            self.t += wait.timeout
            self._event("record", "nothing recorded")
            return NEXT
        length = min(answer.duration, wait.max_length)
        self.t += length
        self._event("record", f"{length} s message, ended by {answer.digits}")
        rec_sid = new_sid("RE")
        params = {
            "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{self.line.account_sid}"
            f"/Recordings/{rec_sid}",
            "RecordingSid": rec_sid,
            "RecordingDuration": str(length),
            "Digits": answer.digits,
        }
        if answer.digits == "hangup":
            self._request(wait.action, wait.method, params, "record")
            self._finish("completed", "caller hung up after recording")
            return None
        return self._fetch(wait.action, wait.method, params, "record")

    # ---- HTTP ----

    def _params(self) -> dict[str, str]:
        """The standard parameters Twilio sends with every request of the call."""
        params = {
            "AccountSid": self.line.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.sid,
            "CallStatus": self.status,
            "Called": self.line.to,
            "Caller": self.line.from_,
            "Direction": "inbound",
            "From": self.line.from_,
            "To": self.line.to,
        }
        params |= {name: "" for name in GEO_FIELDS}
        return params | dict(self.line.extra_params)

    def _request(self, url: str, method: str, extra: Mapping[str, str], kind: str) -> Exchange:
        """Make one signed webhook request, as Twilio would, and record the exchange."""
        url = urldefrag(url.strip())[0]  # connection-override fragments are neither sent nor signed
        params = self._params() | dict(extra)
        headers = {
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "Accept-Encoding": "gzip",
            "X-Home-Region": "us1",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        if method == "GET":
            sep = "" if url.endswith(("?", "&")) else "&" if urlsplit(url).query else "?"
            request = requests.Request("GET", url + sep + urlencode(params), headers=headers)
        else:
            headers["Content-Type"] = FORM_TYPE
            request = requests.Request(
                method, url, headers=headers, data=urlencode(params).encode()
            )
        try:
            prepared = self._session.prepare_request(request)
        except requests.RequestException as exc:
            failed = Exchange(
                kind, method, url, params, headers, self.t, error=f"11100 invalid URL: {exc}"
            )
            return self._record_exchange(failed)
        sent_url = str(prepared.url)
        prepared.headers["X-Twilio-Signature"] = sign(
            self.line.token, sent_url, params if method != "GET" else {}
        )
        exchange = Exchange(
            kind, method, sent_url, params, dict(prepared.headers), self.t, request=prepared
        )
        return self._record_exchange(self._send(exchange))

    def _send(self, exchange: Exchange) -> Exchange:
        """Deliver a prepared request (cookies, redirects like a browser) on a fresh connection."""
        assert exchange.request is not None
        started = time.perf_counter()
        try:
            response = self._session.send(
                exchange.request.copy(), allow_redirects=True, timeout=self.line.http_timeout
            )
            exchange.status = response.status_code
            exchange.content = response.content
            exchange.content_type = response.headers.get("Content-Type", "")
            response.close()
        except requests.TooManyRedirects as exc:
            exchange.error = f"11215 too many redirects: {exc}"
        except requests.RequestException as exc:
            exchange.error = f"11205 {type(exc).__name__}: {exc}"
        finally:
            self._session.close()  # no pooled sockets outlive an exchange; the cookie jar stays
        exchange.elapsed = time.perf_counter() - started
        return exchange

    def _record_exchange(self, exchange: Exchange) -> Exchange:
        self.exchanges.append(exchange)
        outcome = exchange.error or f"{exchange.status} {exchange.content_type}"
        self._event("request", f"{exchange.kind}: {exchange.method} {exchange.url} -> {outcome}")
        return exchange

    def resend(self, exchange: Exchange) -> tuple[int, str]:
        """Deliver an exchange again byte for byte (same token, signature); the call goes on."""
        if exchange.request is None:
            return exchange.status, exchange.error
        again = Exchange(
            exchange.kind, exchange.method, exchange.url, {}, {}, self.t, request=exchange.request
        )
        self._send(again)
        return again.status, again.error or again.body

    def send_status(self, status: str = "completed") -> Exchange:
        """POST a status callback for this call now, with the next SequenceNumber."""
        if not self.line.status_url:
            raise ValueError("this line has no status callback URL")
        params = {
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(self._sequence),
            "Timestamp": format_datetime(self._started + timedelta(seconds=self.t)),
        }
        if status in ("completed", "busy", "no-answer", "failed", "canceled"):
            minutes = math.ceil(self.duration / 60) if status == "completed" else 0
            params |= {"CallDuration": str(self.duration), "Duration": str(minutes)}
        self._sequence += 1
        return self._request(self.line.status_url, self.line.status_method, params, "status")

    def _load(self, url: str, method: str, extra: Mapping[str, str], kind: str) -> Document:
        """Fetch a TwiML document; TwimlError for anything Twilio would not run."""
        if sum(e.kind != "status" for e in self.exchanges) >= self.line.max_requests:
            raise TwimlError("sim", f"more than {self.line.max_requests} requests in one call", url)
        exchange = self._request(url, method, extra, kind)
        url = urldefrag(url.strip())[0]
        self.last_twiml = exchange.body
        root = self._parse(exchange, url)
        self.status = "in-progress"
        return Document(url, root)

    def _parse(self, exchange: Exchange, url: str) -> Element:
        """The <Response> of a webhook's answer (text/plain is read aloud, audio played)."""
        if exchange.error:
            code, _, message = exchange.error.partition(" ")
            raise TwimlError(code, message, url)
        if not 200 <= exchange.status < 300:
            raise TwimlError("11200", f"HTTP {exchange.status} from the webhook", url)
        if len(exchange.content) > MAX_TWIML_BYTES:
            raise TwimlError(
                "11750", f"response of {len(exchange.content)} bytes exceeds 64 kB", url
            )
        mime = exchange.content_type.split(";")[0].strip().lower()
        if mime == "text/plain" or mime.startswith("audio/"):
            self._warn("12300", f"{mime} response instead of TwiML: played, then the call hangs up")
            root = Element("Response")
            verb = Element("Say" if mime == "text/plain" else "Play")
            verb.text = exchange.body if mime == "text/plain" else url
            root.extend([verb, Element("Hangup")])
            return root
        if mime not in TWIML_TYPES:
            raise TwimlError("12300", f"invalid Content-Type {exchange.content_type!r}", url)
        try:
            root = fromstring(exchange.content)
        except (ParseError, DefusedXmlException) as exc:
            raise TwimlError("12100", f"document parse failure: {exc}", url) from None
        if root.tag != "Response":
            raise TwimlError("12102", f"root element is <{root.tag}>, not <Response>", url)
        return root

    def _fetch(self, url: str, method: str, extra: Mapping[str, str], kind: str) -> Document | None:
        """Fetch the next TwiML document, trying the fallback URL on error; None ends the call."""
        try:
            return self._load(url, method, extra, kind)
        except TwimlError as exc:
            self._event("error", str(exc), code=exc.code)
            if self.line.fallback_url and exc.code != "sim":
                params = {"ErrorCode": exc.code, "ErrorUrl": exc.url}
                try:
                    return self._load(
                        self.line.fallback_url, self.line.fallback_method, params, "fallback"
                    )
                except TwimlError as again:
                    exc = again
            self._fail(exc)
            return None

    # ---- bookkeeping ----

    def _check_attributes(self, el: Element) -> None:
        for name in el.attrib:
            if name not in ATTRIBUTES[el.tag]:
                self._warn("12200", f"<{el.tag}> has no attribute {name!r}")

    def _event(
        self, kind: str, text: str, *, say: Say | None = None, prompt: bool = False, code: str = ""
    ) -> None:
        self.events.append(Event(round(self.t, 3), kind, text, say, prompt, code))

    def _warn(self, code: str, message: str) -> None:
        self._event("warning", message, code=code)

    def _fail(self, exc: TwimlError) -> None:
        """An application error: Twilio apologises and hangs up."""
        self.error = exc
        self._event("error", f"application error {exc.code}: {exc.message}", code=exc.code)
        self.t += speech_seconds(APPLICATION_ERROR)
        self._finish("failed", "application error", callback="completed")

    def _finish(self, status: str, reason: str, *, callback: str | None = None) -> None:
        """End the call once: record why and send the status callback."""
        if self.ended:
            return
        self.status = status
        self._event("end", f"{status} ({reason}) after {self.duration} s")
        if self.line.status_url:
            self.send_status(callback or status)


# ---- running a call against a Caller ------------------------------------------------------------


def drive(call: Call, caller: Caller) -> Call:
    """Run `call` to its end, telling `caller` what happens and asking it wherever it waits."""
    steps = call.run()
    told = 0
    answer: Answer = None
    while True:
        try:
            wait = steps.send(answer)
        except StopIteration:
            wait = None
        for event in call.events[told:]:
            if not event.prompt:
                caller.notice(event)
        told = len(call.events)
        if wait is None:
            return call
        if isinstance(wait, GatherWait):
            answer = caller.gather(wait)
        elif isinstance(wait, DialWait):
            answer = caller.dial(wait)
        elif isinstance(wait, EnqueueWait):
            answer = caller.enqueue(wait)
        else:
            answer = caller.record(wait)


def espeak_voice(language: str) -> str:
    """The espeak-ng voice for a TwiML language: `cmn` for Mandarin, else `en-us`."""
    return "cmn" if language.lower().startswith(("cmn", "zh")) else "en-us"


class ConsoleCaller:
    """A person at the terminal: prompts are printed (and spoken), keys typed."""

    def __init__(self, out: TextIO, inp: Callable[[str], str], *, speak: bool = False) -> None:
        self.out, self.inp = out, inp
        self.espeak = shutil.which("espeak-ng") if speak else None

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _ask(self, prompt: str) -> str | None:
        """A line from the terminal; None on EOF, Ctrl-C or `h` (hang up)."""
        self.out.write(prompt)
        self.out.flush()
        try:
            line = self.inp("").strip()
        except (EOFError, KeyboardInterrupt):
            self._print("")
            return None
        return None if line.lower() == "h" else line

    def _say(self, say: Say) -> None:
        self._print(f"[hotline] {say.text}")
        if self.espeak:
            subprocess.run(
                [self.espeak, "-v", espeak_voice(say.language), say.text],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )

    def notice(self, event: Event) -> None:
        """Print Says (and speak them), warnings and errors."""
        if event.say is not None:
            self._say(event.say)
        elif event.kind == "play":
            self._print(f"[play] {event.text}")
        elif event.kind in ("warning", "error"):
            self._print(f"[twilio {event.kind} {event.code}] {event.text}")
        elif event.kind in ("dial", "queue", "record"):
            self._print(f"[{event.kind}] {event.text}")

    def gather(self, wait: GatherWait) -> Press | Hangup | None:
        """Print the prompts, then read keys (empty line: silence; h or EOF: hang up)."""
        for prompt in wait.prompts:
            if isinstance(prompt, Say):
                self._say(prompt)
            elif isinstance(prompt, Play):
                self._print(f"[play] {prompt.digits or prompt.url}")
        while True:
            line = self._ask(f"keys [{wait.hint}]> ")
            if line is None:
                return HANGUP
            keys = "".join(line.split())
            if not keys:
                return None
            if not set(keys) - KEYS:
                return Press(keys)
            self._print("(keys are 0-9, * and #; empty line: silence; h: hang up)")

    def dial(self, wait: DialWait) -> DialResult | Hangup:
        """Show the transfer and ask how it ends."""
        self._print(f"[transfer] dialing {wait.kind} {wait.target} (rings up to {wait.timeout} s)")
        choices = {"": "completed", "b": "busy", "n": "no-answer", "f": "failed"}
        while True:
            line = self._ask(
                "transfer [Enter=answered, b=busy, n=no-answer, f=failed, h=hang up]> "
            )
            if line is None:
                return HANGUP
            if line.lower() in choices:
                return DialResult(choices[line.lower()])

    def enqueue(self, wait: EnqueueWait) -> QueueResult | Hangup | None:
        """Hold in the queue until the person says an agent answers, or leaves."""
        if wait.polls == 0:
            return None  # hear the waitUrl first
        choices = {"a": "bridged", "l": "leave"}
        while True:
            line = self._ask("queue [Enter=keep waiting, a=agent answers, l=leave, h=hang up]> ")
            if line is None:
                return HANGUP
            if not line:
                return None
            if line.lower() in choices:
                return QueueResult(choices[line.lower()])

    def record(self, wait: RecordWait) -> Recording | Hangup | None:
        """Pretend to leave a message."""
        line = self._ask(
            f"record [Enter=5 s message, s=say nothing, h=hang up] (max {wait.max_length} s)> "
        )
        if line is None:
            return HANGUP
        return None if line.lower() == "s" else Recording()


def console_call(
    url: str,
    token: str,
    *,
    from_: str,
    to: str,
    speak: bool,
    status_url: str | None,
    out: TextIO | None = None,
    inp: Callable[[str], str] = input,
) -> int:
    """Call `url` (the full voice URL) from the terminal, as `ivr call` does; returns 0."""
    out = out if out is not None else sys.stdout
    call = Call(Line(url=url, token=token, from_=from_, to=to, status_url=status_url))
    print(f"[calling {to} from {from_}: {url}]", file=out, flush=True)
    drive(call, ConsoleCaller(out, inp, speak=speak))
    print(f"[call ended: {call.status}, {call.duration} s]", file=out, flush=True)
    return 0
