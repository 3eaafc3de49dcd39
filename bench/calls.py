"""Whole calls against the hotline under gunicorn, and the same load against a bare WSGI floor.

    .venv/bin/python bench/calls.py [--seconds 20 | --calls N] [--callers 20] [--workers 2]
                                    [--worker-class sync,gthread,gevent] [--threads 16]
                                    [--accounts-delay MS] [--rate N] [--no-baseline]
                                    [--client-procs 2] [--redis-url URL] [--database-url URL]
                                    [--json FILE] [--inside] [--steps 3]
    .venv/bin/python bench/calls.py --held 3000 [--hold-seconds 300] [--pool 32] [...]
    make bench

It starts everything it measures itself, on 127.0.0.1, and stops it again (also on Ctrl-C or
an error): an embedded Redis (or the one at --redis-url), SQLite (or --database-url) with the
test accounts, and gunicorn. Three phases, one client:

  baseline       bench/baseline.py (one fixed TwiML document) under the same gunicorn settings
  hotline        `ivr:create_app()`, every simulated caller making whole calls back to back
  hotline @50%   the hotline again, webhooks paced to half the rate the previous phase reached
                 (or to --rate webhooks/s)

With --held N one other phase runs instead, alone (the others' calls would still be expiring
from Redis during it and blur its memory figure):

  held           N calls up at all times for --hold-seconds, at a human pace: every webhook
                 after a call's first comes 2-5 s after the previous answer, and each line rings
                 again as soon as its call has hung up; an asyncio client, the calls of a client
                 process sharing --pool keep-alive connections, as Twilio's do

With several --worker-class values the phases run once for each, side by side in one run (the
fair way to compare them on a machine that other work disturbs). --accounts-delay serves the
account service over HTTP (ACCOUNTS_URL) from bench/slow_accounts.py, which holds every request
that many milliseconds: the latencies are then also split into webhooks that call the account
service and webhooks that do not. --inside also times every webhook and each part of it inside
the hotline's workers (bench/inside_conf.py), wall and CPU: where a slow answer's time went.
--steps 3 makes every call hang up at the PIN prompt: the webhooks that need Redis alone, the
web tier's own path (the baseline's calls are as long), without the account service.

Each simulated caller behaves like Twilio on the wire (signed form POSTs, the standard call
parameters, following each reply's <Gather action>) and checks every answer. The server's
CPU per webhook is read from /proc for gunicorn and Redis, Redis round trips from Redis's own
counters. docs/benchmark.md explains every figure and the method.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import html
import http.client
import json
import math
import multiprocessing as mp
import os
import platform
import queue
import random
import re
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Container, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any, TypedDict, TypeVar
from urllib.parse import urlencode, urljoin

import baseline  # bench/baseline.py: this script's folder is first on sys.path
import inside_conf  # bench/inside_conf.py
import redis
import sections  # bench/sections.py
import sqlalchemy as sa

from ivr import embedded, gunicorn_conf, store
from ivr.phone import FORM_TYPE, GEO_FIELDS, new_sid, sign
from services.accounts.db import make_engine

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ACCOUNTS = ROOT / "tests" / "data" / "accounts.json"
BIN = Path(sys.executable).parent

HTTP_TIMEOUT = 10.0  # seconds for one webhook; Twilio itself gives up after 15
START_TIMEOUT = 30.0  # gunicorn answering, accounts imported
READY_TIMEOUT = 120.0  # client processes started and warmed up
DRAIN_TIMEOUT = 60.0  # after --seconds, for the calls under way to finish
COUNT_TIMEOUT = 900.0  # a whole --calls phase
FAILURE_SAMPLES = 5  # failure messages kept per phase (all are counted)
OWN_INFO_CALLS = 1  # INFO commands of ours inside a snapshot delta: the first snapshot's own
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOISY_PERCENT = 20.0  # CPU % (of one core) busy beyond client and server that makes a phase suspect

# The held-calls phase (--held).
KEY_PAUSE = (2.0, 5.0)  # seconds from an answer to the caller's next key (or hang-up), uniform
SAMPLE_SECONDS = 1.0  # how often the calls up are counted during the window
IDLE_SECONDS = 1.0  # a keep-alive connection unused this long is closed, not reused: gunicorn
# closes one idle for its keep-alive (5 s, ivr/gunicorn_conf.py), and must never do so under a
# request
HELD_P99_MS = 50.0  # the target: no failed webhook, and p99 within this,
HELD_TARGET_CALLS = 3000  # with this many calls held
HELD_TARGET_SECONDS = 300.0  # this long

_R = TypeVar("_R")

# Variables of the caller's environment that would change what is measured.
UNWANTED_ENV = (
    "IVR_DEV_MODE",
    "PUBLIC_BASE_URL",
    "ACCOUNTS_URL",
    "ACCOUNTS_TOKEN",
    "IVR_AGENT_QUEUE",
    "IVR_AGENT_NUMBER",
    "GUNICORN_CMD_ARGS",
)

# Every benchmark call comes from one number and keys one ID number, thousands of times an
# hour: what the PIN-guessing limits stop. Raised out of the way; still counted, as in service.
UNLIMITED = {
    name: str(10**9)
    for name in ("IVR_LIMIT_CALLER_CALLS", "IVR_LIMIT_CALLER_IDS", "IVR_LIMIT_ID_CHECKS")
}


# ---- the call every simulated caller makes ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One webhook of a benchmark call: the keys Twilio reports, and what the reply must say."""

    name: str  # in the per-webhook latencies
    digits: str | None  # None: the call comes in (POST /voice)
    expect: str
    finished_on_key: str = ""  # the Gather's finishOnKey when the caller pressed it

    def form(self) -> dict[str, str]:
        """What Twilio adds to the call's standard parameters: a <Gather>'s result."""
        if self.digits is None:
            return {}
        return {
            "CallStatus": "in-progress",
            "Digits": self.digits,
            "FinishedOnKey": self.finished_on_key,
            "msg": "Gather End",
        }


CALL = (
    Step("incoming", None, "欢迎致电12333"),  # welcome and the main menu
    Step("key 1", "1", "请输入您的18位身份证号码"),  # the balance needs the caller's ID number
    Step("ID", "11010519491231002*", "请输入6位查询密码", "#"),  # `*` keys the X, `#` ends it
    Step("PIN", "135790", "一千二百三十四元五角六分"),  # the balance (6 digits end the Gather)
    Step("key 1", "1", "第1条，共3条"),  # the newest transaction
    Step("key 1", "1", "第2条，共3条"),  # the next one
)
STATUS_PATH = "/voice/status"  # then the status callback: the call completed
# The webhooks of CALL that call the account service: the PIN (PIN check, balance) and the two
# transaction pages (the list is fetched for each page); the others need only Redis.
SERVICE_WEBHOOKS = frozenset({3, 4, 5})
WEBHOOKS_PER_CALL = len(CALL) + 1
# The lines' first calls ring in spread evenly over one average call: then, as with callers who
# call independently, some are keying their PINs while others are being welcomed. Rung in over
# a few seconds, the lines' calls would stay in step for minutes (each line calls again as soon
# as it hangs up) and every PIN of 3,000 calls would be checked within the same few seconds,
# again every call's length: waves of load no real line sees (bench/calls.py --trace shows them).
RAMP_SECONDS = len(CALL) * sum(KEY_PAUSE) / 2
WEBHOOK_NAMES = (*(f"{i}:{step.name}" for i, step in enumerate(CALL)), f"{len(CALL)}:status")
_ACTION = re.compile(rb'<Gather\b[^>]*?\saction="([^"]*)"')


@dataclass(frozen=True, slots=True)
class Target:
    """Where the client calls and how it reads the answers."""

    name: str
    origin: str  # http://127.0.0.1:PORT
    follow: bool  # go where each <Gather action> points (the hotline), or post the hotline's URLs
    expects: tuple[bytes, ...]  # what each of the call's WEBHOOKS_PER_CALL answers must contain
    steps: int = len(CALL)  # CALL's webhooks a call makes before it hangs up (the status follows)


def webhook_path(index: int) -> str:
    """The URL path of webhook `index` of a call, as the hotline names its steps."""
    if index == 0:
        return "/voice"
    return STATUS_PATH if index == len(CALL) else f"/voice/in/{index}"


def hotline_target(origin: str) -> Target:
    """The hotline: follow its actions, expect each step's prompt, then an empty TwiML."""
    return Target("hotline", origin, True, (*(s.expect.encode() for s in CALL), b"<Response"))


def baseline_target(origin: str) -> Target:
    """The floor: the same URLs as a hotline call, always the one fixed document."""
    return Target("baseline", origin, False, (baseline.SAY.encode(),) * WEBHOOKS_PER_CALL)


