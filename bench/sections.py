"""The parts of a webhook the benchmarks time, and the wrapping that times them.

bench/hotpath.py sums the answering thread's CPU in each part, in one process; bench/calls.py
--inside (bench/inside_conf.py) records each part's wall and CPU time in gunicorn's workers
under load, where the two differ by the time a thread waits for a core or the GIL.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

# The parts (module, object in it or "", function, what it is). Nested parts are counted in
# both (the PIN's hash is in the account service's).
SECTIONS = (
    ("ivr.voice", "Webhooks", "__call__", "the whole webhook, from the WSGI call to its answer"),
    ("ivr.voice", "", "_signed", "the signature check"),
    ("ivr.voice", "Webhooks", "_request", "the form's parsing"),
    ("ivr.store", "Store", "begin", "Redis: claim the step, load the state (a script)"),
    ("ivr.store", "Store", "commit", "Redis: save state, reply, call-log entries (one trip)"),
    ("ivr.store", "Store", "open", "Redis: a call's first webhook (one trip)"),
    ("ivr.store", "Store", "admit", "Redis: the caller's limits (ID step)"),
    ("ivr.store", "Store", "gate_pin", "Redis: the ID number's lock and limit (PIN step)"),
    ("ivr.store", "Store", "end", "Redis: the status callback"),
    ("services.accounts.store", "AccountStore", "verify_pin", "account service: the PIN"),
    ("services.accounts.security", "", "_derive", "... of which the PIN's hash (scrypt)"),
    ("services.accounts.store", "AccountStore", "balance", "account service: the balance"),
    ("services.accounts.store", "AccountStore", "transactions", "account service: usage"),
    ("ivr.hotline", "", "advance", "the menu engine (ivr.machine.advance)"),
    ("ivr.hotline", "Hotline", "_reply", "the reply: prompts rendered, TwiML"),
    ("ivr.outbox", "Outbox", "encode", "the call-log entries for the outbox (JSON)"),
    ("ivr.state", "CallState", "from_json", "the state read (JSON)"),
    ("ivr.state", "CallState", "to_json", "the state written (JSON)"),
)
LABELS = tuple(label for *_, label in SECTIONS)

# What each timed call is told: its part, when it started (time.monotonic(), the same clock in
# every process), its wall seconds, the CPU seconds of its thread meanwhile.
Record = Callable[[str, float, float, float], None]


def install(record: Record) -> Callable[[], None]:
    """Time every part of SECTIONS into `record` from now on; returns what undoes it. Objects
    that keep the methods they were handed (ivr.metrics' counting proxies) keep the untimed
    ones: install before the app is made, or make them look again."""
    undo: list[tuple[Any, str, Any]] = []
    for module, owner_name, name, label in SECTIONS:
        owner: Any = importlib.import_module(module)
        if owner_name:
            owner = getattr(owner, owner_name)
        original = getattr(owner, name)
        undo.append((owner, name, original))
        setattr(owner, name, timed(original, label, record))

    def uninstall() -> None:
        while undo:
            owner, name, original = undo.pop()
            setattr(owner, name, original)

    return uninstall


def timed(function: Callable[..., Any], label: str, record: Record) -> Callable[..., Any]:
    """`function`, each call's times told to `record` under `label`."""

    def timed_call(*args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            record(label, wall, time.monotonic() - wall, time.thread_time() - cpu)

    return timed_call
