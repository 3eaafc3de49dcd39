"""The console's reading of the call log: outcomes, filters, paging, the dashboard's numbers, CSV,
callback requests and the replay plan, on a known set of calls written with CallLog."""

from __future__ import annotations

import csv
import datetime
import io
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ivr import create_app
from ivr.callbacks import Callbacks
from ivr.calllog import CallRecord, Entry
from ivr.config import Settings
from ivr.supervisor import Console
from ivr.supervisor import replay as replaying
from ivr.supervisor.export import cell, to_csv

PASSWORD = "correct horse battery"
ZONE = "Asia/Shanghai"
DAY = datetime.date(2026, 11, 20)
T0 = datetime.datetime(2026, 11, 20, 10, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=8)))
ID_MASK = "110***********002X"


def at(seconds: float, base: datetime.datetime = T0) -> datetime.datetime:
    return base + datetime.timedelta(seconds=seconds)


Step = tuple[float, list[tuple[str, dict[str, Any]]]]


def menu(node: str) -> tuple[str, dict[str, Any]]:
    return ("menu", {"node": node})


def prompt(text: str, key: str = "p") -> tuple[str, dict[str, Any]]:
    return ("prompt", {"key": key, "text": text})


def key(node: str, keys: str) -> tuple[str, dict[str, Any]]:
    return ("key", {"node": node, "keys": keys})


MAIN = [menu("welcome"), prompt("欢迎致电12333"), menu("main"), prompt("查询余额请按1")]
TO_ID = [key("main", "1"), menu("auth.id"), prompt("请输入您的18位身份证号码，以井号键结束")]
TO_PIN = [key("auth.id", ID_MASK), menu("auth.pin"), prompt("请输入6位密码")]
PIN = ("service", {"call": "verify_pin", "outcome": "ok", "ms": 4.2})

# name: (caller, start, steps, final status and duration or None while in progress)
CALLS: dict[str, tuple[str, datetime.datetime, list[Step], tuple[str, int] | None]] = {
    "served": (
        "+8613800000001",
        at(0),
        [
            (0, MAIN),
            (4, TO_ID),
            (20, TO_PIN),
            (
                28,
                [
                    key("auth.pin", "******"),
                    PIN,
                    ("auth", {"result": "ok", "id": ID_MASK}),
                    menu("balance"),
                    prompt("您的余额为一千二百三十四元五角六分"),
                ],
            ),
            (40, [key("balance", "*"), menu("main"), prompt("查询余额请按1")]),
        ],
        ("completed", 60),
    ),
    "transferred": (
        "+8613800000002",
        at(600),
        [
            (0, MAIN),
            (3, [("language", {"lang": "en-US"}), prompt("For your balance, press 1")]),
            (
                6,
                [
                    key("main", "0"),
                    menu("agent"),
                    ("transfer", {"to": "agent"}),
                    prompt("Transferring"),
                ],
            ),
            (100, [("transfer_ended", {"status": "completed"}), menu("rating"), prompt("Rate us")]),
            (
                105,
                [
                    key("rating", "1"),
                    ("rating", {"value": "satisfied"}),
                    menu("goodbye"),
                    ("hangup", {"reason": "goodbye"}),
                ],
            ),
        ],
        ("completed", 110),
    ),
    "left_in_main": ("+8613800000003", at(3600), [(0, MAIN)], ("completed", 15)),
    "left_in_id": ("+8613800000004", at(3700), [(0, MAIN), (5, TO_ID)], ("completed", 30)),
    "wrong_pin": (
        "+8613800000005",
        at(7200),
        [
            (0, MAIN),
            (4, TO_ID),
            (20, TO_PIN),
            (
                30,
                [
                    key("auth.pin", "******"),
                    ("auth", {"result": "wrong", "id": ID_MASK}),
                    prompt("密码不正确"),
                ],
            ),
            (
                40,
                [
                    key("auth.pin", "******"),
                    ("auth", {"result": "wrong", "id": ID_MASK}),
                    prompt("密码不正确"),
                ],
            ),
        ],
        ("completed", 50),
    ),
    "locked": (
        "+8613800000006",
        at(7300),
        [
            (0, MAIN),
            (4, TO_ID),
            (
                20,
                [
                    key("auth.id", ID_MASK),
                    ("auth", {"result": "locked", "id": ID_MASK}),
                    menu("main"),
                    prompt("已被锁定24小时"),
                ],
            ),
        ],
        ("completed", 35),
    ),
    "unhappy": (
        "+8613800000007",
        at(7400),
        [
            (0, MAIN),
            (6, [key("main", "0"), menu("agent"), ("transfer", {"to": "agent"})]),
            (60, [("transfer_ended", {"status": "completed"}), menu("rating")]),
            (65, [key("rating", "2"), ("rating", {"value": "unsatisfied"})]),
        ],
        ("completed", 70),
    ),
    "busy": ("+8613800000008", at(7500), [], ("busy", 0)),
    "next_day": ("+8613800000001", at(86400 + 3600), [(0, MAIN)], None),
}
EXPECTED = {
    "served": "self_service",
    "transferred": "transferred",
    "left_in_main": "abandoned",
    "left_in_id": "abandoned",
    "wrong_pin": "failed_auth",
    "locked": "locked",
    "unhappy": "transferred",
    "busy": "not_connected",
    "next_day": "in_progress",
}


