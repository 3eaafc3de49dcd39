"""A public line is attacked (issue 6, abuse): forged webhooks, garbage in every field of every
webhook, and PIN guessing. Forgeries change nothing; garbage always gets well-formed TwiML and
leaves the call log valid; guessing is refused, by caller number and by ID number, before any
PIN is checked, and the 24-hour lock holds on every instance.

The webhook layer runs in Flask's test client against the real Redis and database (fast, for
hypothesis); the PIN-guessing limits against two gunicorn instances sharing one Redis."""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
import redis
import requests
import sqlalchemy as sa
from conftest import fresh_database
from defusedxml.ElementTree import fromstring
from fault_kit import fresh_id_number, signed_in_console, unique_caller
from flask import Flask
from flask.testing import FlaskClient
from hotline_server import DATA, Server, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio_sim import SimCall, Simulator
from werkzeug.test import TestResponse

from ivr import create_app
from ivr.calllog import calls as calls_table
from ivr.calllog import events as events_table
from ivr.config import Settings
from ivr.phone import sign
from services.accounts import idnumber
from services.accounts.store import AccountStore

TOKEN = "abuse-test-token"
PUBLIC = "https://ivr.example.org/hotline"  # what Twilio calls, behind the proxy
ZHANG_KEYS, ZHANG_PIN = "11010519491231002*#", "135790"
LI, LI_KEYS, LI_PIN = "440304199001011233", "440304199001011233#", "246810"
WANG_KEYS, WANG_PIN = "370102198203154412#", "314159"
APOLOGY = "抱歉，系统暂时出现故障"
LIMITED = "现在暂时不能通过电话验证身份"  # auth.limited
LOCKED = "已被锁定24小时"  # auth.locked
VERBS = {"Response", "Say", "Gather", "Redirect", "Hangup", "Enqueue", "Dial", "Record", "Pause"}


# --- the webhook layer in the test client --------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Flask]:
    """The hotline app (no proxy) with the test accounts, on the real Redis and a database of
    its own; agents in a queue."""
    folder = tmp_path_factory.mktemp("abuse-app")
    with fresh_database(folder) as url:
        env = {"IVR_INSTANCE_PATH": str(folder), "TWILIO_AUTH_TOKEN": TOKEN,
               "REDIS_URL": redis_url, "DATABASE_URL": url, "IVR_AGENT_QUEUE": "agents",
               "IVR_PIN_PEPPER": f"abuse-{uuid.uuid4().hex}"}  # fmt: skip
        app = create_app(Settings.from_env(env))
        app.config["TESTING"] = True
        engine = app.extensions["ivr.engine"]
        AccountStore(engine, env["IVR_PIN_PEPPER"]).import_file(DATA / "accounts.json")
        yield app
        app.extensions["ivr"].outbox.stop()
        engine.dispose()
        app.extensions["ivr"].store.redis.close()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Flask]:
    """The same app behind a proxy: PUBLIC_BASE_URL is what Twilio signs."""
    folder = tmp_path_factory.mktemp("abuse-proxied")
    with fresh_database(folder) as url:
        env = {"IVR_INSTANCE_PATH": str(folder), "TWILIO_AUTH_TOKEN": TOKEN,
               "REDIS_URL": redis_url, "DATABASE_URL": url, "PUBLIC_BASE_URL": PUBLIC}  # fmt: skip
        app = create_app(Settings.from_env(env))
        yield app
        app.extensions["ivr"].outbox.stop()
        app.extensions["ivr.engine"].dispose()
        app.extensions["ivr"].store.redis.close()


def post(client: FlaskClient, path: str, params: dict[str, str], *, token: str = TOKEN,
         signed_url: str | None = None) -> TestResponse:  # fmt: skip
    """A POST signed like Twilio (over `signed_url`, default the URL the test client uses)."""
    url = signed_url or f"http://localhost{path}"
    return client.post(path, data=params,
                       headers={"X-Twilio-Signature": sign(token, url, params)})  # fmt: skip


