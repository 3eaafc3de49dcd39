"""The call engine: `advance(menu, state, event)` -> `Step`. Pure: no Flask, Redis or Twilio.

The web layer feeds events (a call started, keys, silence, the result of an
effect) and gets back the new state plus either one effect to run (fetch data,
check an ID number, verify a PIN) or the reply the caller hears next. Every
call-log entry it emits is already redacted: an ID number is masked to its
first 3 and last 4 characters, a PIN is `******`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from services.accounts import idnumber

from .menu import ENTRY_KINDS, PAGED_KINDS, PASSIVE_KINDS, Menu, Node
from .state import (
    LANGS,
    Act,
    Acted,
    CallState,
    CheckId,
    Digits,
    Event,
    Fetch,
    Fetched,
    Gather,
    Hangup,
    IdChecked,
    Keys,
    Localized,
    Log,
    Money,
    Month,
    NoInput,
    Param,
    PinChecked,
    Record,
    Recorded,
    Reply,
    SaveMessage,
    Say,
    Start,
    Step,
    Term,
    Transfer,
    TransferEnded,
    VerifyPin,
    When,
)

PIN_MASK = "******"
PIN_LENGTH = 6
MAX_ID_TRIES = 3
MAX_PIN_FAILURES = 3

# Prompt keys the engine itself says (the menu table names the rest).
INVALID = "error.invalid"
SERVICE_DOWN = "error.service"
SILENT_GOODBYE = "goodbye.silence"
LIST_END = "list.end"
LIST_FIRST = "list.first"
ID_INVALID = "auth.id.invalid"
ID_TOO_MANY = "auth.id.too_many"
PIN_FORMAT = "auth.pin.format"
AUTH_WRONG = "auth.wrong"
AUTH_TOO_MANY = "auth.too_many"
AUTH_BLOCKED = "auth.blocked"
AUTH_LOCKED = "auth.locked"
AUTH_LIMITED = "auth.limited"
NO_MESSAGE = "voicemail.none"
ENGINE_PROMPTS = (
    INVALID, SERVICE_DOWN, SILENT_GOODBYE, LIST_END, LIST_FIRST, ID_INVALID, ID_TOO_MANY,
    PIN_FORMAT, AUTH_WRONG, AUTH_TOO_MANY, AUTH_BLOCKED, AUTH_LOCKED, AUTH_LIMITED, NO_MESSAGE,
)  # fmt: skip

Says = tuple[Say, ...]


NO_HOURS = Localized(())


@dataclass(frozen=True, slots=True)
class Context:
    """What the engine may know of the world outside the call: whether agents answer now,
    and their hours as the caller should hear them (for prompts with a `{hours}` placeholder)."""

    agents_open: bool = True
    agents_exist: bool = True
    hours: Localized = NO_HOURS

    def params(self, names: tuple[str, ...]) -> dict[str, Param]:
        """The context values a node's prompt uses."""
        values: dict[str, Param] = {"hours": self.hours}
        return {name: values[name] for name in names}


OPEN = Context()


def advance(menu: Menu, state: CallState, event: Event, ctx: Context = OPEN) -> Step:
    """Apply one event to a call: the new state, and an effect to run or a reply to play."""
    if isinstance(event, Start):
        return _enter(menu, CallState(), menu.start, ctx)
    node = menu[state.node]
    if node.kind == "record" and isinstance(event, NoInput | Keys):
        return _back(menu, state, ctx, (Say(NO_MESSAGE),))  # nothing was recorded
    if node.kind in PASSIVE_KINDS and isinstance(event, Keys | NoInput):
        return _enter(menu, state, node.name, ctx)  # a late webhook: say where the call is
    if isinstance(event, NoInput):
        return _silence(menu, state, node, ctx)
    if isinstance(event, Keys):
        return _keys(menu, replace(state, silence=0), node, event.keys, ctx)
    if isinstance(event, Fetched):
        return _present(menu, state, ctx, event.effect.before, fetched=event)
    if isinstance(event, Recorded) and node.kind != "record":
        return _enter(menu, state, node.name, ctx)  # a recording webhook out of turn
    if isinstance(event, Recorded):
        effect = SaveMessage(event.url, event.duration, state.id_masked if state.account else None)
        return Step(state, effect=effect)
    if isinstance(event, Acted):
        return _acted(menu, state, node, event, ctx)
    if isinstance(event, IdChecked):
        return _id_checked(menu, state, event, ctx)
    if isinstance(event, PinChecked):
        return _pin_checked(menu, state, event, ctx)
    if isinstance(event, TransferEnded):
        return _transfer_ended(menu, state, event, ctx)
    raise TypeError(f"not an event: {type(event).__name__}")


