"""A canary sweep (SPEC 5, 8): after a suite of whole calls that key known ID numbers and PINs,
through faults too (the account service down, Redis killed in the middle of a call), no PIN
and no full ID number is anywhere the hotline writes: its server logs, Redis (every key and
value of each), the database, every page of the supervisor console, or what `ivr calls list`
and `ivr calls show` print. The masked ID numbers are in the call log, so the sweep is known
to look where the call log really is."""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import fresh_database
from fault_kit import PrivateRedis, private_redis, signed_in_console
from hotline_server import Server, caught_up, free_port, serve
from twilio_sim import SimCall, Simulator

from ivr import create_app
from ivr import store as store_module
from ivr.config import Settings

# Accounts of tests/data/accounts.json, and ID numbers keyed as a caller keys them.
ZHANG, ZHANG_KEYS, ZHANG_PIN = "11010519491231002X", "11010519491231002*#", "135790"
LI, LI_KEYS, LI_PIN = "440304199001011233", "440304199001011233#", "246810"
BAD_CHECK_DIGIT = "110105194912310021"  # 张三's number with a wrong last character
NOBODY = "110101199003072834"  # a valid ID number with no account
WRONG_PINS = ("907153", "864209", "372615", "583047")  # distinctive: used nowhere else

PINS = (ZHANG_PIN, LI_PIN, *WRONG_PINS)
ID_NUMBERS = (ZHANG, ZHANG.replace("X", "*"), LI, BAD_CHECK_DIGIT, NOBODY)
SECRETS = PINS + ID_NUMBERS
MASKED = ("110***********002X", "440***********1233", "110***********0021", "110***********2834")


def unique_caller() -> str:
    return "+86139" + str(uuid.uuid4().int)[:8]


def leaks(text: str) -> list[str]:
    """The secrets found in `text`, each with a little context.

    A match inside a long run of hex characters holding a letter (a CallSid, an ID digest, a
    token) is chance, not a leak: a shared Redis holds thousands of those."""
    found = []
    for secret in SECRETS:
        for match in re.finditer(re.escape(secret), text):
            start, end = match.start(), match.end()
            while start > 0 and text[start - 1] in "0123456789abcdefABCDEF":
                start -= 1
            while end < len(text) and text[end] in "0123456789abcdefABCDEF":
                end += 1
            run = text[start:end]
            if len(run) >= 16 and re.search("[a-fA-F]", run):
                continue
            found.append(
                f"{secret!r} in ...{text[max(0, match.start() - 60) : match.end() + 60]}..."
            )
    return found


# --- the calls -------------------------------------------------------------------------------


def right_pin_with_x_keyed_as_star_and_a_repeated_id_delivery(sim: Simulator) -> SimCall:
    call = sim.call(from_=unique_caller())
    call.press("1").expect_heard("身份证")
    call.press(ZHANG_KEYS).expect_heard("请输入6位查询密码")
    status, body = call.resend_last()
    assert status == 200 and body == call.last_twiml
    call.press(ZHANG_PIN).expect_heard("一千二百三十四元五角六分")
    call.press("1").expect_heard("第1条，共3条")
    call.hangup()
    return call


def wrong_pins_a_repeated_pin_delivery_then_an_agent(sim: Simulator) -> SimCall:
    call = sim.call(from_=unique_caller(), queue_outcome="bridged")
    call.press("1")
    call.press(LI_KEYS).expect_heard("密码")
    call.press(WRONG_PINS[0]).expect_heard("身份证号码或密码不正确")
    status, body = call.resend_last()
    assert status == 200 and body == call.last_twiml
    call.press(WRONG_PINS[1]).expect_heard("不正确")
    assert "验证失败次数过多" not in call.heard_text
    call.press(LI_PIN).expect_heard("一千零五元零七分")
    call.press("0")  # an agent, from the balance menu
    assert any("<Enqueue" in x.body for x in call.exchanges), call.report()
    if not call.ended:  # SPEC 4: after the agent call the caller may rate the service
        call.press("1")
    assert call.ended, call.report()
    return call


