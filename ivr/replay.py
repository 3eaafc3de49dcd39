"""`ivr calls replay`: re-drive a recorded call through the current menu, show where it differs.

The regression check for a menu change (issue 4, item 7). The call log holds what the caller
pressed and heard, redacted: an ID number only as its mask, a PIN only as `******`. So the
replay cannot key them again; where the caller entered one, the engine is fed what the log says
happened instead:

- an ID number the hotline accepted: a synthetic valid ID, checked as the recorded mask (and
  locked if the log says it was); an ID number it refused: a synthetic invalid one;
- a PIN: a synthetic well-formed PIN whose check has the recorded outcome (`ok`, `wrong`,
  `locked`, `unavailable`), or a malformed one where the caller keyed a malformed PIN;
- silence, the end of an agent call, a voice message, an account-service action: as recorded;
- account data: `SandboxAccounts`, the demo accounts in memory (the account with the recorded
  ID mask if there is one), failing where the recorded call's service failed, and shaped by
  what the caller heard where the data decides the flow: how many records a list had, the
  status of a card.

The sandbox's data is not the caller's, so prompts are compared by key, in order, and by text
only where the prompt has no placeholders. Pure: no HTTP, no Redis, no database.
"""

from __future__ import annotations

import datetime
import difflib
import hmac
import itertools
import json
import re
import string
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any, Literal, get_args

from services.accounts import idnumber
from services.accounts.errors import AccountsError, NotFound
from services.accounts.records import AccountRecord, parse_accounts
from services.accounts.types import Balance, Card, Contribution, LossReport, PinResult, Transaction

from .calllog import CallRecord, Entry
from .catalog import Catalog
from .machine import ITEM_PARAMS, PIN_MASK, Context, advance
from .menu import Menu
from .state import (
    Act,
    Acted,
    CallState,
    CheckId,
    Effect,
    Event,
    Fetch,
    Fetched,
    Hangup,
    IdChecked,
    Keys,
    NoInput,
    PinChecked,
    Recorded,
    Reply,
    SaveMessage,
    Say,
    Start,
    Term,
    Transfer,
    TransferEnded,
    VerifyPin,
)

# What the replay keys where the caller keyed an ID number or a PIN (never the caller's own).
_FIRST17 = "99999919000101000"  # no such region: a valid-looking ID number of nobody
SANDBOX_ID = _FIRST17 + idnumber.check_char(_FIRST17)
INVALID_ID = "0" * 18  # fails the check digit (and the birth date)
SANDBOX_PIN = "0" * 6
MALFORMED_PIN = "0" * 5
SANDBOX_PEPPER = "replay-sandbox"

PinOutcome = Literal["ok", "wrong", "locked", "unavailable"]
PIN_OUTCOMES: dict[str, PinOutcome] = {o: o for o in get_args(PinOutcome)}
INPUT_KINDS = ("key", "silence", "transfer_ended")  # entries that open a webhook's entries
OUTSIDE_TURNS = ("start", "end")  # written by the call's start and its status callback
SAVE_MESSAGE = "save_message"  # the `act` name the engine logs for a SaveMessage
MAX_EFFECTS = 20  # effects in one step before the replay gives up (an engine loop)

WAITS, HANGS_UP, TRANSFERS, ENDED = "waits for the caller", "hangs up", "transfers", "has ended"


# --- the sandbox account service ---------------------------------------------------------