# --- moving between nodes ------------------------------------------------------------


def _enter(
    menu: Menu, state: CallState, target: str, ctx: Context, before: Says = (), push: bool = False
) -> Step:
    """Go to `target` (remembering where we were if `push`) and present it."""
    node = menu[target]
    # a transfer's own answer (agents busy, closed, none) is no place to come back to from it
    push = push and state.node not in (node.closed, node.none, node.busy)
    if target == _home(menu):
        state = replace(state, stack=())  # the main menu is the root: nothing to go back to
    elif push and target != state.node and menu[state.node].kind in ("menu", *PAGED_KINDS):
        state = replace(state, stack=(*state.stack, state.node))
    if node.auth and not state.authenticated:
        if state.pin_failures >= MAX_PIN_FAILURES:
            return _back(menu, state, ctx, (*before, Say(AUTH_BLOCKED)))
        state = replace(state, pending=target, id_tries=0)
        node = menu[menu.authenticate]
    state = replace(state, node=node.name, index=0, wrong=0)
    entered = Log.of("menu", node=node.name)
    if node.kind == "announce":
        assert node.next is not None
        return _logged(_enter(menu, state, node.next, ctx, (*before, *_says(node.say))), entered)
    if node.kind == "hangup":
        done = replace(state, ended=True)
        reply = Reply((*before, *_says(node.say)), Hangup())
        return Step(done, reply=reply, log=(entered, Log.of("hangup", reason="goodbye")))
    if node.kind == "transfer":
        if not ctx.agents_open:
            elsewhere = node.closed if ctx.agents_exist else node.none
            assert elsewhere is not None
            return _logged(_enter(menu, state, elsewhere, ctx, before), entered)
        reply = Reply((*before, *_says(node.say)), Transfer())
        return Step(state, reply=reply, log=(entered, Log.of("transfer", to="agent")))
    if node.kind == "record":
        reply = Reply((*before, *_says(node.say)), Record(max_length=node.max_length))
        return Step(state, reply=reply, log=(entered,))
    return _logged(_present(menu, state, ctx, before), entered)


def _back(menu: Menu, state: CallState, ctx: Context, before: Says = ()) -> Step:
    """Return to the menu the caller came from (the main menu if none)."""
    if state.stack:
        *rest, previous = state.stack
        return _enter(menu, replace(state, stack=tuple(rest)), previous, ctx, before)
    return _enter(menu, state, _home(menu), ctx, before)


def _home(menu: Menu) -> str:
    start = menu[menu.start]
    return start.next if start.kind == "announce" and start.next else start.name


def _logged(step: Step, *entries: Log) -> Step:
    return replace(step, log=(*entries, *step.log))


def _says(keys: tuple[str, ...]) -> Says:
    return tuple(Say(k) for k in keys)


# --- presenting a node -----------------------------------------------------------


def _present(
    menu: Menu, state: CallState, ctx: Context, before: Says = (), *, short: bool = False,
    fetched: Fetched | None = None,
) -> Step:  # fmt: skip
    """Say the current node's prompt and wait for keys (fetching its data first if it has any)."""
    node = menu[state.node]
    if node.source and not short and fetched is None:
        assert state.account is not None
        return Step(state, effect=Fetch(node.source, state.account, before))
    if fetched is not None and fetched.data is None:
        entry = Log.of("service", what=fetched.effect.what, outcome="unavailable")
        # going back may fetch again and fail again: the caller hears the apology once
        sorry = () if Say(SERVICE_DOWN) in before else (Say(SERVICE_DOWN),)
        return _logged(_back(menu, state, ctx, (*before, *sorry)), entry)
    data = fetched.data if fetched is not None else None
    if node.require and data is not None and any(
        data.get(k) != v for k, v in node.require.items()
    ):
        refused = Say.of(node.refused or "", **ITEM_PARAMS[node.source or ""](data))
        return _back(menu, state, ctx, (*before, refused))
    if short:
        body: Says = (Say(node.short or ""),)
    elif node.kind in PAGED_KINDS:
        items: list[Any] = list(node.parts if node.kind == "info" else data or ())
        if not items:
            return _back(menu, state, ctx, (*before, Say(node.empty or "")))
        index = min(max(state.index, 0), len(items) - 1)
        if index != state.index:
            before = (*before, Say(LIST_END if state.index > index else LIST_FIRST))
            state = replace(state, index=index)
        if node.kind == "info":
            item = Say(node.parts[index])
        else:
            params = ITEM_PARAMS[node.source or ""](items[index])
            item = Say.of(node.item or "", n=index + 1, count=len(items), **params)
        body = (item, Say(node.prompt or ""))
    else:
        params = ITEM_PARAMS[node.source](data) if node.source and data else {}
        params |= ctx.params(node.context)
        body = (Say.of(node.prompt or "", **params), *_says(node.also))
    return Step(state, reply=Reply((*before, *body), _gather(node)))


