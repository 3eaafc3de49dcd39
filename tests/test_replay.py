"""`ivr calls replay`: real calls recorded through the simulator, re-driven through the menu.

Against the menu they were made with, every replay is the same (exit 0); against a changed menu
(keys swapped, a prompt changed, a sentence reworded) the first difference is at the step where
the caller would first hear something else. No replay ever shows a PIN or a full ID number.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Iterator
from importlib import resources

import pytest
from conftest import fresh_database
from hotline_server import Server, serve
from twilio_sim import SimCall, Simulator

from ivr import catalog as catalog_module
from ivr import menu as menu_module
from ivr.calllog import CallLog, CallRecord, Entry
from ivr.machine import Context
from ivr.replay import SANDBOX_ID, SandboxAccounts, render, replay
from ivr.state import Money, Say
from services.accounts.db import make_engine
from services.accounts.records import parse_accounts

ZHANG = "11010519491231002X"  # 张三 in tests/data/accounts.json, PIN 135790, 3 transactions
ZHANG_KEYS = "11010519491231002*#"
ZHANG_PIN = "135790"
ZHAO = "320102197703032151"  # 赵六, PIN 222222, no transactions, no contributions
ZHAO_PIN = "222222"
SECRETS = (ZHANG, ZHANG_KEYS[:-1], ZHANG[:17], ZHANG_PIN, ZHAO, ZHAO[:17], ZHAO_PIN)
# the sandbox's own accounts (services/accounts/demo_accounts.json): held, never shown
DEMO_SECRETS = ("440305199003151236", "246810", "310104198507084566", "112358",
                "110108200104057895", "080808")  # fmt: skip


def unique_caller() -> str:
    return "+86139" + str(uuid.uuid4().int)[:8]


def record_of(hotline: Server, call_sid: str) -> CallRecord:
    """The call's timeline, read from the hotline's database."""
    engine = make_engine(hotline.env["DATABASE_URL"])
    try:
        record = CallLog(engine).get(call_sid)
    finally:
        engine.dispose()
    assert record is not None, call_sid
    return record


def replayed(hotline: Server, call: SimCall) -> tuple[int, str]:
    """`ivr calls replay` of a finished call: its exit code and everything it printed."""
    if not call.ended:
        call.hangup()
    out = hotline.ivr("calls", "replay", call.phone.sid)
    return out.returncode, out.stdout + out.stderr


def assert_private(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, secret


# --- calls, recorded once per module ------------------------------------------------------


@pytest.fixture(scope="module")
def balance_call(hotline: Server) -> Iterator[SimCall]:
    """Balance, then every transaction, past the end, back, repeat, back to the main menu."""
    call = Simulator(hotline.url, hotline.token).call(from_=unique_caller())
    call.press("1").expect_heard("身份证")
    call.press(ZHANG_KEYS).expect_heard("密码")
    call.press(ZHANG_PIN).expect_heard("一千二百三十四元五角六分")
    call.press("1").expect_heard("第1条，共3条")
    call.press("1").expect_heard("第2条")
    call.press("1").expect_heard("第3条")
    call.press("1").expect_heard("已经是最后一条了")
    call.press("2").expect_heard("第2条")
    call.press("#").expect_heard("第2条")
    call.press("*").expect_heard("一千二百三十四元五角六分")
    call.press("*").expect_heard("查询医保个人账户余额")
    call.hangup()
    yield call


@pytest.fixture(scope="module")
def card_call(hotline: Server) -> Iterator[SimCall]:
    """Contribution records (one, where the demo account has eight), then the card's status."""
    call = Simulator(hotline.url, hotline.token).call(from_=unique_caller())
    call.press("2")
    call.press(ZHANG_KEYS)
    call.press(ZHANG_PIN).expect_heard("第1条，共1条")
    call.press("1").expect_heard("已经是最后一条了")
    call.press("*")
    call.press("3")
    call.press("2").expect_heard("尾号为3 4 5 6", "正常使用")
    call.hangup()
    yield call


# --- the same menu: the same call -------------------------------------------------------


def test_a_balance_and_transactions_call_replays_the_same(
    hotline: Server, balance_call: SimCall
) -> None:
    code, out = replayed(hotline, balance_call)
    assert code == 0, out
    assert "Same: all 12 steps sound as the caller heard them." in out
    assert "DIFFERS" not in out
    assert "keyed ID 110***********002X in auth.id" in out
    assert "keyed PIN ****** in auth.pin (check: ok)" in out
    assert "list.end" in out  # the sandbox's list was as long as the caller's (3, not the demo 7)
    assert_private(out)


