"""End to end in a real headless Chromium (Debian's chromium + chromedriver, driven by Selenium):
calls made through the simulator, then a supervisor signs in, finds a call, replays it and sees
the timeline follow, and opens the dashboard with its charts drawn.

Skipped when Chromium is not installed, unless IVR_REQUIRE_BROWSER=1 (CI sets it): then it fails.
Screenshots go to IVR_SCREENSHOTS (e.g. docs/screenshots) when set, else to a temp folder."""

from __future__ import annotations

import datetime
import os
import shutil
import time
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hotline_server import Server
from twilio_sim import SimCall, Simulator

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRED = os.environ.get("IVR_REQUIRE_BROWSER", "") == "1"
PASSWORD = "browser test password"
ZHANG_KEYS, ZHANG_PIN = "11010519491231002*#", "135790"


def _missing() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install '.[test]')"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(path):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return ""


MISSING = _missing()
if MISSING and REQUIRED:
    raise RuntimeError(f"IVR_REQUIRE_BROWSER=1 but the browser test cannot run: {MISSING}")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"no headless browser: {MISSING}")


def caller() -> str:
    return "+86136" + str(uuid.uuid4().int)[:8]


def paced(call: SimCall, keys: str, pause: float) -> SimCall:
    """Press keys after `pause` seconds, like a person listening first."""
    time.sleep(pause)
    return call.press(keys)


def shanghai_today() -> str:
    """The day in the hotline's time zone (its default), which the dashboard's periods count in."""
    return datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Shanghai")).date().isoformat()


@pytest.fixture(scope="module")
def made_calls(hotline: Server) -> dict[str, str]:
    """A paced call to replay (real gaps between steps), and quick calls of other outcomes."""
    day = shanghai_today()  # the dashboard's period starts here: the calls may end after midnight
    sim = Simulator(hotline.url, hotline.token)
    number = caller()
    call = sim.call(from_=number)
    paced(call, "1", 2.0)
    paced(call, ZHANG_KEYS, 4.0)  # time to key 19 keys: so the replay keeps the call's timing
    paced(call, ZHANG_PIN, 2.5).expect_heard("一千二百三十四元五角六分")
    paced(call, "1", 3.0)
    time.sleep(2.0)
    call.hangup()
    quick = sim.call(from_=caller())  # an agent
    quick.press("0")
    quick.hangup() if quick.gather else None
    gave_up = sim.call(from_=caller())  # left in the main menu
    gave_up.hangup()
    wrong = sim.call(from_=caller())  # a wrong PIN, then gone
    wrong.press("1")
    wrong.press(ZHANG_KEYS)
    wrong.press("000000")
    wrong.hangup()
    english = sim.call(from_=caller())
    english.press("9")
    english.press("1")
    english.press(ZHANG_KEYS)
    english.press(ZHANG_PIN)
    english.hangup()
    return {"number": number, "sid": call.phone.sid, "day": day}


