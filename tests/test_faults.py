"""Whole calls when something behind the hotline fails (SPEC 3): Redis out of reach, the account
service out of reach, the account service over real HTTP, and webhooks that make no sense.

A valid webhook always gets 200 and TwiML the caller can follow: an apology in both languages
with a retry and a person, or "account information is not available right now" and the menu."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import requests
from conftest import fresh_database
from defusedxml.ElementTree import fromstring
from hotline_server import PEPPER, Server, free_port, gunicorn, serve
from twilio_sim import SimCall, Simulator

ZHANG_KEYS = "11010519491231002*#"  # 张三, PIN 135790, balance 1234.56, three transactions
APOLOGY_ZH = "抱歉，系统暂时出现故障"  # error.apology
OPTIONS_ZH = "重试请按1，人工服务请按0"  # error.apology.options
APOLOGY_EN = "we are having a technical problem"  # error.apology in en-US
OPTIONS_EN = "To try again, press 1. For an agent, press 0."  # error.apology.options in en-US
SERVICE_DOWN = "账户系统暂时无法查询"  # error.service
MAIN_MENU = "查询医保个人账户余额"  # main.menu
FAST = 0.5  # seconds: a failure behind the hotline must not keep the caller waiting


def unique_caller() -> str:
    return "+86139" + str(uuid.uuid4().int)[:8]


def closed_port() -> int:
    """A loopback port nobody listens on: connecting to it is refused at once."""
    return free_port()


def webhook_elapsed(call: SimCall, path: str) -> list[float]:
    """How long each webhook to `path` (a URL fragment) took to answer, in seconds."""
    return [x.elapsed for x in call.exchanges if path in x.url and x.kind != "status"]


def assert_apology(call: SimCall) -> None:
    """The caller hears the apology and its options in Mandarin and in English, and may press."""
    call.expect_heard(APOLOGY_ZH, OPTIONS_ZH, APOLOGY_EN, OPTIONS_EN)
    assert call.gather is not None and call.gather.num_digits == 1, call.report()


# --- Redis out of reach ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def no_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The hotline with REDIS_URL on a closed loopback port and an agent queue."""
    folder = tmp_path_factory.mktemp("no-redis")
    with fresh_database(folder) as url:
        redis_url = f"redis://127.0.0.1:{closed_port()}/0"
        with serve(folder, redis_url, url, extra_env={"IVR_AGENT_QUEUE": "agents"},
                   workers=1, healthy=False) as server:  # fmt: skip
            yield server


def test_the_hotline_starts_without_redis_and_says_it_is_degraded(no_redis: Server) -> None:
    assert no_redis.process.poll() is None
    health = requests.get(f"{no_redis.url}/healthz", timeout=5)
    assert health.status_code == 503
    assert health.json()["status"] == "degraded" and health.json()["redis"] != "ok"
    assert health.json()["database"] == "ok"


def test_without_redis_a_call_hears_the_apology_in_both_languages_at_once(
    no_redis: Server,
) -> None:
    call = Simulator(no_redis.url, no_redis.token).call(from_=unique_caller())
    first = call.exchanges[0]
    assert first.status == 200 and first.content_type.startswith("text/xml"), call.report()
    assert first.elapsed < FAST, f"the apology took {first.elapsed:.3f} s"
    assert_apology(call)
    assert call.phone.error is None


def test_without_redis_pressing_1_tries_again_and_hears_the_apology_again(no_redis: Server) -> None:
    call = Simulator(no_redis.url, no_redis.token).call(from_=unique_caller())
    call.press("1")
    assert_apology(call)
    recover = [x for x in call.exchanges if x.url.endswith("/voice/recover")]
    assert len(recover) == 1 and recover[0].params.get("Digits") == "1", call.report()
    redirect = fromstring(recover[0].content).find("Redirect")
    assert redirect is not None and (redirect.text or "").endswith("/voice"), recover[0].body
    voice = [x for x in call.exchanges if x.url.endswith("/voice")]
    assert len(voice) == 2, call.report()  # the retry went back to /voice
    assert all(x.status == 200 for x in call.exchanges), call.report()
    assert max(webhook_elapsed(call, "/voice")) < FAST


def test_without_redis_pressing_0_reaches_the_agent_queue(no_redis: Server) -> None:
    call = Simulator(no_redis.url, no_redis.token).call(from_=unique_caller(),
                                                        queue_outcome="bridged")  # fmt: skip
    call.press("0")
    enqueues = [x.body for x in call.exchanges if "<Enqueue" in x.body]
    assert enqueues, call.report()
    enqueue = fromstring(enqueues[0]).find("Enqueue")
    assert enqueue is not None and enqueue.text == "agents"
    assert call.ended and call.phone.error is None, call.report()


# --- the account service out of reach -------------------------------------------------------