def a_wrong_check_digit_then_a_wrong_and_a_right_pin(sim: Simulator) -> SimCall:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press(BAD_CHECK_DIGIT + "#").expect_heard("身份证号码有误")
    assert "密码" not in call.heard_text
    call.press(ZHANG_KEYS).expect_heard("密码")
    call.press(WRONG_PINS[2]).expect_heard("不正确")
    call.press(ZHANG_PIN).expect_heard("余额为")
    call.hangup()
    assert call.send_status("completed").status == 200  # a repeated status callback
    return call


def in_english_silence_an_unknown_id_and_a_hang_up_at_the_pin(sim: Simulator) -> SimCall:
    call = sim.call(from_=unique_caller())
    call.press("9").expect_heard("For your personal account balance")
    call.press("1").expect_heard("18-character ID number")
    call.silence().expect_heard("ID number")
    call.press(NOBODY + "#").expect_heard("6-digit PIN")
    call.press(WRONG_PINS[3]).expect_heard("not correct")
    call.hangup()  # in the middle of authentication: the call state still holds the attempt
    return call


def silence_until_goodbye(sim: Simulator) -> SimCall:
    call = sim.call(from_=unique_caller())
    call.silence().silence().silence()
    assert call.ended and "再见" in call.heard_text
    return call


CALLS: tuple[Callable[[Simulator], SimCall], ...] = (
    right_pin_with_x_keyed_as_star_and_a_repeated_id_delivery,
    wrong_pins_a_repeated_pin_delivery_then_an_agent,
    a_wrong_check_digit_then_a_wrong_and_a_right_pin,
    in_english_silence_an_unknown_id_and_a_hang_up_at_the_pin,
    silence_until_goodbye,
)


def with_the_account_service_down(sim: Simulator) -> SimCall:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press(ZHANG_KEYS).expect_heard("密码")
    call.press(ZHANG_PIN).expect_heard("账户系统暂时无法查询")
    call.press("1")
    call.press(LI_KEYS).expect_heard("密码")
    call.press(WRONG_PINS[0]).expect_heard("账户系统暂时无法查询")
    call.hangup()
    return call


def with_redis_killed_in_the_middle(sim: Simulator, own: PrivateRedis) -> SimCall:
    call = sim.call(from_=unique_caller())
    call.press("1")
    call.press(ZHANG_KEYS).expect_heard("密码")
    own.kill()
    try:
        call.press(ZHANG_PIN).expect_heard("抱歉，系统暂时出现故障")
        call.press("1").expect_heard("抱歉，系统暂时出现故障")  # still down
    finally:
        own.start()
    call.press("1").expect_heard("请输入6位")  # back, where the call was
    call.press(WRONG_PINS[1]).expect_heard("不正确")
    call.press(ZHANG_PIN).expect_heard("一千二百三十四元五角六分")
    call.hangup()
    return call


@dataclass(frozen=True)
class Swept:
    """The hotlines (stopped) after the calls, where they wrote, and the calls' SIDs."""

    server: Server
    database_url: str
    redis_url: str
    sids: tuple[str, ...]
    others: tuple[Server, ...] = ()  # the hotlines that ran the calls through faults
    redis_urls: tuple[str, ...] = ()  # every Redis they used

    @property
    def logs(self) -> str:
        """The server logs of every hotline of the sweep."""
        return "\n".join(s.log.read_text(errors="replace") for s in (self.server, *self.others))


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Swept]:
    """Run the calls against a hotline of the module's own, then through faults against two
    more on the same database (one with its account service out of reach, one on a Redis of
    its own that is killed in the middle of a call); then stop them (their logs complete)."""
    folder = tmp_path_factory.mktemp("privacy")
    pepper = f"privacy-pepper-{uuid.uuid4().hex}"  # no PIN failure counts shared with others
    env = {"IVR_AGENT_QUEUE": "agents", "IVR_PIN_PEPPER": pepper}
    with fresh_database(folder) as url, private_redis(folder / "own-redis") as own:
        with serve(folder, redis_url, url, extra_env=env) as server:
            sim = Simulator(server.url, server.token)
            sids = tuple(make(sim).phone.sid for make in CALLS)
            for step, keys in enumerate((ZHANG_KEYS, LI_PIN), start=2):  # to a call never made
                stray = {"CallSid": "CA" + uuid.uuid4().hex, "Digits": keys.rstrip("#")}
                assert sim.post(f"/voice/in/{step}", stray).status_code == 200
        down = {**env, "ACCOUNTS_URL": f"http://127.0.0.1:{free_port()}"}
        with serve(folder / "no-accounts", redis_url, url, extra_env=down) as no_accounts:
            sim = Simulator(no_accounts.url, no_accounts.token)
            sids += (with_the_account_service_down(sim).phone.sid,)
        with serve(folder / "own-redis-hotline", own.url, url, extra_env=env) as on_own:
            sim = Simulator(on_own.url, on_own.token)
            sids += (with_redis_killed_in_the_middle(sim, own).phone.sid,)
        caught_up(redis_url, url)
        caught_up(own.url, url)
        yield Swept(server, url, redis_url, sids, (no_accounts, on_own), (redis_url, own.url))


