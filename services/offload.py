"""Blocking work off gevent's loop, for the processes that run one (gunicorn's gevent workers,
the hotline's default: ivr/gunicorn_conf.py).

A gevent worker answers all its webhooks in one thread, switching between them whenever one
waits on a socket. A C call that holds that thread for milliseconds (a PIN's scrypt, a call-log
transaction in SQLite with its file lock, a supervisor's dashboard over a day of calls) holds
every webhook of the worker with it. `off_loop` runs such a call in one of gevent's native
threads instead, and the loop answers the others meanwhile: scrypt and SQLite both let go of
the GIL while they work. Anywhere else (threaded workers, scripts, tests) it calls in place.

What runs off the loop must not use a socket the loop made (a gevent socket waits on its own
thread's loop): a database connection is fine (SQLite has none, psycopg waits on its file
descriptor wherever it runs), Redis is not.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")


def in_gevents_loop() -> bool:
    """Whether this process runs gevent's loop in place of threads (monkey-patched)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def off_loop(call: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`call(*args, **kwargs)`, in one of gevent's native threads if this process runs its
    loop (the calling greenlet waits; the others go on), else in place. Its exceptions are
    raised here either way."""
    if not in_gevents_loop():
        return call(*args, **kwargs)
    import gevent  # only reached where gevent is running

    result: _T = gevent.get_hub().threadpool.apply(call, args, kwargs)
    return result


def off_the_loop(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """`method`, always called through `off_loop`: for database reads that may run long (the
    supervisor console's lists and dashboard over a busy day)."""

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return off_loop(method, *args, **kwargs)

    return call