def test_wrong_pins_and_malformed_entries_replay_the_same(sim: Simulator, hotline: Server) -> None:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press("320102197703032152#").expect_heard("身份证号码有误")  # a wrong check digit
    call.press(f"{ZHAO}#").expect_heard("请输入6位查询密码")
    call.press("12#").expect_heard("密码应为6位数字")
    call.press("000000").expect_heard("身份证号码或密码不正确")
    call.press(ZHAO_PIN).expect_heard("您的医保个人账户余额为")
    code, out = replayed(hotline, call)
    assert code == 0, out
    assert "keyed an invalid ID 320***********2152 in auth.id" in out
    assert "(not 6 digits)" in out and "(check: wrong)" in out and "(check: ok)" in out
    assert_private(out)


def test_a_silent_call_replays_the_same(sim: Simulator, hotline: Server) -> None:
    call = sim.call(from_=unique_caller())
    call.silence()
    call.silence()
    call.silence()
    assert call.ended
    code, out = replayed(hotline, call)
    assert code == 0, out
    assert out.count("silence in main") == 3
    assert "goodbye.silence" in out


def test_an_agent_call_replays_the_same(sim: Simulator, hotline: Server) -> None:
    call = sim.call(from_=unique_caller(), queue_outcome="bridged")
    call.press("0")
    if call.gather is not None:  # asked to rate the agent
        call.press("1")
    code, out = replayed(hotline, call)
    assert code == 0, out
    assert "pressed 0 in main" in out and "agent.transferring" in out
    assert "the agent call ended (bridged)" in out


def test_contributions_and_card_status_replay_the_same(hotline: Server, card_call: SimCall) -> None:
    code, out = replayed(hotline, card_call)
    assert code == 0, out
    assert "contributions.item" in out and "card.status.info" in out


def test_an_english_call_through_the_information_menu_replays_the_same(
    sim: Simulator, hotline: Server
) -> None:
    call = sim.call(from_=unique_caller())
    call.press("9").expect_heard("For your personal account balance")
    call.press("4")
    call.press("1")
    call.press("1")
    call.press("2")
    call.press("*")
    call.press("9")
    code, out = replayed(hotline, call)
    assert code == 0, out
    assert "info.check.2" in out and "pressed 9 in main" in out