class SandboxAccounts:
    """The account service for replays: demo-shaped accounts in memory (an `AccountsClient`).

    Accounts are numbered from 1 in the order given; each is named by the digest of its ID
    number under a sandbox pepper, and can be found by its mask (first 3 + last 4)."""

    def __init__(self, records: Sequence[AccountRecord], as_of: datetime.datetime) -> None:
        if not records:
            raise ValueError("a sandbox needs at least one account")
        self._pins: dict[int, str] = {}
        self._digests: dict[str, int] = {}
        self._masks: dict[str, int] = {}
        self._data: dict[int, dict[str, Any]] = {}
        for number, record in enumerate(records, 1):
            self._pins[number] = record.pin
            self._digests[idnumber.digest(SANDBOX_PEPPER, record.id_number)] = number
            self._masks.setdefault(idnumber.mask(record.id_number), number)
            self._data[number] = {
                "balance": Balance(amount=record.balance, as_of=as_of),
                "transactions": sorted(record.transactions, key=lambda t: t.time, reverse=True),
                "contributions": sorted(record.contributions, key=lambda c: c.month, reverse=True),
                "card": Card(last4=record.card.number[-4:], status=record.card.status),
            }

    @classmethod
    def demo(cls, as_of: datetime.datetime) -> SandboxAccounts:
        """The demo accounts (`services/accounts/demo_accounts.json`), read into memory."""
        text = resources.files("services.accounts").joinpath("demo_accounts.json")
        return cls(parse_accounts(json.loads(text.read_text(encoding="utf-8"))), as_of)

    def accounts(self) -> tuple[int, ...]:
        """Every account's number."""
        return tuple(self._data)

    def digest_for(self, masked: str) -> str:
        """The digest naming the account with this ID mask (the first account if none has it)."""
        wanted = self._masks.get(masked, 1)
        return next(d for d, number in self._digests.items() if number == wanted)

    def account_of(self, id_digest: str) -> int | None:
        """The account a digest names, or None."""
        return self._digests.get(id_digest)

    def _get(self, account_id: int, what: str) -> Any:
        try:
            return self._data[account_id][what]
        except KeyError:
            raise NotFound(f"no account {account_id}") from None

    def verify_pin(self, id_digest: str, pin: str) -> PinResult:
        """Check a PIN against the sandbox account the digest names."""
        number = self._digests.get(id_digest)
        ok = number is not None and hmac.compare_digest(pin, self._pins[number])
        return PinResult(ok=ok, account_id=number if ok else None)

    def balance(self, account_id: int) -> Balance:
        """The personal-account balance."""
        value: Balance = self._get(account_id, "balance")
        return value

    def transactions(self, account_id: int) -> list[Transaction]:
        """Recent transactions, newest first."""
        return list(self._get(account_id, "transactions"))

    def contributions(self, account_id: int) -> list[Contribution]:
        """Contribution records, newest month first."""
        return list(self._get(account_id, "contributions"))

    def card(self, account_id: int) -> Card:
        """The card's last 4 characters and status."""
        value: Card = self._get(account_id, "card")
        return value

    def report_card_lost(self, account_id: int) -> LossReport:
        """Suspend the card if it is active (in memory)."""
        card = self.card(account_id)
        if card.status != "active":
            outcome = "already_suspended" if card.status == "suspended" else "cancelled"
            return LossReport(outcome=outcome)
        self._data[account_id]["card"] = replace(card, status="suspended")
        return LossReport(outcome="suspended")


# --- the recorded call -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Turn:
    """One webhook of the recorded call: the entries the hotline wrote for it, in order."""

    number: int
    entries: tuple[Entry, ...]

    def of(self, kind: str) -> list[dict[str, Any]]:
        """The data of this step's entries of one kind."""
        return [e.data for e in self.entries if e.kind == kind]

    @property
    def prompts(self) -> list[tuple[str, str]]:
        """What the caller heard: (prompt key, text)."""
        return [(str(d.get("key", "")), str(d.get("text", ""))) for d in self.of("prompt")]

    @property
    def then(self) -> str:
        """What the hotline did after speaking: hang up, transfer, or wait for the caller."""
        kinds = {e.kind for e in self.entries}
        return HANGS_UP if "hangup" in kinds else TRANSFERS if "transfer" in kinds else WAITS

    @property
    def nodes(self) -> list[str]:
        """The menu nodes entered, in order."""
        return [str(d.get("node", "")) for d in self.of("menu")]