@pytest.fixture
def app(tmp_path: Path, redis_url: str, database_url: str) -> Iterator[Flask]:
    env = {
        "IVR_INSTANCE_PATH": str(tmp_path),
        "TWILIO_AUTH_TOKEN": "t",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "IVR_TIMEZONE": ZONE,
        "IVR_PIN_PEPPER": "pepper-" + uuid.uuid4().hex,
    }
    app = create_app(Settings.from_env(env))
    app.config["TESTING"] = True
    yield app
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()
    app.extensions["ivr"].store.redis.close()


@pytest.fixture
def console(app: Flask) -> Console:
    found: Console = app.extensions["ivr.supervisor"]
    return found


@pytest.fixture
def sids(console: Console) -> dict[str, str]:
    """The known calls, written as the hotline writes them; name -> CallSid."""
    made = {}
    for name, (caller, start, steps, final) in CALLS.items():
        sid = f"CA{name}{uuid.uuid4().hex[:8]}"
        console.calllog.start(sid, caller, start)
        for seconds, entries in steps:
            lang = "en-US" if any(kind == "language" for kind, _ in entries) else None
            console.calllog.append(sid, [Entry(at(seconds, start), k, d) for k, d in entries], lang)
        if final is not None:
            status, duration = final
            console.calllog.end(sid, status, duration, at(duration, start))
        made[name] = sid
    return made


@pytest.fixture
def client(app: Flask, console: Console) -> FlaskClient:
    name = f"sup-{uuid.uuid4().hex[:10]}"
    console.accounts.add(name, PASSWORD)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = "10.9." + ".".join(str(b) for b in uuid.uuid4().bytes[:2])
    page = client.get("/supervisor/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    reply = client.post(
        "/supervisor/", data={"username": name, "password": PASSWORD, "csrf_token": token[1]}
    )
    assert reply.status_code == 302
    return client


def listed(client: FlaskClient, sids: dict[str, str], query: str = "") -> list[str]:
    """The names of the known calls the API lists for `query`, in order."""
    names = {sid: name for name, sid in sids.items()}
    reply = client.get(f"/supervisor/api/calls?{query}")
    assert reply.status_code == 200, reply.text
    return [names[c["call_sid"]] for c in reply.json["calls"] if c["call_sid"] in names]


# --- outcomes and filters ------------------------------------------------------------


def test_every_call_gets_one_outcome(client: FlaskClient, sids: dict[str, str]) -> None:
    reply = client.get("/supervisor/api/calls")
    names = {sid: name for name, sid in sids.items()}
    got = {names[c["call_sid"]]: c["outcome"] for c in reply.json["calls"]}
    assert got == EXPECTED


