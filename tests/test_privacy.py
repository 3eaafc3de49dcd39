"""A canary sweep (SPEC 5, 8): after a suite of whole calls that key known ID numbers and PINs,
no PIN and no full ID number is anywhere the hotline writes: its server log, Redis, the
database, or what `ivr calls list` and `ivr calls show` print. The masked ID numbers are in
the call log, so the sweep is known to look where the call log really is."""

from __future__ import annotations

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
from hotline_server import Server, serve
from twilio_sim import SimCall, Simulator

from ivr import store as store_module

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


@dataclass(frozen=True)
class Swept:
    """The hotline (stopped) after the calls, where it wrote, and the calls' SIDs."""

    server: Server
    database_url: str
    redis_url: str
    sids: tuple[str, ...]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Swept]:
    """Run the calls against a hotline of the module's own, then stop it (its log complete)."""
    folder = tmp_path_factory.mktemp("privacy")
    pepper = f"privacy-pepper-{uuid.uuid4().hex}"  # no PIN failure counts shared with others
    env = {"IVR_AGENT_QUEUE": "agents", "IVR_PIN_PEPPER": pepper}
    with fresh_database(folder) as url:
        with serve(folder, redis_url, url, extra_env=env) as server:
            sim = Simulator(server.url, server.token)
            sids = tuple(make(sim).phone.sid for make in CALLS)
            for step, keys in enumerate((ZHANG_KEYS, LI_PIN), start=2):  # to a call never made
                stray = {"CallSid": "CA" + uuid.uuid4().hex, "Digits": keys.rstrip("#")}
                assert sim.post(f"/voice/in/{step}", stray).status_code == 200
        yield Swept(server, url, redis_url, sids)


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
    log = swept.server.log.read_text(errors="replace")
    assert log.count("POST /voice/in/") >= 15, log  # the log is where the webhooks went
    assert not leaks(log)


def test_no_pin_or_id_number_in_redis(swept: Swept) -> None:
    dump = dict(redis_dump(swept.redis_url))
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
