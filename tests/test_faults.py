"""Whole calls when something behind the hotline fails (SPEC 3): Redis out of reach, the account
service out of reach, the account service over real HTTP, and webhooks that make no sense.

A valid webhook always gets 200 and TwiML the caller can follow: an apology in both languages
with a retry and a person, or "account information is not available right now" and the menu.

Then the faults of issue 6, each injected against gunicorn and a real Redis, most with a load of
simulated callers running (tests/fault_kit.py): Redis paused, Redis killed and restarted, the
account service hanging or failing (and its circuit breaker), a worker killed with SIGKILL, a
status callback racing an action webhook, and Twilio delivering one webhook twice at once.
docs/reliability.md says what each proves."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
import sqlalchemy as sa
from conftest import fresh_database
from defusedxml.ElementTree import fromstring
from fault_kit import (
    FaultyService,
    Load,
    PrivateRedis,
    fresh_id_number,
    logged_prompts,
    p99,
    private_redis,
    serving,
    unlogged,
    worker_pids,
)
from flask import Flask
from hotline_server import PEPPER, Server, free_port, gunicorn, serve
from twilio_sim import SimCall, Simulator
from werkzeug.test import TestResponse

from ivr import create_app
from ivr.calllog import CallLog
from ivr.calllog import events as events_table
from ivr.config import Settings
from ivr.phone import sign
from services.accounts import idnumber
from services.accounts.api import create_app as create_accounts_api
from services.accounts.db import make_engine
from services.accounts.store import AccountStore

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


# --- Redis paused, killed and restarted, under load (issue 6: faults 1 and 2) ----------------


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A redis-server of this module's own, to pause and kill (never the shared one)."""
    with private_redis(tmp_path_factory.mktemp("own-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def on_own_redis(
    tmp_path_factory: pytest.TempPathFactory, own_redis: PrivateRedis
) -> Iterator[Server]:
    """The hotline (two gunicorn workers, as deployed) on that Redis."""
    folder = tmp_path_factory.mktemp("on-own-redis")
    extra = {"IVR_AGENT_QUEUE": "agents"}
    with (
        fresh_database(folder) as url,
        serve(folder, own_redis.url, url, extra_env=extra) as server,
    ):
        yield server


def overlapping(load: Load, start: float, end: float) -> list[float]:
    """How long each webhook that was under way between `start` and `end` took."""
    return [w.elapsed for w in load.webhooks if w.start < end and w.start + w.elapsed > start]


def assert_every_call_got_through(load: Load, after: float) -> None:
    """No webhook failed; every call, those caught by the fault included, reached the balance;
    and calls made after `after` did too."""
    failed = [w for w in load.webhooks if not w.ok]
    assert not failed, failed[:5]
    troubled = [(o.trouble, o.call.report()) for o in load.calls if o.trouble]
    assert not troubled, troubled[0]
    later = [o for o in load.calls if o.started > after]
    assert len(later) >= load.callers and all(o.reached for o in later), len(later)


def test_redis_paused_for_3_s_under_load_every_webhook_answers_within_1_s(
    on_own_redis: Server, own_redis: PrivateRedis
) -> None:
    sim = Simulator(on_own_redis.url, on_own_redis.token)
    with Load(sim, callers=4) as load:
        load.wait_for(40, timeout=30)
        paused = time.monotonic()
        own_redis.pause(3000)
        time.sleep(3.0)
        resumed = time.monotonic()
        time.sleep(2.5)
    during = overlapping(load, paused, resumed)
    assert len(during) >= 10, "the load kept calling during the pause"
    assert max(w.elapsed for w in load.webhooks) <= 1.0, sorted(during)[-5:]
    assert p99(during) <= 0.6, sorted(during)[-5:]
    assert sum(o.apologies for o in load.calls) > 0, "the pause was felt: callers heard apologies"
    assert_every_call_got_through(load, after=resumed + 1.0)


def test_redis_killed_and_restarted_under_load_no_5xx_and_calls_go_on(
    on_own_redis: Server, own_redis: PrivateRedis
) -> None:
    sim = Simulator(on_own_redis.url, on_own_redis.token)
    with Load(sim, callers=4) as load:
        load.wait_for(40, timeout=30)
        killed = time.monotonic()
        own_redis.kill()
        time.sleep(1.5)
        own_redis.start()
        restarted = time.monotonic()
        time.sleep(2.5)
    during = overlapping(load, killed, restarted)
    assert len(during) >= 10, "the load kept calling while Redis was down"
    assert max(w.elapsed for w in load.webhooks) <= 1.0, sorted(during)[-5:]
    assert sum(o.apologies for o in load.calls) > 0, "callers heard the apology while it was down"
    assert_every_call_got_through(load, after=restarted + 1.0)


def test_with_redis_down_a_right_pin_is_never_accepted_and_the_call_goes_on_after(
    on_own_redis: Server, own_redis: PrivateRedis
) -> None:
    call = Simulator(on_own_redis.url, on_own_redis.token).call(from_=unique_caller())
    call.press("1")
    call.press(ZHANG_KEYS).expect_heard("密码")
    own_redis.kill()
    try:
        call.press("135790")
        assert_apology(call)
        assert "余额为" not in call.heard_text
    finally:
        own_redis.start()
    call.press("1").expect_heard("请输入6位")  # the call's state survived: back at the PIN
    call.press("135790").expect_heard("一千二百三十四元五角六分")
    call.hangup()
    shown = on_own_redis.ivr("calls", "show", call.phone.sid)
    assert shown.stdout.count("call=verify_pin") == 1, shown.stdout  # only once Redis was back
    assert "error.apology" in shown.stdout, shown.stdout  # the apology heard is in the log


# --- the account service hanging, failing, and the breaker (issue 6: faults 3 and 6) ---------


@dataclass(frozen=True)
class Flaky:
    """The hotline calling an account service that hangs or fails on demand."""

    server: Server
    service: FaultyService


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Flaky]:
    """The hotline (two workers as deployed, agents in a queue, default timeout) with
    ACCOUNTS_URL at the real account API behind a FaultyService; breaker: 2 failures, 1 s."""
    folder = tmp_path_factory.mktemp("flaky-accounts")
    with fresh_database(folder) as url:
        engine = make_engine(url)
        accounts = AccountStore(engine, PEPPER)
        accounts.create_schema()
        service = FaultyService(create_accounts_api(accounts))
        try:
            with serving(service) as accounts_url:
                extra = {"ACCOUNTS_URL": accounts_url,
                         "IVR_AGENT_QUEUE": "agents",
                         "IVR_ACCOUNTS_BREAKER_FAILURES": "2",
                         "IVR_ACCOUNTS_BREAKER_COOLDOWN": "1"}  # fmt: skip
                with serve(folder, redis_url, url, extra_env=extra) as server:
                    yield Flaky(server, service)
        finally:
            engine.dispose()