def test_the_list_is_newest_first_with_masked_callers(
    client: FlaskClient, sids: dict[str, str]
) -> None:
    order = listed(client, sids)
    starts = {name: CALLS[name][1] for name in order}
    assert order == sorted(order, key=lambda n: starts[n], reverse=True)
    assert order[0] == "next_day" and order[-1] == "served"
    calls = client.get("/supervisor/api/calls").json["calls"]
    served = next(c for c in calls if c["call_sid"] == sids["served"])
    assert served["caller"] == "+86*******0001"
    assert served["duration"] == 60 and served["last_node"] == "main" and served["auth"] == "ok"


FILTERS = [
    ("outcome=self_service", ["served"]),
    ("outcome=transferred", ["unhappy", "transferred"]),
    ("outcome=abandoned", ["left_in_id", "left_in_main"]),
    ("outcome=abandoned&node=main", ["left_in_main"]),
    ("outcome=abandoned&node=auth.id", ["left_in_id"]),
    ("outcome=failed_auth", ["wrong_pin"]),
    ("outcome=locked", ["locked"]),
    ("outcome=in_progress", ["next_day"]),
    ("auth=locked", ["locked"]),
    ("auth=wrong", ["wrong_pin"]),
    ("lang=en-US", ["transferred"]),
    ("from=2026-11-21", ["next_day"]),
    (
        "from=2026-11-20&to=2026-11-20",
        [
            "busy",
            "unhappy",
            "locked",
            "wrong_pin",
            "left_in_id",
            "left_in_main",
            "transferred",
            "served",
        ],
    ),
    ("caller=%2B8613800000001", ["next_day", "served"]),
    ("caller=13800000001", ["next_day", "served"]),  # typed without the country code
    ("caller=138%200000%200002", ["transferred"]),
    ("caller=%2B8613800000009", []),
    ("caller=0001", []),  # a part of a number matches nothing: the number is hashed whole
    ("caller=%2B8613800000001&outcome=self_service", ["served"]),
]


def test_filters(client: FlaskClient, sids: dict[str, str]) -> None:
    for query, expected in FILTERS:
        assert listed(client, sids, query) == expected, query


def test_a_day_is_a_day_in_the_hotlines_time_zone(client: FlaskClient, console: Console) -> None:
    sid = "CA" + uuid.uuid4().hex
    late = datetime.datetime(
        2026, 11, 19, 16, 30, tzinfo=datetime.UTC
    )  # 00:30 on the 20th in Beijing
    console.calllog.start(sid, "+8613900000000", late)
    assert sid in client.get("/supervisor/api/calls?from=2026-11-20&to=2026-11-20").text
    assert sid not in client.get("/supervisor/api/calls?to=2026-11-19").text


def test_bad_filter_values_are_reported_not_fatal(
    client: FlaskClient, sids: dict[str, str]
) -> None:
    reply = client.get("/supervisor/calls?from=yesterday&caller=abc")
    assert reply.status_code == 200
    assert "from: not a date" in reply.text and "caller: not a phone number" in reply.text


def test_the_list_pages(client: FlaskClient, console: Console) -> None:
    base = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    made = []
    for n in range(120):
        sid = f"CApage{n:03}{uuid.uuid4().hex[:6]}"
        console.calllog.start(sid, "+8613700000000", base + datetime.timedelta(minutes=n))
        made.append(sid)
    query = "from=2025-01-01&to=2025-01-01"
    first = client.get(f"/supervisor/api/calls?{query}").json
    third = client.get(f"/supervisor/api/calls?{query}&page=3").json
    assert (first["total"], first["pages"], len(first["calls"])) == (120, 3, 50)
    assert first["calls"][0]["call_sid"] == made[-1] and len(third["calls"]) == 20
    assert third["calls"][-1]["call_sid"] == made[0]
    page = client.get(f"/supervisor/calls?{query}&page=2")
    assert "page 2 of 3" in page.text and "page=3" in page.text and "page=1" in page.text


def test_the_list_page_shows_the_columns(client: FlaskClient, sids: dict[str, str]) -> None:
    page = client.get("/supervisor/calls?outcome=self_service")
    assert page.status_code == 200
    row = page.text[page.text.index(sids["served"]) :]
    row = row[: row.index("</tr>")]
    for shown in (
        "2026-11-20 10:00:00",
        "+86*******0001",
        "1:00",
        "main",
        "ok",
        "completed self-service",
        "cmn-CN",
    ):
        assert shown in row, shown


