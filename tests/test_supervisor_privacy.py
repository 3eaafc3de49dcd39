"""A privacy sweep of the console (SPEC 8): after whole calls through the simulator that key known
ID numbers and PINs, no page, API answer, CSV or replay plan of the console shows a PIN or a full
ID number, while the masked forms are there (so the sweep looks where the data really is)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from hotline_server import Server
from twilio_sim import Simulator

ZHANG, ZHANG_KEYS, ZHANG_PIN = "11010519491231002X", "11010519491231002*#", "135790"
LI_KEYS, LI = "440304199001011233#", "440304199001011233"
BAD_CHECK_DIGIT = "110105194912310021"
WRONG_PINS = ("918273", "645372")
SECRETS = (ZHANG, ZHANG.replace("X", "*"), LI, BAD_CHECK_DIGIT, ZHANG_PIN, *WRONG_PINS)
PASSWORD = "privacy sweep password"


def caller() -> str:
    return "+86137" + str(uuid.uuid4().int)[:8]


def leaks(text: str) -> list[str]:
    """Secrets in `text` with some context (inside a long hex run, e.g. a CallSid, is chance)."""
    found = []
    for secret in SECRETS:
        for match in re.finditer(re.escape(secret), text):
            start, end = match.start(), match.end()
            while start > 0 and text[start - 1] in "0123456789abcdefABCDEF":
                start -= 1
            while end < len(text) and text[end] in "0123456789abcdefABCDEF":
                end += 1
            if end - start >= 16 and re.search("[a-fA-F]", text[start:end]):
                continue
            found.append(f"{secret!r}: ...{text[max(0, match.start() - 50) : match.end() + 50]}...")
    return found


@pytest.fixture(scope="module")
def calls(hotline: Server) -> list[tuple[str, str]]:
    """Calls that key the secrets: (CallSid, caller number)."""
    sim = Simulator(hotline.url, hotline.token)
    made = []
    served = sim.call(from_=caller())
    served.press("1")
    served.press(ZHANG_KEYS)
    served.press(ZHANG_PIN).expect_heard("一千二百三十四元五角六分")
    served.press("1")
    served.hangup()
    made.append(served)
    wrong = sim.call(from_=caller())
    wrong.press("1")
    wrong.press(LI_KEYS)
    wrong.press(WRONG_PINS[0])
    wrong.press(WRONG_PINS[1])
    wrong.hangup()
    made.append(wrong)
    typo = sim.call(from_=caller())
    typo.press("1")
    typo.press(BAD_CHECK_DIGIT + "#")
    typo.hangup()
    made.append(typo)
    return [(c.phone.sid, c.phone.line.from_) for c in made]


@pytest.fixture(scope="module")
def browser(hotline: Server) -> Iterator[requests.Session]:
    """A supervisor signed in over HTTP, made with `ivr supervisors add`."""
    name = f"sweep-{uuid.uuid4().hex[:8]}"
    added = hotline.ivr("supervisors", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    session = requests.Session()
    page = session.get(f"{hotline.url}/supervisor/", timeout=10)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token
    signed = session.post(
        f"{hotline.url}/supervisor/",
        timeout=10,
        allow_redirects=False,
        data={"username": name, "password": PASSWORD, "csrf_token": token[1]},
    )
    assert signed.status_code == 302, signed.text
    page = session.get(f"{hotline.url}/supervisor/calls", timeout=10)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)  # a new one: rotated
    assert token
    session.headers["X-CSRF-Token"] = token[1]
    yield session
    session.close()


def test_no_page_or_answer_of_the_console_shows_a_pin_or_a_full_id_number(
    hotline: Server, calls: list[tuple[str, str]], browser: requests.Session
) -> None:
    base = f"{hotline.url}/supervisor"
    today = time.strftime("%Y-%m-%d")
    pages = [
        "/calls",
        "/calls?outcome=failed_auth",
        "/calls?auth=ok",
        f"/calls?from={today}",
        "/api/calls",
        "/api/calls?outcome=self_service",
        "/dashboard",
        "/api/dashboard",
        "/dashboard/summary.csv",
        "/dashboard/hourly.csv",
        "/dashboard/outcomes.csv",
        "/dashboard/funnel.csv",
        "/dashboard/ratings.csv",
        "/audit",
        "/callbacks",
    ]
    for sid, number in calls:
        pages += [
            f"/calls/{sid}",
            f"/api/calls/{sid}",
            f"/calls?caller={number}",
            f"/api/calls?caller={number}",
            f"/audit?call={sid}",
        ]
    seen: dict[str, str] = {}
    for path in pages:
        reply = browser.get(base + path, timeout=30, allow_redirects=False)
        assert reply.status_code == 200, (path, reply.status_code)
        seen[path] = reply.text
    for sid, _ in calls:
        for policy in ("call", "full"):
            plan = browser.post(
                f"{base}/api/calls/{sid}/replay", data={"policy": policy}, timeout=60
            )
            assert plan.status_code == 200, plan.text
            seen[f"replay {sid} {policy}"] = plan.text
    problems = [f"{where}: {leak}" for where, text in seen.items() for leak in leaks(text)]
    assert not problems, "\n".join(problems)
    everything = "\n".join(seen.values())
    assert "110***********002X" in everything and "440***********1233" in everything
    assert "******" in everything  # the PINs are there, masked
    assert all(number not in everything for _, number in calls)  # callers only masked
    zhang = seen[f"/calls/{calls[0][0]}"]
    assert "一千二百三十四元五角六分" in zhang  # the sweep saw the timeline itself