def new_call() -> dict[str, str]:
    return {"CallSid": "CA" + uuid.uuid4().hex, "From": unique_caller(), "To": "+8612333"}


def traces(app: Flask, call_sid: str) -> tuple[int, int]:
    """(Redis keys, call-log rows) the app holds for a call."""
    client: redis.Redis = app.extensions["ivr"].store.redis
    keys = len(list(client.scan_iter(match=f"ivr:{{{call_sid}}}*", count=1000)))
    with app.extensions["ivr.engine"].connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(calls_table)
                            .where(calls_table.c.call_sid == call_sid)).scalar_one()  # fmt: skip
    return keys, rows


def assert_twiml(reply: TestResponse) -> None:
    """200, text/xml, a <Response> of known verbs, no traceback, URLs of the app's own."""
    assert reply.status_code == 200, reply.status_code
    assert reply.mimetype == "text/xml", reply.mimetype
    assert "Traceback" not in reply.text and 'File "' not in reply.text
    root = fromstring(reply.data)
    assert root.tag == "Response"
    for el in root.iter():
        assert el.tag in VERBS, el.tag
        for name in ("action", "waitUrl"):
            assert el.get(name) is None or el.get(name, "").startswith("/voice/"), el.attrib
    for el in root.iter("Redirect"):
        assert (el.text or "").startswith("/voice"), el.text


# --- 7. forged webhooks ---------------------------------------------------------------------


ROUTES = ["/voice", "/voice/in/1", "/voice/silence/1", "/voice/transfer/1", "/voice/recorded/1",
          "/voice/wait/cmn-CN", "/voice/recover", "/voice/status"]  # fmt: skip


@pytest.mark.parametrize("path", ROUTES)
def test_a_signature_made_with_another_hotlines_token_is_refused_and_changes_nothing(
    app: Flask, path: str
) -> None:
    params = {**new_call(), "Digits": "1", "CallStatus": "completed"}
    reply = post(app.test_client(), path, params, token="another-hotlines-token")
    assert reply.status_code == 403
    assert traces(app, params["CallSid"]) == (0, 0)


def test_a_get_is_refused_even_when_signed_like_twilio_signs_a_get(app: Flask) -> None:
    params = new_call()
    query = "&".join(f"{k}={requests.utils.quote(v)}" for k, v in params.items())
    path = f"/voice?{query}"
    reply = app.test_client().get(path, headers={
        "X-Twilio-Signature": sign(TOKEN, f"http://localhost{path}", {})})  # fmt: skip
    assert reply.status_code == 405  # the webhooks are POST only
    assert traces(app, params["CallSid"]) == (0, 0)


def test_a_tampered_query_string_is_refused(app: Flask) -> None:
    client, params = app.test_client(), new_call()
    signature = sign(TOKEN, "http://localhost/voice?lang=en-US", params)
    for path in ("/voice?lang=cmn-CN", "/voice", "/voice?lang=en-US&x=1"):
        reply = client.post(path, data=params, headers={"X-Twilio-Signature": signature})
        assert reply.status_code == 403, path
    assert traces(app, params["CallSid"]) == (0, 0)
    reply = client.post("/voice?lang=en-US", data=params, headers={"X-Twilio-Signature": signature})
    assert reply.status_code == 200  # the URL exactly as signed passes