# --- a call's page -------------------------------------------------------------------


def test_a_calls_page_shows_its_timeline_with_offsets(
    client: FlaskClient, sids: dict[str, str]
) -> None:
    page = client.get(f"/supervisor/calls/{sids['served']}")
    assert page.status_code == 200
    text = page.text
    for shown in (
        "+0.00 s",
        "+28.00 s",
        "您的余额为一千二百三十四元五角六分",
        ID_MASK,
        "******",
        "verify_pin: ok in 4.2 ms",
        "ok (ID 110***********002X)",
        "balance",
        "completed, 60 s",
    ):
        assert shown in text, shown
    other = client.get(f"/supervisor/calls/{sids['transferred']}").text
    for shown in ("to agent", "satisfied", "en-US", "goodbye"):
        assert shown in other, shown
    assert client.get("/supervisor/calls/CAnothing").status_code == 404
    assert client.get("/supervisor/api/calls/CAnothing").status_code == 404


def test_the_api_gives_the_timeline(client: FlaskClient, sids: dict[str, str]) -> None:
    reply = client.get(f"/supervisor/api/calls/{sids['wrong_pin']}").json
    assert reply["outcome"] == "failed_auth" and reply["caller"] == "+86*******0005"
    kinds = [step["kind"] for step in reply["timeline"]]
    assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("auth") == 2
    assert [s["offset"] for s in reply["timeline"] if s["kind"] == "auth"] == [30.0, 40.0]


# --- the dashboard -------------------------------------------------------------------


def test_the_dashboards_numbers(console: Console, sids: dict[str, str]) -> None:
    from ivr.supervisor.calls import Period

    board = console.metrics.dashboard(Period(DAY, DAY, console.zone))
    assert board.total == 8 and board.finished == 8
    assert board.by_label == {
        "self_service": 1,
        "transferred": 2,
        "abandoned": 2,
        "failed_auth": 1,
        "locked": 1,
        "not_connected": 1,
    }
    assert board.containment == pytest.approx(1 / 8)
    assert board.transfer_rate == pytest.approx(2 / 8)
    assert board.abandonment == pytest.approx(2 / 8)
    assert (board.auth_failures, board.auth_failed_calls, board.locks) == (2, 1, 1)
    assert board.avg_duration == pytest.approx((60 + 110 + 15 + 30 + 50 + 35 + 70 + 0) / 8)
    assert board.avg_duration_by_label["transferred"] == pytest.approx(90)
    assert board.ratings == {"satisfied": 1, "unsatisfied": 1}
    assert board.satisfaction == pytest.approx(0.5)
    funnel = {s.node: (s.reached, s.abandoned) for s in board.funnel}
    assert funnel == {
        "welcome": (7, 0),
        "main": (7, 1),
        "auth.id": (4, 1),
        "auth.pin": (2, 0),
        "balance": (1, 0),
        "agent": (2, 0),
        "rating": (2, 0),
        "goodbye": (1, 0),
    }
    assert [s.node for s in board.funnel][:3] == ["main", "welcome", "auth.id"]
    hours = dict((h.strftime("%H"), n) for h, n in board.hourly)
    assert len(board.hourly) == 24 and hours["10"] == 2 and hours["11"] == 2 and hours["12"] == 4
    assert sum(hours.values()) == 8


