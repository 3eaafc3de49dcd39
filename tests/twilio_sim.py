"""A scripted Twilio for tests: calls the app over HTTP with `ivr.phone`; tests press keys."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import Any

import requests

from ivr.phone import (
    HANGUP,
    Answer,
    Call,
    DialResult,
    DialWait,
    EnqueueWait,
    Exchange,
    GatherWait,
    Line,
    Press,
    QueueResult,
    Recording,
    RecordWait,
    Say,
    Wait,
    sign,
)


class Simulator:
    """Twilio in front of an app at `base_url`: signed calls to `voice_path`, status callbacks."""

    def __init__(
        self,
        base_url: str,
        auth_token: str,
        voice_path: str = "/voice",
        status_path: str | None = "/voice/status",
        fallback_path: str | None = None,
        session: Callable[[], requests.Session] | None = None,
        **line: Any,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session  # makes each call's HTTP session (default: a plain one)
        self.auth_token = auth_token
        self.voice_path, self.status_path, self.fallback_path = (
            voice_path,
            status_path,
            fallback_path,
        )
        self.line = line  # further `ivr.phone.Line` fields: method, max_requests, empty_digits…

    def url(self, path: str) -> str:
        """The absolute URL of an app path."""
        return self.base_url + path

    def call(
        self,
        from_: str = "+8613800138000",
        to: str = "+8612333",
        *,
        dial_outcome: str | DialResult = "completed",
        queue_outcome: str | QueueResult = "bridged",
        queue_polls: int = 1,
        **line: Any,
    ) -> SimCall:
        """Place a call: runs the TwiML until a Gather waits for keys or the call ends."""
        options: dict[str, Any] = {
            "status_url": self.url(self.status_path) if self.status_path else None,
            "fallback_url": self.url(self.fallback_path) if self.fallback_path else None,
        }
        options |= self.line | line
        line_ = Line(self.url(self.voice_path), self.auth_token, from_, to, **options)
        return SimCall(
            line_, dial_outcome=dial_outcome, queue_outcome=queue_outcome, queue_polls=queue_polls,
            session=self.session() if self.session else None,
        )

    def post(
        self, path: str, params: Mapping[str, str], *, signed: bool = True, tamper: bool = False
    ) -> requests.Response:
        """A raw webhook POST: signed, unsigned, or with a signature over other params."""
        url = self.url(path)
        headers = {"User-Agent": "TwilioProxy/1.1"}
        if signed or tamper:
            over = {**params, "Tampered": "1"} if tamper else params
            headers["X-Twilio-Signature"] = sign(self.auth_token, url, over)
        with requests.Session() as session:
            return session.post(url, data=dict(params), headers=headers, timeout=15)


class SimCall:
    """One call as a test sees it: what was said, the waiting Gather, and keys to press."""

    def __init__(
        self,
        line: Line,
        *,
        dial_outcome: str | DialResult = "completed",
        queue_outcome: str | QueueResult = "bridged",
        queue_polls: int = 1,
        session: requests.Session | None = None,
    ) -> None:
        self.phone = Call(line, session)
        self.dial_outcome = dial_outcome  # every later <Dial> ends so: a status, or DialResult
        self.queue_outcome = (
            queue_outcome  # every later <Enqueue> ends so: a result, or QueueResult
        )
        self.queue_polls = queue_polls  # waitUrl plays before the queue outcome (queue-full: 0)
        self.record_outcome: Recording | None = Recording()
        self._steps: Generator[Wait, Answer, None] = self.phone.run()
        self._wait: GatherWait | None = None
        self._advance(None)

    # ---- what happened ----

    @property
    def said(self) -> list[str]:
        """Every Say heard in the whole call, in order (a waiting Gather's prompts included)."""
        return [e.say.text for e in self.phone.events if e.say] + self._pending()

    @property
    def heard(self) -> list[str]:
        """The Says heard since the caller's last input (a waiting Gather's prompts included)."""
        last = max(
            (i for i, e in enumerate(self.phone.events) if e.kind in ("input", "silence")),
            default=-1,
        )
        return [e.say.text for e in self.phone.events[last + 1 :] if e.say] + self._pending()

    @property
    def heard_text(self) -> str:
        """`heard` as one string."""
        return " ".join(self.heard)

    @property
    def gather(self) -> GatherWait | None:
        """The Gather waiting for keys (action, method, num_digits, finish_on_key, timeout)."""
        return self._wait

    @property
    def ended(self) -> bool:
        """Whether the call is over."""
        return self.phone.ended

    @property
    def status(self) -> str:
        """'in-progress', or how the call ended: 'completed', 'failed', 'busy', 'no-answer'."""
        return self.phone.status

    @property
    def duration(self) -> int:
        """Virtual seconds so far."""
        return self.phone.duration

    @property
    def exchanges(self) -> list[Exchange]:
        """Every HTTP exchange of the call, status callbacks included."""
        return self.phone.exchanges

    @property
    def last_twiml(self) -> str:
        """The body of the last TwiML response."""
        return self.phone.last_twiml

    def report(self) -> str:
        """The transcript and the last TwiML body, for failure messages."""
        waiting = f"\nwaiting: {self._wait}" if self._wait else ""
        return (
            f"transcript of {self.phone.sid}:\n{self.phone.transcript()}{waiting}\n"
            f"last TwiML:\n{self.phone.last_twiml}"
        )

    def expect_heard(self, *fragments: str) -> SimCall:
        """Assert each fragment is in what the caller just heard."""
        for fragment in fragments:
            assert fragment in self.heard_text, f"{fragment!r} not heard\n{self.report()}"
        return self

    # ---- what the caller does ----

    def press(self, keys: str, *, barge_in: bool = False) -> SimCall:
        """Press keys after the Gather's prompts, or during its first prompt (`barge_in`)."""
        wait = self._waiting(f"press({keys!r})")
        if not keys or set(keys) - set("0123456789*#"):
            raise AssertionError(f"press({keys!r}): keys are 0-9 * #\n{self.report()}")
        _, _, extra = wait.split(keys)
        if extra:
            raise AssertionError(
                f"press({keys!r}): the Gather ({wait.hint}) ends before {extra!r}\n{self.report()}"
            )
        self._advance(Press(keys, barge_in))
        return self

    def silence(self) -> SimCall:
        """Press nothing: the Gather times out."""
        self._waiting("silence()")
        self._advance(None)
        return self

    def hangup(self) -> SimCall:
        """The caller hangs up."""
        self._waiting("hangup()")
        self._advance(HANGUP)
        return self

    def resend_last(self) -> tuple[int, str]:
        """Deliver the last webhook again (same params, token, signature); the call is unchanged."""
        assert self.phone.exchanges, f"no webhook to resend\n{self.report()}"
        return self.phone.resend(self.phone.exchanges[-1])

    def send_status(self, status: str = "completed") -> Exchange:
        """A status callback sent by hand (out of order, duplicated…)."""
        return self.phone.send_status(status)

    # ---- stepping the engine ----

    def _pending(self) -> list[str]:
        if self._wait is None:
            return []
        return [p.text for p in self._wait.prompts if isinstance(p, Say)]

    def _waiting(self, what: str) -> GatherWait:
        if self._wait is None:
            state = "has ended" if self.ended else "is not waiting for keys"
            raise AssertionError(f"{what}: the call {state}\n{self.report()}")
        return self._wait

    def _advance(self, answer: Answer) -> None:
        """Send the answer; answer Dial/Enqueue/Record from the outcomes until a Gather waits."""
        self._wait = None
        while True:
            try:
                wait = self._steps.send(answer)
            except StopIteration:
                return
            if isinstance(wait, GatherWait):
                self._wait = wait
                return
            answer = self._decide(wait)

    def _decide(self, wait: Wait) -> Answer:
        if isinstance(wait, DialWait):
            dial = self.dial_outcome
            return DialResult(dial) if isinstance(dial, str) else dial
        if isinstance(wait, EnqueueWait):
            queue = self.queue_outcome
            result = QueueResult(queue) if isinstance(queue, str) else queue
            polls = 0 if result.result == "queue-full" else self.queue_polls
            return result if wait.polls >= polls else None
        if isinstance(wait, RecordWait):
            return self.record_outcome
        raise AssertionError(f"unexpected wait {wait}")