@pytest.fixture(scope="module")
def supervisor(hotline: Server) -> str:
    name = f"zhang.wei.{uuid.uuid4().hex[:4]}"
    added = hotline.ivr("supervisors", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    return name


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("IVR_SCREENSHOTS")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--window-size=1360,1000",
        "--lang=en-US",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")


def errors_in_console(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_find_replay_and_measure_a_call_in_the_browser(
    hotline: Server, made_calls: dict[str, str], supervisor: str, driver: Any, shots: Path
) -> None:
    from selenium.webdriver.common.by import By

    base = f"{hotline.url}/supervisor"
    driver.get(f"{base}/calls")  # not signed in: the sign-in page
    assert "/supervisor/?next=" in driver.current_url
    driver.find_element(By.NAME, "username").send_keys(supervisor)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "table.calls a.call-link")) >= 5,
        what="the calls list",
    )
    assert driver.current_url.endswith("/supervisor/calls")
    driver.save_screenshot(str(shots / "calls.png"))

    # find the paced call by its caller's full number (shown masked)
    number, sid = made_calls["number"], made_calls["sid"]
    field = driver.find_element(By.NAME, "caller")
    field.send_keys(number)
    field.submit()
    wait_for(
        lambda: (
            "ck=" in driver.current_url
            and driver.find_elements(By.CSS_SELECTOR, ".chip")
            and len(driver.find_elements(By.CSS_SELECTOR, "a.call-link")) == 1
        ),
        what="the filtered list",
    )
    links = driver.find_elements(By.CSS_SELECTOR, "a.call-link")
    assert [link.get_attribute("data-sid") for link in links] == [sid]
    masked = number[:3] + "*" * (len(number) - 7) + number[-4:]
    assert masked in driver.page_source and number not in driver.page_source
    assert number[1:] not in driver.current_url  # only the keyed hash travels in the URL
    links[0].click()
    wait_for(lambda: driver.find_elements(By.ID, "replay"), what="the call's page")
    assert sid in driver.current_url
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "110***********002X" in body and "******" in body and "一千二百三十四元五角六分" in body

    # replay: the timeline follows, 2x speeds it up, pause stops it, seek jumps
    player = driver.find_element(By.ID, "replay")
    driver.find_element(By.ID, "play").click()
    wait_for(lambda: player.get_attribute("data-state") == "playing", what="the replay to start")
    length = float(wait_for(lambda: player.get_attribute("data-length"), what="the plan"))
    assert length > 8  # the call's own timing: it took over ten seconds
    steps: list[int] = []

    def advanced() -> bool:
        step = player.get_attribute("data-step")
        if step and (not steps or int(step) != steps[-1]):
            steps.append(int(step))
        return len(steps) >= 4

    try:
        wait_for(advanced, timeout=20, what="the timeline to advance")
    except AssertionError:
        state = {k: player.get_attribute(f"data-{k}") for k in ("state", "position", "step")}
        raise AssertionError(f"{steps} {state} {driver.get_log('browser')}") from None
    assert steps == sorted(steps), steps
    playing = driver.find_elements(By.CSS_SELECTOR, "#timeline tr.playing")
    assert len(playing) == 1 and playing[0].get_attribute("data-index") == str(steps[-1])
    assert driver.find_elements(By.CSS_SELECTOR, "#timeline tr.played")
    driver.save_screenshot(str(shots / "call.png"))
    driver.find_element(By.CSS_SELECTOR, ".speed[data-rate='2']").click()
    assert player.get_attribute("data-rate") == "2"
    before = float(player.get_attribute("data-position") or 0)
    time.sleep(1.0)
    after = float(player.get_attribute("data-position") or 0)
    assert 1.5 <= after - before <= 3.0, (before, after)  # twice as fast as the wall clock
    driver.find_element(By.ID, "play").click()
    assert player.get_attribute("data-state") == "paused"
    held = player.get_attribute("data-position")
    time.sleep(0.5)
    assert player.get_attribute("data-position") == held
    driver.execute_script(
        "var s = document.getElementById('seek'); s.value = 1; s.dispatchEvent(new Event('input'));"
    )
    assert float(player.get_attribute("data-position") or 99) == pytest.approx(1.0, abs=0.05)
    driver.find_element(By.ID, "play").click()  # and to the end at 2x
    wait_for(
        lambda: player.get_attribute("data-state") == "ended",
        timeout=length / 2 + 10,
        what="the replay to end",
    )
    assert float(player.get_attribute("data-position") or 0) == pytest.approx(length, abs=0.2)

    # the dashboard: figures and five charts drawn by the bundled Chart.js
    driver.get(f"{base}/dashboard?from={made_calls['day']}&to={shanghai_today()}")
    wait_for(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "canvas[data-rendered=yes]")) == 5,
        what="the charts",
    )
    inked = """
        return Array.from(document.querySelectorAll('canvas')).map(function (c) {
            var data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, n = 0;
            for (var i = 3; i < data.length; i += 4) { if (data[i] > 0) { n++; } }
            return [c.id, n];
        });"""
    drawn = driver.execute_script(inked)
    assert all(pixels > 500 for _, pixels in drawn), drawn
    assert int(driver.find_element(By.ID, "m-calls").text) >= 5
    assert "%" in driver.find_element(By.ID, "m-containment").text
    driver.save_screenshot(str(shots / "dashboard.png"))
    assert driver.execute_script("return Object.keys(window.hotlineCharts).length") == 5
    assert not errors_in_console(driver)

    # a period without calls: still five charts, none of them an empty space
    driver.get(f"{base}/dashboard?from=2020-01-01&to=2020-01-01")
    wait_for(
        lambda: len(driver.find_elements(By.CSS_SELECTOR, "canvas[data-rendered=yes]")) == 5,
        what="the charts of an empty period",
    )
    assert driver.find_element(By.ID, "m-calls").text == "0"
    drawn = driver.execute_script(inked)
    assert all(pixels > 500 for _, pixels in drawn), drawn
    assert not errors_in_console(driver)

    # the audit trail saw the view and the replay
    driver.get(f"{base}/audit?call={sid}")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "table.audit"), what="the audit trail")
    audit = driver.find_element(By.TAG_NAME, "body").text
    assert "viewed a call" in audit and "replayed a call" in audit and supervisor in audit
