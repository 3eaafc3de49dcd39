"""Whole calls through the whole menu (SPEC 4, issue 3), in Mandarin and English: contribution
records, card services (loss report, status, applying), information, and the ways to a person:
an agent queue, a number to dial that is busy or does not answer, agents outside their hours,
no agents at all; voice messages kept as callback requests; the rating after an agent call.

Each test asserts what the caller hears and what the database or the call log shows.
Accounts used here (tests/data/accounts.json) are read or changed by no other test module.
"""

from __future__ import annotations

import datetime
import uuid
import zoneinfo
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from conftest import fresh_database
from defusedxml.ElementTree import fromstring
from hotline_server import Server, serve
from twilio_sim import SimCall, Simulator

from ivr import catalog
from ivr.phone import Recording
from services.accounts import idnumber
from services.accounts.db import make_engine
from services.accounts.models import AccountRow, CardRow

CMN, EN = "cmn-CN", "en-US"
PROMPTS = catalog.load()

SUN = ("370102198203154412", "314159")  # 孙七: four contribution records
JIANG = ("220102198604192716", "192837")  # 蒋十五: no contribution records
ZHOU = ("420102197508223837", "271828")  # 周八: reports a card lost (Mandarin)
CHEN = ("430102198512307618", "223606")  # 陈十二: reports a card lost (English)
WU = ("510104199001012014", "161803")  # 吴九: cancels a loss report
ZHENG = ("210102196811115528", "141421")  # 郑十: card already suspended
FENG = ("350102199307076034", "173205")  # 冯十一: card cancelled
KONG = ("440106199205053322", "246802")  # 孔十六: the card changes while the caller decides
ZHANG = ("11010519491231002X", "135790")  # 张三 (on servers of this module's own only)

MAIN = {CMN: "查询医保个人账户余额和近期消费记录，请按1；", EN: "For your personal account balance"}
ASK_ID = {CMN: "请输入您的18位身份证号码", EN: "Please enter your 18-character ID number."}
ASK_PIN = {CMN: "请输入6位查询密码。", EN: "Please enter your 6-digit PIN."}
CARDS = {
    CMN: "医保卡挂失，请按1；查询医保卡状态，请按2；",
    EN: "To report your card lost, press 1.",
}
INFO = {
    CMN: "查询余额的方式，请按1；医保卡使用须知，请按2；",
    EN: "For ways to check your balance, press 1.",
}
LIST_OPTIONS = {
    CMN: "下一条请按1，上一条请按2，重听请按井号键，返回请按星号键",
    EN: "For the next record, press 1.",
}
PART_OPTIONS = {
    CMN: "下一段请按1，上一段请按2，重听请按井号键，返回请按星号键。",
    EN: "For the next part, press 1.",
}
LAST = {CMN: "已经是最后一条了。", EN: "That was the last record."}
FIRST = {CMN: "已经是第一条了。", EN: "This is the first record."}
TRANSFERRING = {
    CMN: "正在为您转接人工服务，请稍候。",
    EN: "Putting you through to an agent. Please hold.",
}
BUSY = {
    CMN: "抱歉，人工座席正忙或暂时无人接听。留言请按1，我们会尽快给您回电；"
    "返回主菜单请按2；再次转接人工请按0。",
    EN: "Sorry, our agents are busy or did not answer. "
    "To leave a message so that we call you back, press 1.",
}
LEAVE_MESSAGE = {
    CMN: "请在提示音后留言，说明您的问题和联系电话，留言完毕请按井号键。",
    EN: "After the tone, please say what you need and a number to call you back on.",
}
MESSAGE_KEPT = {
    CMN: "您的留言已收到，我们会尽快给您回电。",
    EN: "Thank you, we have your message and will call you back soon.",
}
RATE = {
    CMN: "感谢您的耐心等待。请对本次服务进行评价：满意请按1，不满意请按2。",
    EN: "Thank you for waiting. Please rate our service: "
    "satisfied, press 1; not satisfied, press 2.",
}
RATED = {CMN: "感谢您的评价。", EN: "Thank you for your rating."}
GOODBYE = {CMN: "感谢您的来电，再见。", EN: "Thank you for calling. Goodbye."}
INVALID = {CMN: "您的输入有误。", EN: "Sorry, that is not a valid choice."}
AGENT_NUMBER = "+8610123456789"