def at_the_pin(server: Server, id_keys: str = ZHANG_KEYS) -> SimCall:
    """A call waiting for the PIN of `id_keys` (no account-service call made yet)."""
    call = Simulator(server.url, server.token).call(from_=unique_caller())
    call.press("1")
    call.press(id_keys).expect_heard("请输入6位")
    return call


def test_account_service_hanging_the_caller_hears_so_within_2_s_and_may_reach_a_person(
    flaky: Flaky,
) -> None:
    flaky.service.mode = "hang"
    try:
        call = at_the_pin(flaky.server)
        call.press("135790").expect_heard(SERVICE_DOWN, MAIN_MENU)
        pin = call.exchanges[-1]
        assert pin.status == 200 and pin.elapsed < 2.0, f"the PIN step took {pin.elapsed:.3f} s"
        assert flaky.service.hit("hang") >= 1, "the hotline did ask the hanging service"
        call.press("0")  # a person
        assert any("<Enqueue" in x.body for x in call.exchanges), call.report()
    finally:
        flaky.service.mode = "ok"


def test_account_service_hanging_other_calls_are_not_held_up(flaky: Flaky) -> None:
    flaky.service.mode = "hang"
    stuck = at_the_pin(flaky.server, "440304199001011233#")
    try:
        waiting = threading.Thread(target=lambda: stuck.press("246810"))
        waiting.start()
        time.sleep(0.2)  # the PIN webhook now holds one worker on the hanging service
        other = Simulator(flaky.server.url, flaky.server.token).call(from_=unique_caller())
        other.press("4").expect_heard("查询余额的方式")
        other.press("1").press("#").press("*").press("*").expect_heard(MAIN_MENU)
        other.hangup()
        waiting.join(5)
    finally:
        flaky.service.mode = "ok"
    assert stuck.exchanges[-1].status == 200 and SERVICE_DOWN in stuck.heard_text
    assert all(x.status == 200 and x.elapsed < 0.5 for x in other.exchanges), other.report()
    assert other.phone.error is None


def test_account_service_failing_the_caller_hears_so_at_once_and_may_try_again(
    flaky: Flaky,
) -> None:
    flaky.service.mode = "error"
    try:
        call = at_the_pin(flaky.server)
        call.press("135790").expect_heard(SERVICE_DOWN, MAIN_MENU)
        assert call.exchanges[-1].elapsed < FAST
    finally:
        flaky.service.mode = "ok"
    time.sleep(1.2)  # the breaker's cool-down, if this worker's breaker had opened
    call.press("1").expect_heard("身份证")  # try again, the service is back
    call.press(ZHANG_KEYS)
    call.press("135790").expect_heard("一千二百三十四元五角六分")
    call.hangup()


