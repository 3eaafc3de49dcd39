"""Whole calls over real HTTP: gunicorn, a real Redis, a real database, a Twilio-like simulator."""

from __future__ import annotations

import uuid

import requests
from defusedxml.ElementTree import fromstring
from hotline_server import Server
from twilio_sim import Simulator

ZHANG = "11010519491231002X"  # 张三, PIN 135790, balance 1234.56, three transactions
ZHANG_KEYS = "11010519491231002*#"
LI_KEYS = "440304199001011233#"  # 李四, PIN 246810, balance 1005.07, no transactions
WANG_KEYS = "310101198506154324#"  # 王五, PIN 111111: lock tests
NOBODY_KEYS = "110101199003072834#"  # a valid ID number with no account


def unique_caller() -> str:
    return "+86139" + str(uuid.uuid4().int)[:8]


def authenticate(call, id_keys: str = ZHANG_KEYS, pin: str = "135790"):  # type: ignore[no-untyped-def]
    call.press("1").expect_heard("身份证")
    call.press(id_keys).expect_heard("密码")
    return call.press(pin)


def test_balance_and_transactions_in_mandarin(sim: Simulator, hotline: Server) -> None:
    call = sim.call(from_=unique_caller())
    call.expect_heard("欢迎致电12333", "请按1", "For English service, press 9.")
    assert call.gather is not None and call.gather.num_digits == 1

    authenticate(call).expect_heard("您的医保个人账户余额为一千二百三十四元五角六分")
    call.press("1").expect_heard(
        "第1条，共3条", "11月20日", "北京协和医院", "门诊", "总金额五百元整",
        "统筹基金支付三百元整", "个人账户支付一百五十元整", "现金支付五十元整",
    )  # fmt: skip
    call.press("1").expect_heard("第2条", "同仁堂药店", "药店购药", "八十六元五角")
    call.press("1").expect_heard("第3条", "2025年12月28日", "住院", "一万二千元整")
    call.press("1").expect_heard("已经是最后一条了", "第3条")
    call.press("2").expect_heard("第2条", "同仁堂药店")
    call.press("#").expect_heard("第2条", "同仁堂药店")
    call.press("*").expect_heard("一千二百三十四元五角六分")
    call.press("*").expect_heard("查询医保个人账户余额")
    call.hangup()
    assert call.status == "completed"

    shown = hotline.ivr("calls", "show", call.phone.sid)
    assert shown.returncode == 0, shown.stderr
    assert "110***********002X" in shown.stdout and "******" in shown.stdout
    assert "ok" in shown.stdout and "completed" in shown.stdout