@pytest.fixture(scope="module")
def no_accounts(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with ACCOUNTS_URL on a closed loopback port."""
    folder = tmp_path_factory.mktemp("no-accounts")
    with fresh_database(folder) as url:
        accounts_url = f"http://127.0.0.1:{closed_port()}"
        extra = {"ACCOUNTS_URL": accounts_url}
        with serve(folder, redis_url, url, extra_env=extra, workers=1) as server:
            yield server


def test_account_service_down_the_caller_hears_so_quickly_and_is_back_in_the_menu(
    no_accounts: Server,
) -> None:
    call = Simulator(no_accounts.url, no_accounts.token).call(from_=unique_caller())
    call.press("1").expect_heard("身份证")
    call.press(ZHANG_KEYS).expect_heard("密码")
    call.press("135790").expect_heard(SERVICE_DOWN, MAIN_MENU)
    assert "余额为" not in call.heard_text
    assert call.gather is not None and call.gather.num_digits == 1
    assert "/voice/in/" in call.gather.action
    pin = call.exchanges[-1]
    assert pin.status == 200 and pin.elapsed < 1.0, f"the PIN step took {pin.elapsed:.3f} s"
    call.press("#").expect_heard(MAIN_MENU)  # the menu answers keys again
    call.hangup()

    shown = no_accounts.ivr("calls", "show", call.phone.sid)
    assert shown.returncode == 0, shown.stderr
    service = [x for x in shown.stdout.splitlines() if " service " in x]
    assert any("call=verify_pin" in x and "outcome=AccountsUnavailable" in x for x in service), (
        shown.stdout
    )
    assert "result=unavailable" in shown.stdout


# --- the account service over real HTTP ------------------------------------------------------


@pytest.fixture(scope="module")
def over_http(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The account service under gunicorn, and the hotline calling it with a bearer token."""
    folder = tmp_path_factory.mktemp("over-http")
    token = f"accounts-token-{uuid.uuid4().hex}"
    with fresh_database(folder) as url:
        service_env = {
            "IVR_INSTANCE_PATH": str(folder / "accounts-service"),
            "DATABASE_URL": url,
            "IVR_PIN_PEPPER": PEPPER,
            "ACCOUNTS_TOKEN": token,
        }
        with gunicorn("services.accounts.api:create_app()", _env(service_env),
                      folder / "accounts.log") as (accounts_url, _):  # fmt: skip
            extra = {"ACCOUNTS_URL": accounts_url, "ACCOUNTS_TOKEN": token}
            with serve(folder, redis_url, url, extra_env=extra, workers=1) as server:
                yield server


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ACCOUNTS_URL", "IVR_DEV_MODE")}
    return env | extra


def test_the_account_service_refuses_requests_without_its_token(over_http: Server) -> None:
    accounts_url = over_http.env["ACCOUNTS_URL"]
    assert requests.get(f"{accounts_url}/healthz", timeout=5).status_code == 200
    refused = requests.get(f"{accounts_url}/v1/accounts/1/balance", timeout=5)
    assert refused.status_code == 401


def test_balance_and_transactions_through_the_account_service_over_http(
    over_http: Server,
) -> None:
    call = Simulator(over_http.url, over_http.token).call(from_=unique_caller())
    call.press("1")
    call.press(ZHANG_KEYS)
    call.press("135790").expect_heard("您的医保个人账户余额为一千二百三十四元五角六分")
    call.press("1").expect_heard("第1条，共3条", "北京协和医院", "总金额五百元整",
                                 "统筹基金支付三百元整", "个人账户支付一百五十元整")  # fmt: skip
    call.press("1").expect_heard("第2条", "同仁堂药店", "八十六元五角")
    call.press("1").expect_heard("第3条", "2025年12月28日", "住院", "一万二千元整")
    call.press("*").expect_heard("一千二百三十四元五角六分")
    call.hangup()
    assert call.phone.error is None

    shown = over_http.ivr("calls", "show", call.phone.sid)
    assert shown.returncode == 0, shown.stderr
    service = [x for x in shown.stdout.splitlines() if " service " in x]
    for name in ("verify_pin", "balance", "transactions"):
        assert any(f"call={name}" in x and "outcome=ok" in x for x in service), shown.stdout
    assert "result=ok" in shown.stdout


# --- webhooks that make no sense --------------------------------------------------------------


def test_a_webhook_for_an_unknown_call_gets_the_apology_not_an_error(sim: Simulator) -> None:
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800000000", "Digits": "1"}
    answer = sim.post("/voice/in/3", params)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/xml")
    root = fromstring(answer.content)
    gather = root.find("Gather")
    assert gather is not None and gather.get("action", "").endswith("/voice/recover")
    said = " ".join(say.text or "" for say in gather.iter("Say"))
    assert APOLOGY_ZH in said and OPTIONS_ZH in said and APOLOGY_EN in said


def test_a_webhook_without_a_call_sid_gets_twiml(sim: Simulator) -> None:
    for path, params in [("/voice", {"From": "+8613800000000"}),
                         ("/voice/in/1", {"Digits": "1"}),
                         ("/voice/silence/2", {})]:  # fmt: skip
        answer = sim.post(path, params)
        assert answer.status_code == 200, path
        assert answer.headers["Content-Type"].startswith("text/xml"), path
        root = fromstring(answer.content)
        assert root.tag == "Response" and len(root) > 0, answer.text
        assert APOLOGY_ZH in answer.text, answer.text
