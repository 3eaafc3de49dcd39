"""The data the call engine works on: call state, events in, effects and replies out.

Everything here is a frozen dataclass. `CallState` is what Redis keeps between
webhooks (JSON with a schema version, never a PIN and never a full ID number);
events are what the web layer tells the engine; effects are what the engine asks
the web layer to do (and get back as events); a `Reply` is what the caller
hears next, as prompt keys, rendered to TwiML at the edge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Literal

SCHEMA_VERSION = 1
LANGS = ("cmn-CN", "en-US")


class StateError(ValueError):
    """Stored call state that cannot be read (corrupt, or another schema version)."""


@dataclass(frozen=True, slots=True)
class CallState:
    """One call's progress through the menu: all that survives between webhooks."""

    lang: str = "cmn-CN"
    node: str = ""
    stack: tuple[str, ...] = ()  # menus to return to with `*`
    silence: int = 0  # no-input turns in a row
    wrong: int = 0  # wrong keys in a row
    index: int = 0  # position in a paged list
    pending: str | None = None  # where to go once authenticated
    id_digest: str | None = None  # keyed hash of the ID number being authenticated
    id_masked: str | None = None  # first 3 + last 4 of it, for the call log
    id_tries: int = 0  # malformed ID numbers keyed in this attempt
    pin_failures: int = 0  # wrong PINs in this call
    account: int | None = None  # the authenticated account
    ended: bool = False

    @property
    def authenticated(self) -> bool:
        """Whether the caller has proved who they are in this call."""
        return self.account is not None

    def to_json(self) -> str:
        """Serialise for Redis (compact JSON, schema-versioned)."""
        data = {k: v for k in _FIELDS if (v := getattr(self, k)) != _DEFAULTS[k]}
        data["v"] = SCHEMA_VERSION
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str | bytes) -> CallState:
        """Read state written by `to_json`; raise StateError on anything else."""
        try:
            data = json.loads(raw)
            if data.pop("v") != SCHEMA_VERSION:
                raise StateError("call state has another schema version")
            if "stack" in data:
                data["stack"] = tuple(data["stack"])
            return cls(**data)
        except StateError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"unreadable call state: {type(exc).__name__}") from None


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(CallState)}
_FIELDS = tuple(_DEFAULTS)


# --- what the caller hears --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Money:
    """An amount (2-place decimal string) to be read out in the caller's language."""

    amount: str


@dataclass(frozen=True, slots=True)
class When:
    """An ISO 8601 date or date-time to be read out as a date (and time of day)."""

    iso: str
    with_time: bool = False


@dataclass(frozen=True, slots=True)
class Month:
    """A `YYYY-MM` month to be read out."""

    ym: str


@dataclass(frozen=True, slots=True)
class Term:
    """Another prompt, inserted by key (e.g. a category name)."""

    key: str


@dataclass(frozen=True, slots=True)
class Digits:
    """Digits read one by one (card numbers)."""

    digits: str


@dataclass(frozen=True, slots=True)
class Localized:
    """Text that the edge has already written in each language, e.g. the agents' hours."""

    texts: tuple[tuple[str, str], ...]

    def get(self, lang: str) -> str:
        """The text in `lang` (the first one if that language is missing)."""
        return dict(self.texts).get(lang, self.texts[0][1] if self.texts else "")


Param = str | int | Money | When | Month | Term | Digits | Localized


@dataclass(frozen=True, slots=True)
class Say:
    """One prompt, by key, with its named placeholders."""

    key: str
    params: tuple[tuple[str, Param], ...] = ()

    @classmethod
    def of(cls, key: str, **params: Param) -> Say:
        """A prompt with keyword placeholders."""
        return cls(key, tuple(sorted(params.items())))


@dataclass(frozen=True, slots=True)
class Gather:
    """Wait for keys: a fixed count, or until the finish key."""

    num_digits: int | None = 1
    finish_on_key: str = "#"
    timeout: int = 6


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """Put the caller through to an agent."""


@dataclass(frozen=True, slots=True)
class Record:
    """Record a voice message (ended by `#`, silence or the time limit)."""

    max_length: int = 120
    timeout: int = 5


@dataclass(frozen=True, slots=True)
class Reply:
    """What the caller hears next, then what happens."""

    says: tuple[Say, ...]
    then: Gather | Hangup | Transfer | Record


# --- events: what happened --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """A call has come in."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The caller keyed something (the finish key already stripped)."""

    keys: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NoInput:
    """The caller said nothing before the Gather timed out."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The account service answered a `Fetch` (or failed: `data` is None)."""

    effect: Fetch
    data: Any


@dataclass(frozen=True, slots=True)
class IdChecked:
    """A well-formed ID number was looked at: its digest, mask, whether it is locked, and
    whether this caller is refused for now (too many calls or ID numbers from one number)."""

    effect: CheckId
    digest: str
    masked: str
    locked: bool
    limited: bool = False


@dataclass(frozen=True, slots=True)
class PinChecked:
    """A PIN was checked: `ok` (with account), `wrong`, `locked`, `unavailable`, or not even
    checked because the ID number had its PIN checks for now (`limited`)."""

    outcome: Literal["ok", "wrong", "locked", "unavailable", "limited"]
    account: int | None = None


@dataclass(frozen=True, slots=True)
class TransferEnded:
    """The agent leg ended: `completed`, `busy`, `no-answer`, `failed`, `canceled`, ..."""

    status: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """A voice message was recorded: where Twilio keeps it and how long it is."""

    url: str
    duration: int


@dataclass(frozen=True, slots=True)
class Acted:
    """An `Act` or `SaveMessage` was carried out with `outcome`, or failed (None)."""

    effect: Act | SaveMessage
    outcome: str | None


Event = (
    Start | Keys | NoInput | Fetched | IdChecked | PinChecked | TransferEnded | Recorded | Acted
)


# --- effects: what the engine needs done ------------------------------------------


@dataclass(frozen=True, slots=True)
class Fetch:
    """Read `what` (balance, transactions, ...) of an account; `before` is said first."""

    what: str
    account: int
    before: tuple[Say, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckId:
    """Digest a well-formed ID number and look up its lock (the ID never leaves memory)."""

    id_number: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class VerifyPin:
    """Check a PIN for the ID number being authenticated, counting failures."""

    id_digest: str
    pin: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Act:
    """Change something in the account service (`report_card_lost`); its outcome comes back."""

    name: str
    account: int


@dataclass(frozen=True, slots=True)
class SaveMessage:
    """Keep a voice message as a callback request (with the masked ID if authenticated)."""

    url: str
    duration: int
    id_masked: str | None = None


Effect = Fetch | CheckId | VerifyPin | Act | SaveMessage


# --- the call log -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Log:
    """One call-log entry, already redacted: `kind` and plain JSON data."""

    kind: str
    data: tuple[tuple[str, str | int | None], ...] = ()

    @classmethod
    def of(cls, kind: str, **data: str | int | None) -> Log:
        """An entry with keyword data."""
        return cls(kind, tuple(data.items()))

    def as_dict(self) -> dict[str, str | int | None]:
        """The data as a dict."""
        return dict(self.data)


@dataclass(frozen=True, slots=True)
class Step:
    """The engine's answer: the new state, and either an effect to run or a reply."""

    state: CallState
    effect: Effect | None = None
    reply: Reply | None = None
    log: tuple[Log, ...] = ()