def unique_caller() -> str:
    return "+86139" + str(uuid.uuid4().int)[:8]


def dial_in(sim: Simulator, lang: str = CMN, **options: object) -> SimCall:
    """A new call, in the main menu in `lang`."""
    call = sim.call(from_=unique_caller(), **options)  # type: ignore[arg-type]
    if lang == EN:
        call.press("9")
    return call.expect_heard(MAIN[lang])


def sign_in(call: SimCall, person: tuple[str, str], lang: str = CMN) -> SimCall:
    """Key the ID number (`*` for X, then #) and the PIN where the hotline asks for them."""
    id_number, pin = person
    call.expect_heard(ASK_ID[lang])
    call.press(id_number.replace("X", "*") + "#").expect_heard(ASK_PIN[lang])
    return call.press(pin)


def timeline(server: Server, call: SimCall) -> list[str]:
    """The call's redacted timeline as `ivr calls show` prints it."""
    shown = server.ivr("calls", "show", call.phone.sid)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout.splitlines()


def card_row(server: Server, id_number: str) -> tuple[str, datetime.datetime]:
    """The card's status and when it last changed, read from the hotline's own database."""
    digest = idnumber.digest(server.env["IVR_PIN_PEPPER"], id_number)
    engine = make_engine(server.env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            status, changed = conn.execute(
                sa.select(CardRow.status, CardRow.status_changed_at)
                .join(AccountRow, AccountRow.id == CardRow.account_id)
                .where(AccountRow.id_digest == digest)
            ).one()
    finally:
        engine.dispose()
    return status, changed


def set_card_status(server: Server, id_number: str, status: str) -> None:
    """Change a card behind the caller's back (an operator at a service window)."""
    digest = idnumber.digest(server.env["IVR_PIN_PEPPER"], id_number)
    engine = make_engine(server.env["DATABASE_URL"])
    try:
        with engine.begin() as conn:
            account = sa.select(AccountRow.id).where(AccountRow.id_digest == digest)
            done = conn.execute(
                sa.update(CardRow).where(CardRow.account_id == account.scalar_subquery())
                .values(status=status)
            )  # fmt: skip
            assert done.rowcount == 1
    finally:
        engine.dispose()


def callbacks_listed(server: Server) -> list[str]:
    """`ivr callbacks list`, one request a line."""
    listed = server.ivr("callbacks", "list")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.splitlines()


def twiml_with(call: SimCall, verb: str) -> list[object]:
    """The parsed TwiML documents of the call that contain `verb`."""
    return [fromstring(x.content) for x in call.exchanges if f"<{verb}" in x.body]


# --- 2: contribution records -----------------------------------------------------------------


def test_contribution_records_newest_month_first_one_at_a_time(
    sim: Simulator, hotline: Server
) -> None:
    call = dial_in(sim)
    sign_in(call.press("2"), SUN).expect_heard(
        "第1条，共4条。2026年10月，缴费单位山东某某物流有限公司，缴费基数七千五百元整，"
        "划入个人账户三百元整，正在处理。", LIST_OPTIONS[CMN],
    )  # fmt: skip
    call.press("1").expect_heard(
        "第2条，共4条。2026年9月，缴费单位山东某某物流有限公司", "已到账。"
    )
    call.press("#").expect_heard("第2条，共4条。2026年9月")
    call.press("2").expect_heard("第1条，共4条。2026年10月")
    call.press("2").expect_heard(FIRST[CMN], "第1条，共4条。2026年10月")
    call.press("1").press("1").expect_heard(
        "第3条，共4条。2026年8月，缴费单位济南某某机械厂，缴费基数六千元整，划入个人账户二百四十元整，已到账。"
    )
    call.press("1").expect_heard(
        "第4条，共4条。2025年12月，缴费单位济南某某机械厂，缴费基数五千八百元整，"
        "划入个人账户二百三十二元整，未缴费。"
    )  # fmt: skip
    assert LAST[CMN] not in call.heard_text
    call.press("1").expect_heard(LAST[CMN], "第4条，共4条。2025年12月")
    call.press("*").expect_heard(MAIN[CMN])
    call.press("2").expect_heard("第1条，共4条。2026年10月")  # still authenticated: no ID asked
    assert ASK_ID[CMN] not in call.heard_text
    call.hangup()

    lines = timeline(hotline, call)
    assert any(" menu " in x and "node=contributions" in x for x in lines), lines
    assert any("call=contributions" in x and "outcome=ok" in x for x in lines), lines
    assert any("370***********4412" in x for x in lines), lines
    assert not any("370102198203154412" in x or "314159" in x for x in lines), lines


def test_contribution_records_in_english(sim: Simulator) -> None:
    call = dial_in(sim, EN)
    sign_in(call.press("2"), SUN, EN).expect_heard(
        "Record 1 of 4. October 2026: employer 山东某某物流有限公司, "
        "contribution base 7,500.00 yuan, "
        "300.00 yuan credited to your personal account, being processed.", LIST_OPTIONS[EN],
    )  # fmt: skip
    call.press("1").expect_heard("Record 2 of 4. September 2026", "paid.")
    call.press("1").press("1").expect_heard(
        "Record 4 of 4. December 2025: employer 济南某某机械厂, contribution base 5,800.00 yuan, "
        "232.00 yuan credited to your personal account, not paid."
    )  # fmt: skip
    call.press("1").expect_heard(LAST[EN], "Record 4 of 4.")
    call.press("*").expect_heard(MAIN[EN])


@pytest.mark.parametrize(
    ("lang", "none"),
    [(CMN, "您目前没有缴费记录。"), (EN, "You have no contribution records.")],
    ids=[CMN, EN],
)
def test_an_account_without_contribution_records_says_so(
    sim: Simulator, lang: str, none: str
) -> None:
    call = dial_in(sim, lang)
    sign_in(call.press("2"), JIANG, lang).expect_heard(none, MAIN[lang])
    assert LIST_OPTIONS[lang] not in call.heard_text
    assert call.gather is not None and call.gather.num_digits == 1


# --- 3: card services ------------------------------------------------------------------------


def test_a_card_reported_lost_is_suspended_and_a_second_report_changes_nothing(
    sim: Simulator, hotline: Server
) -> None:
    assert card_row(hotline, ZHOU[0])[0] == "active"
    call = dial_in(sim)
    call.press("3").expect_heard(CARDS[CMN])
    sign_in(call.press("1"), ZHOU).expect_heard(
        "您的医保卡尾号为7 7 6 6，目前状态为正常使用。确认挂失请按1，取消请按2。"
    )
    assert card_row(hotline, ZHOU[0])[0] == "active"  # nothing happens before the caller confirms
    call.press("1").expect_heard(
        "挂失成功。您的医保卡已临时停用，他人无法使用。请携带本人身份证到医保服务窗口办理补卡",
        CARDS[CMN],
    )
    status, changed = card_row(hotline, ZHOU[0])
    assert status == "suspended"
    call.press("2").expect_heard("您的医保卡尾号为7 7 6 6，目前状态为已挂失，暂停使用。")
    call.hangup()
    lines = timeline(hotline, call)
    assert any(" act " in x and "name=report_card_lost" in x and "outcome=suspended" in x
               for x in lines), lines  # fmt: skip

    again = dial_in(sim)
    sign_in(again.press("3").press("1"), ZHOU).expect_heard(
        "您的医保卡尾号为7 7 6 6，目前状态为已挂失，暂停使用，不能办理挂失。", CARDS[CMN]
    )
    assert "确认挂失请按1" not in again.heard_text  # not even asked
    assert card_row(hotline, ZHOU[0]) == (status, changed)
    again.hangup()
    assert not any(" act " in x for x in timeline(hotline, again))


def test_a_card_reported_lost_in_english(sim: Simulator, hotline: Server) -> None:
    call = dial_in(sim, EN)
    call.press("3").expect_heard(CARDS[EN])
    sign_in(call.press("1"), CHEN, EN).expect_heard(
        "Your card ending in 6 6 5 5 is active. To report it lost, press 1. To cancel, press 2."
    )
    call.press("1").expect_heard(
        "Your card is reported lost and temporarily suspended, so nobody else can use it. "
        "Bring your ID card to a medical insurance service window to get a replacement", CARDS[EN],
    )  # fmt: skip
    status, changed = card_row(hotline, CHEN[0])
    assert status == "suspended"

    again = dial_in(sim, EN)
    sign_in(again.press("3").press("1"), CHEN, EN).expect_heard(
        "Your card ending in 6 6 5 5 is reported lost and suspended, so it cannot be reported lost."
    )
    assert "To report it lost, press 1" not in again.heard_text
    assert card_row(hotline, CHEN[0]) == (status, changed)


def test_a_cancelled_loss_report_changes_nothing(sim: Simulator, hotline: Server) -> None:
    before = card_row(hotline, WU[0])
    assert before[0] == "active"
    call = dial_in(sim)
    sign_in(call.press("3").press("1"), WU).expect_heard(
        "您的医保卡尾号为5 5 1 1，目前状态为正常使用。"
    )
    call.press("2").expect_heard("已取消挂失，您的医保卡状态没有改变。", CARDS[CMN])
    assert card_row(hotline, WU[0]) == before
    call.press("2").expect_heard("您的医保卡尾号为5 5 1 1，目前状态为正常使用。")
    call.hangup()
    assert not any(" act " in x for x in timeline(hotline, call))


@pytest.mark.parametrize(
    ("person", "lang", "refusal"),
    [
        (ZHENG, CMN, "您的医保卡尾号为8 8 3 3，目前状态为已挂失，暂停使用，不能办理挂失。"
                     "如有疑问，请按0转人工服务。"),
        (FENG, CMN, "您的医保卡尾号为4 4 2 2，目前状态为已注销，不能办理挂失。"),
        (FENG, EN, "Your card ending in 4 4 2 2 is cancelled, so it cannot be reported lost."),
    ],
    ids=["suspended", "cancelled", "cancelled-en"],
)  # fmt: skip
def test_a_card_not_in_use_is_refused_without_asking(
    sim: Simulator, hotline: Server, person: tuple[str, str], lang: str, refusal: str
) -> None:
    before = card_row(hotline, person[0])
    call = dial_in(sim, lang)
    sign_in(call.press("3").press("1"), person, lang).expect_heard(refusal, CARDS[lang])
    assert "确认挂失请按1" not in call.heard_text and "To report it lost" not in call.heard_text
    assert card_row(hotline, person[0]) == before
    call.press("1").expect_heard(refusal)  # asking again changes nothing either
    assert card_row(hotline, person[0]) == before


def test_a_card_that_changes_while_the_caller_decides(sim: Simulator, hotline: Server) -> None:
    """Between the question and the `1`, someone at a service window changes the card."""
    set_card_status(hotline, KONG[0], "active")
    call = dial_in(sim)
    sign_in(call.press("3").press("1"), KONG).expect_heard(
        "尾号为0 0 1 6，目前状态为正常使用。确认挂失请按1"
    )
    set_card_status(hotline, KONG[0], "suspended")
    call.press("1").expect_heard("这张医保卡已经挂失，无需重复办理。", CARDS[CMN])
    set_card_status(hotline, KONG[0], "active")
    call.press("1").expect_heard("确认挂失请按1")
    set_card_status(hotline, KONG[0], "cancelled")
    call.press("1").expect_heard("这张医保卡已经注销，不能办理挂失。", CARDS[CMN])
    assert card_row(hotline, KONG[0])[0] == "cancelled"
    call.hangup()
    outcomes = [x for x in timeline(hotline, call) if " act " in x]
    assert len(outcomes) == 2, outcomes
    assert "outcome=already_suspended" in outcomes[0] and "outcome=cancelled" in outcomes[1]


@pytest.mark.parametrize(
    ("person", "lang", "status"),
    [
        (ZHENG, CMN, "您的医保卡尾号为8 8 3 3，目前状态为已挂失，暂停使用。"),
        (WU, CMN, "您的医保卡尾号为5 5 1 1，目前状态为正常使用。"),
        (FENG, EN, "Your card ending in 4 4 2 2 is cancelled."),
    ],
    ids=["suspended", "active", "cancelled-en"],
)
def test_card_status(sim: Simulator, person: tuple[str, str], lang: str, status: str) -> None:
    call = dial_in(sim, lang)
    call.press("3").expect_heard(CARDS[lang])
    sign_in(call.press("2"), person, lang).expect_heard(status)
    call.press("#").expect_heard(status)
    call.silence().expect_heard(
        {CMN: "重听请按井号键，返回请按星号键。", EN: "To hear this again"}[lang]
    )
    call.press("*").expect_heard(CARDS[lang])
    call.press("*").expect_heard(MAIN[lang])


# --- 3-3 and 4: information, one part at a time ----------------------------------------------

INFO_ITEMS = [  # (the key path, the parts' prompt keys, what the seeds say, in each language)
    ("33", "card.apply", 4, {CMN: ("县级医保中心", "3个工作日", "委托他人代办", "请先挂失"),
                             EN: ("county medical insurance center", "three working days",
                                  "Someone else may apply for you", "report it lost first")}),
    ("41", "info.check", 4, {CMN: ("自助查询终端", "服务窗口", "微信、支付宝", "拨打12333热线"),
                             EN: ("self-service terminals", "service window", "WeChat or Alipay",
                                  "This 12333 line")}),
    ("42", "info.rules", 4, {CMN: ("不要弯折", "不得出借", "设备故障", "交回医保中心"),
                             EN: ("do not bend", "must not be lent", "pay in cash first",
                                  "return the card")}),
    ("43", "info.pays", 3, {CMN: ("定点药店购药费用", "住院医疗费用", "由个人自付"),
                            EN: ("medicines at designated pharmacies", "hospital stays",
                                 "you pay yourself")}),
]  # fmt: skip


@pytest.mark.parametrize("lang", [CMN, EN])
@pytest.mark.parametrize(("keys", "name", "count", "seeded"), INFO_ITEMS,
                         ids=[item[1] for item in INFO_ITEMS])  # fmt: skip
def test_information_parts_page_and_repeat(
    sim: Simulator, lang: str, keys: str, name: str, count: int, seeded: dict[str, tuple[str, ...]]
) -> None:
    parts = [PROMPTS.prompt(f"{name}.{n}", lang).text for n in range(1, count + 1)]
    for part, fact in zip(parts, seeded[lang], strict=True):
        assert fact in part  # the information is the seeds'
    call = dial_in(sim, lang)
    call.press(keys[0]).expect_heard((CARDS if keys[0] == "3" else INFO)[lang])
    call.press(keys[1]).expect_heard(parts[0], PART_OPTIONS[lang])
    assert ASK_ID[lang] not in " ".join(call.said)  # information needs no authentication
    for part in parts[1:]:
        call.press("1").expect_heard(part)
        assert parts[0] not in call.heard_text
    call.press("#").expect_heard(parts[-1], PART_OPTIONS[lang])
    call.press("1").expect_heard(LAST[lang], parts[-1])
    call.press("2").expect_heard(parts[-2])
    assert parts[-1] not in call.heard_text
    call.press("#").expect_heard(parts[-2])
    call.press("*").expect_heard((CARDS if keys[0] == "3" else INFO)[lang])
    call.press("*").expect_heard(MAIN[lang])


# --- 0: agents in a queue (the session hotline: IVR_AGENT_QUEUE=agents, always open) --------


@pytest.mark.parametrize(
    ("lang", "rating", "value", "first", "third"),
    [
        (CMN, "1", "satisfied", "您现在排在第1位，预计等待约1分钟，请不要挂机。",
         "您现在排在第3位，预计等待约3分钟，请不要挂机。"),
        (EN, "2", "unsatisfied", "You are number 1 in the queue.",
         "You are number 3 in the queue. The expected wait is about 3 minutes."),
    ],
    ids=[CMN, EN],
)  # fmt: skip
def test_the_agent_queue_tells_the_position_and_the_caller_rates_the_agent(
    sim: Simulator, hotline: Server, lang: str, rating: str, value: str, first: str, third: str
) -> None:
    call = dial_in(sim, lang, queue_outcome="bridged", queue_polls=2)
    call.press("0").expect_heard(TRANSFERRING[lang], first, RATE[lang])
    [document] = twiml_with(call, "Enqueue")
    assert [verb.tag for verb in document] == ["Say", "Enqueue"]  # type: ignore[attr-defined]
    enqueue = document.find("Enqueue")  # type: ignore[attr-defined]
    assert (enqueue.text or "").strip() == "agents"
    wait_url = enqueue.get("waitUrl", "")
    assert wait_url == f"/voice/wait/{lang}" and enqueue.get("waitUrlMethod") == "POST"
    assert enqueue.get("action", "").startswith("/voice/transfer/")

    polls = [x for x in call.exchanges if x.kind == "wait"]
    assert len(polls) == 2, call.report()
    for poll in polls:
        assert poll.status == 200 and poll.params["QueuePosition"] == "1"
        assert [verb.tag for verb in fromstring(poll.content)] == ["Say", "Pause"]
        assert first in poll.body
    params = {**polls[0].params, "QueuePosition": "3", "AvgQueueTime": "150", "QueueTime": "40"}
    answer = sim.post(wait_url, params)  # Twilio asks again when the caller has moved up
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/xml")
    assert third in answer.text
    assert sim.post(wait_url, params, signed=False).status_code == 403

    assert call.gather is not None and call.gather.num_digits == 1
    call.press(rating)
    assert call.ended and call.status == "completed", call.report()
    assert call.heard_text.startswith(RATED[lang]) and GOODBYE[lang] in call.heard_text
    ended = [x for x in call.exchanges if x.kind == "enqueue"]
    assert len(ended) == 1 and ended[0].params["QueueResult"] == "bridged"
    lines = timeline(hotline, call)
    assert any("transfer_ended" in x and "status=bridged" in x for x in lines), lines
    assert any(" rating " in x and f"value={value}" in x for x in lines), lines


def test_a_caller_who_leaves_the_queue_gets_the_busy_menu(sim: Simulator) -> None:
    call = dial_in(sim, queue_outcome="leave", queue_polls=1)
    call.press("0").expect_heard(TRANSFERRING[CMN], "排在第1位", BUSY[CMN])
    assert RATE[CMN] not in " ".join(call.said)
    call.press("2").expect_heard(MAIN[CMN])


# --- 0: a number to dial (IVR_AGENT_NUMBER) that is busy or does not answer ---------------


@pytest.fixture(scope="module")
def dialing(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with an agent number to dial, always open, and a database of its own."""
    folder = tmp_path_factory.mktemp("menu-dialing")
    with fresh_database(folder) as url:
        env = {"IVR_AGENT_NUMBER": AGENT_NUMBER, "IVR_AGENT_QUEUE": ""}
        with serve(folder, redis_url, url, extra_env=env) as server:
            yield server


@pytest.mark.parametrize("outcome", ["busy", "no-answer"])
@pytest.mark.parametrize("lang", [CMN, EN])
def test_an_agent_who_does_not_answer_offers_a_voice_message(
    dialing: Server, outcome: str, lang: str
) -> None:
    caller = unique_caller()
    call = Simulator(dialing.url, dialing.token).call(from_=caller, dial_outcome=outcome)
    if lang == EN:
        call.press("9")
    call.press("0").expect_heard(TRANSFERRING[lang], BUSY[lang])
    [document] = twiml_with(call, "Dial")
    dial = document.find("Dial")  # type: ignore[attr-defined]
    assert (dial.text or "").strip() == AGENT_NUMBER
    assert dial.get("action", "").startswith("/voice/transfer/") and dial.get("method") == "POST"
    [ended] = [x for x in call.exchanges if x.kind == "dial"]
    assert ended.params["DialCallStatus"] == outcome
    assert call.gather is not None and call.gather.num_digits == 1

    call.record_outcome = Recording(duration=17)
    call.press("1").expect_heard(LEAVE_MESSAGE[lang], MESSAGE_KEPT[lang], MAIN[lang])
    [document] = twiml_with(call, "Record")
    record = document.find("Record")  # type: ignore[attr-defined]
    assert record.get("action", "").startswith("/voice/recorded/")
    assert record.get("finishOnKey") == "#" and record.get("maxLength") == "120"
    [recorded] = [x for x in call.exchanges if x.kind == "record"]

    [line] = [x for x in callbacks_listed(dialing) if caller in x]
    assert "not authenticated" in line and lang in line and " 17s " in line, line
    assert recorded.params["RecordingUrl"] in line
    assert call.gather is not None  # back in the main menu, keys work again
    call.press("4").expect_heard(INFO[lang])


def test_a_voice_message_after_authentication_keeps_the_masked_id(dialing: Server) -> None:
    caller = unique_caller()
    call = Simulator(dialing.url, dialing.token).call(from_=caller, dial_outcome="no-answer")
    sign_in(call.press("1"), ZHANG).expect_heard("您的医保个人账户余额为一千二百三十四元五角六分")
    call.press("0").expect_heard(BUSY[CMN])
    call.press("1").expect_heard(MESSAGE_KEPT[CMN])
    [line] = [x for x in callbacks_listed(dialing) if caller in x]
    assert "ID 110***********002X" in line, line
    assert ZHANG[0] not in "\n".join(callbacks_listed(dialing))


def test_no_voice_message_recorded_brings_the_busy_menu_back(dialing: Server) -> None:
    caller = unique_caller()
    call = Simulator(dialing.url, dialing.token).call(from_=caller, dial_outcome="busy")
    call.press("0").expect_heard(BUSY[CMN])
    call.record_outcome = None  # the caller says nothing after the tone
    call.press("1").expect_heard(LEAVE_MESSAGE[CMN], "没有收到您的留言。", BUSY[CMN])
    assert MESSAGE_KEPT[CMN] not in call.heard_text
    assert not [x for x in callbacks_listed(dialing) if caller in x]


def test_from_the_busy_menu_two_is_the_main_menu_and_star_goes_back(dialing: Server) -> None:
    call = Simulator(dialing.url, dialing.token).call(from_=unique_caller(), dial_outcome="busy")
    call.press("0").expect_heard(BUSY[CMN])
    call.press("2").expect_heard(MAIN[CMN])
    balance = "您的医保个人账户余额为一千二百三十四元五角六分"
    sign_in(call.press("1"), ZHANG).expect_heard(balance)
    call.press("0").expect_heard(BUSY[CMN])
    call.press("0").expect_heard(TRANSFERRING[CMN], BUSY[CMN])  # try again: busy again
    call.press("*").expect_heard(balance)  # back where the caller asked for an agent
    call.press("0").expect_heard(BUSY[CMN])
    call.press("2").expect_heard(MAIN[CMN])  # "返回主菜单请按2": the main menu, not the balance
    assert balance not in call.heard_text
    assert len(twiml_with(call, "Dial")) == 4


def test_an_agent_who_answers_is_rated_after_the_call(dialing: Server) -> None:
    call = Simulator(dialing.url, dialing.token).call(
        from_=unique_caller(), dial_outcome="completed"
    )
    call.press("0").expect_heard(RATE[CMN])
    call.press("1")
    assert call.ended and RATED[CMN] in call.heard_text and GOODBYE[CMN] in call.heard_text
    assert any(" rating " in x and "value=satisfied" in x for x in timeline(dialing, call))


# --- 0: outside the agents' hours ----------------------------------------------------------


@pytest.fixture(scope="module")
def closed(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline whose agents (a queue) do not answer today or tomorrow: both are holidays."""
    folder = tmp_path_factory.mktemp("menu-closed")
    today = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Shanghai")).date()
    holidays = folder / "holidays.txt"
    holidays.write_text(
        f"# test holidays\n{today}\n{today + datetime.timedelta(days=1)}  tomorrow\n"
    )
    env = {
        "IVR_AGENT_QUEUE": "agents",
        "IVR_AGENT_NUMBER": "",
        "IVR_AGENT_HOURS": "Mon-Fri 09:00-17:00",
        "IVR_TIMEZONE": "Asia/Shanghai",
        "IVR_HOLIDAYS": str(holidays),
    }
    with fresh_database(folder) as url, serve(folder, redis_url, url, extra_env=env) as server:
        yield server


@pytest.mark.parametrize(
    ("lang", "hours"),
    [
        (CMN, "人工服务时间为周一至周五9点整至17点整，现在不在服务时间内。"
              "留言请按1，我们会尽快给您回电；返回上一级请按2。"),
        (EN, "Agents answer Monday to Friday, 9:00 AM to 5:00 PM; it is outside those hours now. "
             "To leave a message so that we call you back, press 1."),
    ],
    ids=[CMN, EN],
)  # fmt: skip
def test_outside_hours_zero_reads_the_hours_and_takes_a_voice_message(
    closed: Server, lang: str, hours: str
) -> None:
    call = dial_in(Simulator(closed.url, closed.token), lang)
    call.press("0").expect_heard(hours)
    assert TRANSFERRING[lang] not in call.heard_text
    call.press("#").expect_heard(hours)
    call.press("2").expect_heard(MAIN[lang])
    call.press("0").expect_heard(hours)
    call.press("1").expect_heard(LEAVE_MESSAGE[lang], MESSAGE_KEPT[lang], MAIN[lang])
    assert not twiml_with(call, "Enqueue") and not twiml_with(call, "Dial")
    number = call.phone.line.from_
    [line] = [x for x in callbacks_listed(closed) if number in x]
    assert "not authenticated" in line and lang in line and "open" in line, line


def test_outside_hours_three_wrong_keys_say_goodbye(closed: Server) -> None:
    call = dial_in(Simulator(closed.url, closed.token))
    call.press("7").expect_heard(INVALID[CMN], MAIN[CMN])
    call.press("8").expect_heard(INVALID[CMN])
    call.press("6")
    assert call.ended, call.report()
    assert [verb.tag for verb in fromstring(call.last_twiml)] == ["Say", "Hangup"]
    assert call.heard_text.endswith(GOODBYE[CMN])
    assert not twiml_with(call, "Enqueue")


# --- 0: no agents at all ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_agents(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with neither an agent queue nor an agent number."""
    folder = tmp_path_factory.mktemp("menu-no-agents")
    with fresh_database(folder) as url:
        env = {"IVR_AGENT_QUEUE": "", "IVR_AGENT_NUMBER": ""}
        with serve(folder, redis_url, url, extra_env=env) as server:
            yield server


@pytest.mark.parametrize(
    ("lang", "none"),
    [(CMN, "抱歉，目前没有人工座席可以接听。留言请按1，我们会尽快给您回电；返回上一级请按2。"),
     (EN, "Sorry, no agent can take your call. "
          "To leave a message so that we call you back, press 1.")],
    ids=[CMN, EN],
)  # fmt: skip
def test_without_agents_zero_says_so_and_offers_a_voice_message(
    no_agents: Server, lang: str, none: str
) -> None:
    call = dial_in(Simulator(no_agents.url, no_agents.token), lang)
    call.press("0").expect_heard(none)
    assert TRANSFERRING[lang] not in call.heard_text
    call.press("2").expect_heard(MAIN[lang])
    sign_in(call.press("1"), ZHANG, lang)
    call.press("0").expect_heard(none)
    call.press("1").expect_heard(MESSAGE_KEPT[lang], MAIN[lang])
    assert not twiml_with(call, "Enqueue") and not twiml_with(call, "Dial")
    [line] = [x for x in callbacks_listed(no_agents) if call.phone.line.from_ in x]
    assert "ID 110***********002X" in line and lang in line, line


@pytest.mark.parametrize("lang", [CMN, EN])
def test_without_agents_three_wrong_keys_say_goodbye(no_agents: Server, lang: str) -> None:
    call = dial_in(Simulator(no_agents.url, no_agents.token), lang)
    call.press("3").expect_heard(CARDS[lang])
    call.press("7").expect_heard(INVALID[lang], CARDS[lang])
    call.press("8").expect_heard(INVALID[lang])
    call.press("9")
    assert call.ended and call.status == "completed", call.report()
    assert [verb.tag for verb in fromstring(call.last_twiml)] == ["Say", "Hangup"]
    assert call.heard_text == f"{INVALID[lang]} {GOODBYE[lang]}"
