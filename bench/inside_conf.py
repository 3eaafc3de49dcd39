"""gunicorn's settings for `bench/calls.py --inside`: the hotline's own (ivr/gunicorn_conf.py),
and in each worker the wall and CPU time of every webhook and of each part of it
(bench/sections.py), appended to $IVR_BENCH_INSIDE/inside-<pid>.tsv twice a second:

    part <TAB> started (time.monotonic()) <TAB> wall seconds <TAB> CPU seconds of its thread

A whole webhook's part is `route <path>`. A part's `started` is its webhook's, so that a window
of time holds whole webhooks: a PIN webhook begun just before a benchmark phase ends has its
hash in that phase too. Timing costs about two microseconds a part, some 40 a webhook. The
CPU figures are a thread's: right for gthread and sync workers, not for gevent's greenlets
(one thread runs them all).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ivr import gunicorn_conf as hotline_conf

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gunicorn reads this file by its path
import sections  # bench/sections.py

# Every setting and hook of the hotline's own (gunicorn takes the names it knows), whatever
# ivr/gunicorn_conf.py comes to hold; post_fork below calls the hotline's, should it have one.
globals().update({name: value for name, value in vars(hotline_conf).items()
                  if not name.startswith("_") and name != "post_fork"})  # fmt: skip

FOLDER_ENV = "IVR_BENCH_INSIDE"
FLUSH_SECONDS = 0.5

# When the webhook being answered started, in this thread or greenlet (each has its own context).
_WEBHOOK_STARTED: ContextVar[float | None] = ContextVar("webhook_started", default=None)


def post_fork(server: object, worker: object) -> None:
    """In the new worker, before it makes the app: time its webhooks from now on."""
    if hasattr(hotline_conf, "post_fork"):
        hotline_conf.post_fork(server, worker)
    rows: list[tuple[str, float, float, float]] = []

    def record(label: str, started: float, wall: float, cpu: float) -> None:
        webhook = _WEBHOOK_STARTED.get()
        rows.append((label, started if webhook is None else webhook, wall, cpu))  # (atomic)

    sections.install(record)
    from ivr.voice import Webhooks

    answer = Webhooks.__call__

    def routed(self: Webhooks, environ: Any, start_response: Any) -> Any:
        wall, cpu = time.monotonic(), time.thread_time()
        token = _WEBHOOK_STARTED.set(wall)
        try:
            return answer(self, environ, start_response)
        finally:
            label = f"route {environ.get('PATH_INFO', '')}"
            record(label, wall, time.monotonic() - wall, time.thread_time() - cpu)
            _WEBHOOK_STARTED.reset(token)

    Webhooks.__call__ = routed  # type: ignore[method-assign]
    path = Path(os.environ[FOLDER_ENV]) / f"inside-{os.getpid()}.tsv"
    threading.Thread(target=_flush, args=(rows, path), name="inside", daemon=True).start()


def _flush(rows: list[tuple[str, float, float, float]], path: Path) -> None:
    """Append what was recorded to the worker's file, and forget it (a held run records
    millions)."""
    while True:
        time.sleep(FLUSH_SECONDS)
        upto = len(rows)
        with path.open("a") as out:
            out.writelines(f"{label}\t{started!r}\t{wall!r}\t{cpu!r}\n"
                           for label, started, wall, cpu in rows[:upto])  # fmt: skip
        del rows[:upto]  # (atomic under the GIL: rows recorded meanwhile stay)