def test_the_dashboard_page_and_its_csv(client: FlaskClient, sids: dict[str, str]) -> None:
    page = client.get("/supervisor/dashboard?from=2026-11-20&to=2026-11-21")
    assert page.status_code == 200
    assert 'id="m-containment">12.5 %' in page.text
    assert 'id="m-transfer">25.0 %' in page.text  # of the 8 finished calls (one in progress)
    data = re.search(
        r'<script type="application/json" id="dashboard-data">(.*?)</script>', page.text, re.S
    )
    assert data and "funnel" in data[1]
    for canvas in ("chart-hourly", "chart-outcomes", "chart-funnel", "chart-auth", "chart-ratings"):
        assert f'id="{canvas}"' in page.text
    summary = client.get("/supervisor/dashboard/summary.csv?from=2026-11-20&to=2026-11-20")
    assert summary.status_code == 200 and summary.mimetype == "text/csv"
    assert "attachment" in summary.headers["Content-Disposition"]
    rows = dict(csv.reader(io.StringIO(summary.text)))
    assert rows["calls"] == "8" and rows["containment_pct"] == "12.5"
    assert rows["transfer_rate_pct"] == "25.0" and rows["locks"] == "1"
    assert rows["satisfaction_pct"] == "50.0" and rows["avg_handling_time_s"] == "46.2"
    funnel = list(
        csv.reader(
            io.StringIO(
                client.get("/supervisor/dashboard/funnel.csv?from=2026-11-20&to=2026-11-20").text
            )
        )
    )
    assert funnel[0] == ["menu", "reached", "abandoned_there", "drop_rate"]
    assert ["auth.id", "4", "1", "25.0"] in funnel
    hourly = list(
        csv.reader(
            io.StringIO(
                client.get("/supervisor/dashboard/hourly.csv?from=2026-11-20&to=2026-11-20").text
            )
        )
    )
    assert ["2026-11-20 12:00", "4"] in hourly and len(hourly) == 25
    assert client.get("/supervisor/dashboard/nothing.csv").status_code == 404
    api = client.get("/supervisor/api/dashboard?from=2026-11-20&to=2026-11-20").json
    assert api["charts"]["outcomes"]["values"] and api["tables"]["summary"]["rows"]


def test_the_dashboard_period_is_checked(client: FlaskClient) -> None:
    page = client.get("/supervisor/dashboard?from=2026-12-01&to=2026-11-01")
    assert page.status_code == 200 and "after to" in page.text
    page = client.get("/supervisor/dashboard?from=2020-01-01&to=2026-11-01")
    assert "limited to 366 days" in page.text


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("+86*******0001", "'+86*******0001"),
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("main", "main"),
        (12, "12"),
        (-3, "-3"),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, written: str) -> None:
    assert cell(value) == written
    assert to_csv(["a"], [[value]]).splitlines()[1].strip('"') == written


# --- callback requests ---------------------------------------------------------------


def test_callback_requests_are_listed_played_and_marked_done(
    client: FlaskClient, console: Console
) -> None:
    requests_ = Callbacks(console.calllog.engine)
    url = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    first = requests_.add("CAcb1", "+8613811112222", ID_MASK, "cmn-CN", url, 12, at(0))
    requests_.add("CAcb2", "+8613833334444", None, "en-US", url + "x", 7, at(60))
    page = client.get("/supervisor/callbacks")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "+8613811112222" in page.text and "+8613833334444" in page.text  # to call them back
    assert ID_MASK in page.text and "api.twilio.com" in page.headers["Content-Security-Policy"]
    assert page.text.index("+8613833334444") < page.text.index("+8613811112222")  # newest first
    played = client.get(f"/supervisor/callbacks/{first}/message")
    assert played.status_code == 302 and played.location == url
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    assert client.post(f"/supervisor/callbacks/{first}/done").status_code == 400  # no CSRF token
    done = client.post(f"/supervisor/callbacks/{first}/done", data={"csrf_token": token[1]})
    assert done.status_code == 302
    assert "+8613811112222" not in client.get("/supervisor/callbacks").text
    shown = client.get("/supervisor/callbacks?show=done").text
    assert "+8613811112222" in shown and " by sup-" in shown
    assert (
        client.post("/supervisor/callbacks/999999/done", data={"csrf_token": token[1]}).status_code
        == 404
    )
    trail, _ = console.audit.page(call_sid="CAcb1")
    assert [e.action for e in trail] == ["callback-done", "callback-play"]


# --- the replay plan -----------------------------------------------------------------


def record(steps: Sequence[tuple[float, list[tuple[str, dict[str, Any]]]]]) -> CallRecord:
    timeline = [Entry(at(0), "start", {"caller": "+86*******0001"})]
    for seconds, entries in steps:
        timeline += [Entry(at(seconds), k, d) for k, d in entries]
    return CallRecord(
        "CA1", at(0), "+86*******0001", "cmn-CN", "", "", "", "", None, None, tuple(timeline)
    )