def turns(timeline: Iterable[Entry]) -> list[Turn]:
    """Split a call's timeline into its webhooks: each is an input (or the call's start), some
    entries, and the prompts it answered with, which always come last."""
    groups: list[list[Entry]] = []
    previous = ""
    for entry in timeline:
        if entry.kind in OUTSIDE_TURNS:
            continue
        opens = entry.kind in INPUT_KINDS or (entry.kind != "prompt" and previous == "prompt")
        if opens or not groups:
            groups.append([])
        groups[-1].append(entry)
        previous = entry.kind
    return [Turn(n, tuple(group)) for n, group in enumerate(groups, 1)]


@dataclass(frozen=True, slots=True)
class Input:
    """What the caller did at one step, as the call log shows it (masked)."""

    kind: str  # start keys id bad_id pin bad_pin silence transfer_ended recorded other
    keys: str = ""
    node: str = ""
    outcome: str = ""  # a PIN check's outcome, "locked" for an ID, an agent call's status

    @property
    def label(self) -> str:
        """A short description for people."""
        where = f" in {self.node}" if self.node else ""
        match self.kind:
            case "start":
                return "the call comes in"
            case "keys":
                return f"pressed {self.keys}{where}"
            case "id":
                return f"keyed ID {self.keys}{where}" + (" (locked)" if self.outcome else "")
            case "bad_id":
                return f"keyed an invalid ID {self.keys or '(nothing)'}{where}"
            case "pin":
                return f"keyed PIN {PIN_MASK}{where} (check: {self.outcome})"
            case "bad_pin":
                return f"keyed PIN {PIN_MASK}{where} (not 6 digits)"
            case "silence":
                return f"silence{where}"
            case "transfer_ended":
                return f"the agent call ended ({self.outcome})"
            case "recorded":
                return "left a voice message"
        return "a webhook with no input in the log"


def read_input(turn: Turn) -> Input:
    """Classify what the caller did at a recorded step."""
    if turn.number == 1:
        return Input("start")
    first = turn.entries[0]
    node = str(first.data.get("node", ""))
    if first.kind == "silence":
        return Input("silence", node=node)
    if first.kind == "transfer_ended":
        return Input("transfer_ended", outcome=str(first.data.get("status", "")))
    if first.kind == "key":
        keys = str(first.data.get("keys", ""))
        auth = next((str(d.get("result", "")) for d in turn.of("auth")), "")
        if auth == "invalid_id":
            return Input("bad_id", keys, node)
        if keys == PIN_MASK:
            if auth in PIN_OUTCOMES:
                return Input("pin", keys, node, auth)
            return Input("bad_pin", keys, node)
        if _is_id_mask(keys):
            return Input("id", keys, node, "locked" if auth == "locked" else "")
        return Input("keys", keys, node)
    if first.kind == "act" and first.data.get("name") == SAVE_MESSAGE:
        return Input("recorded")
    return Input("other")


def _is_id_mask(keys: str) -> bool:
    """Whether keys logged at an ID entry are the mask of a full 18-character ID number."""
    return len(keys) == 18 and keys[3:14] == "*" * 11 and "*" not in keys[:3] + keys[14:]


def _event(did: Input) -> Event:
    """The event that re-does a recorded input (synthetic keys where the log has a mask)."""
    match did.kind:
        case "start":
            return Start()
        case "keys":
            return Keys(did.keys)
        case "id":
            return Keys(SANDBOX_ID)
        case "bad_id":
            return Keys(INVALID_ID)
        case "pin":
            return Keys(SANDBOX_PIN)
        case "bad_pin":
            return Keys(MALFORMED_PIN)
        case "transfer_ended":
            return TransferEnded(did.outcome)
        case "recorded":
            return Recorded("sandbox:voice-message", 1)
    return NoInput()  # silence, or a late webhook: the engine says where the call is