def test_english_service(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    call.press("9").expect_heard("For your personal account balance", "普通话服务请按9")
    call.press("1").expect_heard("18-character ID number")
    call.press(ZHANG_KEYS).expect_heard("6-digit PIN")
    call.press("135790").expect_heard("Your personal account balance is 1,234.56 yuan.")
    first = ("Record 1 of 3", "November 20", "outpatient care", "Total 500.00 yuan",
             "the pooled fund paid 300.00 yuan")  # fmt: skip
    call.press("1").expect_heard(*first)
    call.press("9").expect_heard("not a valid choice")  # 9 only switches language in the main menu


def test_id_without_x_and_no_transactions(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    authenticate(call, LI_KEYS, "246810").expect_heard("一千零五元零七分")
    call.press("1").expect_heard("您近期没有消费记录", "一千零五元零七分")


def test_wrong_check_digit_is_asked_again_before_any_pin(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press("110105194912310021#").expect_heard("身份证号码有误", "请输入您的18位身份证号码")
    assert "密码" not in call.heard_text
    call.press("12345#").expect_heard("有误")
    call.press("110105194912310021#").expect_heard("错误次数过多", "查询医保个人账户余额")


def test_wrong_pins_lock_the_id_across_calls_until_unlocked(
    sim: Simulator, hotline: Server
) -> None:
    first = sim.call(from_=unique_caller())
    wrong = authenticate(first, WANG_KEYS, "000000")
    wrong.expect_heard("身份证号码或密码不正确", "请输入6位查询密码")
    first.press("000001").expect_heard("不正确")
    first.press("000002").expect_heard("不正确", "验证失败次数过多")
    first.press("1").expect_heard("暂时不能查询个人信息")  # no more tries in this call
    first.hangup()

    second = sim.call(from_=unique_caller())
    authenticate(second, WANG_KEYS, "000003").expect_heard("不正确")
    second.press("000004").expect_heard("已被锁定24小时")  # fifth failure in a row
    second.hangup()

    third = sim.call(from_=unique_caller())
    third.press("1")
    third.press(WANG_KEYS).expect_heard("已被锁定24小时")  # locked: not even asked for the PIN
    third.hangup()

    unlocked = hotline.ivr("accounts", "unlock", "310101198506154324")
    assert unlocked.returncode == 0 and "unlocked" in unlocked.stdout
    assert "310101198506154324" not in unlocked.stdout + unlocked.stderr

    fourth = sim.call(from_=unique_caller())
    authenticate(fourth, WANG_KEYS, "111111").expect_heard("余额为一百元整")


def test_an_id_number_without_an_account_sounds_the_same_and_locks_too(sim: Simulator) -> None:
    known = sim.call(from_=unique_caller())
    authenticate(known, LI_KEYS, "999999")
    unknown = sim.call(from_=unique_caller())
    authenticate(unknown, NOBODY_KEYS, "999999")
    assert known.heard == unknown.heard
    unknown.press("999998")
    unknown.press("999997")
    again = sim.call(from_=unique_caller())
    authenticate(again, NOBODY_KEYS, "999996")
    again.press("999995").expect_heard("已被锁定24小时")


def test_silence_three_times_says_goodbye_and_hangs_up(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    call.silence().expect_heard("余额请按1")  # the shorter menu
    call.silence().expect_heard("余额请按1")
    call.silence()
    assert call.ended
    assert "没有收到您的按键" in call.heard_text and "再见" in call.heard_text
    assert "<Hangup" in call.last_twiml


def test_silence_in_the_pin_entry_counts_too(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press(ZHANG_KEYS)
    call.silence().expect_heard("请输入6位密码")
    call.press("135790").expect_heard("一千二百三十四元五角六分")


def test_three_wrong_keys_reach_an_agent(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller(), queue_outcome="bridged")
    call.press("7").expect_heard("您的输入有误", "查询医保个人账户余额")
    call.press("8").expect_heard("有误")
    call.press("5")
    assert "正在为您转接人工服务" in " ".join(call.said)
    enqueues = [x for x in call.exchanges if "/voice/transfer/" in x.url]
    assert enqueues, call.report()


def test_zero_goes_to_the_agent_queue_then_asks_for_a_rating(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller(), queue_outcome="bridged")
    call.press("0").expect_heard("满意请按1")
    twiml = [x.body for x in call.exchanges if "<Enqueue" in x.body]
    assert twiml, call.report()
    enqueue = fromstring(twiml[0]).find("Enqueue")
    assert enqueue is not None and enqueue.text == "agents"
    call.press("1")
    assert call.ended and "感谢您的评价" in call.heard_text and "感谢您的来电" in call.heard_text


def test_a_repeated_webhook_gets_the_same_reply_and_counts_one_pin(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    authenticate(call, LI_KEYS, "000000").expect_heard("不正确")
    status, body = call.resend_last()
    assert status == 200 and body == call.last_twiml
    call.press("000001").expect_heard("不正确")
    assert "验证失败次数过多" not in call.heard_text  # the repeat did not count a third failure
    call.press("246810").expect_heard("一千零五元零七分")


def test_unsigned_and_tampered_webhooks_are_refused(sim: Simulator) -> None:
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800000000", "To": "+8612333"}
    assert sim.post("/voice", params, signed=False).status_code == 403
    assert sim.post("/voice", params, tamper=True).status_code == 403
    good = sim.post("/voice", params)
    assert good.status_code == 200 and good.headers["Content-Type"].startswith("text/xml")


def test_a_signature_for_another_url_is_refused(sim: Simulator, hotline: Server) -> None:
    from ivr.phone import sign

    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800000000", "Digits": "1"}
    signature = sign(hotline.token, f"{hotline.url}/voice/in/1", params)
    refused = requests.post(f"{hotline.url}/voice/in/2", data=params,
                            headers={"X-Twilio-Signature": signature}, timeout=5)  # fmt: skip
    assert refused.status_code == 403


def test_the_status_callback_ends_the_call_in_the_log(sim: Simulator, hotline: Server) -> None:
    call = sim.call(from_="+8613912345678")
    call.press("0")
    listed = hotline.ivr("calls", "list", "--limit", "200")
    assert call.phone.sid in listed.stdout
    line = next(x for x in listed.stdout.splitlines() if call.phone.sid in x)
    assert "+86*******5678" in line and "transferred" in line
    assert "13912345678" not in listed.stdout