def _gather(node: Node) -> Gather:
    if node.kind == "id_entry":
        return Gather(num_digits=None, finish_on_key="#", timeout=node.timeout)
    if node.kind == "pin_entry":
        return Gather(num_digits=PIN_LENGTH, finish_on_key="#", timeout=node.timeout)
    return Gather(num_digits=1, finish_on_key="", timeout=node.timeout)


# --- input ---------------------------------------------------------------------


def _silence(menu: Menu, state: CallState, node: Node, ctx: Context) -> Step:
    state = replace(state, silence=state.silence + 1)
    entry = Log.of("silence", node=node.name, count=state.silence)
    if state.silence >= (node.max_silence or menu.max_silence):
        return _logged(_enter(menu, state, menu.goodbye, ctx, (Say(SILENT_GOODBYE),)), entry)
    return _logged(_present(menu, state, ctx, short=True), entry)


def _keys(menu: Menu, state: CallState, node: Node, keys: str, ctx: Context) -> Step:
    target = node.keys.get(keys)
    if node.kind in ENTRY_KINDS and target is None:
        return _entry(menu, state, node, keys, ctx)
    entry = Log.of("key", node=node.name, keys=keys)
    if node.kind == "rating" and keys in node.ratings:
        rated = Log.of("rating", value=node.ratings[keys])
        thanks = tuple(Say(k) for k in node.outcomes.values())
        assert node.next is not None
        return _logged(_enter(menu, state, node.next, ctx, thanks), entry, rated)
    if target is None:
        return _logged(_wrong_key(menu, state, ctx), entry)
    return _logged(_act(menu, state, node, target, ctx), entry)


def _wrong_key(menu: Menu, state: CallState, ctx: Context, say: str = INVALID) -> Step:
    state = replace(state, wrong=state.wrong + 1)
    if state.wrong >= menu.max_wrong:
        target = menu.agent if ctx.agents_open else menu.goodbye
        return _enter(menu, state, target, ctx, (Say(say),), push=True)
    return _present(menu, state, ctx, (Say(say),))


def _act(menu: Menu, state: CallState, node: Node, target: str, ctx: Context) -> Step:
    state = replace(state, wrong=0)  # a right key: earlier wrong keys are no longer "in a row"
    if target == "@repeat":
        return _present(menu, state, ctx)
    if target == "@back":
        return _back(menu, state, ctx)
    if target in ("@next", "@previous"):
        step = 1 if target == "@next" else -1
        return _present(menu, replace(state, index=state.index + step), ctx)
    if target == "@language":
        lang = LANGS[(LANGS.index(state.lang) + 1) % len(LANGS)]
        entry = Log.of("language", lang=lang)
        return _logged(_present(menu, replace(state, lang=lang), ctx), entry)
    if target == "@confirm":
        assert node.act is not None and state.account is not None
        return Step(state, effect=Act(node.act, state.account))
    if target == "@cancel":
        return _back(menu, state, ctx, (Say(node.cancelled or ""),))
    pushes = menu[target].kind in ("menu", *PAGED_KINDS, "transfer", "record")
    return _enter(menu, state, target, ctx, push=pushes)


def _entry(menu: Menu, state: CallState, node: Node, keys: str, ctx: Context) -> Step:
    """Keys typed into the ID number or PIN entry: check them (never log them)."""
    if node.kind == "id_entry":
        id_number = idnumber.normalize(keys)
        entry = Log.of("key", node=node.name, keys=idnumber.mask(id_number))
        if idnumber.is_valid(id_number):
            return Step(state, effect=CheckId(id_number), log=(entry,))
        state = replace(state, id_tries=state.id_tries + 1)
        result = Log.of("auth", result="invalid_id")
        if state.id_tries >= MAX_ID_TRIES:
            return _logged(_back(menu, state, ctx, (Say(ID_TOO_MANY),)), entry, result)
        return _logged(_present(menu, state, ctx, (Say(ID_INVALID),)), entry, result)
    entry = Log.of("key", node=node.name, keys=PIN_MASK)
    if len(keys) != PIN_LENGTH or not keys.isdigit():
        return _logged(_wrong_key(menu, state, ctx, PIN_FORMAT), entry)
    assert state.id_digest is not None
    return Step(state, effect=VerifyPin(state.id_digest, keys), log=(entry,))