# ---- the client ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    """One request of a call, to be signed and posted."""

    index: int  # which webhook of the call (WEBHOOK_NAMES)
    url: str
    form: dict[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the server answered, as far as the client looks."""

    status: int
    kind: str  # Content-Type
    content: bytes


@dataclass(slots=True)
class Tally:
    """What one or more simulated callers saw (times are time.monotonic(), the same in every
    process on Linux)."""

    ends: list[float] = field(default_factory=list)  # when each webhook's answer had arrived
    latencies: list[float] = field(default_factory=list)  # seconds, request sent -> answer read
    indexes: list[int] = field(default_factory=list)  # which webhook of its call each one was
    call_ends: list[float] = field(default_factory=list)  # when each whole call was done
    failures: int = 0
    samples: list[str] = field(default_factory=list)

    def fail(self, why: str) -> None:
        self.failures += 1
        if len(self.samples) < FAILURE_SAMPLES:
            self.samples.append(why)

    def add(self, other: Tally) -> None:
        self.ends += other.ends
        self.latencies += other.latencies
        self.indexes += other.indexes
        self.call_ends += other.call_ends
        self.failures += other.failures
        self.samples += other.samples[: FAILURE_SAMPLES - len(self.samples)]

    def check(
        self, target: Target, webhook: Webhook, answer: Answer, started: float
    ) -> bytes | None:
        """The answer's content if it is right (200, TwiML, the expected prompt), its latency
        counted; None if not, counted as a failure."""
        ended = time.monotonic()
        where = f"webhook {webhook.index} {webhook.url}"
        if answer.status != 200 or not answer.kind.startswith("text/xml"):
            self.fail(f"{where}: {answer.status} {answer.kind}")
            return None
        if target.expects[webhook.index] not in answer.content:
            expected = target.expects[webhook.index].decode()
            text = answer.content.decode("utf-8", "replace")[:300]
            self.fail(f"{where}: no {expected!r} in {text}")
            return None
        self.ends.append(ended)
        self.latencies.append(ended - started)
        self.indexes.append(webhook.index)
        return answer.content


def call_params(account_sid: str, call_sid: str) -> dict[str, str]:
    """The parameters Twilio sends with every request of an inbound call (ivr/phone.py)."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": "+8612333",
        "Caller": "+8613800138000",
        "Direction": "inbound",
        "From": "+8613800138000",
        "To": "+8612333",
        **{name: "" for name in GEO_FIELDS},
    }


def signed_headers(token: str, webhook: Webhook) -> dict[str, str]:
    """The headers Twilio sends with a webhook, the signature over its exact URL and form."""
    return {
        "Content-Type": FORM_TYPE,
        "User-Agent": "TwilioProxy/1.1",
        "Accept": "*/*",
        "X-Twilio-Signature": sign(token, webhook.url, webhook.form),
        "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
    }


def whole_call(
    target: Target, account_sid: str, tally: Tally, hang_up: Callable[[], bool] = lambda: False
) -> Generator[Webhook, bytes | None, bool]:
    """One whole call, without the I/O: yields each webhook to post and is sent back its
    checked answer (None: the webhook failed); returns whether the call completed, every
    webhook answered. The caller hangs up when `hang_up()` is true where it would key; a
    failed webhook, or a <Gather action> missing or leading elsewhere (counted in `tally`),
    ends the call as Twilio ends it. The status callback follows in every case, as Twilio's
    does: the hotline's state for the call is let go of then, not kept until it expires."""
    params = call_params(account_sid, new_sid("CA"))
    keyed = yield from _steps(target, params, tally, hang_up)
    status = params | {
        "CallStatus": "completed",
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "0",
        "Timestamp": format_datetime(datetime.now(UTC)),
        "CallDuration": "95",
        "Duration": "2",
    }
    if (yield Webhook(len(CALL), target.origin + STATUS_PATH, status)) is None or not keyed:
        return False
    tally.call_ends.append(time.monotonic())
    return True


def _steps(
    target: Target, params: dict[str, str], tally: Tally, hang_up: Callable[[], bool]
) -> Generator[Webhook, bytes | None, bool]:
    """The call's webhooks before its status callback (whole_call); False once one fails."""
    url = target.origin + webhook_path(0)
    for i, step in enumerate(CALL[: target.steps]):
        if i and hang_up():
            break
        answer = yield Webhook(i, url, params | step.form())
        if answer is None:
            return False
        action = _ACTION.search(answer)
        if action is None:
            tally.fail(f"webhook {i} {url}: no <Gather action> in the answer")
            return False
        if target.follow:
            url = urljoin(url, html.unescape(action.group(1).decode()))
        else:
            url = target.origin + webhook_path(i + 1)
        if not url.startswith(target.origin + "/"):
            tally.fail(f"webhook {i}: the action leads off the server: {url}")
            return False
    return True


class Pacer:
    """Spaces one caller's webhooks `interval` seconds apart on a fixed schedule (a late send
    is made at once and the schedule kept, so the mean rate holds)."""

    def __init__(self, first: float, interval: float) -> None:
        self.next = first
        self.interval = interval

    def wait(self) -> None:
        delay = self.next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next += self.interval


class Caller:
    """One simulated caller: Twilio's side of whole calls, on its own keep-alive connection."""

    def __init__(self, target: Target, token: str, pacer: Pacer | None = None) -> None:
        self.target = target
        self.token = token
        self.pacer = pacer
        self.tally = Tally()
        host = target.origin.removeprefix("http://")
        self.conn = http.client.HTTPConnection(host, timeout=HTTP_TIMEOUT)
        self.account_sid = new_sid("AC")

    def call(self) -> None:
        """One whole call; a failed webhook is counted and ends the call."""
        plan = whole_call(self.target, self.account_sid, self.tally)
        with contextlib.suppress(StopIteration):
            webhook = next(plan)
            while True:
                webhook = plan.send(self._post(webhook))

    def _post(self, webhook: Webhook) -> bytes | None:
        """Post one signed webhook; its answer, or None (counted as a failure)."""
        if self.pacer is not None:
            self.pacer.wait()
        headers = signed_headers(self.token, webhook)
        body = urlencode(webhook.form)
        started = time.monotonic()
        try:
            self.conn.request("POST", webhook.url.removeprefix(self.target.origin), body, headers)
            response = self.conn.getresponse()
            content = response.read()  # reading to the end closes a `Connection: close` socket
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.tally.fail(f"webhook {webhook.index} {webhook.url}: {type(exc).__name__}: {exc}")
            return None
        answer = Answer(response.status, response.getheader("Content-Type", ""), content)
        return self.tally.check(self.target, webhook, answer, started)


@dataclass(frozen=True, slots=True)
class Job:
    """One client process's share of a phase."""

    target: Target
    token: str
    callers: tuple[int, ...]  # this process's callers, numbered over all processes
    total_callers: int
    seconds: float
    calls: int | None  # calls over all callers, or None: call for `seconds`
    rate: float | None  # webhooks/s over all callers, or None: each answer at once is followed up


@dataclass(slots=True)
class ClientReport:
    """What a client process sends back."""

    tally: Tally
    warmup: Tally  # the unmeasured first call of each caller
    cpu_seconds: float  # user + system of the process (all its threads, and children) for the run


def _own_cpu() -> float:
    """User + system CPU seconds of this process (every thread) and its waited-for children."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )


def _in_threads(callers: Sequence[Caller], work: Callable[[int, Caller], None]) -> None:
    threads = [
        threading.Thread(target=work, args=(i, c), daemon=True) for i, c in enumerate(callers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _share(total: int, index: int, parts: int) -> int:
    """Part `index` of `total` split as evenly as possible into `parts`."""
    return total // parts + (1 if index < total % parts else 0)


def _deal(total: int, parts: int) -> list[tuple[int, ...]]:
    """0 .. total-1 dealt out in turn to `parts` hands (the callers of each client process)."""
    return [tuple(range(total))[p::parts] for p in range(parts)]


@contextmanager
def _warming_up(ready: Barrier) -> Iterator[None]:
    """A client process's warm-up: if it fails, the parent sees a broken barrier at once
    instead of waiting for it."""
    try:
        yield
    except BaseException:
        ready.abort()
        raise


def _ready_and_go(ready: Barrier, go: Event) -> bool:
    """Report ready, then wait for the parent's start (False: it never came)."""
    ready.wait(READY_TIMEOUT)
    return go.wait(READY_TIMEOUT)


def client_process(
    job: Job, ready: Barrier, go: Event, start: Synchronized[float], out: Queue[ClientReport]
) -> None:
    """A client process: warm up (one call per caller), wait for the parent's start, run.

    It starts with SIGINT blocked (see `_started`): Ctrl-C is the parent's to handle."""
    with _warming_up(ready):
        callers = [Caller(job.target, job.token) for _ in job.callers]
        # A first call per caller, unmeasured: connects, lets every worker load scripts and open
        # its database pool, and shows a broken setup before the clock starts.
        _in_threads(callers, lambda _, caller: caller.call())
        warmup = Tally()
        for caller in callers:
            warmup.add(caller.tally)
            caller.tally = Tally()
    if not _ready_and_go(ready, go):
        return
    t0 = start.value
    deadline = t0 + job.seconds

    def run(i: int, caller: Caller) -> None:
        number = job.callers[i]
        if job.rate:  # stagger the callers evenly over one interval
            caller.pacer = Pacer(t0 + number / job.rate, job.total_callers / job.rate)
        quota = None if job.calls is None else _share(job.calls, number, job.total_callers)
        time.sleep(max(0.0, t0 - time.monotonic()))
        made = 0
        while (time.monotonic() < deadline) if quota is None else (made < quota):
            caller.call()  # a call under way at the deadline is finished (outside the window)
            made += 1

    cpu = _own_cpu()
    _in_threads(callers, run)
    cpu = _own_cpu() - cpu
    tally = Tally()
    for caller in callers:
        tally.add(caller.tally)
    out.put(ClientReport(tally, warmup, cpu))


