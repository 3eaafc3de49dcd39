"""Where a webhook's CPU goes: benchmark calls through the hotline in this one process.

    .venv/bin/python bench/hotpath.py [--calls 300] [--top 40] [--sort tottime|cumulative]

No HTTP and no gunicorn: the hotline (`ivr.create_app`, an embedded Redis and SQLite in a
temporary folder, the test accounts) answers the benchmark's whole calls (bench/calls.py's
CALL and its status callback) through Flask's test client, one after another. It prints the
process's CPU per webhook; then, for a second round, the answering thread's CPU in each part
of a webhook (bench/sections.py: each timed with time.thread_time around it, which costs about a
microsecond a call and distorts nothing else); then cProfile's top functions for a third,
profiled round (cProfile makes small functions look dearer than they are). Figures are CPU
time, so another program busy on the machine changes them little (unlike latencies): use it
to see what a change to the hot path saves, then measure with bench/calls.py.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import os
import pstats
import re
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sections  # bench/sections.py, beside this file
from calls import ACCOUNTS, CALL, STATUS_PATH, UNLIMITED  # bench/calls.py, beside this file

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round (default 300)")
    parser.add_argument("--top", type=int, default=40, help="functions to list (default 40)")
    parser.add_argument("--sort", default="tottime", help="pstats order (default tottime)")
    opts = parser.parse_args()
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
        writer_cpu = [0.0]  # the call log's writes, in the outbox's mover thread
        write = hotline.calllog.write

        def timed_write(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return write(*args, **kwargs)
            finally:
                writer_cpu[0] += time.thread_time() - started

        hotline.calllog.write = timed_write
        token = settings.signing_token
        webhooks = len(CALL) + 1

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

        for _ in range(20):  # warm up: scripts loaded, pools open
            call()
        n = opts.calls * webhooks
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
        hotline.outbox.stop()
        embedded.stop(Path(folder))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