# --- the result --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heard:
    """One prompt: its key, its text, and whether the text carries data (then it may differ)."""

    key: str
    text: str
    data: bool = False

    @property
    def token(self) -> tuple[str, str | None]:
        """What is compared: the key, and the text unless it carries data."""
        return (self.key, None if self.data else self.text)


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One step of the call: what the caller did, what they heard then, what they would now."""

    number: int
    did: str
    heard: tuple[Heard, ...]
    now: tuple[Heard, ...]
    heard_then: str
    now_then: str
    note: str = ""
    where: str = ""  # the node the caller was in, as recorded
    replay_where: str = ""  # the node the replayed call was in when the input came

    @property
    def same(self) -> bool:
        """Whether the caller would hear the same prompts and the call go on the same way."""
        return (
            not self.note
            and [h.token for h in self.heard] == [h.token for h in self.now]
            and self.heard_then == self.now_then
        )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """A recorded call replayed through the current menu, step by step."""

    call_sid: str
    started_at: datetime.datetime
    lang: str
    steps: tuple[ReplayStep, ...]

    @property
    def differences(self) -> tuple[int, ...]:
        """The numbers of the steps that differ."""
        return tuple(s.number for s in self.steps if not s.same)

    @property
    def first_difference(self) -> int | None:
        """The number of the first step that differs, or None."""
        return self.differences[0] if self.differences else None

    @property
    def identical(self) -> bool:
        """Whether the whole call would sound as the caller heard it."""
        return not self.differences


# --- the replay --------------------------------------------------------------------------


class _Stop(Exception):
    """The replay cannot go on (an effect it cannot run, an engine failure)."""


def replay(
    menu: Menu,
    catalog: Catalog,
    record: CallRecord,
    *,
    accounts: SandboxAccounts | None = None,
    context: Context | None = None,
    zone: datetime.tzinfo | None = None,
) -> ReplayResult:
    """Re-drive a recorded call through `menu` and `catalog`: each step compared with the log.

    `accounts` defaults to the demo accounts; `context` (whether agents answer, their hours) is
    used where the recording does not show it; `zone` is the hotline's time zone for dates."""
    zone = zone or zoneinfo.ZoneInfo("Asia/Shanghai")
    sandbox = accounts or SandboxAccounts.demo(record.started_at)
    return _Replayer(menu, catalog, record, sandbox, context or Context(), zone).run()