def test_a_signature_replayed_on_another_webhook_or_for_another_call_is_refused(
    app: Flask,
) -> None:
    client, params = app.test_client(), new_call()
    assert post(client, "/voice", params).status_code == 200  # a real call
    status = {**params, "CallStatus": "completed", "CallDuration": "9"}
    signature = sign(TOKEN, "http://localhost/voice/status", status)
    for path in ("/voice/in/1", "/voice/recover", "/voice/transfer/1"):
        reply = client.post(path, data=status, headers={"X-Twilio-Signature": signature})
        assert reply.status_code == 403, path
    other = {**status, "CallSid": "CA" + uuid.uuid4().hex}  # the body changed under the signature
    reply = client.post("/voice/status", data=other, headers={"X-Twilio-Signature": signature})
    assert reply.status_code == 403
    for header in ({}, {"X-Twilio-Signature": ""}, {"X-Twilio-Signature": signature + "x"}):
        assert client.post("/voice/status", data=status, headers=header).status_code == 403
    assert app.extensions["ivr"].outbox.catch_up()
    record = app.extensions["ivr"].calllog.get(params["CallSid"])
    assert record is not None and record.ended_at is None, "no forged status ended the call"


@pytest.mark.parametrize("path", ROUTES)
def test_behind_a_proxy_every_webhook_signed_for_the_public_url_passes_and_no_other(
    proxied: Flask, path: str
) -> None:
    client, params = proxied.test_client(), {**new_call(), "Digits": "1"}
    for elsewhere in ("http://localhost", "https://evil.example/hotline",
                      "http://ivr.example.org/hotline", "https://ivr.example.org"):  # fmt: skip
        assert post(client, path, params, signed_url=elsewhere + path).status_code == 403
    reply = post(client, path, params, signed_url=f"{PUBLIC}{path}")
    assert_twiml(reply)


def test_over_http_a_signature_for_another_hotline_is_refused(hotline: Server) -> None:
    params = new_call()
    url = f"{hotline.url}/voice"
    for token, status in (("another-token", 403), (hotline.token, 200)):
        signature = sign(token, url, params)
        reply = requests.post(url, data=params, headers={"X-Twilio-Signature": signature},
                              timeout=10)  # fmt: skip
        assert reply.status_code == status, token


# --- 8. garbage in every field of every webhook ------------------------------------------------


NASTY = [
    "", " ", "²³", "١٢٣", "9" * 5000, "x" * 10_000, "中" * 10_000, "\x00", "\x00\x01\x1f", "%FF",
    "1' OR '1'='1", "<Say>hi</Say>", "]]>&amp;", "\ud7ff\ue000\U0001f4de", "-1", "1e309",
    "NaN", "0" * 40, "*" * 40 + "#", "440101199001011234", "CA" + "f" * 32, "completed",
]  # fmt: skip
garbage = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=60),
    st.text(alphabet="0123456789*#", max_size=60),
    st.integers(-(10**30), 10**30).map(str),
)
# CallSids name Redis keys in the Redis the canary sweep (test_privacy.py) reads: none of these
# holds a run of digits that could be a planted PIN or ID number.
ODD_SIDS = ["", " ", "x" * 10_000, "中" * 100, "\x00", "../../etc/passwd", "CA{x}", "CA}", "a b",
            "v3:abc_DEF-xyz.Q", ":", "-", "CA" + "f" * 100, "%2F", "*#", "\U0001f4de"]  # fmt: skip
odd_sid = st.one_of(
    st.sampled_from(ODD_SIDS),
    st.text(st.characters(blacklist_categories=("Nd", "Cs")), max_size=70),
)
FIELDS = ["Digits", "From", "To", "CallStatus", "CallDuration", "RecordingUrl",
          "RecordingDuration", "QueuePosition", "AvgQueueTime", "DialCallStatus", "QueueResult",
          "SequenceNumber", "FinishedOnKey", "Caller", "AccountSid"]  # fmt: skip


@dataclass
class Calls:
    """SIDs for the fuzzer to name: calls under way, one that has ended."""

    live: list[str]
    ended: str


@pytest.fixture(scope="module")
def calls(app: Flask) -> Calls:
    client, live = app.test_client(), []
    for keys in ("", "1", "4", "9"):
        params = new_call()
        assert post(client, "/voice", params).status_code == 200
        if keys:
            assert post(client, "/voice/in/1", {**params, "Digits": keys}).status_code == 200
        live.append(params["CallSid"])
    ended = new_call()
    post(client, "/voice", ended)
    post(client, "/voice/status", {**ended, "CallStatus": "completed", "CallDuration": "3"})
    return Calls(live, ended["CallSid"])