def _id_checked(menu: Menu, state: CallState, event: IdChecked, ctx: Context) -> Step:
    if event.limited:  # too many calls or ID numbers from this number: no PIN is asked
        entry = Log.of("auth", result="limited", id=event.masked)
        return _logged(_back(menu, state, ctx, (Say(AUTH_LIMITED),)), entry)
    if event.locked:
        entry = Log.of("auth", result="locked", id=event.masked)
        return _logged(_back(menu, state, ctx, (Say(AUTH_LOCKED),)), entry)
    state = replace(state, id_digest=event.digest, id_masked=event.masked)
    return _enter(menu, state, menu.pin, ctx)


def _pin_checked(menu: Menu, state: CallState, event: PinChecked, ctx: Context) -> Step:
    entry = Log.of("auth", result=event.outcome, id=state.id_masked)
    if event.outcome == "ok":
        state = replace(state, account=event.account, id_digest=None, pin_failures=0)
        target, state = state.pending or _home(menu), replace(state, pending=None)
        return _logged(_enter(menu, state, target, ctx), entry)
    forget = replace(state, id_digest=None, pending=None)
    if event.outcome == "wrong":
        state = replace(state, pin_failures=state.pin_failures + 1)
        if state.pin_failures < MAX_PIN_FAILURES:
            return _logged(_present(menu, state, ctx, (Say(AUTH_WRONG),)), entry)
        forget = replace(forget, pin_failures=state.pin_failures)
        return _logged(_back(menu, forget, ctx, (Say(AUTH_WRONG), Say(AUTH_TOO_MANY))), entry)
    say = {"locked": AUTH_LOCKED, "limited": AUTH_LIMITED}.get(event.outcome, SERVICE_DOWN)
    return _logged(_back(menu, forget, ctx, (Say(say),)), entry)


def _transfer_ended(menu: Menu, state: CallState, event: TransferEnded, ctx: Context) -> Step:
    entry = Log.of("transfer_ended", status=event.status)
    node = menu[state.node]
    if node.kind != "transfer":  # a late or forged transfer webhook: say where the call is
        return _logged(_present(menu, state, ctx), entry)
    talked = event.status in ("completed", "bridged")
    target = (node.after or menu.goodbye) if talked else node.busy
    assert target is not None
    return _logged(_enter(menu, state, target, ctx), entry)


def _acted(menu: Menu, state: CallState, node: Node, event: Acted, ctx: Context) -> Step:
    """The account service (or the callback list) did what `@confirm` / a recording asked."""
    name = event.effect.name if isinstance(event.effect, Act) else "save_message"
    entry = Log.of("act", name=name, outcome=event.outcome or "unavailable")
    said = node.outcomes.get(event.outcome or "")
    if said is None:
        return _logged(_back(menu, state, ctx, (Say(SERVICE_DOWN),)), entry)
    if node.next:
        return _logged(_enter(menu, state, node.next, ctx, (Say(said),)), entry)
    return _logged(_back(menu, state, ctx, (Say(said),)), entry)


# --- account data as prompt placeholders -------------------------------------------


def _balance(data: Mapping[str, Any]) -> dict[str, Param]:
    return {"amount": Money(data["amount"])}


def _transaction(data: Mapping[str, Any]) -> dict[str, Param]:
    return {
        "date": When(data["time"]),
        "place": str(data["place"]),
        "category": Term(f"category.{data['category']}"),
        "total": Money(data["total"]),
        "pooled": Money(data["pooled_fund"]),
        "personal": Money(data["personal_account"]),
        "cash": Money(data["cash"]),
    }


def _contribution(data: Mapping[str, Any]) -> dict[str, Param]:
    return {
        "month": Month(data["month"]),
        "employer": str(data["employer"]),
        "base": Money(data["base"]),
        "credit": Money(data["personal_account_credit"]),
        "status": Term(f"contribution.{data['status']}"),
    }


def _card(data: Mapping[str, Any]) -> dict[str, Param]:
    return {"last4": Digits(data["last4"]), "status": Term(f"card.state.{data['status']}")}


ITEM_PARAMS: dict[str, Callable[[Mapping[str, Any]], dict[str, Param]]] = {
    "balance": _balance,
    "transactions": _transaction,
    "contributions": _contribution,
    "card": _card,
}