# --- where the hotline writes ------------------------------------------------------------------


def redis_dump(url: str) -> Iterator[tuple[str, str]]:
    """Every key of the Redis and its value as text (strings, hashes, lists, sets, sorted sets)."""
    client = store_module.connect(url, 5.0)
    try:
        for key in client.scan_iter(count=1000):
            kind = _text(client.type(key))
            value: list[Any]
            if kind == "string":
                value = [client.get(key) or b""]
            elif kind == "hash":
                value = [b for pair in client.hgetall(key).items() for b in pair]
            elif kind == "list":
                value = list(client.lrange(key, 0, -1))
            elif kind == "set":
                value = list(client.smembers(key))
            elif kind == "zset":
                value = list(client.zrange(key, 0, -1))
            else:  # gone since the SCAN ("none"), or a type the hotline does not use
                value = []
            yield _text(key), " ".join(_text(v) for v in value)
    finally:
        client.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def database_rows(url: str) -> dict[str, list[str]]:
    """Every row of every table of the database, each as one JSON line."""
    engine = sa.create_engine(url)
    try:
        tables: dict[str, list[str]] = {}
        with engine.connect() as conn:
            for name in sa.inspect(conn).get_table_names():
                rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).mappings()
                tables[name] = [json.dumps(dict(r), default=str, ensure_ascii=False) for r in rows]
        return tables
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def printed(swept: Swept) -> dict[str, str]:
    """What `ivr calls list` and `ivr calls show SID` print (stdout and stderr), by command."""
    commands = [("calls", "list", "--limit", "100")] + [("calls", "show", s) for s in swept.sids]
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(lambda args: swept.server.ivr(*args), commands))
    for ran in done:
        assert ran.returncode == 0, ran.stderr
    return {" ".join(command[:3] if command[1] == "show" else command[:2]): r.stdout + r.stderr
            for command, r in zip(commands, done, strict=True)}  # fmt: skip


# --- the sweep ---------------------------------------------------------------------------------


def test_no_pin_or_id_number_in_the_server_log(swept: Swept) -> None:
    log = swept.logs
    assert log.count("POST /voice/in/") >= 15, log  # the log is where the webhooks went
    assert "[ERROR] ivr.hotline: account service verify_pin failed" in log  # the faults ran
    assert "[ERROR] ivr.hotline: call CA" in log and "Redis failed" in log
    assert not leaks(log)


def test_no_pin_or_id_number_in_redis(swept: Swept) -> None:
    dump = {key: value for url in swept.redis_urls for key, value in redis_dump(url)}
    for sid in swept.sids:  # the calls' state is there to be swept
        assert any(sid in key for key in dump), f"no Redis key of call {sid}"
    found = {key: hits for key, value in dump.items() if (hits := leaks(f"{key} {value}"))}
    assert not found


def test_no_pin_or_id_number_in_the_database(swept: Swept) -> None:
    tables = database_rows(swept.database_url)
    assert tables.get("call_log_calls") and tables.get("call_log_events"), sorted(tables)
    assert len(tables["call_log_calls"]) == len(swept.sids)
    found = {
        f"{name}: {row}": hits
        for name, rows in tables.items()
        for row in rows
        if (hits := leaks(row))
    }
    assert not found