class _Replayer:
    def __init__(
        self, menu: Menu, catalog: Catalog, record: CallRecord, accounts: SandboxAccounts,
        context: Context, zone: datetime.tzinfo,
    ) -> None:  # fmt: skip
        self.menu = menu
        self.catalog = catalog
        self.record = record
        self.accounts = accounts
        self.zone = zone
        self.today = record.started_at.astimezone(zone).date()
        self.turns = turns(record.timeline)
        self.data_keys = {  # prompts with placeholders: their text may carry account data
            k for table in catalog.prompts.values() for k, p in table.items() if p.placeholders()
        }
        self.sources = self._sources()
        self.base = self._call_context(context)

    # --- driving the engine ----------------------------------------------------------

    def run(self) -> ReplayResult:
        lang = self._start_lang()
        state = CallState()
        stop = ""
        steps: list[ReplayStep] = []
        for turn in self.turns:
            did = read_input(turn)
            heard = tuple(Heard(k, t, k in self.data_keys) for k, t in turn.prompts)
            where = (did.node, state.node)
            if stop or state.ended:
                note = stop or "the replayed call had already ended"
                steps.append(ReplayStep(turn.number, did.label, heard, (), turn.then, ENDED, note,
                                        *where))  # fmt: skip
                continue
            try:
                state, reply = self._step(state, turn, did, lang)
            except _Stop as exc:
                stop = f"the replay stopped here: {exc}"
                steps.append(ReplayStep(turn.number, did.label, heard, (), turn.then, "", stop,
                                        *where))  # fmt: skip
                continue
            now = tuple(self._say(say, state.lang) for say in reply.says)
            steps.append(ReplayStep(turn.number, did.label, heard, now, turn.then, _then(reply),
                                    "", *where))  # fmt: skip
        return ReplayResult(self.record.call_sid, self.record.started_at, lang, tuple(steps))

    def _step(self, state: CallState, turn: Turn, did: Input, lang: str) -> tuple[CallState, Reply]:
        """Apply one recorded step: its event, then every effect the engine asks for."""
        ctx = self._context(turn)
        event = _event(did)
        used: dict[str, int] = {}  # account-service calls made so far in this step, by name
        try:
            step = advance(self.menu, state, event, ctx)
            if isinstance(event, Start):  # the call's own language from its first words
                step = replace(step, state=replace(step.state, lang=lang))
            for _ in range(MAX_EFFECTS):
                if step.effect is None:
                    break
                result = self._run(step.effect, turn, did, used)
                step = advance(self.menu, step.state, result, ctx)
        except _Stop:
            raise
        except Exception as exc:  # the engine failed on this menu: that is the finding
            raise _Stop(f"the engine failed with {type(exc).__name__}: {exc}") from None
        if step.reply is None:
            raise _Stop(f"more than {MAX_EFFECTS} effects in one step")
        return step.state, step.reply

    def _run(self, effect: Effect, turn: Turn, did: Input, used: dict[str, int]) -> Event:
        """Run an effect against the sandbox, with the outcome the recording shows if it has one."""
        if isinstance(effect, CheckId):
            masked = did.keys if did.kind == "id" else idnumber.mask(effect.id_number)
            locked = did.kind == "id" and did.outcome == "locked"
            return IdChecked(effect, self.accounts.digest_for(masked), masked, locked)
        if isinstance(effect, VerifyPin):
            checked = PIN_OUTCOMES.get(did.outcome, "wrong") if did.kind == "pin" else "wrong"
            if checked == "ok":
                account = self.accounts.account_of(effect.id_digest) or self.accounts.accounts()[0]
                return PinChecked("ok", account)
            return PinChecked(checked)
        if isinstance(effect, Fetch):
            if self._recorded_call(turn, effect.what, used) not in ("ok", None):
                return Fetched(effect, None)
            try:
                data = _as_json(getattr(self.accounts, effect.what)(effect.account))
            except AttributeError:
                raise _Stop(f"the sandbox has no {effect.what!r} data") from None
            except AccountsError:
                return Fetched(effect, None)
            return Fetched(effect, self._shaped(turn, effect.what, data))
        if isinstance(effect, Act):
            recorded = self._recorded_act(turn, effect.name, used)
            method = getattr(self.accounts, effect.name, None)
            if method is None and recorded is None:
                raise _Stop(f"the sandbox cannot {effect.name!r}")
            outcome: str | None = None
            if method is not None:
                try:
                    outcome = method(effect.account).outcome  # keeps the sandbox in step
                except AccountsError:
                    outcome = None
            if recorded is not None:  # the outcome the caller heard
                outcome = None if recorded == "unavailable" else recorded
            return Acted(effect, outcome)
        if isinstance(effect, SaveMessage):
            recorded = self._recorded_act(turn, SAVE_MESSAGE, used)
            return Acted(effect, "saved" if recorded is None else recorded)
        raise _Stop(f"the replay cannot run {type(effect).__name__} effects")

    def _recorded_call(self, turn: Turn, name: str, used: dict[str, int]) -> str | None:
        """The outcome of the recorded step's next account-service call `name` (None: none)."""
        outcomes = [str(d.get("outcome")) for d in turn.of("service") if d.get("call") == name]
        index = used.get(name, 0)
        used[name] = index + 1
        return outcomes[index] if index < len(outcomes) else None

    def _recorded_act(self, turn: Turn, name: str, used: dict[str, int]) -> str | None:
        outcomes = [str(d.get("outcome")) for d in turn.of("act") if d.get("name") == name]
        index = used.get(f"act:{name}", 0)
        used[f"act:{name}"] = index + 1
        return outcomes[index] if index < len(outcomes) else None

    def _say(self, say: Say, lang: str) -> Heard:
        try:
            text = self.catalog.render(say, lang, self.today, self.zone).text
        except Exception as exc:  # a prompt the current catalog cannot say: a difference
            text = f"<cannot be said: {type(exc).__name__}: {exc}>"
        return Heard(say.key, text, say.key in self.data_keys)

    # --- the world the call met: agents, language --------------------------------------

    def _agents(self, turn: Turn) -> tuple[bool, bool] | None:
        """(agents open, agents exist) as this recorded step shows them, or None."""
        if turn.of("transfer"):
            return True, True
        nodes = turn.nodes
        for name, following in itertools.pairwise(nodes):
            node = self.menu.nodes.get(name)
            if node is not None and node.kind == "transfer":
                if following == node.closed:
                    return False, True
                if following == node.none:
                    return False, False
        return None

    def _call_context(self, given: Context) -> Context:
        """The context for steps that show nothing of the agents: the call's first evidence."""
        for turn in self.turns:
            seen = self._agents(turn)
            if seen is not None:
                return replace(given, agents_open=seen[0], agents_exist=seen[1])
        return given

    def _context(self, turn: Turn) -> Context:
        seen = self._agents(turn)
        if seen is None:
            return self.base
        return replace(self.base, agents_open=seen[0], agents_exist=seen[1])

    def _start_lang(self) -> str:
        """The language the call began in: the one its first fixed prompt was said in."""
        for turn in self.turns:
            if turn.of("language"):
                break
            for key, text in turn.prompts:
                if key in self.data_keys:
                    continue
                langs = [lang for lang, table in self.catalog.prompts.items()
                         if key in table and table[key].text == text]  # fmt: skip
                if len(langs) == 1:
                    return langs[0]
        switches = [str(d.get("lang")) for t in self.turns for d in t.of("language")]
        langs = list(self.catalog.prompts)
        if switches and switches[0] in langs and len(langs) == 2:
            return next(lang for lang in langs if lang != switches[0])
        return self.record.lang

    # --- account data shaped by what the caller heard ----------------------------------

    def _sources(self) -> dict[str, set[str]]:
        """Prompt key -> the data sources whose values it says (from the current menu)."""
        out: dict[str, set[str]] = {}
        for node in self.menu.nodes.values():
            if node.source:
                for key in (node.prompt, node.item, node.empty, getattr(node, "refused", None)):
                    if key:
                        out.setdefault(key, set()).add(node.source)
        return out

    def _shaped(self, turn: Turn, source: str, data: Any) -> Any:
        """`data` with what the caller heard of `source` in this step: its length, its terms."""
        empties = {n.empty for n in self.menu.nodes.values() if n.source == source and n.empty}
        for key, text in turn.prompts:
            if isinstance(data, list) and key in empties:
                return []
            if source not in self.sources.get(key, ()):
                continue
            for lang, table in self.catalog.prompts.items():
                template = table.get(key)
                values = _match(template.text, text) if template else None
                if values is None:
                    continue
                if isinstance(data, list):
                    count = values.get("count", "").replace(",", "")
                    if count.isdigit():
                        return self._resized(source, data, int(count))
                elif isinstance(data, dict):
                    return data | self._terms(source, data, values, lang)
                break
        return data

    def _resized(self, source: str, items: list[Any], count: int) -> list[Any]:
        if count <= len(items):
            return items[:count]
        pool = items or [
            item
            for account in self.accounts.accounts()
            for item in _as_json(getattr(self.accounts, source)(account))
        ]
        return [pool[i % len(pool)] for i in range(count)] if pool else items

    def _terms(
        self, source: str, data: dict[str, Any], values: Mapping[str, str], lang: str
    ) -> dict[str, Any]:
        """Fields of `data` said as a term (a card's status): the value the caller heard."""
        params = ITEM_PARAMS.get(source)
        if params is None:
            return {}
        table = self.catalog.prompts[lang]
        out: dict[str, Any] = {}
        for name, param in params(data).items():
            if not isinstance(param, Term) or name not in values:
                continue
            for fieldname, value in data.items():
                if isinstance(value, str) and value and param.key.endswith(value):
                    prefix = param.key.removesuffix(value)
                    heard = [k.removeprefix(prefix) for k, p in table.items()
                             if k.startswith(prefix) and p.text == values[name]]  # fmt: skip
                    if len(heard) == 1:
                        out[fieldname] = heard[0]
        return out