def lengths(seconds: float) -> Any:
    return lambda index, text: seconds


def test_keys_sound_as_dtmf_and_masked_keys_stay_masked() -> None:
    assert replaying.DTMF["1"] == (697, 1209) and replaying.DTMF["#"] == (941, 1477)
    assert replaying.DTMF["0"] == (941, 1336) and replaying.DTMF["*"] == (941, 1209)
    assert replaying.key_tones(Entry(at(0), "key", {"keys": "*"})) == "*"
    assert replaying.key_tones(Entry(at(0), "key", {"keys": ID_MASK})) == "110" + "?" * 11 + "002*"
    assert replaying.key_tones(Entry(at(0), "key", {"keys": "******"})) == "??????"
    assert replaying.voice_for("请按1") == "cmn" and replaying.voice_for("Press 1") == "en-us"


def test_in_the_calls_own_timing_keys_end_at_their_webhook_and_cut_the_prompt() -> None:
    call = record(
        [
            (0, [menu("main"), prompt("a"), prompt("b")]),
            (5, [key("main", "1"), menu("balance"), prompt("c")]),
            (30, [("hangup", {"reason": "goodbye"})]),
        ]
    )
    plan = replaying.plan(call, lengths(4.0), "call")
    cues = {(c.kind, c.index): c for c in plan.cues}
    a, b, c = cues[("prompt", 2)], cues[("prompt", 3)], cues[("prompt", 6)]
    keyed = cues[("key", 4)]
    assert (a.start, a.length, a.cut) == (0, 4.0, False)
    assert keyed.start == pytest.approx(5 - replaying.TONE) and keyed.tones == "1"
    assert b.start == pytest.approx(4.25) and b.cut  # barged in: heard only until the key
    assert b.length == pytest.approx(5 - replaying.TONE - 4.25)
    assert (c.start, c.length, c.cut) == (5, 4.0, False)
    assert cues[("hangup", 7)].start == 30 and plan.length == 30


def test_in_full_prompts_are_never_cut_and_later_steps_wait() -> None:
    call = record(
        [
            (0, [menu("main"), prompt("a"), prompt("b")]),
            (5, [key("main", "1"), menu("balance"), prompt("c")]),
        ]
    )
    plan = replaying.plan(call, lengths(4.0), "full")
    prompts = [c for c in plan.cues if c.kind == "prompt"]
    assert [p.cut for p in prompts] == [False, False, False]
    assert [p.length for p in prompts] == [4.0, 4.0, 4.0]
    keyed = next(c for c in plan.cues if c.kind == "key")
    assert keyed.start == pytest.approx(8.25)  # after the second prompt ended
    assert prompts[2].start == pytest.approx(8.25 + replaying.TONE)
    assert plan.length == pytest.approx(8.25 + replaying.TONE + 4.0)


def test_a_log_faster_than_speech_still_plays_in_order() -> None:
    call = record(
        [
            (0.00, [menu("auth.id"), prompt("id")]),
            (0.02, [key("auth.id", ID_MASK), menu("auth.pin"), prompt("pin")]),
            (0.04, [key("auth.pin", "******"), ("auth", {"result": "ok"})]),
        ]
    )
    plan = replaying.plan(call, lengths(2.0), "call")
    starts = [c.start for c in plan.cues]
    assert starts == sorted(starts)
    assert [(c.length, c.cut) for c in plan.cues if c.kind == "prompt"] == [(2.0, False)] * 2
    keys = [c for c in plan.cues if c.kind == "key"]
    assert keys[0].length == pytest.approx(18 * replaying.PER_KEY - replaying.KEY_GAP)
    assert keys[1].start >= keys[0].start + keys[0].length
    assert plan.length >= keys[1].start + keys[1].length
    assert [c.offset for c in plan.cues if c.kind == "auth"] == [0.04]  # the logged time stays