@pytest.fixture(scope="module")
def no_agents(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with neither an agent queue nor an agent number: `0` offers a voice message."""
    folder = tmp_path_factory.mktemp("replay-no-agents")
    with fresh_database(folder) as url:
        env = {"IVR_AGENT_NUMBER": "", "IVR_AGENT_QUEUE": ""}
        with serve(folder, redis_url, url, extra_env=env) as server:
            yield server


def test_a_voice_message_without_agents_replays_the_same(no_agents: Server) -> None:
    call = Simulator(no_agents.url, no_agents.token).call(from_=unique_caller())
    call.press("0").expect_heard("目前没有人工座席")
    call.press("1").expect_heard("您的留言已收到", "查询医保个人账户余额")
    code, out = replayed(no_agents, call)
    assert code == 0, out
    assert "agent.none" in out and "left a voice message" in out and "voicemail.saved" in out
    # The recording shows there were no agents: that holds even if the replay is told otherwise.
    record = record_of(no_agents, call.phone.sid)
    open_context = Context(agents_open=True, agents_exist=True)
    result = replay(menu_module.load(), catalog_module.load(), record, context=open_context)
    assert result.identical, render(result)


def test_an_unknown_call_exits_2(hotline: Server) -> None:
    out = hotline.ivr("calls", "replay", "CA" + "0" * 32)
    assert out.returncode == 2
    assert "no call" in out.stderr and out.stdout == ""


# --- a changed menu: where the caller would first hear something else --------------------


def changed_menu(old: str, new: str) -> menu_module.Menu:
    """The packaged menu with one piece of its text replaced."""
    text = resources.files("ivr").joinpath("menu.toml").read_text(encoding="utf-8")
    assert old in text, old
    return menu_module.load(text.replace(old, new, 1))


def test_the_unchanged_menu_called_directly_is_the_same(
    hotline: Server, balance_call: SimCall
) -> None:
    record = record_of(hotline, balance_call.phone.sid)
    result = replay(menu_module.load(), catalog_module.load(), record)
    assert result.identical and result.first_difference is None
    assert len(result.steps) == 12
    assert [s.did for s in result.steps[:4]] == [
        "the call comes in", "pressed 1 in main", "keyed ID 110***********002X in auth.id",
        "keyed PIN ****** in auth.pin (check: ok)",
    ]  # fmt: skip


def test_swapped_main_menu_keys_differ_first_where_the_balance_was_read(
    hotline: Server, balance_call: SimCall
) -> None:
    menu = changed_menu('keys = { "1" = "balance", "2" = "contributions",',
                        'keys = { "1" = "contributions", "2" = "balance",')  # fmt: skip
    record = record_of(hotline, balance_call.phone.sid)
    result = replay(menu, catalog_module.load(), record)
    # Both need the caller's ID and PIN: the prompts are the same until the PIN is checked.
    assert result.first_difference == 4
    step = result.steps[3]
    assert [h.key for h in step.heard] == ["balance.amount", "balance.options"]
    assert step.now[0].key == "contributions.item"
    pin = "keyed PIN ****** in auth.pin (check: ok)"
    report = render(result)
    assert f">> step  4  DIFFERS  {pin}   <- first difference" in report
    assert "- balance.amount" in report and "+ contributions.item" in report
    # later steps differ too, and say where the replayed call was when the caller pressed
    assert ">> step  6  DIFFERS  pressed 1 in transactions (the replay was in contributions)" in (
        report
    )
    assert result.differences == (4, 5, 6, 7, 8, 9, 10, 11)
    last = report.splitlines()[-1]
    assert last == f"Different: 8 of 12 steps differ; the first is step 4 ({pin})."
    assert_private(report)


def test_a_changed_prompt_differs_at_every_step_that_says_it(
    hotline: Server, balance_call: SimCall
) -> None:
    listed = 'empty = "transactions.none"\nprompt = "list.options"'
    menu = changed_menu(listed, listed.replace("list.options", "list.short"))
    result = replay(menu, catalog_module.load(), record_of(hotline, balance_call.phone.sid))
    # steps 5-10 are in the transactions list; 11 and 12 are back in the balance and main menus
    assert result.differences == (5, 6, 7, 8, 9, 10)
    assert result.first_difference == 5
    five = result.steps[4]
    assert [h.key for h in five.heard] == ["transactions.item", "list.options"]
    assert [h.key for h in five.now] == ["transactions.item", "list.short"]


def test_a_reworded_prompt_differs_by_its_text(hotline: Server, balance_call: SimCall) -> None:
    files = {
        lang: resources.files("ivr.prompts").joinpath(f"{lang}.toml").read_text("utf-8")
        for lang in ("cmn-CN", "en-US")
    }
    files["cmn-CN"] = files["cmn-CN"].replace("欢迎致电12333", "欢迎拨打12333", 1)
    result = replay(menu_module.load(), catalog_module.load(files),
                    record_of(hotline, balance_call.phone.sid))  # fmt: skip
    assert result.differences == (1,)
    report = render(result)
    assert "- welcome" in report and "欢迎致电12333" in report
    assert "+ welcome" in report and "欢迎拨打12333" in report


def test_a_menu_that_hangs_up_early_marks_every_later_step(
    hotline: Server, balance_call: SimCall
) -> None:
    menu = changed_menu('keys = { "1" = "balance",', 'keys = { "1" = "goodbye", "5" = "balance",')
    result = replay(menu, catalog_module.load(), record_of(hotline, balance_call.phone.sid))
    assert result.differences == tuple(range(2, 13))
    two, three = result.steps[1], result.steps[2]
    assert [h.key for h in two.now] == ["goodbye"] and two.now_then == "hangs up"
    assert two.heard_then == "waits for the caller"
    assert three.now == () and three.note == "the replayed call had already ended"


def test_account_data_follows_what_the_caller_heard(
    hotline: Server, balance_call: SimCall, card_call: SimCall
) -> None:
    """Where the data decides the flow (the end of a list, whether a card may be reported
    lost), the sandbox's data is shaped as the caller's was, whatever the sandbox holds."""
    accounts = [
        {"id_number": "440305199003151236", "name": "李四", "pin": "246810",
         "card": {"number": "100000654321", "status": "suspended"}, "balance": "0.00",
         "transactions": [{"time": "2026-01-01T10:00:00+08:00", "place": "某医院",
                           "category": "other", "total": "1.00", "pooled_fund": "0.00",
                           "personal_account": "1.00", "cash": "0.00"}],
         "contributions": [{"month": m, "employer": "某公司", "base": "5000.00",
                            "personal_account_credit": "100.00", "status": "paid"}
                           for m in ("2026-01", "2026-02")]},
    ]  # fmt: skip
    results = []
    for call in (balance_call, card_call):
        record = record_of(hotline, call.phone.sid)
        assert len(SandboxAccounts.demo(record.started_at).transactions(1)) == 7
        sandbox = SandboxAccounts(parse_accounts({"accounts": accounts}), record.started_at)
        results.append(replay(menu_module.load(), catalog_module.load(), record, accounts=sandbox))
        assert results[-1].identical, render(results[-1])
    # the card step said the sandbox's own card (ending 4321), as active as the caller's was
    steps = results[1].steps
    card = next(s.now[0] for s in steps if s.now and s.now[0].key == "card.status.info")
    assert "4 3 2 1" in card.text and "正常使用" in card.text


# --- what the log says happened, where the replay cannot re-do it ------------------------


class Timeline:
    """A call-log timeline written by hand, its prompts said as the catalog says them."""

    def __init__(self) -> None:
        self.at = datetime.datetime(2026, 11, 20, 2, 0, tzinfo=datetime.UTC)
        self.entries = [Entry(self.at, "start", {"caller": "+86*******0000"})]
        self.catalog = catalog_module.load()

    def add(self, kind: str, **data: object) -> Timeline:
        self.entries.append(Entry(self.at, kind, dict(data)))
        return self

    def say(self, *keys: str, amount: str = "") -> Timeline:
        for key in keys:
            say = Say.of(key, amount=Money(amount)) if amount else Say(key)
            text = self.catalog.render(say, "cmn-CN", self.at.date()).text
            self.add("prompt", key=key, text=text)
            amount = ""
        return self

    def record(self) -> CallRecord:
        return CallRecord("CA" + "1" * 32, self.at, "+86*******0000", "cmn-CN", "main", "",
                          "completed", "completed", 30, self.at, tuple(self.entries))  # fmt: skip


MAIN = ("main.menu", "main.other_language")
MASK = "110***********002X"


def welcome_and_balance_key() -> Timeline:
    timeline = Timeline().add("menu", node="welcome").add("menu", node="main")
    timeline.say("welcome", *MAIN).add("key", node="main", keys="1")
    return timeline.add("menu", node="auth.id").say("auth.id")


def test_a_locked_id_number_is_replayed_as_locked() -> None:
    timeline = welcome_and_balance_key()
    timeline.add("key", node="auth.id", keys=MASK).add("auth", result="locked", id=MASK)
    timeline.add("menu", node="main").say("auth.locked", *MAIN)
    result = replay(menu_module.load(), catalog_module.load(), timeline.record())
    assert result.identical, render(result)
    assert result.steps[2].did == f"keyed ID {MASK} in auth.id (locked)"


def test_a_failed_account_service_call_is_replayed_as_failed() -> None:
    timeline = welcome_and_balance_key()
    timeline.add("key", node="auth.id", keys=MASK).add("menu", node="auth.pin").say("auth.pin")
    timeline.add("key", node="auth.pin", keys="******")
    timeline.add("service", call="verify_pin", outcome="ok", ms=3.0)
    timeline.add("auth", result="ok", id=MASK).add("menu", node="balance")
    timeline.add("service", call="balance", outcome="AccountsUnavailable", ms=2000.0)
    timeline.add("service", what="balance", outcome="unavailable").add("menu", node="main")
    timeline.say("error.service", *MAIN)
    timeline.add("key", node="main", keys="1").add("menu", node="balance")  # authenticated now
    timeline.add("service", call="balance", outcome="ok", ms=3.0)
    timeline.say("balance.amount", "balance.options", amount="1.00")  # the sandbox says its own
    result = replay(menu_module.load(), catalog_module.load(), timeline.record())
    assert result.identical, render(result)
    assert [s.now[0].key for s in result.steps[3:]] == ["error.service", "balance.amount"]


# --- privacy -----------------------------------------------------------------------------


def test_replays_never_show_a_pin_or_an_id_number(sim: Simulator, hotline: Server) -> None:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press(f"{ZHAO[:17]}9#").expect_heard("有误")  # the same ID with a wrong check digit
    call.press(f"{ZHAO}#")
    call.press("999999").expect_heard("不正确")
    call.press(ZHAO_PIN).expect_heard("余额")
    code, out = replayed(hotline, call)
    assert code == 0, out
    record = record_of(hotline, call.phone.sid)
    reports = [out]
    # a menu on which the ID and the PIN land in other places than they did
    for elsewhere in ("cards", "info"):
        old, new = '"1" = "balance",', f'"1" = "{elsewhere}", "5" = "balance",'
        result = replay(changed_menu(old, new), catalog_module.load(), record)
        assert not result.identical
        reports.append(render(result))
    for report in reports:
        assert "320***********2151" in report and "******" in report
        assert_private(report)
        for secret in (SANDBOX_ID, ZHAO[:17] + "9", *DEMO_SECRETS):
            assert secret not in report, secret