def _then(reply: Reply) -> str:
    if isinstance(reply.then, Hangup):
        return HANGS_UP
    if isinstance(reply.then, Transfer):
        return TRANSFERS
    return WAITS


def _as_json(value: Any) -> Any:
    if isinstance(value, list):
        return [item.to_json() for item in value]
    return value.to_json()


_PATTERNS: dict[str, re.Pattern[str]] = {}


def _match(template: str, text: str) -> dict[str, str] | None:
    """The placeholder values that make `template` read `text`, or None if it cannot."""
    pattern = _PATTERNS.get(template)
    if pattern is None:
        parts: list[str] = []
        seen: set[str] = set()
        for literal, name, _spec, _conversion in string.Formatter().parse(template):
            parts.append(re.escape(literal))
            if name:
                parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.*?)")
                seen.add(name)
        pattern = _PATTERNS.setdefault(template, re.compile("".join(parts), re.DOTALL))
    found = pattern.fullmatch(text)
    return found.groupdict() if found else None


# --- the report --------------------------------------------------------------------------

_KEY_WIDTH = 24


def render(result: ReplayResult) -> str:
    """The replay for people: each step, what the caller heard and, where it differs, what the
    current menu says instead (`-` heard then, `+` said now), then a summary line."""
    first = result.first_difference
    lines = [
        f"Replay of call {result.call_sid} ({result.started_at:%Y-%m-%d %H:%M:%S} UTC, "
        f"{result.lang}) through the current menu, with sandbox account data.",
        "Prompts are compared by key; by text too where they carry no account data.",
        "",
    ]
    for step in result.steps:
        if step.same:
            lines.append(f"   step {step.number:>2}  same     {step.did}")
            lines.extend(f"               {_prompt(h)}" for h in step.heard)
            continue
        moved = step.where and step.replay_where and step.where != step.replay_where
        elsewhere = f" (the replay was in {step.replay_where})" if moved else ""
        tail = "   <- first difference" if step.number == first else ""
        lines.append(f">> step {step.number:>2}  DIFFERS  {step.did}{elsewhere}{tail}")
        lines.extend(f"             {line}" for line in _diff(step.heard, step.now))
        if step.heard_then != step.now_then:
            lines.append(f"             - then the hotline {step.heard_then}")
            lines.append(f"             + then the hotline {step.now_then}")
        if step.note:
            lines.append(f"             ! {step.note}")
    lines += ["", summary(result)]
    return "\n".join(lines)


def summary(result: ReplayResult) -> str:
    """One line: the same, or how many steps differ and which first."""
    total = len(result.steps)
    if not total:
        return "Nothing to compare: the call log holds no steps of this call."
    if result.identical:
        return f"Same: all {total} steps sound as the caller heard them."
    first = next(s for s in result.steps if not s.same)
    count = len(result.differences)
    return (f"Different: {count} of {total} steps differ; "
            f"the first is step {first.number} ({first.did}).")  # fmt: skip


def _prompt(heard: Heard) -> str:
    return f"{heard.key:<{_KEY_WIDTH}} {heard.text}"


def _diff(heard: Sequence[Heard], now: Sequence[Heard]) -> list[str]:
    matcher = difflib.SequenceMatcher(
        a=[h.token for h in heard], b=[h.token for h in now], autojunk=False
    )
    out: list[str] = []
    for tag, a1, a2, b1, b2 in matcher.get_opcodes():
        if tag == "equal":
            out.extend(f"  {_prompt(h)}" for h in heard[a1:a2])
            continue
        out.extend(f"- {_prompt(h)}" for h in heard[a1:a2])
        out.extend(f"+ {_prompt(h)}" for h in now[b1:b2])
    return out
