"""A call's timeline as a replay plan: what sounds when (pure: no Flask, no audio files).

The call log records each webhook's entries at the moment the webhook came:
the keys the caller had just pressed, what the hotline did, and the prompts it
answered with. The plan places them on the replay's clock:

- prompts play one after another from their webhook's moment (the length of
  each is its rendered speech; `lengths` gives it);
- keys sound as DTMF tones that *end* at the webhook that received them, so the
  caller is heard keying before the hotline answers;
- everything else (menus, service calls, authentication, transfer, hang-up)
  is a mark at its webhook's moment.

`policy="call"` keeps the call's own timing: when the caller keyed (or hung up,
or the Gather timed out) before a prompt had finished, the prompt is cut there,
as the caller heard it. `policy="full"` never cuts a prompt and moves later
steps back instead. Keys that could not have been pressed in the time the log
allows (a call driven by a test simulator, faster than any person) are played
as in "full": after the prompts, which are not cut.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from ..calllog import CallRecord, Entry

TONE = 0.10  # seconds a key's tone lasts
KEY_GAP = 0.08  # seconds between two keys (a brisk caller keys five a second)
PROMPT_GAP = 0.25  # seconds between two prompts
PER_KEY = TONE + KEY_GAP
MASKED = "?"  # a key the log hides (an ID digit, a PIN digit)
DTMF = {
    "1": (697, 1209),
    "2": (697, 1336),
    "3": (697, 1477),
    "4": (770, 1209),
    "5": (770, 1336),
    "6": (770, 1477),
    "7": (852, 1209),
    "8": (852, 1336),
    "9": (852, 1477),
    "*": (941, 1209),
    "0": (941, 1336),
    "#": (941, 1477),
}
AUDIBLE = frozenset({"prompt", "key"})
Policy = Literal["call", "full"]


@dataclass(frozen=True, slots=True)
class Cue:
    """One timeline entry on the replay's clock."""

    index: int  # position in the call's timeline
    kind: str  # the entry's kind
    start: float  # seconds into the replay
    length: float  # seconds it sounds (0 for a mark)
    offset: float  # seconds into the call, as logged
    tones: str = ""  # keys to sound, MASKED for hidden ones
    voice: str = ""  # the voice a prompt is spoken with
    cut: bool = False  # a prompt the caller did not hear to its end


@dataclass(frozen=True, slots=True)
class Plan:
    """The whole replay: its cues in order and its length in seconds."""

    cues: tuple[Cue, ...]
    length: float
    policy: Policy


def key_tones(entry: Entry) -> str:
    """The keys an entry sounds: a single key as it is; in a longer entry `*` is a mask
    (ID and PIN digits), `X` was keyed as `*`."""
    keys = str(entry.data.get("keys", ""))
    if len(keys) == 1:
        return keys if keys in DTMF else ""
    tones = []
    for ch in keys:
        if ch == "*":
            tones.append(MASKED)
        elif ch in ("X", "x"):
            tones.append("*")
        elif ch in DTMF:
            tones.append(ch)
    return "".join(tones)


def voice_for(text: str) -> str:
    """The espeak-ng voice for a prompt: Mandarin if it has Chinese characters, else English."""
    return "cmn" if any("\u3400" <= ch <= "\u9fff" for ch in text) else "en-us"


def estimate(text: str) -> float:
    """Seconds a prompt takes to say, when it cannot be rendered to measure it."""
    chinese = sum(1 for ch in text if "\u3400" <= ch <= "\u9fff")
    return round(chinese / 4.5 + (len(text) - chinese) / 14.0, 2)


def plan(
    record: CallRecord, length_of: Callable[[int, str], float], policy: Policy = "call"
) -> Plan:
    """The replay plan of `record`; `length_of(index, text)` is a prompt's speech in seconds."""
    started = record.started_at
    cues: list[Cue] = []
    shift = 0.0  # how far the replay runs behind the call ("full", or keys that did not fit)
    sounding = 0.0  # where the audio placed so far ends
    previous = 0.0  # the previous webhook's moment on the replay's clock
    open_prompts: list[int] = []  # cues of the previous webhook's prompts (cut if interrupted)
    for step in _steps(record.timeline):
        offset = max(0.0, (step[0][1].at - started).total_seconds())
        moment = offset + shift
        tones = "".join(key_tones(e) for _, e in step if e.kind == "key")
        keying = len(tones) * PER_KEY - (KEY_GAP if tones else 0.0)
        begin = moment - keying
        # keys that cannot have been pressed since the previous webhook mean a log faster than
        # any person (a test call): then nothing is cut, whatever the policy
        floor = sounding if policy == "full" or begin < previous else previous
        if begin < floor:
            shift += floor - begin
            moment, begin = moment + floor - begin, floor
        if policy == "call":
            _cut(cues, open_prompts, begin)
        open_prompts = []
        at = begin
        saying = moment
        for index, entry in step:
            entry_offset = (entry.at - started).total_seconds()
            if entry.kind == "key":
                keys = key_tones(entry)
                span = len(keys) * PER_KEY - (KEY_GAP if keys else 0.0)
                cues.append(Cue(index, "key", at, span, entry_offset, tones=keys))
                at += span + KEY_GAP
            elif entry.kind == "prompt":
                text = str(entry.data.get("text", ""))
                length = max(0.0, length_of(index, text))
                open_prompts.append(len(cues))
                voice = voice_for(text)
                cues.append(Cue(index, "prompt", saying, length, entry_offset, voice=voice))
                saying += length + PROMPT_GAP
            else:
                cues.append(Cue(index, entry.kind, moment, 0.0, entry_offset))
        said = saying - PROMPT_GAP if open_prompts else moment
        sounding = max(sounding, said, moment)
        previous = moment
    length = max([sounding, *(c.start + c.length for c in cues)], default=0.0)
    return Plan(tuple(cues), round(length, 3), policy)


def _steps(timeline: Sequence[Entry]) -> list[list[tuple[int, Entry]]]:
    """Entries grouped by webhook (one webhook's entries share their moment)."""
    steps: list[list[tuple[int, Entry]]] = []
    for index, entry in enumerate(timeline):
        if steps and steps[-1][-1][1].at == entry.at:
            steps[-1].append((index, entry))
        else:
            steps.append([(index, entry)])
    return steps


def _cut(cues: list[Cue], prompts: list[int], at: float) -> None:
    """Stop the prompts still sounding at `at`: the caller keyed, hung up or stayed silent."""
    for position in prompts:
        cue = cues[position]
        if cue.start + cue.length > at:
            cues[position] = replace(cue, length=max(0.0, at - cue.start), cut=True)
