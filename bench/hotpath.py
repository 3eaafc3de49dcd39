"""Where a webhook's CPU goes: benchmark calls through the hotline in this one process.

    .venv/bin/python bench/hotpath.py [--calls 300] [--top 40] [--sort tottime|cumulative]
    .venv/bin/python bench/hotpath.py --instructions [--calls 10]

No HTTP and no gunicorn: the hotline (`ivr.create_app`, an embedded Redis and SQLite in a
temporary folder, the test accounts) answers the benchmark's whole calls (bench/calls.py's
CALL and its status callback) through Flask's test client, one after another. It prints the
process's CPU per webhook; then, for a second round, the answering thread's CPU in each part
of a webhook (bench/sections.py: each timed with time.thread_time around it, which costs about a
microsecond a call and distorts nothing else); then cProfile's top functions for a third,
profiled round (cProfile makes small functions look dearer than they are). Figures are CPU
time, so another program busy on the machine changes them little (unlike latencies): use it
to see what a change to the hot path saves, then measure with bench/calls.py.

--instructions counts machine instructions instead of seconds, under valgrind's callgrind
(some 2 minutes for 10 calls): the same code counts the same within 0.1 %, however busy or slow
the machine, so it shows a change of a per cent or two that CPU seconds, drifting by a fifth
within the hour, cannot (see "instructions" below).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import json
import operator
import os
import pstats
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sections  # bench/sections.py, beside this file
from calls import (  # bench/calls.py, beside this file
    ACCOUNTS,
    CALL,
    STATUS_PATH,
    UNLIMITED,
    WEBHOOK_NAMES,
    WEBHOOKS_PER_CALL,
    code_version,
)  # fmt: skip

from ivr.phone import new_sid, sign

_ACTION = re.compile(r'<Gather\b[^>]*?\saction="([^"]*)"')
BASE = "http://hotline.test"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sections:
    """The answering thread's CPU in each part of a webhook (bench/sections.py) while
    installed. `proxies`: objects that keep the methods they hand out (ivr.metrics counts
    errors of the hotline's store and account service so), made to look them up again."""

    def __init__(self, *proxies: Any) -> None:
        self.proxies = proxies
        self.cpu: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.calls: collections.Counter[str] = collections.Counter()
        self._uninstall: Callable[[], None] | None = None

    def install(self) -> None:
        self._uninstall = sections.install(self._record)
        self._forget()

    def uninstall(self) -> None:
        if self._uninstall is not None:
            self._uninstall()
        self._forget()

    def _record(self, label: str, _started: float, _wall: float, cpu: float) -> None:
        self.cpu[label] += cpu
        self.calls[label] += 1

    def _forget(self) -> None:
        for proxy in self.proxies:
            for name in [name for name in vars(proxy) if not name.startswith("_")]:
                del vars(proxy)[name]

    def print(self, webhooks: int) -> None:
        print(f"\nthe answering thread's CPU by part of a webhook ({webhooks} webhooks; nested "
              "parts counted in both):")  # fmt: skip
        print(f"{'µs/webhook':>11} {'per webhook':>12} {'µs each':>8}  part")
        for label in sections.LABELS:
            if self.calls[label]:
                spent, count = self.cpu[label], self.calls[label]
                print(f"{spent / webhooks * 1e6:11.1f} {count / webhooks:12.2f} "
                      f"{spent / count * 1e6:8.1f}  {label}")  # fmt: skip


@contextlib.contextmanager
def hotline_here() -> Iterator[tuple[Any, Any, Callable[[], None]]]:
    """The hotline in this process (an embedded Redis, SQLite in a temporary folder, the
    test accounts) warmed up: (the Flask app, the Hotline, one whole benchmark call)."""
    with tempfile.TemporaryDirectory(prefix="ivr-profile-") as folder:
        os.environ.update(UNLIMITED, IVR_INSTANCE_PATH=folder, IVR_DEV_MODE="1",
                          PUBLIC_BASE_URL=BASE)  # fmt: skip
        for name in ("REDIS_URL", "DATABASE_URL", "ACCOUNTS_URL"):
            os.environ.pop(name, None)
        from ivr import create_app, embedded
        from services.accounts.db import make_engine
        from services.accounts.store import AccountStore

        app = create_app()
        settings = app.extensions["ivr.settings"]
        AccountStore(make_engine(settings.database_url), settings.pin_pepper).import_file(ACCOUNTS)
        client = app.test_client()
        hotline = app.extensions["ivr"]
        token = settings.signing_token

        def call() -> None:
            sid = new_sid("CA")
            params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+8613800138000",
                      "To": "+8612333", "CallStatus": "ringing",
                      "Direction": "inbound"}  # fmt: skip
            url = BASE + "/voice"
            for step in CALL:
                form = params | step.form()
                signature = {"X-Twilio-Signature": sign(token, url, form)}
                answer = client.post(urlsplit(url).path, data=form, headers=signature)
                body = answer.get_data(as_text=True)
                if step.expect not in body:
                    raise SystemExit(f"{step.name}: no {step.expect!r} in {body[:300]}")
                action = _ACTION.search(body)
                assert action is not None
                url = BASE + action.group(1).replace("&amp;", "&")
            status = params | {"CallStatus": "completed", "CallDuration": "95"}
            url = BASE + STATUS_PATH
            client.post(STATUS_PATH, data=status,
                        headers={"X-Twilio-Signature": sign(token, url, status)})  # fmt: skip

        try:
            for _ in range(20):  # warm up: scripts loaded, pools open
                call()
            yield app, hotline, call
        finally:
            hotline.outbox.stop()
            embedded.stop(Path(folder))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round (default 300)")
    parser.add_argument("--top", type=int, default=40, help="functions to list (default 40)")
    parser.add_argument("--sort", default="tottime", help="pstats order (default tottime)")
    parser.add_argument("--instructions", action="store_true",
                        help="count the hotline's machine instructions per webhook instead, "
                             "under valgrind's callgrind (--calls 10: 2 minutes)")  # fmt: skip
    opts = parser.parse_args()
    if opts.instructions:
        if os.environ.get(_UNDER_CALLGRIND) is None:
            return instructions(opts.calls)
        return _counted_here(opts.calls)
    with hotline_here() as (_app, hotline, call):
        writer_cpu = [0.0]  # the call log's writes, in the outbox's mover thread
        write = hotline.calllog.write

        def timed_write(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return write(*args, **kwargs)
            finally:
                writer_cpu[0] += time.thread_time() - started

        hotline.calllog.write = timed_write
        n = opts.calls * WEBHOOKS_PER_CALL
        started, main, writer_cpu[0] = _cpu(), time.thread_time(), 0.0
        for _ in range(opts.calls):
            call()
        hotline.outbox.catch_up()  # every call's entries moved to the database
        spent, main, writer = _cpu() - started, time.thread_time() - main, writer_cpu[0]
        print(f"{opts.calls} calls, {n} webhooks, ms CPU per webhook: {spent / n * 1000:.3f} "
              f"in all = {main / n * 1000:.3f} answering (with Flask's test client) + "
              f"{writer / n * 1000:.3f} writing the call log + "
              f"{(spent - main - writer) / n * 1000:.3f} other threads; "
              "Redis runs apart")  # fmt: skip
        sections = Sections(hotline.store, hotline.accounts)
        sections.install()
        for _ in range(opts.calls):
            call()
        sections.uninstall()
        sections.print(n)
        print()
        profile = cProfile.Profile(time.thread_time)  # CPU of the answering thread only
        profile.enable()
        for _ in range(opts.calls):
            call()
        profile.disable()
        pstats.Stats(profile, stream=sys.stdout).sort_stats(opts.sort).print_stats(opts.top)
    return 0


# ---- instructions (--instructions) ------------------------------------------------------------
#
# Machine instructions do not drift with the machine as CPU seconds do (this hardware's CPU time
# per webhook moved by a fifth within an hour, and by half from one session's machine to the
# next): the same code and inputs count within 0.1 % of the same figure, whatever else runs. So a
# change of a few per cent to the hot path shows here at once, where bench/calls.py would need
# many alternating runs. What is counted: the hotline's WSGI app from the call to its answer,
# and the call-log mover's batches (moved every MOVE_EVERY calls, about as many as a mover finds
# under load), each entered through operator.call, which callgrind's --toggle-collect switches
# on; Flask's test client, the warm-up and the embedded Redis (its own process) are not. The
# PIN's hash is counted apart, and the counts are split by the webhook of the call.

_UNDER_CALLGRIND = "HOTPATH_UNDER_CALLGRIND"
_GATE = "_operator_call"  # operator.call's C function: the one door callgrind counts behind
MOVE_EVERY = 5
DUMP_WAIT = 60.0  # seconds callgrind may take to write a dump it was asked for


def instructions(calls: int) -> int:
    """Run this script again under callgrind and print its counts."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt install valgrind)")
    with tempfile.TemporaryDirectory(prefix="ivr-callgrind-") as folder:
        out = Path(folder) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", "--collect-atstart=no",
            f"--toggle-collect={_GATE}", f"--callgrind-out-file={out}",
            sys.executable, str(Path(__file__).resolve()), "--instructions", "--calls", str(calls),
        ]  # fmt: skip
        env = os.environ | {_UNDER_CALLGRIND: folder, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"valgrind exited with {done.returncode}")
        counts = json.loads((Path(folder) / "counts.json").read_text())
    total = sum(counts["webhooks"].values()) + counts["moving"]
    webhooks = calls * WEBHOOKS_PER_CALL
    print(f"{calls} calls, {webhooks} webhooks (code {code_version()}), instructions per webhook: "
          f"{total / webhooks:,.0f} = {sum(counts['webhooks'].values()) / webhooks:,.0f} answering "
          f"+ {counts['moving'] / webhooks:,.0f} moving the call log; the PIN's hash "
          f"{counts['hash']:,.0f} a check, {counts['hash'] / WEBHOOKS_PER_CALL:,.0f} per webhook "
          "(included)")  # fmt: skip
    print(f"{'per webhook':>14}  webhook of the call")
    for name, count in counts["webhooks"].items():
        print(f"{count / calls:14,.0f}  {name}")
    return 0


def _counted_here(calls: int) -> int:
    """Under callgrind: the measured calls, each webhook's count dumped on its own."""
    folder = Path(os.environ[_UNDER_CALLGRIND])
    with hotline_here() as (app, hotline, call):
        hotline.outbox.stop()  # moved below, inside the gate, instead of by its thread
        counts: dict[str, Any] = {"webhooks": dict.fromkeys(WEBHOOK_NAMES, 0)}
        inner, webhook = app.wsgi_app, [0]

        def gated(environ: Any, start_response: Any) -> Any:
            answer = operator.call(inner, environ, start_response)
            counts["webhooks"][WEBHOOK_NAMES[webhook[0] % WEBHOOKS_PER_CALL]] += _dump(folder)
            webhook[0] += 1
            return answer

        app.wsgi_app = gated
        _dump(folder)  # the warm-up's moving, and anything else counted so far: not measured
        moving = 0
        for i in range(calls):
            call()
            if (i + 1) % MOVE_EVERY == 0 or i + 1 == calls:
                while operator.call(hotline.outbox.move):
                    pass
                moving += _dump(folder)
        app.wsgi_app = inner
        from services.accounts import security

        stored = security.hash_pin("pepper", "123456")
        operator.call(security.check_pin, "pepper", "123456", stored)
        counts |= {"moving": moving, "hash": _dump(folder)}
    (folder / "counts.json").write_text(json.dumps(counts))
    return 0


def _dump(folder: Path) -> int:
    """The instructions counted since the last dump (callgrind writes them to a file of their
    own, asked by callgrind_control, which it notices within moments)."""
    before = set(folder.glob("callgrind.out.*"))
    subprocess.run(["callgrind_control", "--dump", str(os.getpid())], capture_output=True,
                   check=True)  # fmt: skip
    deadline = time.monotonic() + DUMP_WAIT
    while not (new := set(folder.glob("callgrind.out.*")) - before):
        _wait_for_dump(deadline)
    (path,) = new
    while not (text := path.read_text()).rstrip().endswith(tuple("0123456789")) or \
            "totals:" not in text:  # fmt: skip
        _wait_for_dump(deadline)
    path.unlink()
    return int(re.search(r"^totals:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]


def _wait_for_dump(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise SystemExit(f"callgrind wrote no dump within {DUMP_WAIT:g} s of being asked")
    time.sleep(0.01)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