def test_no_pin_or_id_number_in_what_ivr_calls_prints(
    swept: Swept, printed: dict[str, str]
) -> None:
    for sid in swept.sids:
        assert sid in printed["calls list"]
        assert f"Call {sid}" in printed[f"calls show {sid}"]
    found = {what: hits for what, text in printed.items() if (hits := leaks(text))}
    assert not found


@pytest.fixture(scope="module")
def console_pages(swept: Swept) -> dict[str, str]:
    """Every page of the supervisor console (every GET route but static files, for every call
    of the sweep; the CSV tables; each call's replay plan), signed in, by URL."""
    app = create_app(Settings.from_env(dict(swept.server.env)))
    app.config["TESTING"] = True
    try:
        client = signed_in_console(app)
        values: dict[str, list[str]] = {"call_sid": list(swept.sids),
                                        "table": ["summary", "hourly", "outcomes", "funnel",
                                                  "ratings"]}  # fmt: skip
        urls = ["/supervisor/calls?auth=ok", "/supervisor/calls?outcome=failed_auth",
                "/supervisor/api/calls?auth=ok"]  # fmt: skip
        for rule in app.url_map.iter_rules():
            if not rule.rule.startswith("/supervisor") or rule.endpoint == "supervisor.static":
                continue
            if "GET" not in (rule.methods or set()) or set(rule.arguments) - set(values):
                continue  # audio (binary) and callback messages (none were left) are not text
            names = sorted(rule.arguments)
            for combo in itertools.product(*(values[n] for n in names)):
                built = rule.build(dict(zip(names, combo, strict=True)))
                assert built is not None
                urls.append(built[1])
        pages = {}
        for url in urls:
            reply = client.get(url, follow_redirects=True)  # signed in, / leads to the calls
            assert reply.status_code == 200, (url, reply.status_code)
            pages[url] = reply.get_data(as_text=True)
        for sid in swept.sids:
            for policy in ("call", "full"):
                plan = client.post(f"/supervisor/api/calls/{sid}/replay", data={"policy": policy})
                assert plan.status_code == 200, plan.text
                pages[f"replay {sid} {policy}"] = plan.get_data(as_text=True)
        return pages
    finally:
        app.extensions["ivr"].outbox.stop()
        app.extensions["ivr.engine"].dispose()
        app.extensions["ivr"].store.redis.close()


def test_no_pin_or_id_number_on_any_page_of_the_supervisor_console(
    swept: Swept, console_pages: dict[str, str]
) -> None:
    for sid in swept.sids:
        assert sid in console_pages[f"/supervisor/calls/{sid}"]  # the pages show the calls
    everything = "\n".join(console_pages.values())
    assert "110***********002X" in everything and "******" in everything
    assert "账户系统暂时无法查询" in everything and "抱歉，系统暂时出现故障" in everything  # faults
    found = {url: hits for url, text in console_pages.items() if (hits := leaks(text))}
    assert not found


def test_the_call_log_keeps_each_id_number_masked_and_each_pin_as_stars(
    swept: Swept, printed: dict[str, str]
) -> None:
    events = "\n".join(database_rows(swept.database_url)["call_log_events"])
    for masked in MASKED:
        assert masked in events, f"{masked} not in the call log"
    assert "******" in events
    shown = printed[f"calls show {swept.sids[0]}"]
    assert "110***********002X" in shown and "keys=******" in shown, shown


def test_the_sweep_finds_a_planted_secret() -> None:
    """The sweep itself can fail: each secret is found wherever a leak would put it."""
    for secret in SECRETS:
        for text in (secret, f'{{"pin":"{secret}"}}', f"Digits={secret}&FinishedOnKey=#",
                     f"keys={secret}", f"<Say>{secret}</Say>"):  # fmt: skip
            assert leaks(text), text
    sid = "CA" + "ab" * 5 + ZHANG_PIN + "cd" * 5  # a PIN's digits inside a CallSid: chance
    assert not leaks(sid)