# ---- the held-calls client: asyncio, keep-alive connections shared by the calls -----------------


@dataclass(slots=True)
class _Connection:
    """One keep-alive HTTP/1.1 connection of a KeepAlivePool."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def reusable(self, now: float) -> bool:
        """Open, and not idle so long that the server may be closing it right now."""
        fresh = now - self.idle_since < IDLE_SECONDS
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class KeepAlivePool:
    """At most `size` keep-alive HTTP/1.1 connections to one origin, shared by every call of a
    client process as Twilio shares its connections between calls (not one per call: a gthread
    worker holds at most 1000). A request waits for a free connection while all are busy; the
    most recently used is taken first, so the others can idle out.

    Plain asyncio streams and a few lines of HTTP/1.1 instead of an HTTP library: about a third
    less client CPU per webhook than aiohttp, on the two cores the servers share. The answers
    are framed by Content-Length (gunicorn's), chunked encoding, or the end of the connection;
    any error closes the connection (the caller counts it)."""

    def __init__(self, origin: str, size: int) -> None:
        self.netloc = origin.removeprefix("http://")
        host, _, port = self.netloc.rpartition(":")
        self.address = (host, int(port))
        self.slots = asyncio.Semaphore(size)
        self.idle: list[_Connection] = []  # the most recently used last
        self.opened = 0

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST `body` to `path` and read the whole answer; raises OSError, EOFError,
        ValueError or asyncio.LimitOverrunError when the exchange fails."""
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head = f"POST {path} HTTP/1.1\r\nHost: {self.netloc}\r\n{lines}"
        request = f"{head}Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body
        async with self.slots:
            conn = await self._take()
            try:
                answer, keep = await _exchange(conn.reader, conn.writer, request)
            except BaseException:  # a timeout (cancelled) too: the connection's state is unknown
                conn.close()
                raise
            if keep:
                conn.idle_since = time.monotonic()
                self.idle.append(conn)
            else:
                conn.close()
            return answer

    async def _take(self) -> _Connection:
        """A reusable idle connection, or a new one."""
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()
            if conn.reusable(now):
                return conn
            conn.close()
        reader, writer = await asyncio.open_connection(*self.address)
        self.opened += 1
        return _Connection(reader, writer)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[Answer, bool]:
    """Send one request and read its answer; (the answer, whether the connection stays open)."""
    writer.write(request)
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *header_lines = head.removesuffix("\r\n\r\n").split("\r\n")
    version, status, *_ = status_line.split(" ", 2)
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    code = int(status)
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if code < 200 or code in (204, 304):
        content = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        content = await _read_chunked(reader)
    elif "content-length" in headers:
        content = await reader.readexactly(int(headers["content-length"]))
    else:  # the answer ends with the connection
        content, keep = await reader.read(), False
    return Answer(code, headers.get("content-type", ""), content), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A body in chunked transfer encoding (trailers read and dropped)."""
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the CRLF after the chunk
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass
    return b"".join(chunks)


class HumanCaller:
    """Twilio's side of whole calls for the held-calls phase: any number at once in one event
    loop, their webhooks on the process's KeepAlivePool, each webhook after a call's first one
    sent a uniform random `pause` after the previous answer (a person listening, then keying or
    hanging up). A call counts in `up` from its first answer to its end."""

    def __init__(
        self,
        target: Target,
        token: str,
        pool: KeepAlivePool,
        tally: Tally,
        *,
        pause: tuple[float, float] = (0.0, 0.0),
        hang_up: Callable[[], bool] = lambda: False,
        up: Synchronized[int] | None = None,
    ) -> None:
        self.target = target
        self.token = token
        self.pool = pool
        self.tally = tally
        self.pause = pause
        self.hang_up = hang_up
        self.up = up
        self.account_sid = new_sid("AC")

    async def call(self) -> bool:
        """One whole call (or until `hang_up()`); whether it completed without a failure."""
        plan = whole_call(self.target, self.account_sid, self.tally, self.hang_up)
        webhook = next(plan)
        counted = False
        try:
            while True:
                answer = await self._post(webhook)
                if answer is not None and webhook.index == 0 and self.up is not None:
                    self.up.value += 1
                    counted = True
                if answer is not None and webhook.index < len(CALL):
                    await self.wait()
                try:
                    webhook = plan.send(answer)
                except StopIteration as done:
                    return bool(done.value)
        finally:
            if counted and self.up is not None:
                self.up.value -= 1

    async def wait(self) -> None:
        """As long as a person takes to listen and key."""
        if self.pause[1] > 0:
            await asyncio.sleep(random.uniform(*self.pause))

    async def _post(self, webhook: Webhook) -> bytes | None:
        """Post one signed webhook, waiting for a free connection first; its answer, or None
        (counted as a failure). The latency runs from the webhook being due to its answer."""
        headers = signed_headers(self.token, webhook)
        body = urlencode(webhook.form).encode()
        started = time.monotonic()
        try:
            async with asyncio.timeout(HTTP_TIMEOUT):
                path = webhook.url.removeprefix(self.target.origin)
                answer = await self.pool.post(path, body, headers)
        except (OSError, EOFError, ValueError, asyncio.LimitOverrunError) as exc:
            if isinstance(exc, TimeoutError):
                why = f"no answer within {HTTP_TIMEOUT:g} s"
            else:
                why = f"{type(exc).__name__}: {exc}"
            self.tally.fail(f"webhook {webhook.index} {webhook.url}: {why}")
            return None
        return self.tally.check(self.target, webhook, answer, started)


@dataclass(frozen=True, slots=True)
class HeldJob:
    """One client process's share of the held-calls phase."""

    target: Target
    token: str
    lines: tuple[int, ...]  # this process's lines, numbered over all processes
    total_lines: int
    pool: int  # keep-alive connections


@dataclass(slots=True)
class HeldReport:
    """What a held-calls client process sends back (its CPU is read from /proc by the parent,
    over the measured window alone)."""

    tally: Tally
    warmup: Tally  # `pool` unpaced calls at once, before the start
    connections: int  # opened over the phase, warm-up included


def held_process(
    job: HeldJob,
    ready: Barrier,
    go: Event,
    start: Synchronized[float],
    deadline: Synchronized[float],
    up: Synchronized[int],
    out: Queue[HeldReport],
) -> None:
    """A held-calls client process: warm up, wait for the parent's start, then keep one call
    up on each of its lines until the parent's `deadline` (inf until the window is known).

    It starts with SIGINT blocked (see `_started`): Ctrl-C is the parent's to handle."""
    asyncio.run(_held_client(job, ready, go, start, deadline, up, out))


async def _held_client(
    job: HeldJob,
    ready: Barrier,
    go: Event,
    start: Synchronized[float],
    deadline: Synchronized[float],
    up: Synchronized[int],
    out: Queue[HeldReport],
) -> None:
    pool = KeepAlivePool(job.target.origin, job.pool)
    try:
        warmup = Tally()
        with _warming_up(ready):
            # As many unpaced calls at once as there are connections: opens them, lets every
            # worker thread load scripts and its database pool, and shows a broken setup.
            caller = HumanCaller(job.target, job.token, pool, warmup)
            await asyncio.gather(*(caller.call() for _ in range(job.pool)))
        if not await asyncio.to_thread(_ready_and_go, ready, go):
            return
        tally = Tally()

        def over() -> bool:
            return time.monotonic() >= deadline.value

        caller = HumanCaller(
            job.target, job.token, pool, tally, pause=KEY_PAUSE, hang_up=over, up=up
        )
        first = start.value
        await asyncio.gather(
            *(_line(caller, first + RAMP_SECONDS * n / job.total_lines, over) for n in job.lines)
        )
        out.put(HeldReport(tally, warmup, pool.opened))
    finally:
        pool.close()


async def _line(caller: HumanCaller, first: float, over: Callable[[], bool]) -> None:
    """One line: whole calls back to back from `first` on, each ringing in as soon as the one
    before has hung up, until `over()`; after a failed call, the pause of a key first (a
    failing server is not called in a tight loop)."""
    await asyncio.sleep(max(0.0, first - time.monotonic()))
    while not over():
        if not await caller.call():
            await caller.wait()


# ---- what the parent watches: CPU from /proc, Redis's own counters ------------------------------


def _proc_ticks(pid: int) -> int | None:
    """utime + stime of a process (all its threads) in clock ticks, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


@dataclass(frozen=True, slots=True)
class RedisCounters:
    """Redis's own counters at one moment."""

    commands: dict[str, int]  # INFO commandstats: calls per command (scripts' commands included)
    writes: int | None  # INFO stats total_writes_processed: replies written to clients
    connections: int  # INFO clients connected_clients: connections open, ours included


@dataclass(frozen=True, slots=True)
class RedisMemory:
    """What Redis holds at one moment."""

    used: int  # INFO memory used_memory: bytes allocated, data and overhead
    clients: int  # mem_clients_normal, in `used`: the connections' buffers, which come and go
    keys: int  # DBSIZE

    @property
    def data(self) -> int:
        """What the data takes: used_memory less the clients' buffers."""
        return self.used - self.clients


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the parent reads before and after a phase."""

    gunicorn: dict[int, int]  # pid -> CPU ticks, master and workers
    redis_ticks: int | None  # None: Redis runs elsewhere
    redis: RedisCounters
    postgres: dict[int, int] | None  # pid -> CPU ticks of the backends serving the hotline
    machine: tuple[int, int]
    log_size: int


class Watch:
    """Reads the server side: the CPU of gunicorn, Redis and PostgreSQL, Redis's counters, the
    server log."""

    def __init__(
        self, master: int, log: Path, backends: Backends, inside: Path | None = None
    ) -> None:  # fmt: skip
        self.master = master
        self.log = log
        self.inside = inside  # where the workers write their parts' times (--inside), or None
        # Connections of our own, made now: their setup commands fall before any snapshot.
        self.redis = store.connect(backends.redis_url, 5.0)
        server = _info(self.redis, "server")
        pids = server.get("process_ids", [server.get("process_id")])
        # Redis's processes on this machine (one, or a cluster's nodes); none: it runs elsewhere
        self.redis_pids = [p for p in pids if isinstance(p, int) and _runs(p, b"redis-server")]
        self.own_info = len(pids)  # INFO commands one snapshot sends (one per cluster node)
        self.database = backends.database
        self.postgres = make_engine(self.database.watch_url) if self.database.watch_url else None

    def snapshot(self) -> Snapshot:
        pids = [self.master, *_children(self.master)]
        info = _info(self.redis, "all")  # one INFO command (per node): OWN_INFO_CALLS
        commands = {
            key.removeprefix("cmdstat_"): int(value["calls"])
            for key, value in info.items()
            if key.startswith("cmdstat_")
        }
        writes = info.get("total_writes_processed")
        return Snapshot(
            gunicorn=_ticks(pids),
            redis_ticks=_sum_ticks(self.redis_pids),
            redis=RedisCounters(
                commands,
                int(writes) if writes is not None else None,
                int(info.get("connected_clients", 0)),
            ),
            postgres=None if self.postgres is None else _ticks(self._backends(), b"postgres"),
            machine=_machine_ticks(),
            log_size=self.log.stat().st_size,
        )

    def memory(self) -> RedisMemory:
        """Redis's memory and keys. Two commands of ours: not to be read between snapshots."""
        info = _info(self.redis, "memory")
        used, clients = info.get("used_memory", 0), info.get("mem_clients_normal", 0)
        return RedisMemory(int(used), int(clients), int(self.redis.dbsize()))

    def _backends(self) -> list[int]:
        """The PostgreSQL server processes serving the hotline's connections."""
        assert self.postgres is not None
        query = sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
        with self.postgres.connect() as conn:
            return list(conn.scalars(query, {"name": self.database.application_name}))

    def close(self) -> None:
        self.redis.close()
        if self.postgres is not None:
            self.postgres.dispose()


def _sum_ticks(pids: Sequence[int]) -> int | None:
    """CPU ticks of Redis's processes together; None when none runs on this machine."""
    return sum(_proc_ticks(pid) or 0 for pid in pids) if pids else None


def _info(client: redis.Redis, section: str) -> dict[str, Any]:
    """INFO of the Redis server; of a Redis Cluster, of every node, the counters added up and
    the nodes' process ids in `process_ids`."""
    if not hasattr(client, "get_nodes"):  # one server
        return dict(client.info(section))
    from redis.cluster import RedisCluster

    info = client.info(section, target_nodes=RedisCluster.ALL_NODES)
    nodes = [v for v in info.values() if isinstance(v, dict)]
    summed: dict[str, Any] = {"process_ids": [node.get("process_id") for node in nodes]}
    for node in nodes:
        summed.setdefault("redis_version", node.get("redis_version"))
        for key, value in node.items():
            if key.startswith("cmdstat_"):
                calls = summed.setdefault(key, {"calls": 0})
                calls["calls"] += int(value["calls"])
            elif key in ("total_writes_processed", "used_memory", "mem_clients_normal",
                         "connected_clients"):  # fmt: skip
                summed[key] = summed.get(key, 0) + int(value)
    return summed


def _runs(pid: int, program: bytes) -> bool:
    """Whether process `pid` of this machine runs `program` (a server elsewhere has other pids)."""
    try:
        return program in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def _ticks(pids: Sequence[int], program: bytes | None = None) -> dict[int, int]:
    """pid -> CPU ticks of those processes still running (and running `program`, if given)."""
    found = {pid: _proc_ticks(pid) for pid in pids if program is None or _runs(pid, program)}
    return {pid: ticks for pid, ticks in found.items() if ticks is not None}


# ---- one phase ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Phase:
    """One measured phase: raw counts; figures are derived in `figures()`."""

    name: str
    callers: int
    window: float  # seconds the rates are counted over: --seconds, or the whole --calls run
    elapsed: float  # start -> last client done (calls under way at the deadline finished)
    target_rate: float | None  # paced webhooks/s, or None for full speed
    webhooks: int  # answered inside the window
    calls: int  # completed inside the window
    webhooks_all: int  # answered during the phase, the window and the calls finished after it
    failures: int
    failure_samples: list[str]
    warmup_failures: int
    latencies_ms: dict[str, float | None]
    latencies_by_webhook_ms: dict[str, dict[str, float | None]]  # by WEBHOOK_NAMES
    latencies_no_service_ms: dict[str, float | None]  # webhooks not in SERVICE_WEBHOOKS
    latencies_service_ms: dict[str, float | None]  # webhooks in SERVICE_WEBHOOKS
    client_cpu: float
    gunicorn_cpu: float  # CPU seconds: master and workers
    redis_cpu: float | None  # None: Redis runs on another machine
    postgres_cpu: float | None  # the backends serving the hotline; None: SQLite (in gunicorn)
    machine_busy: float  # CPU seconds busy on the whole machine
    redis_round_trips: int | None  # None: a Redis without total_writes_processed (< 6.0)
    redis_commands: int
    redis_by_command: dict[str, int]
    redis_connections: int  # the hotline's, open at the window's end
    server_log: list[str]
    workers_restarted: bool
    inside: dict[str, dict[str, float]]  # --inside: by part of a webhook, its times, in ms

    def figures(self) -> dict[str, float | None]:
        """The printed figures, by name (None: not measured)."""
        served = max(self.webhooks_all, 1)

        def per_webhook(amount: float | None, scale: float = 1.0) -> float | None:
            return None if amount is None else scale * amount / served

        server = self.gunicorn_cpu + (self.redis_cpu or 0.0) + (self.postgres_cpu or 0.0)
        other = self.machine_busy - server - self.client_cpu
        return {
            "webhooks/s": self.webhooks / self.window,
            "calls/s": self.calls / self.window,
            **{f"latency {k} ms": v for k, v in self.latencies_ms.items()},
            "  no service call p99 ms": self.latencies_no_service_ms["p99"],
            "  service call p99 ms": self.latencies_service_ms["p99"],
            "failures": float(self.failures + self.warmup_failures),
            "client CPU s": self.client_cpu,
            "client CPU % of elapsed": 100 * self.client_cpu / self.elapsed,
            "client CPU ms/webhook": per_webhook(self.client_cpu, 1000),
            "server CPU ms/webhook": per_webhook(server, 1000),
            "  gunicorn ms/webhook": per_webhook(self.gunicorn_cpu, 1000),
            "  redis ms/webhook": per_webhook(self.redis_cpu, 1000),
            "  postgres ms/webhook": per_webhook(self.postgres_cpu, 1000),
            "redis round trips/webhook": per_webhook(self.redis_round_trips),
            "redis commands/webhook": per_webhook(self.redis_commands),
            "redis connections at the end": float(self.redis_connections),
            "machine CPU busy %": 100 * self.machine_busy / self.elapsed,
            "  rest of the machine %": 100 * other / self.elapsed,
        }

    def verdict(self) -> str | None:
        """How the phase fares against a target it has (None: it has none)."""
        return None


def percentiles(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 (nearest rank) and max, in milliseconds (None without any)."""
    ordered = sorted(seconds)
    ranks = {"p50": 0.50, "p90": 0.90, "p99": 0.99, "max": 1.0}
    return {
        name: 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)] if ordered else None
        for name, q in ranks.items()
    }


# ---- --inside: times inside the workers -----------------------------------------------------


def inside_times(folder: Path | None, start: float, end: float) -> dict[str, dict[str, float]]:
    """--inside: the times the workers wrote (bench/inside_conf.py) of the webhooks that started
    between `start` and `end` and of their parts, by part (whole webhooks first, by their names
    in the call): how many, and wall and CPU p50, p99 and mean in ms. {} without --inside."""
    if folder is None:
        return {}
    time.sleep(2 * inside_conf.FLUSH_SECONDS)  # until the workers' last rows are written
    routes = {webhook_path(i): name for i, name in enumerate(WEBHOOK_NAMES)}
    walls: dict[str, list[float]] = collections.defaultdict(list)
    cpus: dict[str, list[float]] = collections.defaultdict(list)
    for path in folder.glob("inside-*.tsv"):
        with path.open() as rows:
            for row in rows:
                label, started, wall, cpu = row.rstrip("\n").split("\t")
                if start <= float(started) <= end:
                    if label.startswith("route "):
                        label = f"webhook {routes.get(label[6:], label[6:])}"
                    walls[label].append(float(wall))
                    cpus[label].append(float(cpu))
    order = [f"webhook {name}" for name in WEBHOOK_NAMES] + list(sections.LABELS)
    labels = [label for label in order if label in walls] + sorted(set(walls) - set(order))
    times: dict[str, dict[str, float]] = {}
    for label in labels:
        of_wall, of_cpu = percentiles(walls[label]), percentiles(cpus[label])
        times[label] = {
            "count": len(walls[label]),
            **{f"wall {q}": of_wall[q] or 0.0 for q in ("p50", "p99")},
            "wall mean": 1000 * math.fsum(walls[label]) / len(walls[label]),
            **{f"cpu {q}": of_cpu[q] or 0.0 for q in ("p50", "p99")},
            "cpu mean": 1000 * math.fsum(cpus[label]) / len(cpus[label]),
        }
    return times


def _describe_inside(times: Mapping[str, Mapping[str, float]]) -> None:
    webhooks = sum(t["count"] for label, t in times.items() if label.startswith("webhook ")) or 1
    print("    inside the workers (--inside), ms: wall p50/p99/mean, CPU of its thread "
          "p50/p99/mean (a gevent worker's one thread: the other greenlets' CPU meanwhile "
          "counts too), how many per webhook")  # fmt: skip
    for label, t in times.items():
        print(f"      {t['wall p50']:6.2f} {t['wall p99']:7.2f} {t['wall mean']:6.2f} | "
              f"{t['cpu p50']:5.2f} {t['cpu p99']:5.2f} {t['cpu mean']:5.2f} | "
              f"{t['count'] / webhooks:4.2f}  {label}")  # fmt: skip


class Latencies(TypedDict):
    """A phase's latency fields."""

    latencies_ms: dict[str, float | None]
    latencies_by_webhook_ms: dict[str, dict[str, float | None]]
    latencies_no_service_ms: dict[str, float | None]
    latencies_service_ms: dict[str, float | None]


def _latencies(tally: Tally, kept: Sequence[int]) -> Latencies:
    """The latencies of the webhooks `kept` (positions in `tally`): all, by webhook of the
    call, and apart for those that call the account service and those that do not."""

    def of(webhooks: Container[int]) -> dict[str, float | None]:
        return percentiles([tally.latencies[i] for i in kept if tally.indexes[i] in webhooks])

    every = range(WEBHOOKS_PER_CALL)
    return Latencies(
        latencies_ms=of(every),
        latencies_by_webhook_ms={label: of((n,)) for n, label in enumerate(WEBHOOK_NAMES)},
        latencies_no_service_ms=of([n for n in every if n not in SERVICE_WEBHOOKS]),
        latencies_service_ms=of(SERVICE_WEBHOOKS),
    )


class ServerCounts(TypedDict):
    """A phase's fields read from the server side, between two snapshots."""

    gunicorn_cpu: float
    redis_cpu: float | None
    postgres_cpu: float | None
    machine_busy: float
    redis_round_trips: int | None
    redis_commands: int
    redis_by_command: dict[str, int]
    redis_connections: int
    workers_restarted: bool


def _server_counts(before: Snapshot, after: Snapshot, own_info: int) -> ServerCounts:
    """What the servers did between two snapshots."""
    trips, commands, by_command = _redis_delta(before.redis, after.redis, own_info)
    return ServerCounts(
        gunicorn_cpu=_ticks_delta(before.gunicorn, after.gunicorn) / CLK_TCK,
        redis_cpu=_cpu(before.redis_ticks, after.redis_ticks),
        postgres_cpu=_cpu(before.postgres, after.postgres),
        machine_busy=(after.machine[0] - before.machine[0]) / CLK_TCK,
        redis_round_trips=trips,
        redis_commands=commands,
        redis_by_command=by_command,
        redis_connections=after.redis.connections - own_info,  # (ours: one a node)
        workers_restarted=not set(before.gunicorn) <= set(after.gunicorn),
    )


@contextmanager
def _started(processes: Sequence[BaseProcess]) -> Iterator[None]:
    """Start the client processes; on the way out, let them end (a few seconds) after a phase
    that went well, stop them at once after an error or Ctrl-C.

    Ctrl-C reaches the whole process group. The clients inherit a blocked SIGINT, so they
    never see it (not even while importing) and the parent stops them in order."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        for process in processes:
            process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    ended = False
    try:
        yield
        ended = True
    finally:
        for process in processes:
            process.join(timeout=5 if ended else 0)
            if process.is_alive():
                process.terminate()
                process.join()


def _wait_ready(ready: Barrier, name: str) -> None:
    """Until every client process has warmed up."""
    try:
        ready.wait(READY_TIMEOUT)
    except threading.BrokenBarrierError:
        raise RuntimeError(f"{name}: a client process failed while warming up") from None


def run_phase(
    name: str,
    target: Target,
    token: str,
    opts: argparse.Namespace,
    watch: Watch,
    rate: float | None = None,
) -> Phase:
    """Warm up, snapshot, run the client processes, snapshot; the phase's counts."""
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing of the parent's state is shared
    procs = max(1, min(opts.client_procs, opts.callers))
    ready, go = ctx.Barrier(procs + 1), ctx.Event()
    start, out = ctx.Value("d", 0.0), ctx.Queue()
    seconds = opts.seconds if opts.calls is None or rate else math.inf
    calls = None if rate else opts.calls
    processes = [
        ctx.Process(
            target=client_process,
            name=f"bench-client-{p}",
            daemon=True,
            args=(
                Job(target, token, numbers, opts.callers, seconds, calls, rate),
                ready,
                go,
                start,
                out,
            ),
        )
        for p, numbers in enumerate(_deal(opts.callers, procs))
    ]
    with _started(processes):
        _wait_ready(ready, name)
        before = watch.snapshot()
        t0 = time.monotonic() + 0.05  # every caller starts at t0
        start.value = t0
        go.set()
        limit = t0 + (COUNT_TIMEOUT if calls is not None else seconds + DRAIN_TIMEOUT)
        reports = [_report(out, processes, limit, name) for _ in processes]
        finished = time.monotonic()
        after = watch.snapshot()
    tally, warmup = Tally(), Tally()
    for report in reports:
        tally.add(report.tally)
        warmup.add(report.warmup)
    window = seconds if calls is None else finished - t0
    in_window = [i for i, end in enumerate(tally.ends) if end <= t0 + window]
    return Phase(
        name=name,
        callers=opts.callers,
        window=window,
        elapsed=finished - t0,
        target_rate=rate,
        webhooks=len(in_window),
        calls=sum(1 for end in tally.call_ends if end <= t0 + window),
        webhooks_all=len(tally.ends),
        failures=tally.failures,
        failure_samples=[f"warm-up: {s}" for s in warmup.samples] + tally.samples,
        warmup_failures=warmup.failures,
        client_cpu=sum(r.cpu_seconds for r in reports),
        server_log=_new_lines(watch.log, before.log_size),
        **_latencies(tally, in_window),
        **_server_counts(before, after, watch.own_info),
        inside=inside_times(watch.inside, t0, t0 + window),
    )


def _ticks_delta(before: Mapping[int, int], after: Mapping[int, int]) -> int:
    """CPU ticks the processes used in between; a process started since counts from zero."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def _cpu(
    before: int | Mapping[int, int] | None, after: int | Mapping[int, int] | None
) -> float | None:
    """CPU seconds between two readings of a process (ticks) or of processes (pid -> ticks)."""
    if isinstance(before, int) and isinstance(after, int):
        return (after - before) / CLK_TCK
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        return _ticks_delta(before, after) / CLK_TCK
    return None


def _report(out: Queue[_R], processes: Sequence[BaseProcess], limit: float, name: str) -> _R:
    """The next client report; an error if the clients died or overran the phase's limit."""
    while time.monotonic() < limit:
        with contextlib.suppress(queue.Empty):
            return out.get(timeout=1)
        if not any(p.is_alive() for p in processes) and out.empty():
            raise RuntimeError(f"{name}: a client process died without a report")
    raise RuntimeError(f"{name}: the clients did not finish in time")


def _redis_delta(
    before: RedisCounters, after: RedisCounters, own_info: int = OWN_INFO_CALLS
) -> tuple[int | None, int, dict[str, int]]:
    """(round trips, commands, commands by name) between two readings, our INFO taken out."""
    by_command = {
        name: calls - before.commands.get(name, 0) for name, calls in after.commands.items()
    }
    by_command["info"] = by_command.get("info", 0) - own_info
    by_command = {name: n for name, n in sorted(by_command.items()) if n}
    trips = None
    if after.writes is not None and before.writes is not None:
        trips = after.writes - before.writes - own_info
    return trips, sum(by_command.values()), by_command


def _new_lines(log: Path, offset: int) -> list[str]:
    with open(log, "rb") as f:
        f.seek(offset)
        return [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]


# ---- the held-calls phase -----------------------------------------------------------------------


@dataclass(slots=True)
class HeldPhase(Phase):
    """The held-calls phase: a Phase counted over its measured window (every call up; the ramp
    and the hang-ups after it are outside), and what holding the calls costs Redis."""

    hold_seconds: float  # asked for
    ramp: float  # seconds from the first call ringing in until every line's call was up
    held: list[int]  # calls up, counted every SAMPLE_SECONDS over the window
    pool: int  # keep-alive connections per client process, at most
    connections: int  # keep-alive connections the clients opened over the phase
    memory_before: RedisMemory  # after the warm-up, before the first call rang in
    memory_up: RedisMemory  # as soon as every call was up (each in its first steps)
    memory_end: RedisMemory  # at the window's end
    calls_ended: int  # completed by then: their state is kept store.ENDED_TTL seconds

    def figures(self) -> dict[str, float | None]:
        lines = max(self.callers, 1)

        def per_call(now: RedisMemory, kb: bool) -> float:
            if kb:
                return (now.data - self.memory_before.data) / lines / 1024
            return (now.keys - self.memory_before.keys) / lines

        return {
            **Phase.figures(self),  # (no bare super() in a slots dataclass)
            "held calls min": float(min(self.held)) if self.held else None,
            "held calls mean": sum(self.held) / len(self.held) if self.held else None,
            "ramp s (until all up)": self.ramp,
            "client connections opened": float(self.connections),
            "redis KB/held call": per_call(self.memory_up, kb=True),
            "redis keys/held call": per_call(self.memory_up, kb=False),
            "  at the end KB/held call": per_call(self.memory_end, kb=True),
            "  at the end keys/held call": per_call(self.memory_end, kb=False),
        }

    def verdict(self) -> str:
        failed = self.failures + self.warmup_failures
        p99 = self.latencies_ms["p99"]
        faults = [f"{failed} failed webhooks"] if failed else []
        if p99 is None or p99 > HELD_P99_MS:
            faults.append(f"p99 {_ms(p99)} ms")
        short = self.callers < HELD_TARGET_CALLS or self.hold_seconds < HELD_TARGET_SECONDS
        scale = f" (the target's scale is {HELD_TARGET_CALLS} for {HELD_TARGET_SECONDS:g} s)"
        return (
            f"target: 0 failed webhooks and p99 <= {HELD_P99_MS:g} ms with {self.callers} "
            f"calls held {self.hold_seconds:g} s{scale if short else ''}: "
            + (f"FAIL ({', '.join(faults)})" if faults else "PASS")
        )


def _write_trace(path: Path, tally: Tally, in_window: Sequence[int], start_at: float) -> None:
    """Every webhook answered in the window, in the order answered: when its answer arrived
    (seconds into the window), its latency (ms) and which webhook of its call it was."""
    rows = sorted((tally.ends[i] - start_at, tally.latencies[i] * 1000, tally.indexes[i])
                  for i in in_window)  # fmt: skip
    with path.open("w") as out:
        out.write("answered_s,latency_ms,webhook\n")
        out.writelines(f"{end:.4f},{ms:.2f},{index}\n" for end, ms, index in rows)


def run_held(
    name: str, target: Target, token: str, opts: argparse.Namespace, watch: Watch
) -> HeldPhase:
    """Warm up; ring in every line's first call, spread over RAMP_SECONDS; from the moment all
    are up, measure --hold-seconds (the servers' and the clients' CPU and Redis's counters at
    both ends, Redis's memory, the calls up every SAMPLE_SECONDS); then every caller hangs up
    where it would key next. The phase's counts."""
    ctx = mp.get_context("spawn")
    lines = opts.held
    procs = max(1, min(opts.client_procs, lines))
    ready, go = ctx.Barrier(procs + 1), ctx.Event()
    start, deadline = ctx.Value("d", 0.0), ctx.Value("d", math.inf)
    ups = [ctx.Value("i", 0) for _ in range(procs)]
    out: Queue[HeldReport] = ctx.Queue()
    processes = [
        ctx.Process(
            target=held_process,
            name=f"bench-held-{p}",
            daemon=True,
            args=(
                HeldJob(target, token, numbers, lines, opts.pool),
                ready,
                go,
                start,
                deadline,
                ups[p],
                out,
            ),
        )
        for p, numbers in enumerate(_deal(lines, procs))
    ]
    with _started(processes):
        pids = [p.pid for p in processes if p.pid is not None]
        _wait_ready(ready, name)
        memory_before, log_size = watch.memory(), watch.log.stat().st_size
        t0 = time.monotonic() + 0.05  # the first line's first call rings in
        start.value = t0
        go.set()
        all_up = _until_up(ups, lines, processes, t0 + RAMP_SECONDS + HTTP_TIMEOUT, name)
        memory_up = watch.memory()  # Redis's commands of ours stay outside the snapshots
        clients, before = _ticks(pids), watch.snapshot()
        start_at = time.monotonic()
        deadline.value = start_at + opts.hold_seconds
        held = _count_up(ups, processes, deadline.value, name)
        after, clients_after = watch.snapshot(), _ticks(pids)
        memory_end = watch.memory()
        read_at = time.monotonic()
        reports = [_report(out, processes, read_at + DRAIN_TIMEOUT, name) for _ in processes]
    tally, warmup = Tally(), Tally()
    for report in reports:
        tally.add(report.tally)
        warmup.add(report.warmup)
    end_at = deadline.value
    in_window = [i for i, end in enumerate(tally.ends) if start_at <= end <= end_at]
    if opts.trace:
        _write_trace(opts.trace, tally, in_window, start_at)
    # What the lines offer: a call's webhooks over its pauses (the answers taken as instant).
    offered = lines * WEBHOOKS_PER_CALL / (len(CALL) * sum(KEY_PAUSE) / 2)
    return HeldPhase(
        name=name,
        callers=lines,
        window=end_at - start_at,
        elapsed=end_at - start_at,  # the clients' CPU too is read over the window alone
        target_rate=offered,
        webhooks=len(in_window),
        calls=sum(1 for end in tally.call_ends if start_at <= end <= end_at),
        webhooks_all=len(in_window),  # the server's CPU is read over the window too
        failures=tally.failures,
        failure_samples=[f"warm-up: {s}" for s in warmup.samples] + tally.samples,
        warmup_failures=warmup.failures,
        client_cpu=_ticks_delta(clients, clients_after) / CLK_TCK,
        server_log=_new_lines(watch.log, log_size),
        **_latencies(tally, in_window),
        **_server_counts(before, after, watch.own_info),
        inside=inside_times(watch.inside, start_at, end_at),
        hold_seconds=opts.hold_seconds,
        ramp=all_up - t0,
        held=held,
        pool=opts.pool,
        connections=sum(r.connections for r in reports),
        memory_before=memory_before,
        memory_up=memory_up,
        memory_end=memory_end,
        calls_ended=sum(1 for end in tally.call_ends if end <= read_at),
    )


def _calls_up(ups: Sequence[Synchronized[int]]) -> int:
    return sum(up.value for up in ups)


def _alive(processes: Sequence[BaseProcess], name: str) -> None:
    if not all(process.is_alive() for process in processes):
        raise RuntimeError(f"{name}: a client process died")


def _until_up(
    ups: Sequence[Synchronized[int]],
    lines: int,
    processes: Sequence[BaseProcess],
    limit: float,
    name: str,
) -> float:
    """When every line's call was up (answered), or `limit` if that never came."""
    while _calls_up(ups) < lines and time.monotonic() < limit:
        _alive(processes, name)
        time.sleep(0.01)
    return time.monotonic()


def _count_up(
    ups: Sequence[Synchronized[int]], processes: Sequence[BaseProcess], until: float, name: str
) -> list[int]:
    """The calls up, counted every SAMPLE_SECONDS from now until `until`."""
    counts = []
    due = time.monotonic()
    while due < until:
        time.sleep(max(0.0, due - time.monotonic()))
        _alive(processes, name)
        counts.append(_calls_up(ups))
        due += SAMPLE_SECONDS
    time.sleep(max(0.0, until - time.monotonic()))
    return counts


# ---- the servers --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gunicorn:
    """A running gunicorn: where it answers, its master process and its log."""

    origin: str
    process: subprocess.Popen[bytes]
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def gunicorn(
    app: str, env: Mapping[str, str], folder: Path, workers: int, worker_class: str = "sync",
    threads: int = 1, config: str = "python:ivr.gunicorn_conf",
) -> Iterator[Gunicorn]:  # fmt: skip
    """Serve `app` with the benchmark's gunicorn settings on a free loopback port; stop it after.

    `worker_class` workers (`threads` threads each for gthread), no access log (gunicorn's
    default: no --access-logfile), warnings and errors to a log file of their own. `config`:
    the hotline's own settings (bench/inside_conf.py adds the timing of --inside to them)."""
    port = _free_port()
    log = folder / f"gunicorn-{app.split(':')[0]}-{worker_class}-{port}.log"
    command = [
        str(BIN / "gunicorn"),
        "--config",
        config,  # the hotline's own settings; those below override them
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "30",
        "--log-level",
        "warning",
        "--pythonpath",
        str(BENCH),
        app,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    try:
        origin = f"http://127.0.0.1:{port}"
        _wait_until_answering(origin, process, log)
        yield Gunicorn(origin, process, log)
    finally:
        process.terminate()  # graceful: workers finish the request in hand
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_answering(origin: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until a worker answers a request (any status: the hotline's /healthz is GET only)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        conn = http.client.HTTPConnection(origin.removeprefix("http://"), timeout=2)
        try:
            conn.request("POST", "/healthz", b"", {"Content-Type": FORM_TYPE})
            conn.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            time.sleep(0.1)
        finally:
            conn.close()
    raise RuntimeError(f"gunicorn did not answer within {START_TIMEOUT:.0f} s:\n{log.read_text()}")


@contextmanager
def slow_accounts(backends: Backends, folder: Path, delay_ms: float) -> Iterator[str]:
    """The account service over HTTP, every request held `delay_ms` first (bench/slow_accounts.py,
    many threads: the service itself is never the queue); yields its URL for ACCOUNTS_URL."""
    env = backends.env | {"BENCH_ACCOUNTS_DELAY_MS": str(delay_ms)}
    with gunicorn("slow_accounts:app", env, folder, 1, "gthread", 64) as server:
        yield server.origin


@dataclass(frozen=True, slots=True)
class Database:
    """The hotline's database, and how to find its PostgreSQL server processes (if any)."""

    url: str  # for the hotline
    watch_url: str | None = None  # PostgreSQL: where to ask pg_stat_activity (SQLite: in-process)
    application_name: str | None = None  # the hotline's connections in pg_stat_activity


@contextmanager
def database(url: str) -> Iterator[Database]:
    """PostgreSQL: the hotline's tables go into a fresh schema, dropped afterwards (the database
    is left as found), and its connections get a name of their own. Any other: `url` as it is."""
    if sa.make_url(url).get_backend_name() not in {"postgres", "postgresql"}:
        yield Database(url)
        return
    suffix = secrets.token_hex(6)
    schema, name = f"bench_{suffix}", f"ivr-bench-{suffix}"
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
        try:
            query = {"options": f"-csearch_path={schema}", "application_name": name}
            scoped = sa.make_url(url).update_query_dict(query)
            yield Database(scoped.render_as_string(hide_password=False), url, name)
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    finally:
        engine.dispose()


@dataclass(frozen=True, slots=True)
class Backends:
    """What the hotline runs on, ready: its environment, Redis and the database."""

    env: dict[str, str]
    redis_url: str
    database: Database


@contextmanager
def hotline_backends(folder: Path, opts: argparse.Namespace, token: str) -> Iterator[Backends]:
    """Start (or reach) Redis and the database and import the test accounts."""
    with contextlib.ExitStack() as stack:
        if opts.redis_url:
            redis_url = opts.redis_url
        else:
            redis_url = embedded.ensure(folder / "redis")
            stack.callback(embedded.stop, folder / "redis")
        db = stack.enter_context(
            database(opts.database_url or f"sqlite:///{folder / 'hotline.sqlite3'}")
        )
        env = {name: value for name, value in os.environ.items() if name not in UNWANTED_ENV}
        env |= UNLIMITED | {
            "IVR_INSTANCE_PATH": str(folder / "instance"),
            "TWILIO_AUTH_TOKEN": token,
            "IVR_PIN_PEPPER": secrets.token_hex(16),  # fresh per run: no PIN lock outlives it
            "REDIS_URL": redis_url,
            "DATABASE_URL": db.url,
        }
        imported = subprocess.run(
            [str(BIN / "ivr"), "accounts", "import", str(ACCOUNTS)],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if imported.returncode != 0:
            raise RuntimeError(f"ivr accounts import failed:\n{imported.stderr}")
        yield Backends(env, redis_url, db)


# ---- the report ---------------------------------------------------------------------------------


def print_table(phases: Sequence[Phase]) -> None:
    columns = [p.figures() for p in phases]
    width = max(len(name) for name in columns[0])
    cell = max(16, *(len(p.name) + 2 for p in phases))
    print()
    print(" " * width + "".join(f"{p.name:>{cell}}" for p in phases))
    for name in columns[0]:
        cells = "".join(_cell(c[name], cell) for c in columns)
        print(f"{name:<{width}}{cells}")


def _cell(value: float | None, width: int = 16) -> str:
    if value is None:
        return f"{'n/a':>{width}}"
    return f"{value:>{width}.0f}" if abs(value) >= 1000 else f"{value:>{width}.2f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def describe(phase: Phase) -> None:
    """One phase's figures as they come, and anything that makes them suspect."""
    f = phase.figures()
    paced = f" (paced to {phase.target_rate:.0f}/s)" if phase.target_rate else ""
    print(
        f"  {phase.name}{paced}: {f['webhooks/s']:.1f} webhooks/s, {f['calls/s']:.1f} calls/s, "
        f"p50 {_ms(f['latency p50 ms'])} ms, p99 {_ms(f['latency p99 ms'])} ms, "
        f"failures {f['failures']:.0f}, server CPU {f['server CPU ms/webhook'] or 0:.2f} ms/webhook"
    )
    by_webhook = ", ".join(
        f"{name} {_ms(p['p50'])}/{_ms(p['p99'])}"
        for name, p in phase.latencies_by_webhook_ms.items()
    )
    print(f"    latency p50/p99 ms by webhook of the call: {by_webhook}")
    if isinstance(phase, HeldPhase):
        _describe_held(phase)
    if phase.inside:
        _describe_inside(phase.inside)
    if phase.redis_by_command:
        per = ", ".join(
            f"{name} {n / max(phase.webhooks_all, 1):.2f}"
            for name, n in phase.redis_by_command.items()
        )
        print(f"    Redis commands per webhook: {per}")
    other = f["  rest of the machine %"] or 0.0
    if other > NOISY_PERCENT:
        print(
            f"    WARNING: {other:.0f}% CPU (100% = one core) went to other processes or the "
            "kernel meanwhile: if to other processes, rates and latencies are disturbed "
            "(CPU per webhook much less)"
        )
    if phase.target_rate and phase.webhooks / phase.window < 0.9 * phase.target_rate:
        print("    WARNING: the webhooks fell short of the paced rate")
    for sample in phase.failure_samples:
        print(f"    failure: {sample}")
    if phase.workers_restarted:
        print("    WARNING: a gunicorn worker was restarted; its CPU time is missing")
    if phase.server_log:
        print(f"    WARNING: {len(phase.server_log)} server log lines, the first:")
        for line in phase.server_log[:5]:
            print(f"      {line}")


def _describe_held(phase: HeldPhase) -> None:
    """What the held-calls phase adds: the calls up, Redis's memory, the verdict."""
    f = phase.figures()
    print(
        f"    held calls: {f['held calls min'] or 0:.0f} min, {f['held calls mean'] or 0:.1f} "
        f"mean of {phase.callers} (counted every {SAMPLE_SECONDS:g} s), "
        f"{phase.held[0] if phase.held else 0} up when the window opened, {phase.ramp:.1f} s "
        f"after the first rang in; {phase.connections} keep-alive connections opened (at most "
        f"{phase.pool} at once per client process)"
    )
    print(
        f"    Redis per held call: {f['redis KB/held call'] or 0:.2f} KB, "
        f"{f['redis keys/held call'] or 0:.2f} keys as all came up (each in its first steps); "
        f"{f['  at the end KB/held call'] or 0:.2f} KB, "
        f"{f['  at the end keys/held call'] or 0:.2f} keys at the end, with the state of the "
        f"calls completed in its last {store.ENDED_TTL} s ({phase.calls_ended} completed in all)"
    )
    print(f"    {phase.verdict()}")
    if (f["held calls mean"] or 0) < 0.99 * phase.callers:
        print(
            "    WARNING: fewer calls were up than lines: a new call is up only once its first "
            "webhook is answered (slow answers, or failed calls)"
        )


def write_json(
    path: Path, opts: argparse.Namespace, phases: Sequence[Phase], env: dict[str, Any]
) -> None:
    settings = {k: v for k, v in vars(opts).items() if k != "json"}
    document = {
        "settings": settings,
        "environment": env,
        "phases": [
            {**asdict(p), "figures": p.figures(), **({"verdict": v} if (v := p.verdict()) else {})}
            for p in phases
        ],
        "hotline/baseline webhooks/s": _ratio(phases),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _ratio(phases: Sequence[Phase]) -> dict[str, float]:
    """hotline/baseline webhooks/s for each worker class measured with its baseline."""
    rates = {p.name: p.webhooks / p.window for p in phases}
    return {
        name.removesuffix("hotline").strip() or "hotline": rate / rates[base]
        for name, rate in rates.items()
        if name.endswith("hotline") and (base := name.removesuffix("hotline") + "baseline") in rates
    }


# ---- main ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark whole calls against the hotline and a bare WSGI baseline.",
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each phase (default 20)"
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help="full-speed phases: make this many calls instead of running for "
        "--seconds (the paced phase still runs --seconds)",
    )
    parser.add_argument(
        "--callers", type=int, default=20, help="concurrent simulated callers (default 20)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--worker-class",
        default=gunicorn_conf.worker_class,
        help="gunicorn worker class, or several separated by commas to compare them in one "
        "run: sync, gthread, gthread:THREADS, gevent (default: ivr/gunicorn_conf.py's, "
        f"{gunicorn_conf.worker_class})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=gunicorn_conf.threads,
        help="threads per gthread worker (default: ivr/gunicorn_conf.py's, "
        f"{gunicorn_conf.threads})",
    )
    parser.add_argument(
        "--accounts-delay",
        type=float,
        metavar="MS",
        help="serve the account service over HTTP, holding every request MS milliseconds",
    )
    parser.add_argument(
        "--rate",
        type=float,
        help="pace the paced phase to this many webhooks/s (default: half the full-speed rate)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the framework-free baseline phase"
    )
    parser.add_argument(
        "--client-procs",
        type=int,
        default=2,
        help="client processes the callers are spread over (default 2)",
    )
    parser.add_argument(
        "--held",
        type=int,
        metavar="N",
        help="run the held-calls phase instead of the others: N calls up at all times, a key "
        "every 2-5 s, for --hold-seconds",
    )
    parser.add_argument(
        "--hold-seconds",
        type=float,
        default=HELD_TARGET_SECONDS,
        help=f"how long --held holds its calls, once all are up (default {HELD_TARGET_SECONDS:g})",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=32,
        help="--held: keep-alive connections per client process, shared by its calls (default 32)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=len(CALL),
        help=f"webhooks of the call each caller makes before hanging up (default {len(CALL)}, "
        "the whole call); 3 hangs up at the PIN prompt (incoming, key 1, ID, then the status "
        "callback): only webhooks that need no account service, the path of signature check, "
        "state load and save and TwiML alone",
    )
    parser.add_argument("--redis-url", help="use this Redis instead of an embedded one")
    parser.add_argument(
        "--database-url",
        help="use this database instead of SQLite (PostgreSQL: in a schema of "
        "its own, dropped afterwards)",
    )
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument(
        "--inside",
        action="store_true",
        help="also time every webhook and each part of it inside the hotline's workers (wall "
        "and CPU, bench/inside_conf.py): where the time of a slow answer went. Costs the "
        "workers some 40 µs a webhook",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        help="--held: also write every webhook answered in the window (when, latency, which "
        "webhook of its call) to this CSV file, to see whether slow answers come together",
    )
    opts = parser.parse_args(argv)
    if opts.seconds <= 0 or opts.callers < 1 or opts.workers < 1 or opts.client_procs < 1:
        parser.error("--seconds, --callers, --workers and --client-procs must be positive")
    opts.worker_classes = [c.strip() for c in opts.worker_class.split(",") if c.strip()]
    kinds = {c.partition(":")[0] for c in opts.worker_classes}
    counts = [c.partition(":")[2] for c in opts.worker_classes if ":" in c]
    if not kinds or kinds - {"sync", "gthread", "gevent"} or not all(n.isdigit() for n in counts):
        parser.error("--worker-class: sync, gthread[:THREADS] or gevent, separated by commas")
    if opts.threads < 1 or (opts.rate is not None and opts.rate <= 0):
        parser.error("--threads and --rate must be positive")
    if opts.calls is not None and opts.calls < 1:
        parser.error("--calls must be positive")
    if not 1 <= opts.steps <= len(CALL):
        parser.error(f"--steps: 1 to {len(CALL)}")
    if opts.held is not None:
        if opts.held < 1 or opts.hold_seconds <= 0 or opts.pool < 1:
            parser.error("--held, --hold-seconds and --pool must be positive")
        if opts.calls is not None or opts.rate is not None or opts.steps < len(CALL):
            parser.error("--held runs alone, with whole calls: not with --calls, --rate or --steps")
    elif opts.trace is not None:
        parser.error("--trace writes the held-calls phase's webhooks: give --held too")
    return opts


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every server this script started is stopped."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def phases_on(
    app: str, prefix: str, target: Target, token: str, opts: argparse.Namespace, watch: Watch
) -> Iterator[Phase]:
    """The phases of one server, each as it ends: with --held, the held calls alone; else one
    at full speed and, for the hotline, one paced (to half the rate it reached, or --rate)."""
    if opts.held:
        yield run_held(f"{prefix}held", target, token, opts, watch)
        return
    full = run_phase(prefix + app, target, token, opts, watch)
    yield full
    if app == "hotline":
        rate = opts.rate or 0.5 * full.webhooks / full.window
        paced = f"@{opts.rate:g}/s" if opts.rate else "@50%"
        label = f"{prefix}{paced}" if prefix else f"hotline {paced}"
        yield run_phase(label, target, token, opts, watch, rate=rate)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    _stop_on_sigterm()
    token = secrets.token_hex(16)
    phases: list[Phase] = []
    folder = Path(tempfile.mkdtemp(prefix="ivr-bench-"))
    try:
        with contextlib.ExitStack() as stack:
            backends = stack.enter_context(hotline_backends(folder, opts, token))
            if opts.held:
                load = (
                    f"{opts.held} held calls in {min(opts.client_procs, opts.held)} client "
                    f"processes (at most {opts.pool} keep-alive connections each)"
                )
                length = f"held {opts.hold_seconds:g} s once all are up"
            else:
                load = f"{opts.callers} callers in {opts.client_procs} client processes"
                if opts.steps < len(CALL):
                    load += f", each call {opts.steps} webhooks and the status callback"
                length = f"{opts.seconds:g} s per phase"
            print(
                f"{load}, gunicorn --workers {opts.workers} --worker-class {opts.worker_class} "
                f"(gthread: --threads {opts.threads}), Redis {_redacted(backends.redis_url)}, "
                f"database {_redacted(backends.database.url)}, "
                f"{length}, {os.cpu_count()} CPUs, code {code_version()}"
            )
            env = backends.env
            if opts.accounts_delay is not None:
                accounts_url = stack.enter_context(
                    slow_accounts(backends, folder, opts.accounts_delay)
                )
                env = env | {"ACCOUNTS_URL": accounts_url}
                print(f"account service over HTTP, {opts.accounts_delay:g} ms per request")
            apps = [("hotline", "ivr:create_app()", hotline_target)]
            if not opts.no_baseline and not opts.held:
                apps.insert(0, ("baseline", "baseline:app", baseline_target))
            for spec in opts.worker_classes:
                prefix = f"{spec} " if len(opts.worker_classes) > 1 else ""
                worker_class, _, count = spec.partition(":")
                threads = int(count or opts.threads) if worker_class == "gthread" else 1
                for name, app, make_target in apps:
                    config, app_env, inside = "python:ivr.gunicorn_conf", env, None
                    if opts.inside and name == "hotline":
                        inside = Path(tempfile.mkdtemp(prefix="inside-", dir=folder))
                        config = str(BENCH / "inside_conf.py")
                        app_env = env | {inside_conf.FOLDER_ENV: str(inside)}
                    with gunicorn(app, app_env, folder, opts.workers, worker_class, threads,
                                  config) as server:  # fmt: skip
                        watch = Watch(server.process.pid, server.log, backends, inside)
                        try:
                            target = replace(make_target(server.origin), steps=opts.steps)
                            for phase in phases_on(name, prefix, target, token, opts, watch):
                                describe(phase)
                                phases.append(phase)
                        finally:
                            watch.close()
            environment = _environment(backends)
    except KeyboardInterrupt:
        print("\ninterrupted: everything it started is stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_table(phases)
    for label, ratio in _ratio(phases).items():
        print(f"\n{label}/baseline webhooks/s: {ratio:.3f}")
    if opts.json:
        write_json(opts.json, opts, phases, environment)
        print(f"written to {opts.json}")
    failed = sum(p.failures + p.warmup_failures for p in phases)
    if failed:
        print(f"\n{failed} failed webhooks: the figures are not to be trusted", file=sys.stderr)
    return 1 if failed else 0


def _redacted(url: str) -> str:
    """A URL to print: without its password and query (which holds a schema of ours)."""
    scheme, sep, rest = url.split("?", 1)[0].partition("://")
    netloc, slash, path = rest.partition("/")
    user, at, host = netloc.rpartition("@")
    if ":" in user:
        user = user.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{user}{at}{host}{slash}{path}"


def code_version() -> str:
    """The commit measured, and whether the working tree differs from it."""
    git = ["git", "-C", str(ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return f"{head} + uncommitted changes" if dirty else head


def _environment(backends: Backends) -> dict[str, Any]:
    client = store.connect(backends.redis_url, 5.0)
    try:
        redis_version = _info(client, "server").get("redis_version")
    finally:
        client.close()
    gunicorn_version = subprocess.run(
        [str(BIN / "gunicorn"), "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "code": code_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gunicorn": gunicorn_version,
        "redis": f"{redis_version} at {_redacted(backends.redis_url)}",
        "database": _redacted(backends.database.url),
    }


if __name__ == "__main__":
    sys.exit(main())