@st.composite
def webhooks(draw: st.DrawFn, known: Calls) -> tuple[str, dict[str, str]]:
    route = draw(st.sampled_from(ROUTES))
    seq = draw(st.one_of(st.integers(0, 8), st.integers(0, 10**40)))
    path = route.replace("/1", f"/{seq}") if route[-2:] == "/1" else route
    if route.startswith("/voice/wait/"):
        lang = draw(st.sampled_from(["cmn-CN", "en-US", "xx", "中文", "..", "a" * 300]))
        path = f"/voice/wait/{lang}"
    sid = draw(st.one_of(st.none(), st.sampled_from([*known.live, known.ended]),
                         st.just("CA" + uuid.uuid4().hex), odd_sid))  # fmt: skip
    params = {name: draw(garbage) for name in draw(st.lists(st.sampled_from(FIELDS), unique=True))}
    names = st.text(min_size=1, max_size=20).filter(lambda name: name != "CallSid")
    params |= draw(st.dictionaries(names, garbage, max_size=3))
    if sid is not None:
        params["CallSid"] = sid
    return path, params


def test_garbage_in_any_webhook_gets_well_formed_twiml_and_leaves_the_call_log_valid(
    app: Flask, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
    @given(webhooks(calls))
    def one(hook: tuple[str, dict[str, str]]) -> None:
        path, params = hook
        reply = post(client, path, params)
        assert_twiml(reply)

    with caplog.at_level(logging.ERROR):
        one()
    crashes = [r.getMessage()[:300] for r in caplog.records if "failed with" in r.getMessage()]
    assert not crashes, crashes  # no webhook fell through to the last-resort handler
    assert_call_log_valid(app)


def test_a_call_sid_reused_after_its_call_ended_starts_no_new_call(app: Flask) -> None:
    client, params = app.test_client(), new_call()
    assert_twiml(post(client, "/voice", params))
    assert_twiml(post(client, "/voice/in/1", {**params, "Digits": "4"}))
    assert_twiml(post(client, "/voice/status", {**params, "CallStatus": "completed"}))
    again = post(client, "/voice", params)
    assert_twiml(again)
    assert "欢迎致电" not in again.text  # not a new call: the reply it last had
    for path, extra in (("/voice/in/2", {"Digits": "1"}), ("/voice/in/0", {}),
                        ("/voice/status", {"CallStatus": "completed"})):  # fmt: skip
        assert_twiml(post(client, path, {**params, **extra}))
    assert app.extensions["ivr"].outbox.catch_up()
    record = app.extensions["ivr"].calllog.get(params["CallSid"])
    assert record is not None and record.status == "completed"
    kinds = [e.kind for e in record.timeline]
    assert kinds.count("start") == 1 and kinds.count("end") == 1, kinds


@pytest.mark.parametrize("sid", ["../../etc/passwd", "CA{x}", "a b", "CA\x07", "C" * 65, "中文"])
def test_a_call_sid_not_shaped_like_one_is_no_call_and_leaves_no_trace(
    app: Flask, sid: str
) -> None:
    reply = post(app.test_client(), "/voice", {**new_call(), "CallSid": sid})
    assert_twiml(reply)
    assert APOLOGY in reply.text
    assert traces(app, sid[:64]) == (0, 0)


def test_over_http_garbage_gets_twiml_and_unsigned_garbage_a_403(sim: Simulator) -> None:
    call = sim.call(from_=unique_caller())
    sid = call.phone.sid
    for path, params in [
        ("/voice/in/1", {"CallSid": sid, "Digits": "中" * 10_000, "From": "x" * 10_000}),
        ("/voice/in/1", {"CallSid": sid, "Digits": "²³¹", "FinishedOnKey": "\x00"}),
        ("/voice/recorded/99999999999999999999", {"CallSid": sid, "RecordingDuration": "²"}),
        ("/voice/wait/xx", {"CallSid": sid, "QueuePosition": "9" * 5000, "AvgQueueTime": "-1"}),
        ("/voice/status", {"CallSid": "\U0001f4de" * 100, "CallDuration": "1e309"}),
        ("/voice/silence/1", {}),
    ]:
        reply = sim.post(path, params)
        assert reply.status_code == 200, (path, reply.status_code)
        assert reply.headers["Content-Type"].startswith("text/xml")
        assert fromstring(reply.content).tag == "Response"
        assert "Traceback" not in reply.text
    raw = requests.post(sim.url("/voice/in/1"), data=b"CallSid=%FF%FE&Digits=\xff\xfe", timeout=10,
                        headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert raw.status_code == 403


def assert_call_log_valid(app: Flask) -> None:
    """Every call in the log reads back; at most one end each, and only with its end time; no
    entry belongs to a call the log does not have; each call page of the console renders."""
    hotline = app.extensions["ivr"]
    assert hotline.outbox.catch_up()
    engine = app.extensions["ivr.engine"]
    with engine.connect() as conn:
        sids = [row[0] for row in conn.execute(sa.select(calls_table.c.call_sid))]
        orphans = conn.execute(
            sa.select(sa.func.count()).select_from(events_table).where(
                events_table.c.call_sid.not_in(sa.select(calls_table.c.call_sid)))
        ).scalar_one()  # fmt: skip
    assert orphans == 0
    assert sids
    for sid in sids:
        record = hotline.calllog.get(sid)
        assert record is not None
        ends = [e for e in record.timeline if e.kind == "end"]
        assert len(ends) <= 1 and (record.ended_at is not None) == bool(ends), record
        assert record.timeline and record.timeline[0].kind == "start", record.timeline[:2]
        for entry in record.timeline:
            json.dumps(entry.data)
    console = signed_in_console(app)
    for sid in sids:
        page = console.get(f"/supervisor/calls/{quote(sid, safe='')}")
        assert page.status_code == 200, (sid, page.status_code)
    assert console.get("/supervisor/calls").status_code == 200


# --- 9. PIN guessing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """Two hotline instances (different ports) sharing one Redis and one database."""

    a: Server
    b: Server
    redis_url: str
    pepper: str

    def sims(self) -> tuple[Simulator, Simulator]:
        return Simulator(self.a.url, self.a.token), Simulator(self.b.url, self.b.token)

    def logs(self) -> str:
        return self.a.log.read_text(errors="replace") + self.b.log.read_text(errors="replace")


LIMITS = {"IVR_LIMIT_CALLER_CALLS": "4", "IVR_LIMIT_CALLER_IDS": "2", "IVR_LIMIT_ID_CHECKS": "7"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Pair]:
    """Two gunicorn instances with tight limits (4 calls and 2 ID numbers from one number,
    7 PIN checks of one ID number, an hour) and a pepper of their own (their counters and
    locks touch no other test's)."""
    folder = tmp_path_factory.mktemp("guessing")
    pepper = f"guessing-{uuid.uuid4().hex}"
    env = {**LIMITS, "IVR_PIN_PEPPER": pepper, "IVR_AGENT_QUEUE": "agents"}
    with (
        fresh_database(folder) as url,
        serve(folder / "a", redis_url, url, extra_env=env, workers=1) as a,
        serve(folder / "b", redis_url, url, extra_env=env, workers=1) as b,
    ):
        yield Pair(a, b, redis_url, pepper)


def to_id(call: SimCall, id_keys: str) -> SimCall:
    """From the main menu to the ID entry, and key an ID number."""
    call.press("1").expect_heard("身份证")
    return call.press(id_keys)


def refused(call: SimCall) -> None:
    """The polite refusal, no PIN asked, back in the main menu whose 0 reaches a person."""
    call.expect_heard(LIMITED, "按0转人工服务", "查询医保个人账户余额")
    assert "请输入6位" not in call.heard_text
    call.press("0")
    assert any("<Enqueue" in x.body for x in call.exchanges), call.report()


def test_more_id_numbers_from_one_number_than_allowed_are_refused_before_any_pin(
    pair: Pair,
) -> None:
    a, b = pair.sims()
    number = unique_caller()
    first, second, third = (fresh_id_number() for _ in range(3))
    call = a.call(from_=number)
    to_id(call, first + "#").expect_heard("请输入6位")
    call.press("*")
    to_id(call, second + "#").expect_heard("请输入6位")
    call.press("*")
    refused(to_id(call, third + "#"))
    again = b.call(from_=number)  # the other instance knows it too
    refused(to_id(again, fresh_id_number() + "#"))
    later = b.call(from_=number)
    to_id(later, first + "#").expect_heard("请输入6位")  # one already tried is not a new one
    later.hangup()
    for sid in (call.phone.sid, again.phone.sid):
        shown = pair.a.ivr("calls", "show", sid)
        assert "result=limited" in shown.stdout and "verify_pin" not in shown.stdout, shown.stdout
    log = pair.logs()
    masked = number[:3] + "*" * (len(number) - 7) + number[-4:]
    assert re.search(rf"WARNING.*rate limit: caller {re.escape(masked)} .*distinct ID numbers", log)
    assert number not in log and number[1:] not in log
    assert third not in log and first not in log


def test_more_calls_from_one_number_than_allowed_are_refused_authentication(pair: Pair) -> None:
    a, b = pair.sims()
    number = unique_caller()
    for i in range(4):
        call = (a, b)[i % 2].call(from_=number)
        to_id(call, ZHANG_KEYS).expect_heard("请输入6位")
        call.hangup()
    fifth = a.call(from_=number)
    refused(to_id(fifth, ZHANG_KEYS))
    fifth_b = b.call(from_=number)
    refused(to_id(fifth_b, ZHANG_KEYS))
    other = b.call(from_=unique_caller())  # another number is not held back
    to_id(other, ZHANG_KEYS).press(ZHANG_PIN).expect_heard("一千二百三十四元五角六分")
    log = pair.logs()
    assert "calls keying ID numbers" in log and number not in log


def test_more_pin_checks_of_one_id_number_than_allowed_are_refused_before_the_pin_is_checked(
    pair: Pair,
) -> None:
    a, b = pair.sims()
    for i in range(7):  # seven checks from seven numbers: wrong, right, wrong, right... no lock
        call = (a, b)[i % 2].call(from_=unique_caller())
        to_id(call, LI_KEYS).press(LI_PIN if i % 2 else "000000")
        call.expect_heard("一千零五元零七分" if i % 2 else "不正确")
        call.hangup()
    eighth = a.call(from_=unique_caller())
    to_id(eighth, LI_KEYS).press(LI_PIN)  # the right PIN, but the ID number had its checks
    refused(eighth)
    assert "一千零五元零七分" not in eighth.heard_text
    shown = pair.a.ivr("calls", "show", eighth.phone.sid)
    assert "result=limited" in shown.stdout and "verify_pin" not in shown.stdout, shown.stdout
    log = pair.logs()
    assert re.search(r"WARNING.*rate limit: ID number 440\*{11}1233 has had its 7 PIN checks", log)
    assert LI not in log
    assert pair.a.ivr("accounts", "unlock", LI).returncode == 0  # lifts the limit too
    after = b.call(from_=unique_caller())
    to_id(after, LI_KEYS).press(LI_PIN).expect_heard("一千零五元零七分")


def test_the_24_hour_lock_holds_on_every_instance_until_unlocked(pair: Pair) -> None:
    a, b = pair.sims()
    first = a.call(from_=unique_caller())
    to_id(first, WANG_KEYS).press("000001").expect_heard("不正确")
    first.press("000002").expect_heard("不正确")
    first.press("000003").expect_heard("验证失败次数过多")  # three in this call
    second = b.call(from_=unique_caller())
    to_id(second, WANG_KEYS).press("000004").expect_heard("不正确")
    second.press("000005").expect_heard(LOCKED)
    for sim in (a, b):
        call = sim.call(from_=unique_caller())
        to_id(call, WANG_KEYS).expect_heard(LOCKED)  # locked before any PIN is asked
        assert "请输入6位" not in call.heard_text
    digest = idnumber.digest(pair.pepper, WANG_KEYS.rstrip("#"))
    client = redis.Redis.from_url(pair.redis_url, socket_timeout=5)
    try:
        ttl = client.ttl(f"ivr:{{id:{digest}}}:lock")
    finally:
        client.close()
    assert 24 * 3600 - 120 < ttl <= 24 * 3600
    assert pair.b.ivr("accounts", "unlock", WANG_KEYS.rstrip("#")).returncode == 0
    after = a.call(from_=unique_caller())
    to_id(after, WANG_KEYS).press(WANG_PIN).expect_heard("二千零四十八元整")


FAIL_CLOSED = [  # (the counter that fails, the PIN keyed: None = it fails at the ID number)
    ("admit", None), ("gate_pin", "222222"), ("gate_pin", "000000"),
    ("record_failure", "000000"), ("commit", "222222"),  # a right PIN's reset goes with it
]  # fmt: skip


class Failing:
    """`target` as it is, except that `method` raises a Redis timeout."""

    def __init__(self, target: object, method: str) -> None:
        self.target, self.method = target, method

    def __getattr__(self, name: str) -> object:
        return _timeout if name == self.method else getattr(self.target, name)


def _timeout(*_: object) -> None:
    raise redis.TimeoutError("Timeout reading from socket")


class Watched:
    """`target` as it is, except that the PINs sent to `verify_pin` are noted in `checked`."""

    def __init__(self, target: object) -> None:
        self.target, self.checked = target, list[str]()

    def __getattr__(self, name: str) -> object:
        value = getattr(self.target, name)
        if name != "verify_pin":
            return value

        def verify(digest: str, pin: str) -> object:
            self.checked.append(pin)
            return value(digest, pin)

        return verify


@pytest.mark.parametrize(("method", "pin"), FAIL_CLOSED)
def test_an_authentication_counter_failing_fails_closed(
    app: Flask, method: str, pin: str | None
) -> None:
    """Redis failing at any authentication counter: the caller hears the apology, never the
    balance nor a verdict on the PIN, and no PIN goes to the account service uncounted."""
    hotline, client, params = app.extensions["ivr"], app.test_client(), new_call()
    id_number = "320102197703032151"  # PIN 222222, balance 0.00; no other test here keys it
    post(client, "/voice", params)
    post(client, "/voice/in/1", {**params, "Digits": "1"})
    if pin is not None:
        assert "请输入6位" in post(client, "/voice/in/2", {**params, "Digits": id_number}).text
    store, accounts = hotline.store, hotline.accounts
    watched = Watched(accounts)
    hotline.store, hotline.accounts = Failing(store, method), watched
    try:
        step, keys = (2, id_number) if pin is None else (3, pin)
        reply = post(client, f"/voice/in/{step}", {**params, "Digits": keys})
    finally:
        hotline.store, hotline.accounts = store, accounts
    assert_twiml(reply)
    gather = fromstring(reply.data).find("Gather")
    assert gather is not None and gather.get("action") == "/voice/recover", reply.text
    assert APOLOGY in reply.text and "不正确" not in reply.text and "元整" not in reply.text
    if method in ("admit", "gate_pin"):
        assert watched.checked == [], f"a PIN was checked although {method} failed"
    else:
        assert watched.checked == [pin]  # checked once; its verdict never reached the caller