def test_a_breaker_stops_asking_a_failing_service_then_tries_it_again_after_a_cool_down(
    flaky: Flaky,
) -> None:
    calls = [at_the_pin(flaky.server) for _ in range(12)]
    flaky.service.mode = "error"
    try:
        before = flaky.service.hit("error")
        for call in calls[:8]:
            call.press("135790").expect_heard(SERVICE_DOWN)
            assert call.exchanges[-1].elapsed < FAST
        asked = flaky.service.hit("error") - before
        # at most 2 failures (the breaker's) on each of the 2 workers reach it
        assert 1 <= asked <= 2 * 2, f"{asked} requests reached a service known to fail"
        # The others were not even asked: their worker's breaker was open. (Which calls those
        # are depends on how gunicorn dealt them to its workers.)
        shown = [flaky.server.ivr("calls", "show", call.phone.sid).stdout for call in calls[:8]]
        stopped = sum("outcome=CircuitOpen" in timeline for timeline in shown)
        failed = sum("outcome=AccountsUnavailable" in timeline for timeline in shown)
        assert stopped + failed == 8 and stopped >= 8 - 2 * 2, shown
        flaky.service.mode = "ok"
        time.sleep(1.2)  # the cool-down: then each worker's next call is a trial
        before = flaky.service.hit("ok")
        for call in calls[8:]:
            call.press("135790").expect_heard("一千二百三十四元五角六分")
        assert flaky.service.hit("ok") - before >= 4
    finally:
        flaky.service.mode = "ok"


def test_a_retried_webhook_delivered_twice_at_once_applies_its_step_once(flaky: Flaky) -> None:
    """Twilio retrying after its timeout: the same signed request, four times, concurrently,
    while the account service is slow: one PIN check, one wrong PIN counted, one reply."""
    nobody = fresh_id_number()
    call = at_the_pin(flaky.server, nobody + "#")
    assert call.gather is not None
    action = call.gather.action
    params = {**call.phone._params(), "Digits": "907153", "FinishedOnKey": ""}
    digest = idnumber.digest(PEPPER, nobody)
    client = redis.Redis.from_url(flaky.server.env["REDIS_URL"], socket_timeout=5)
    flaky.service.mode = "slow"
    try:
        before = flaky.service.hit("slow")
        barrier = threading.Barrier(4)
        signature = sign(flaky.server.token, action, params)

        def deliver() -> requests.Response:
            barrier.wait()
            return requests.post(action, data=params, timeout=10,
                                 headers={"X-Twilio-Signature": signature})  # fmt: skip

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: deliver(), range(4)))
        asked = flaky.service.hit("slow") - before
    finally:
        flaky.service.mode = "ok"
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.text for a in answers}) == 1, [a.text for a in answers]
    assert "不正确" in answers[0].text
    assert asked == 1, f"the PIN was checked {asked} times"
    try:
        assert client.get(f"ivr:{{id:{digest}}}:fails") == b"1"
        assert client.get(f"ivr:{{id:{digest}}}:checks") == b"1"
    finally:
        client.close()
    shown = flaky.server.ivr("calls", "show", call.phone.sid)
    assert shown.stdout.count("result=wrong") == 1, shown.stdout
    assert shown.stdout.count("call=verify_pin") == 1, shown.stdout


# --- a gunicorn worker killed mid-load (issue 6: fault 4) ------------------------------------


@pytest.fixture(scope="module")
def killable(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Server]:
    """The hotline with two gunicorn workers (as deployed), one of which a test kills."""
    folder = tmp_path_factory.mktemp("killable")
    with (
        fresh_database(folder) as url,
        serve(folder, redis_url, url) as server,
    ):
        yield server


def test_a_worker_killed_mid_load_fails_at_most_one_webhook_in_a_thousand_and_loses_no_log(
    killable: Server,
) -> None:
    """The kill loses what the worker was answering (each of its threads' webhook): at most one
    webhook per caller. The load runs on until there are a thousand webhooks per one lost."""
    master = killable.process.pid
    workers = worker_pids(master)
    assert len(workers) == 2
    callers = 4
    with Load(Simulator(killable.url, killable.token), callers=callers) as load:
        load.wait_for(300, timeout=60)
        victim = min(workers)
        os.kill(victim, signal.SIGKILL)
        load.wait_for(1100, timeout=90)
        lost = sum(not w.ok for w in list(load.webhooks))
        load.wait_for(1000 * lost + 100, timeout=90)
    total, failed = len(load.webhooks), [w for w in load.webhooks if not w.ok]
    assert len(failed) <= callers, failed  # only the webhooks in flight on the killed worker
    assert total >= 1000 and len(failed) <= total // 1000, (total, failed)
    respawned = worker_pids(master)
    assert victim not in respawned and len(respawned) == 2, respawned
    killable.catch_up()  # (the killed worker may have held the outbox's lease: it lapses)
    engine = make_engine(killable.env["DATABASE_URL"])
    try:
        unheard = {}
        for outcome in load.calls:
            call = outcome.call
            if missing := unlogged(call.said, logged_prompts(engine, call.phone.sid)):
                unheard[call.phone.sid] = missing
    finally:
        engine.dispose()
    assert not unheard, unheard
    assert sum(o.reached for o in load.calls) >= len(load.calls) - len(failed)


