"""The only module that builds TwiML: spoken segments plus what happens next."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from twilio.twiml.voice_response import Dial, Enqueue, VoiceResponse

from .catalog import Segment
from .state import Gather, Hangup, Record, Transfer

CONTENT_TYPE = "text/xml; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Links:
    """Where the call's next webhook goes: keys, silence, and the end of a transfer."""

    keys: str
    silence: str
    transfer: str
    record: str
    wait: str  # the queue's hold music: what callers hear while they wait


@dataclass(frozen=True, slots=True)
class Agents:
    """How a transfer reaches people: a Twilio queue, or a number to dial."""

    queue: str | None = None
    number: str | None = None

    @property
    def available(self) -> bool:
        """Whether any transfer is configured at all."""
        return bool(self.queue or self.number)


# Where a reply's URLs name the call's next step: a character no prompt or URL holds.
STEP = "\ue000"


def render(
    segments: Sequence[Segment],
    then: Gather | Hangup | Transfer | Record,
    links: Links,
    agents: Agents,
    step: int | None = None,
) -> str:
    """TwiML that speaks `segments` (interruptible by keys where input follows), then `then`.

    With `step`, the links hold STEP where the next step's number goes: the document is built
    once per distinct reply (most replies are a menu's same prompts, again and again) and
    kept in a bounded cache; only the number is put in each time."""
    if step is None:
        return _document(tuple(segments), then, links, agents)
    return _document(tuple(segments), then, links, agents).replace(STEP, str(step))


@functools.lru_cache(maxsize=2048)
def _document(
    segments: tuple[Segment, ...],
    then: Gather | Hangup | Transfer | Record,
    links: Links,
    agents: Agents,
) -> str:
    response = VoiceResponse()
    if isinstance(then, Gather):
        gather = response.gather(
            action=links.keys,
            method="POST",
            timeout=then.timeout,
            finish_on_key=then.finish_on_key,
            num_digits=then.num_digits,
        )
        _speak(gather, segments)
        response.redirect(links.silence, method="POST")
    elif isinstance(then, Transfer) and agents.available:
        _speak(response, segments)
        if agents.queue:
            response.append(Enqueue(agents.queue, action=links.transfer, method="POST",
                                    wait_url=links.wait, wait_url_method="POST"))  # fmt: skip
        else:
            response.append(Dial(agents.number, action=links.transfer, method="POST", timeout=30))
    elif isinstance(then, Record):
        _speak(response, segments)
        response.record(action=links.record, method="POST", max_length=then.max_length,
                        timeout=then.timeout, finish_on_key="#", play_beep=True)  # fmt: skip
        response.redirect(links.silence, method="POST")
    else:
        _speak(response, segments)
        response.hangup()
    return str(response)


def _speak(parent: VoiceResponse, segments: Sequence[Segment]) -> None:
    """One <Say> per run of segments in the same voice."""
    run: list[str] = []
    for i, segment in enumerate(segments):
        run.append(segment.text)
        if i + 1 == len(segments) or segments[i + 1].voice != segment.voice:
            parent.say(" ".join(run), voice=segment.voice.voice, language=segment.voice.language)
            run = []


def apology(segments: Sequence[Segment], recover_url: str, restart_url: str, agents: Agents) -> str:
    """The apology when the call's state is out of reach: one key to retry or reach a person."""
    response = VoiceResponse()
    gather = response.gather(action=recover_url, method="POST", timeout=6, num_digits=1,
                             finish_on_key="")  # fmt: skip
    _speak(gather, segments)
    response.hangup()
    return str(response)


def recovery(action: str, restart_url: str, agents: Agents) -> str:
    """After the apology: start the call again, or go straight to a person."""
    response = VoiceResponse()
    if action == "agent" and agents.queue:
        response.enqueue(agents.queue)
    elif action == "agent" and agents.number:
        response.dial(agents.number, timeout=30)
    else:
        response.redirect(restart_url, method="POST")
    return str(response)


def hold(segments: Sequence[Segment], seconds: int = 20) -> str:
    """The queue's wait TwiML: where the caller stands, then a pause (Twilio asks again after)."""
    response = VoiceResponse()
    _speak(response, segments)
    response.pause(length=seconds)
    return str(response)


def empty() -> str:
    """A TwiML document with nothing to do (status callbacks)."""
    return str(VoiceResponse())
