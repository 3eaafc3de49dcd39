"""The call engine, `advance(menu, state, event, ctx)`, driven with plain tables of
(state, event) -> what the caller hears next, what happens then, and where the call is."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from ivr import machine, menu
from ivr.machine import OPEN, Context, advance
from ivr.state import (
    SCHEMA_VERSION,
    CallState,
    CheckId,
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
    NoInput,
    PinChecked,
    Record,
    Reply,
    Say,
    Start,
    StateError,
    Step,
    Term,
    Transfer,
    TransferEnded,
    VerifyPin,
    When,
)

FLOW = menu.load()
CLOSED = Context(agents_open=False, hours=Localized((("cmn-CN", "周一至周五"), ("en-US", "Mon"))))

ZHANG = "11010519491231002X"
KEYED = "11010519491231002*"  # as keyed on a phone: * for X
WRONG_CHECK = "110105194912310021"
MASKED = "110***********002X"
PIN = "135790"
DIGEST = "d" * 64
ACCOUNT = 7

MAIN_MENU = ("main.menu", "main.other_language")
ONE_KEY = Gather(num_digits=1, finish_on_key="", timeout=6)
ENTER_ID = Gather(num_digits=None, finish_on_key="#", timeout=15)
ID_GATHER = Gather(num_digits=None, finish_on_key="#", timeout=15)
PIN_GATHER = Gather(num_digits=6, finish_on_key="#", timeout=10)

TRANSACTIONS = [
    {"time": f"2026-11-{day}T10:15:00+08:00", "place": place, "category": category,
     "total": total, "pooled_fund": "0.00", "personal_account": total, "cash": "0.00"}
    for day, place, category, total in [
        ("21", "北京同仁堂王府井药店", "pharmacy", "86.50"),
        ("20", "北京协和医院", "outpatient", "500.00"),
        ("02", "北京朝阳医院", "deposit", "3000.00"),
    ]
]  # fmt: skip


def heard(step: Step) -> tuple[str, ...]:
    """The prompt keys the caller hears, in order."""
    assert step.reply is not None, f"expected a reply, got effect {step.effect!r}"
    return tuple(say.key for say in step.reply.says)


def then(step: Step) -> Gather | Hangup | Transfer:
    assert step.reply is not None
    return step.reply.then


def kinds(step: Step) -> list[tuple[str, dict[str, Any]]]:
    return [(entry.kind, entry.as_dict()) for entry in step.log]


def settle(step: Step, transactions: Any = TRANSACTIONS, ctx: Context = OPEN) -> Step:
    """Answer Fetch effects as the web layer would: a balance, and `transactions`."""
    while isinstance(step.effect, Fetch):
        answer = {"amount": "1234.56"} if step.effect.what == "balance" else transactions
        step = advance(FLOW, step.state, Fetched(step.effect, answer), ctx)
    return step


def press(
    state: CallState, *keys: str, ctx: Context = OPEN, transactions: Any = TRANSACTIONS
) -> Step:
    """Key each of `keys` in turn (fetches answered), returning the last step."""
    step = Step(state)
    for key in keys:
        step = settle(advance(FLOW, step.state, Keys(key), ctx), transactions, ctx)
    return step


def silent(state: CallState, turns: int, ctx: Context = OPEN) -> Step:
    step = Step(state)
    for _ in range(turns):
        step = advance(FLOW, step.state, NoInput(), ctx)
    return step


# --- states along a call ----------------------------------------------------------------

MAIN = advance(FLOW, CallState(), Start()).state
ASK_ID = advance(FLOW, MAIN, Keys("1")).state
ASK_PIN = advance(FLOW, ASK_ID, IdChecked(CheckId(ZHANG), DIGEST, MASKED, locked=False)).state
AUTHED_MAIN = CallState(node="main", account=ACCOUNT)
BALANCE = CallState(node="balance", account=ACCOUNT, stack=("main",))
LIST = CallState(node="transactions", account=ACCOUNT, stack=("main", "balance"))


def test_the_states_along_the_call_are_where_the_tests_think() -> None:
    assert (MAIN.node, MAIN.lang, MAIN.stack) == ("main", "cmn-CN", ())
    assert (ASK_ID.node, ASK_ID.pending, ASK_ID.stack) == ("auth.id", "balance", ("main",))
    assert (ASK_PIN.node, ASK_PIN.id_digest, ASK_PIN.id_masked) == ("auth.pin", DIGEST, MASKED)
    assert not MAIN.authenticated and AUTHED_MAIN.authenticated


# --- the call comes in --------------------------------------------------------------


def test_a_call_starts_with_welcome_and_the_main_menu() -> None:
    step = advance(FLOW, CallState(), Start())
    assert step.effect is None
    assert step.reply == Reply(
        (Say("welcome"), Say("main.menu"), Say("main.other_language")), ONE_KEY
    )
    assert step.state == CallState(node="main")
    assert kinds(step) == [("menu", {"node": "welcome"}), ("menu", {"node": "main"})]


def test_a_repeated_start_begins_again_from_nothing() -> None:
    step = advance(FLOW, replace(AUTHED_MAIN, lang="en-US", silence=2), Start())
    assert step.state == CallState(node="main")


# --- authentication -----------------------------------------------------------------


def test_balance_before_authentication_asks_for_the_id_number() -> None:
    step = advance(FLOW, MAIN, Keys("1"))
    assert step.reply == Reply((Say("auth.id"),), ID_GATHER)
    assert step.state.pending == "balance"
    assert kinds(step) == [("key", {"node": "main", "keys": "1"}), ("menu", {"node": "auth.id"})]


def test_a_valid_id_number_keyed_with_star_is_checked_without_showing_it() -> None:
    step = advance(FLOW, ASK_ID, Keys(KEYED))
    assert step.reply is None
    assert step.effect == CheckId(ZHANG)
    assert ZHANG not in repr(step.effect) and ZHANG not in repr(step)
    assert KEYED not in repr(step)
    assert kinds(step) == [("key", {"node": "auth.id", "keys": MASKED})]


def test_an_id_number_that_is_not_locked_leads_to_the_pin() -> None:
    step = advance(FLOW, ASK_ID, IdChecked(CheckId(ZHANG), DIGEST, MASKED, locked=False))
    assert step.reply == Reply((Say("auth.pin"),), PIN_GATHER)
    assert (step.state.id_digest, step.state.id_masked) == (DIGEST, MASKED)


def test_a_pin_is_verified_and_logged_as_stars() -> None:
    step = advance(FLOW, ASK_PIN, Keys(PIN))
    assert step.effect == VerifyPin(DIGEST, PIN)
    assert PIN not in repr(step)
    assert kinds(step) == [("key", {"node": "auth.pin", "keys": "******"})]


def test_the_right_pin_fetches_the_balance_then_reads_it() -> None:
    step = advance(FLOW, ASK_PIN, PinChecked("ok", ACCOUNT))
    assert step.reply is None
    assert step.effect == Fetch("balance", ACCOUNT)
    assert step.state.account == ACCOUNT
    assert (step.state.pending, step.state.id_digest, step.state.node) == (None, None, "balance")
    assert ("auth", {"result": "ok", "id": MASKED}) in kinds(step)

    shown = advance(FLOW, step.state, Fetched(step.effect, {"amount": "1234.56"}))
    assert shown.reply == Reply(
        (Say.of("balance.amount", amount=Money("1234.56")), Say("balance.options")), ONE_KEY
    )


def test_once_authenticated_the_call_stays_authenticated() -> None:
    step = advance(FLOW, AUTHED_MAIN, Keys("1"))
    assert step.effect == Fetch("balance", ACCOUNT)


@pytest.mark.parametrize(
    ("keys", "why"),
    [(WRONG_CHECK, "check digit"), ("1101051949123100", "too short"), ("", "nothing"),
     ("110105194902301234", "no 30 February")],
)  # fmt: skip
def test_a_malformed_id_number_is_asked_again(keys: str, why: str) -> None:
    step = advance(FLOW, ASK_ID, Keys(keys))
    assert step.reply == Reply((Say("auth.id.invalid"), Say("auth.id")), ID_GATHER), why
    assert step.state.id_tries == 1
    assert ("auth", {"result": "invalid_id"}) in kinds(step)


def test_three_malformed_id_numbers_return_to_the_main_menu() -> None:
    step = press(ASK_ID, WRONG_CHECK, WRONG_CHECK)
    assert heard(step) == ("auth.id.invalid", "auth.id")
    step = press(step.state, WRONG_CHECK)
    assert heard(step) == ("auth.id.too_many", *MAIN_MENU)
    assert then(step) == ONE_KEY
    assert step.state.node == "main" and step.state.stack == ()


def test_a_wrong_pin_is_asked_again_and_three_end_authentication_in_this_call() -> None:
    wrong = PinChecked("wrong")
    step = advance(FLOW, ASK_PIN, wrong)
    assert step.reply == Reply((Say("auth.wrong"), Say("auth.pin")), PIN_GATHER)
    step = advance(FLOW, step.state, wrong)
    assert heard(step) == ("auth.wrong", "auth.pin")
    step = advance(FLOW, step.state, wrong)
    assert heard(step) == ("auth.wrong", "auth.too_many", *MAIN_MENU)
    assert step.state.node == "main" and not step.state.authenticated
    assert step.state.id_digest is None

    later = press(step.state, "2", "1")  # another menu, then the balance again
    assert heard(later) == ("auth.blocked", *MAIN_MENU)
    assert later.effect is None and later.state.node == "main"


@pytest.mark.parametrize(
    ("event", "apology"),
    [
        (PinChecked("locked"), "auth.locked"),
        (PinChecked("unavailable"), "error.service"),
        (IdChecked(CheckId(ZHANG), DIGEST, MASKED, locked=True), "auth.locked"),
        (PinChecked("limited"), "auth.limited"),
        (IdChecked(CheckId(ZHANG), DIGEST, MASKED, locked=False, limited=True), "auth.limited"),
        (IdChecked(CheckId(ZHANG), DIGEST, MASKED, locked=True, limited=True), "auth.limited"),
    ],
)
def test_a_locked_id_number_or_a_failed_check_returns_to_the_main_menu(
    event: Event, apology: str
) -> None:
    state = ASK_PIN if isinstance(event, PinChecked) else ASK_ID
    step = advance(FLOW, state, event)
    assert heard(step) == (apology, *MAIN_MENU)
    assert step.state.node == "main" and not step.state.authenticated


def test_a_badly_formed_pin_is_a_wrong_key_not_a_pin_attempt() -> None:
    step = advance(FLOW, ASK_PIN, Keys("1234"))
    assert step.effect is None
    assert heard(step) == ("auth.pin.format", "auth.pin")
    assert (step.state.wrong, step.state.pin_failures) == (1, 0)
    assert kinds(step)[0] == ("key", {"node": "auth.pin", "keys": "******"})


# --- the menu keys ----------------------------------------------------------------------


CASES = [
    # (state, key, heard, then, node)
    pytest.param(MAIN, "#", MAIN_MENU, ONE_KEY, "main", id="main-#-repeats"),
    pytest.param(MAIN, "*", MAIN_MENU, ONE_KEY, "main", id="main-*-repeats"),
    pytest.param(MAIN, "2", ("auth.id",), ENTER_ID, "auth.id", id="main-2-needs-auth"),
    pytest.param(MAIN, "3", ("cards.menu",), ONE_KEY, "cards", id="main-3-cards"),
    pytest.param(MAIN, "4", ("info.menu",), ONE_KEY, "info", id="main-4-info"),
    pytest.param(MAIN, "0", ("agent.transferring",), Transfer(), "agent", id="main-0-agent"),
    pytest.param(BALANCE, "*", MAIN_MENU, ONE_KEY, "main", id="balance-*-main"),
    pytest.param(
        BALANCE, "#", ("balance.amount", "balance.options"), ONE_KEY, "balance", id="balance-#",
    ),
    pytest.param(
        BALANCE, "1", ("transactions.item", "list.options"), ONE_KEY, "transactions",
        id="balance-1-transactions",
    ),
    pytest.param(BALANCE, "0", ("agent.transferring",), Transfer(), "agent", id="balance-0"),
    pytest.param(
        LIST, "*", ("balance.amount", "balance.options"), ONE_KEY, "balance", id="list-*-balance",
    ),
    pytest.param(
        LIST, "#", ("transactions.item", "list.options"), ONE_KEY, "transactions", id="list-#",
    ),
    pytest.param(LIST, "0", ("agent.transferring",), Transfer(), "agent", id="list-0"),
    pytest.param(ASK_ID, "0", ("agent.transferring",), Transfer(), "agent", id="id-0"),
    pytest.param(ASK_ID, "*", MAIN_MENU, ONE_KEY, "main", id="id-*-main"),
    pytest.param(ASK_PIN, "0", ("agent.transferring",), Transfer(), "agent", id="pin-0"),
    pytest.param(ASK_PIN, "*", MAIN_MENU, ONE_KEY, "main", id="pin-*-main"),
]


@pytest.mark.parametrize(("state", "key", "says", "next_", "node"), CASES)
def test_a_key_in_a_menu(
    state: CallState, key: str, says: Sequence[str], next_: object, node: str
) -> None:
    step = press(state, key)
    assert heard(step) == tuple(says)
    assert then(step) == next_
    assert step.state.node == node


def test_nine_switches_between_mandarin_and_english() -> None:
    english = advance(FLOW, MAIN, Keys("9"))
    assert english.state.lang == "en-US"
    assert heard(english) == MAIN_MENU
    assert ("language", {"lang": "en-US"}) in kinds(english)
    mandarin = advance(FLOW, english.state, Keys("9"))
    assert mandarin.state.lang == "cmn-CN"


def test_outside_the_agents_hours_the_hours_are_read_and_a_message_offered() -> None:
    step = press(MAIN, "0", ctx=CLOSED)
    assert heard(step) == ("agent.closed",)
    assert dict(step.reply.says[0].params)["hours"] == CLOSED.hours  # type: ignore[union-attr]
    assert then(step) == ONE_KEY and step.state.node == "agent.closed"
    back = press(step.state, "2", ctx=CLOSED)
    assert heard(back) == MAIN_MENU and back.state.stack == ()
    message = press(step.state, "1", ctx=CLOSED)
    assert message.state.node == "voicemail" and isinstance(then(message), Record)


def test_with_no_agents_at_all_a_message_is_offered() -> None:
    step = press(BALANCE, "0", ctx=Context(agents_open=False, agents_exist=False))
    assert heard(step) == ("agent.none",) and step.state.node == "agent.none"
    back = press(step.state, "2", ctx=CLOSED)
    assert heard(back) == ("balance.amount", "balance.options")


@pytest.mark.parametrize(
    ("status", "says", "next_", "node"),
    [
        ("busy", ("agent.busy",), ONE_KEY, "agent.busy"),
        ("no-answer", ("agent.busy",), ONE_KEY, "agent.busy"),
        ("failed", ("agent.busy",), ONE_KEY, "agent.busy"),
        ("completed", ("rating.ask",), ONE_KEY, "rating"),
        ("bridged", ("rating.ask",), ONE_KEY, "rating"),
    ],
)
def test_when_the_agent_call_ends(
    status: str, says: Sequence[str], next_: object, node: str
) -> None:
    at_agent = press(MAIN, "0").state
    step = advance(FLOW, at_agent, TransferEnded(status))
    assert heard(step) == tuple(says)
    assert then(step) == next_
    assert step.state.node == node
    assert not step.state.ended


def test_a_late_key_while_with_the_agent_or_after_goodbye_changes_nothing() -> None:
    at_agent = press(MAIN, "0").state
    assert then(press(at_agent, "1")) == Transfer()
    gone = silent(MAIN, 3).state
    again = press(gone, "1")
    assert then(again) == Hangup() and again.state.node == "goodbye"


# --- a list, one item at a time -----------------------------------------------------------


def item(step: Step) -> dict[str, object]:
    assert step.reply is not None
    return dict(step.reply.says[-2].params if step.reply.says[-1].key == "list.options" else ())


def test_transactions_are_paged_with_1_and_2_and_the_ends_announced() -> None:
    first = press(BALANCE, "1")
    assert heard(first) == ("transactions.item", "list.options")
    assert item(first)["n"] == 1 and item(first)["count"] == 3
    assert item(first)["date"] == When(TRANSACTIONS[0]["time"])
    assert item(first)["category"] == Term("category.pharmacy")
    assert item(first)["total"] == Money("86.50")

    before_first = press(first.state, "2")
    assert heard(before_first) == ("list.first", "transactions.item", "list.options")
    assert item(before_first)["n"] == 1

    second = press(first.state, "1")
    assert heard(second) == ("transactions.item", "list.options") and item(second)["n"] == 2
    assert item(second)["place"] == "北京协和医院"
    third = press(second.state, "1")
    assert item(third)["n"] == 3
    past_end = press(third.state, "1")
    assert heard(past_end) == ("list.end", "transactions.item", "list.options")
    assert item(past_end)["n"] == 3 and past_end.state.index == 2
    back = press(past_end.state, "2")
    assert heard(back) == ("transactions.item", "list.options") and item(back)["n"] == 2
    again = press(back.state, "#")
    assert item(again)["n"] == 2


def test_paging_fetches_the_list_again() -> None:
    step = advance(FLOW, LIST, Keys("1"))
    assert step.effect == Fetch("transactions", ACCOUNT)
    assert step.state.index == 1


def test_an_empty_list_says_so_and_goes_back() -> None:
    listed = advance(FLOW, BALANCE, Keys("1"))
    assert listed.effect == Fetch("transactions", ACCOUNT)
    step = advance(FLOW, listed.state, Fetched(listed.effect, []))
    # back in the balance menu, which is fetched again with the news said first
    assert step.effect == Fetch("balance", ACCOUNT, (Say("transactions.none"),))
    shown = advance(FLOW, step.state, Fetched(step.effect, {"amount": "0.00"}))
    assert heard(shown) == ("transactions.none", "balance.amount", "balance.options")
    assert shown.state.node == "balance" and shown.state.stack == ("main",)
    assert heard(press(BALANCE, "1", transactions=[]))[0] == "transactions.none"


def test_when_the_account_service_fails_the_caller_hears_an_apology_and_returns() -> None:
    step = advance(FLOW, AUTHED_MAIN, Keys("1"))
    assert isinstance(step.effect, Fetch)
    failed = advance(FLOW, step.state, Fetched(step.effect, None))
    assert heard(failed) == ("error.service", *MAIN_MENU)
    assert failed.state.node == "main"
    assert ("service", {"what": "balance", "outcome": "unavailable"}) in kinds(failed)


def test_when_the_account_service_is_down_the_apology_is_said_once() -> None:
    # the list fails, so the caller goes back to the balance, which fails too
    step = advance(FLOW, LIST, Keys("1"))
    while isinstance(step.effect, Fetch):
        step = advance(FLOW, step.state, Fetched(step.effect, None))
    assert heard(step) == ("error.service", *MAIN_MENU)
    assert step.state.node == "main" and step.state.stack == ()
    assert [k for k, _ in kinds(step)].count("service") == 1  # this step's own failed fetch


# --- silence and wrong keys ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "short", "gather"),
    [
        (MAIN, "main.short", ONE_KEY),
        (BALANCE, "balance.short", ONE_KEY),
        (LIST, "list.short", ONE_KEY),
        (ASK_ID, "auth.id.short", ID_GATHER),
        (ASK_PIN, "auth.pin.short", PIN_GATHER),
    ],
)
def test_silence_repeats_the_menu_in_short(state: CallState, short: str, gather: Gather) -> None:
    step = advance(FLOW, state, NoInput())
    assert step.effect is None  # no data is fetched again for a short reprompt
    assert step.reply == Reply((Say(short),), gather)
    assert step.state.silence == 1 and step.state.node == state.node
    assert kinds(step) == [("silence", {"node": state.node, "count": 1})]


@pytest.mark.parametrize("state", [MAIN, BALANCE, ASK_ID], ids=lambda s: s.node)
def test_three_silent_turns_say_goodbye_and_hang_up(state: CallState) -> None:
    step = silent(state, 2)
    assert then(step) != Hangup()
    step = silent(step.state, 1)
    assert step.reply == Reply((Say("goodbye.silence"), Say("goodbye")), Hangup())
    assert step.state.ended
    assert ("hangup", {"reason": "goodbye"}) in kinds(step)


def test_a_wrong_key_says_invalid_choice_and_the_menu_again() -> None:
    step = press(MAIN, "7")
    assert heard(step) == ("error.invalid", *MAIN_MENU)
    assert step.state.wrong == 1
    assert kinds(step)[0] == ("key", {"node": "main", "keys": "7"})
    in_balance = press(BALANCE, "5")
    assert heard(in_balance) == ("error.invalid", "balance.amount", "balance.options")


@pytest.mark.parametrize(
    ("ctx", "says", "next_"),
    [
        (OPEN, ("error.invalid", "agent.transferring"), Transfer()),
        (CLOSED, ("error.invalid", "goodbye"), Hangup()),
    ],
    ids=["agents-open", "agents-closed"],
)
def test_three_wrong_keys_in_a_row_reach_an_agent_or_goodbye(
    ctx: Context, says: Sequence[str], next_: object
) -> None:
    two = press(MAIN, "7", "8", ctx=ctx)
    assert heard(two) == ("error.invalid", *MAIN_MENU)
    step = press(two.state, "6", ctx=ctx)
    assert heard(step) == tuple(says)
    assert then(step) == next_


def test_a_right_key_between_wrong_ones_starts_the_count_again() -> None:
    # "3 in a row": # (repeat) is a right key, so the next wrong key is the first again
    step = press(MAIN, "7", "7", "#", "7")
    assert heard(step) == ("error.invalid", *MAIN_MENU)
    assert step.state.wrong == 1
    step = press(MAIN, "7", "7", "9", "7", "7")
    assert then(step) == ONE_KEY and step.state.wrong == 2


def test_silence_and_wrong_keys_are_counted_apart() -> None:
    # a key (even a wrong one) ends a run of silence
    step = press(silent(MAIN, 2).state, "7")
    assert (step.state.silence, step.state.wrong) == (0, 1)
    step = silent(step.state, 2)
    assert then(step) == ONE_KEY, "two silent turns after a key are not three in a row"
    assert (step.state.silence, step.state.wrong) == (2, 1)
    # silence neither counts as a wrong key nor ends a run of wrong keys
    step = press(step.state, "7")
    assert (step.state.silence, step.state.wrong) == (0, 2)
    step = press(silent(step.state, 1).state, "7")
    assert heard(step) == ("error.invalid", "agent.transferring")


def test_entering_another_menu_starts_the_wrong_key_count_again() -> None:
    step = press(AUTHED_MAIN, "7", "7", "1")
    assert step.state.node == "balance" and step.state.wrong == 0
    assert then(press(step.state, "7")) == ONE_KEY


# --- redaction ----------------------------------------------------------------------


def whole_call() -> list[Step]:
    """A call that keys the ID and PIN (with a wrong PIN first) and hears the balance."""
    steps = [advance(FLOW, CallState(), Start())]

    def go(event: Event) -> None:
        steps.append(advance(FLOW, steps[-1].state, event))

    go(Keys("1"))
    go(Keys(KEYED))
    assert isinstance(steps[-1].effect, CheckId)
    go(IdChecked(steps[-1].effect, DIGEST, MASKED, locked=False))
    go(Keys("246801"))
    go(PinChecked("wrong"))
    go(Keys(PIN))
    go(PinChecked("ok", ACCOUNT))
    assert isinstance(steps[-1].effect, Fetch)
    go(Fetched(steps[-1].effect, {"amount": "1234.56"}))
    go(Keys("*"))
    return steps


def test_no_log_entry_state_or_step_shows_the_id_number_or_the_pin() -> None:
    steps = whole_call()
    assert heard(steps[-2])[0] == "balance.amount"
    secrets = (ZHANG, KEYED, ZHANG[:-1], PIN, "246801")
    key_logs = [e.as_dict() for s in steps for e in s.log if e.kind == "key"]
    assert {"node": "auth.id", "keys": MASKED} in key_logs
    assert [k["keys"] for k in key_logs if k["node"] == "auth.pin"] == ["******", "******"]
    for step in steps:
        shown = [repr(step), repr(step.state), step.state.to_json()]
        shown += [json.dumps(e.as_dict(), ensure_ascii=False) for e in step.log]
        for text in shown:
            for secret in secrets:
                assert secret not in text


def test_logs_are_redacted_even_for_malformed_entries() -> None:
    # an ID number keyed into the PIN prompt, a PIN keyed into the ID prompt
    into_pin = advance(FLOW, ASK_PIN, Keys(ZHANG[:6]))
    into_id = advance(FLOW, ASK_ID, Keys(PIN))
    assert kinds(into_pin)[0] == ("key", {"node": "auth.pin", "keys": "******"})
    assert kinds(into_id)[0] == ("key", {"node": "auth.id", "keys": "******"})
    almost = advance(FLOW, ASK_ID, Keys(WRONG_CHECK))
    assert kinds(almost)[0] == ("key", {"node": "auth.id", "keys": "110***********0021"})


# --- the state as JSON --------------------------------------------------------------


def test_call_state_round_trips_through_json() -> None:
    state = CallState(
        lang="en-US", node="transactions", stack=("main", "balance"), silence=1, wrong=2,
        index=3, pending="balance", id_digest=DIGEST, id_masked=MASKED, id_tries=1,
        pin_failures=2, account=ACCOUNT, ended=True,
    )  # fmt: skip
    text = state.to_json()
    assert CallState.from_json(text) == state
    assert CallState.from_json(text.encode()) == state
    assert json.loads(text)["v"] == SCHEMA_VERSION
    assert CallState.from_json(CallState().to_json()) == CallState()
    assert json.loads(CallState().to_json()) == {"v": SCHEMA_VERSION}


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"v": SCHEMA_VERSION + 1, "node": "main"}),
        json.dumps({"node": "main"}),
        json.dumps({"v": SCHEMA_VERSION, "pin": PIN}),
        json.dumps(["main"]),
        "not json",
        b"\xff",
    ],
    ids=["other-version", "no-version", "unknown-field", "a-list", "not-json", "not-utf8"],
)
def test_unreadable_state_is_a_state_error(raw: str | bytes) -> None:
    with pytest.raises(StateError):
        CallState.from_json(raw)


def test_another_schema_version_is_named_as_such() -> None:
    with pytest.raises(StateError, match="schema version"):
        CallState.from_json(json.dumps({"v": SCHEMA_VERSION + 1}))


def test_the_state_of_a_whole_call_holds_no_pin_and_no_id_number() -> None:
    for step in whole_call():
        data = json.loads(step.state.to_json())
        assert set(data) <= {f for f in CallState.__slots__} | {"v"}
        assert PIN not in step.state.to_json() and ZHANG not in step.state.to_json()


def test_engine_prompt_keys_are_the_ones_it_says() -> None:
    assert machine.INVALID in machine.ENGINE_PROMPTS
    assert len(set(machine.ENGINE_PROMPTS)) == len(machine.ENGINE_PROMPTS) == 14


def test_log_entries_are_plain_data() -> None:
    entry = Log.of("key", node="main", keys="1")
    assert entry.as_dict() == {"node": "main", "keys": "1"}