# --- the status callback racing an action webhook (issue 6: fault 5) -------------------------


def deliver_at_once(posts: list[tuple[str, dict[str, str]]], token: str) -> list[requests.Response]:
    """Signed POSTs (absolute URL, params), all released at the same moment from threads."""
    barrier = threading.Barrier(len(posts))

    def deliver(post: tuple[str, dict[str, str]]) -> requests.Response:
        url, params = post
        headers = {"X-Twilio-Signature": sign(token, url, params)}
        barrier.wait()
        return requests.post(url, data=params, headers=headers, timeout=10)

    with ThreadPoolExecutor(len(posts)) as pool:
        return list(pool.map(deliver, posts))


def test_status_callbacks_racing_an_action_webhook_twice_and_out_of_order_lose_nothing(
    sim: Simulator, hotline: Server
) -> None:
    engine = make_engine(hotline.env["DATABASE_URL"])
    try:
        for round_ in range(8):
            call = sim.call(from_=unique_caller())
            assert call.gather is not None
            line = call.phone.line
            base = {"CallSid": call.phone.sid, "From": line.from_, "To": line.to,
                    "AccountSid": line.account_sid, "CallStatus": "in-progress"}  # fmt: skip
            keys = (call.gather.action, {**base, "Digits": "4", "FinishedOnKey": ""})
            status = sim.url("/voice/status")
            done = {**base, "CallStatus": "completed", "CallbackSource": "call-progress-events",
                    "SequenceNumber": "2", "CallDuration": "31", "Duration": "1"}  # fmt: skip
            early = {**base, "CallStatus": "ringing", "SequenceNumber": "0"}
            posts = [keys, (status, done), (status, dict(done)), (status, early)]
            answers = deliver_at_once(posts[round_ % 4 :] + posts[: round_ % 4], hotline.token)
            assert [a.status_code for a in answers] == [200] * 4
            reply = answers[(4 - round_ % 4) % 4].text
            assert "查询余额的方式" in reply, reply  # the key was applied: the information menu
            again = deliver_at_once([keys], hotline.token)[0]
            assert again.text == reply  # its state and reply were kept: a repeat replays them
            query = sa.select(events_table.c.kind, events_table.c.data).where(
                events_table.c.call_sid == call.phone.sid
            )
            hotline.catch_up()
            with engine.connect() as conn:
                rows = conn.execute(query).all()
            kinds = [kind for kind, _ in rows]
            assert kinds.count("end") == 1, kinds
            assert {"kind": "menu", "node": "info"} in [{"kind": k, **d} for k, d in rows], rows
            record = CallLog(engine).get(call.phone.sid)
            assert record is not None and record.status == "completed" and record.duration == 31
    finally:
        engine.dispose()


# --- a claim left behind by a worker that lost Redis half-way -------------------------------


@pytest.fixture
def app(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[Flask]:
    env = {"IVR_INSTANCE_PATH": str(tmp_path), "TWILIO_AUTH_TOKEN": "faults-token",
           "REDIS_URL": redis_url, "DATABASE_URL": database_url}  # fmt: skip
    app = create_app(Settings.from_env(env))
    yield app
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()
    app.extensions["ivr"].store.redis.close()


def test_a_step_claimed_by_a_worker_that_lost_redis_answers_within_1_s_and_recover_frees_it(
    app: Flask,
) -> None:
    client = app.test_client()
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": unique_caller()}

    def post(path: str, **extra: str) -> TestResponse:
        data = {**params, **extra}
        signature = sign("faults-token", f"http://localhost{path}", data)
        return client.post(path, data=data, headers={"X-Twilio-Signature": signature})

    assert MAIN_MENU in post("/voice").text
    app.extensions["ivr"].store.begin(params["CallSid"], 1)  # claimed, never committed
    started = time.perf_counter()
    stuck = post("/voice/in/1", Digits="4")
    assert time.perf_counter() - started < 1.0
    assert stuck.status_code == 200 and APOLOGY_ZH in stuck.text
    assert "Redirect" in post("/voice/recover", Digits="1").text  # 1: try again
    again = post("/voice/in/1", Digits="4")
    assert "查询余额的方式" in again.text  # the step went through this time
