"""Whole calls to an agent (SPEC 4, `0`): a `<Dial>` to IVR_AGENT_NUMBER whose action handles
busy and no-answer (a voice message, or back to the main menu), the rating and goodbye after
an agent, and a hotline with no agents at all, which says so and keeps the caller."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from conftest import fresh_database
from defusedxml.ElementTree import fromstring
from hotline_server import Server, serve
from twilio_sim import SimCall, Simulator

AGENT_NUMBER = "+8610123456789"
MAIN_MENU = "查询医保个人账户余额"  # main.menu
TRANSFERRING = "正在为您转接人工服务"  # agent.transferring
AGENT_BUSY = "人工座席正忙"  # agent.busy
NO_AGENT = "目前没有人工座席"  # agent.none
LEAVE_A_MESSAGE = "留言请按1"  # the voice message offered instead of an agent
RATE = "请对本次服务进行评价"  # rating.ask
THANKS_FOR_RATING = "感谢您的评价"  # rating.thanks
GOODBYE = "感谢您的来电，再见"  # goodbye


def unique_caller() -> str:
    return "+86139" + str(uuid.uuid4().int)[:8]


@pytest.fixture(scope="module")
def dialing(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with an agent number to dial and no queue."""
    folder = tmp_path_factory.mktemp("dialing")
    with fresh_database(folder) as url:
        env = {"IVR_AGENT_NUMBER": AGENT_NUMBER, "IVR_AGENT_QUEUE": ""}
        with serve(folder, redis_url, url, extra_env=env, workers=1) as server:
            yield server


@pytest.fixture(scope="module")
def no_agents(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with neither an agent queue nor an agent number."""
    folder = tmp_path_factory.mktemp("no-agents")
    with fresh_database(folder) as url:
        env = {"IVR_AGENT_NUMBER": "", "IVR_AGENT_QUEUE": ""}
        with serve(folder, redis_url, url, extra_env=env, workers=1) as server:
            yield server


def dial_twiml(call: SimCall) -> str:
    """The body of the one TwiML document of the call that dials."""
    bodies = [x.body for x in call.exchanges if "<Dial" in x.body]
    assert len(bodies) == 1, call.report()
    return bodies[0]


def shown(server: Server, call_sid: str) -> list[str]:
    """`ivr calls show`: the call's summary line (`outcome …`), then its timeline."""
    out = server.ivr("calls", "show", call_sid)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_zero_dials_the_agent_number_with_an_action(dialing: Server) -> None:
    call = Simulator(dialing.url, dialing.token).call(from_=unique_caller(),
                                                      dial_outcome="completed")  # fmt: skip
    call.press("0")
    root = fromstring(dial_twiml(call))
    assert [verb.tag for verb in root] == ["Say", "Dial"]
    assert TRANSFERRING in (root[0].text or "")
    dial = root.find("Dial")
    assert dial is not None and (dial.text or "").strip() == AGENT_NUMBER
    action = dial.get("action", "")
    assert action.startswith("/voice/transfer/"), action
    assert dial.get("method", "POST") == "POST"
    assert root.find("Enqueue") is None


@pytest.mark.parametrize("outcome", ["busy", "no-answer"])
def test_an_agent_who_does_not_answer_brings_the_caller_back_to_the_menu(
    dialing: Server, outcome: str
) -> None:
    call = Simulator(dialing.url, dialing.token).call(from_=unique_caller(), dial_outcome=outcome)
    call.press("0")
    dial_twiml(call)
    ended = [x for x in call.exchanges if x.kind == "dial"]
    assert len(ended) == 1 and ended[0].params["DialCallStatus"] == outcome, call.report()
    assert ended[0].status == 200
    call.expect_heard(AGENT_BUSY, LEAVE_A_MESSAGE, "返回主菜单请按2")
    assert not call.ended and GOODBYE not in call.heard_text
    assert call.gather is not None and call.gather.num_digits == 1, call.report()
    call.press("2").expect_heard(MAIN_MENU)
    assert call.gather is not None and call.gather.num_digits == 1, call.report()
    call.press("#").expect_heard(MAIN_MENU)  # the main menu answers keys again
    call.hangup()


def test_a_completed_agent_call_is_rated_says_goodbye_hangs_up_and_is_logged_transferred(
    dialing: Server,
) -> None:
    call = Simulator(dialing.url, dialing.token).call(from_=unique_caller(),
                                                      dial_outcome="completed")  # fmt: skip
    call.press("0")
    after = [x for x in call.exchanges if x.kind == "dial"]
    assert len(after) == 1 and after[0].params["DialCallStatus"] == "completed", call.report()
    call.expect_heard(RATE)
    assert AGENT_BUSY not in " ".join(call.said)
    call.press("1")
    assert call.ended and call.status == "completed", call.report()
    last = fromstring(call.last_twiml)
    assert [verb.tag for verb in last] == ["Say", "Hangup"], call.last_twiml
    assert THANKS_FOR_RATING in (last[0].text or "") and GOODBYE in (last[0].text or "")

    log = shown(dialing, call.phone.sid)
    assert any(x.startswith("outcome transferred,") for x in log), log
    assert any(" transfer " in x and "to=agent" in x for x in log), log
    assert any("transfer_ended" in x and "status=completed" in x for x in log), log
    assert any(" rating " in x and "value=satisfied" in x for x in log), log


def test_a_caller_silent_after_the_agent_hears_goodbye(dialing: Server) -> None:
    call = Simulator(dialing.url, dialing.token).call(from_=unique_caller(),
                                                      dial_outcome="completed")  # fmt: skip
    call.press("0").expect_heard(RATE)
    call.silence()
    assert call.ended and call.status == "completed", call.report()
    assert GOODBYE in " ".join(call.said) and "<Hangup" in call.last_twiml


def test_without_agents_zero_says_so_and_keeps_the_caller(no_agents: Server) -> None:
    call = Simulator(no_agents.url, no_agents.token).call(from_=unique_caller())
    call.press("0").expect_heard(NO_AGENT, LEAVE_A_MESSAGE)
    assert TRANSFERRING not in call.heard_text
    assert not call.ended and call.gather is not None and call.gather.num_digits == 1
    assert not [x for x in call.exchanges if "<Dial" in x.body or "<Enqueue" in x.body]
    call.press("2").expect_heard(MAIN_MENU)  # back to the main menu
    call.press("1").expect_heard("身份证")  # which answers keys again
    call.hangup()
    log = shown(no_agents, call.phone.sid)
    assert any(x.startswith("outcome ") for x in log), log
    assert not any(x.startswith("outcome transferred") or " transfer " in x for x in log), log


def test_without_agents_three_wrong_keys_say_goodbye_and_hang_up(no_agents: Server) -> None:
    call = Simulator(no_agents.url, no_agents.token).call(from_=unique_caller())
    call.press("7").expect_heard("您的输入有误", MAIN_MENU)
    call.press("8").expect_heard("您的输入有误", MAIN_MENU)
    call.press("5")
    assert call.ended and call.status == "completed", call.report()
    last = fromstring(call.last_twiml)
    assert [verb.tag for verb in last] == ["Say", "Hangup"], call.last_twiml
    assert "您的输入有误" in (last[0].text or "") and GOODBYE in (last[0].text or "")
    assert TRANSFERRING not in " ".join(call.said)
    assert not [x for x in call.exchanges if "<Dial" in x.body or "<Enqueue" in x.body]
