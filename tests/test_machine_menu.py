"""The engine over the whole SPEC 4 menu: contribution records, card services, information,
voice messages and ratings (pure: effects answered by hand, as the web layer would)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ivr import menu
from ivr.machine import OPEN, Context, advance
from ivr.state import (
    Act,
    Acted,
    CallState,
    Fetch,
    Fetched,
    Gather,
    Hangup,
    Keys,
    Localized,
    Month,
    NoInput,
    Record,
    Recorded,
    SaveMessage,
    Start,
    Step,
    Term,
    TransferEnded,
)

FLOW = menu.load()
MAIN = advance(FLOW, CallState(), Start()).state
SIGNED_IN = replace(MAIN, account=7, id_masked="110***********002X")
ONE_KEY = Gather(num_digits=1, finish_on_key="", timeout=6)
CARD = {"last4": "3456", "status": "active"}
CONTRIBUTIONS = [
    {"month": m, "employer": "北京某某科技有限公司", "base": "8000.00",
     "personal_account_credit": "320.00", "status": s}
    for m, s in (("2026-10", "pending"), ("2026-09", "paid"), ("2026-08", "paid"))
]  # fmt: skip
CLOSED = Context(agents_open=False, hours=Localized((("cmn-CN", "周一"), ("en-US", "Mon"))))


def heard(step: Step) -> tuple[str, ...]:
    assert step.reply is not None, step
    return tuple(s.key for s in step.reply.says)


def fetched(step: Step, data: object) -> Step:
    assert isinstance(step.effect, Fetch), step
    return advance(FLOW, step.state, Fetched(step.effect, data))


def press(state: CallState, keys: str, data: object = None, ctx: Context = OPEN) -> Step:
    step = advance(FLOW, state, Keys(keys), ctx)
    return fetched(step, data) if isinstance(step.effect, Fetch) else step


def test_contribution_records_newest_first_paged_to_the_end() -> None:
    first = press(SIGNED_IN, "2", CONTRIBUTIONS)
    assert heard(first) == ("contributions.item", "list.options")
    params = dict(first.reply.says[0].params)  # type: ignore[union-attr]
    assert params["month"] == Month("2026-10") and params["status"] == Term("contribution.pending")
    assert (params["n"], params["count"]) == (1, 3)
    second = press(first.state, "1", CONTRIBUTIONS)
    third = press(second.state, "1", CONTRIBUTIONS)
    end = press(third.state, "1", CONTRIBUTIONS)
    assert heard(end) == ("list.end", "contributions.item", "list.options")
    assert dict(end.reply.says[1].params)["n"] == 3  # type: ignore[union-attr]
    assert press(end.state, "*").state.node == "main"


def test_no_contribution_records_says_so_and_goes_back() -> None:
    step = press(SIGNED_IN, "2", [])
    assert heard(step) == ("contributions.none", "main.menu", "main.other_language")


def card_lost() -> Step:
    cards = press(SIGNED_IN, "3")
    assert heard(cards) == ("cards.menu",)
    return press(cards.state, "1", CARD)


def test_a_loss_report_reads_the_card_and_asks_to_confirm() -> None:
    step = card_lost()
    assert heard(step) == ("card.lost.confirm",) and step.reply.then == ONE_KEY  # type: ignore[union-attr]
    assert dict(step.reply.says[0].params)["status"] == Term("card.state.active")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("outcome", "says"),
    [("suspended", "card.lost.done"), ("already_suspended", "card.lost.already"),
     (None, "error.service")],
)  # fmt: skip
def test_a_confirmed_loss_report_suspends_the_card(outcome: str | None, says: str) -> None:
    confirm = advance(FLOW, card_lost().state, Keys("1"))
    assert confirm.effect == Act("report_card_lost", 7)
    done = advance(FLOW, confirm.state, Acted(confirm.effect, outcome))
    assert heard(done) == (says, "cards.menu")
    assert ("act", {"name": "report_card_lost", "outcome": outcome or "unavailable"}) in [
        (e.kind, e.as_dict()) for e in done.log
    ]


def test_a_cancelled_loss_report_changes_nothing() -> None:
    step = press(card_lost().state, "2")
    assert step.effect is None and heard(step) == ("card.lost.kept", "cards.menu")


@pytest.mark.parametrize("status", ["suspended", "cancelled"])
def test_a_card_that_is_not_active_is_not_reported_again(status: str) -> None:
    cards = press(SIGNED_IN, "3")
    step = press(cards.state, "1", {"last4": "3456", "status": status})
    assert heard(step) == ("card.lost.not_active", "cards.menu")
    assert dict(step.reply.says[0].params)["status"] == Term(f"card.state.{status}")  # type: ignore[union-attr]


def test_card_status_needs_authentication_then_reads_it() -> None:
    cards = press(MAIN, "3")
    assert press(cards.state, "2").state.node == "auth.id"
    status = press(press(SIGNED_IN, "3").state, "2", CARD)
    assert heard(status) == ("card.status.info",)


@pytest.mark.parametrize(
    ("path", "parts"),
    [("33", "card.apply"), ("41", "info.check"), ("42", "info.rules"), ("43", "info.pays")],
)
def test_information_is_read_a_part_at_a_time(path: str, parts: str) -> None:
    state = MAIN
    for key in path:
        step = press(state, key)
        state = step.state
    assert heard(step) == (f"{parts}.1", "info.options")
    assert heard(press(state, "#")) == (f"{parts}.1", "info.options")
    assert heard(press(state, "2")) == ("list.first", f"{parts}.1", "info.options")
    last = len(FLOW[parts].parts)
    for _ in range(last - 1):
        state = press(state, "1").state
    assert heard(press(state, "1")) == ("list.end", f"{parts}.{last}", "info.options")
    parent = "cards" if parts == "card.apply" else "info"
    assert press(state, "*").state.node == parent


def test_outside_hours_a_voice_message_is_recorded_and_kept() -> None:
    closed = press(SIGNED_IN, "0", ctx=CLOSED)
    record = press(closed.state, "1", ctx=CLOSED)
    assert heard(record) == ("voicemail.prompt",) and record.reply.then == Record(max_length=120)  # type: ignore[union-attr]
    save = advance(FLOW, record.state, Recorded("https://api.twilio.com/rec/RE1", 14), CLOSED)
    assert save.effect == SaveMessage("https://api.twilio.com/rec/RE1", 14, "110***********002X")
    saved = advance(FLOW, save.state, Acted(save.effect, "saved"), CLOSED)
    assert heard(saved) == ("voicemail.saved", "main.menu", "main.other_language")


def test_a_message_from_a_caller_who_did_not_sign_in_has_no_id() -> None:
    record = press(press(MAIN, "0", ctx=CLOSED).state, "1", ctx=CLOSED)
    save = advance(FLOW, record.state, Recorded("https://x/RE2", 3), CLOSED)
    assert save.effect == SaveMessage("https://x/RE2", 3, None)


def test_nothing_recorded_goes_back() -> None:
    record = press(press(MAIN, "0", ctx=CLOSED).state, "1", ctx=CLOSED)
    step = advance(FLOW, record.state, NoInput(), CLOSED)
    assert heard(step)[0] == "voicemail.none"


def test_after_an_agent_call_one_key_rates_it_and_the_call_ends() -> None:
    rating = advance(FLOW, press(MAIN, "0").state, TransferEnded("completed"))
    assert heard(rating) == ("rating.ask",)
    rated = press(rating.state, "2")
    assert heard(rated) == ("rating.thanks", "goodbye") and rated.reply.then == Hangup()  # type: ignore[union-attr]
    assert ("rating", {"value": "unsatisfied"}) in [(e.kind, e.as_dict()) for e in rated.log]
    silent = advance(FLOW, rating.state, NoInput())
    assert silent.state.ended and heard(silent)[-1] == "goodbye"


def test_agents_busy_offers_a_message_or_the_menu() -> None:
    busy = advance(FLOW, press(MAIN, "0").state, TransferEnded("busy"))
    assert heard(busy) == ("agent.busy",)
    assert press(busy.state, "1").state.node == "voicemail"
    assert press(busy.state, "2").state.node == "main"
    again = press(busy.state, "0")
    assert again.state.node == "agent"