def test_the_replay_api_gives_the_plan_with_audio_links(
    client: FlaskClient, console: Console, sids: dict[str, str]
) -> None:
    page = client.get(f"/supervisor/calls/{sids['served']}")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    reply = client.post(
        f"/supervisor/api/calls/{sids['served']}/replay", headers={"X-CSRF-Token": token[1]}
    )
    assert reply.status_code == 200, reply.text
    plan = reply.json
    assert plan["policy"] == "call" and plan["length"] >= 60
    assert plan["dtmf"]["5"] == [770, 1336]
    kinds = {c["kind"] for c in plan["cues"]}
    assert {"prompt", "key", "menu", "auth", "service", "end"} <= kinds
    assert plan["speech"] is console.speech.available
    full = client.post(
        f"/supervisor/api/calls/{sids['served']}/replay",
        data={"policy": "full", "csrf_token": token[1]},
    ).json
    assert full["policy"] == "full"
    if console.speech.available:
        links = [c["audio"] for c in plan["cues"] if c["kind"] == "prompt"]
        assert all(links)
        clip = client.get(links[0])
        assert clip.status_code == 200 and clip.mimetype == "audio/wav"
        assert clip.data[:4] == b"RIFF" and len(clip.data) > 1000
        clip.close()
        forged = links[0].split("token=")[0] + "token=forged"
        assert client.get(forged).status_code == 403
        other = links[0].replace(sids["served"], sids["transferred"])
        assert client.get(other).status_code == 403  # a token is for its own call
    else:
        assert all(c["audio"] is None for c in plan["cues"])


def test_without_espeak_the_page_says_audio_is_unavailable(
    client: FlaskClient, console: Console, sids: dict[str, str]
) -> None:
    console.speech.executable = None
    page = client.get(f"/supervisor/calls/{sids['served']}")
    assert "Audio for prompts is unavailable" in page.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    plan = client.post(
        f"/supervisor/api/calls/{sids['served']}/replay", headers={"X-CSRF-Token": token[1]}
    ).json
    assert plan["speech"] is False
    prompts = [c for c in plan["cues"] if c["kind"] == "prompt"]
    assert prompts and all(c["audio"] is None and c["length"] >= 0 for c in prompts)
    assert prompts[0]["length"] > 0  # estimated, so the timeline still moves in time


def test_an_unredacted_id_number_is_masked_again_when_shown(
    client: FlaskClient, console: Console
) -> None:
    from ivr.supervisor.present import scrub

    assert scrub("id 11010519491231002X and 440304199001011233") == (
        "id 110***********002X and 440***********1233"
    )
    assert scrub("12333 and 2026-11-20 and 1,234.56") == "12333 and 2026-11-20 and 1,234.56"
    sid = "CA" + uuid.uuid4().hex
    console.calllog.start(sid, "+8613900000000", at(0))
    console.calllog.append(sid, [Entry(at(1), "future_kind", {"id": "11010519491231002X"})])
    page = client.get(f"/supervisor/calls/{sid}").text
    assert "11010519491231002X" not in page and "110***********002X" in page


def test_pages_that_show_calls_catch_up_with_the_outbox_and_a_replays_audio_does_not(
    app: Flask, client: FlaskClient, console: Console, sids: dict[str, str]
) -> None:
    """Every page that lists or shows calls first waits for the outbox to be moved (2 Redis
    round trips and a database read); a replay's audio clips, the page's files and voice
    messages show nothing new and do not."""
    asked: list[str] = []
    app.extensions["ivr.supervisor"] = replace(console, catch_up=lambda: asked.append("x"))
    for path in ("/supervisor/calls", f"/supervisor/calls/{sids['served']}",
                 "/supervisor/api/calls", "/supervisor/dashboard"):  # fmt: skip
        asked.clear()
        assert client.get(path).status_code == 200, path
        assert asked == ["x"], path
    asked.clear()
    clip = client.get(f"/supervisor/api/calls/{sids['served']}/audio/0?token=forged")
    assert clip.status_code == 403  # (refused or served, it read no new call)
    style = client.get("/supervisor/static/supervisor.css")
    assert style.status_code == 200
    style.close()
    assert asked == []
