"""Prometheus metrics at `GET /metrics`: how fast webhooks are answered, how calls end, and how
often Redis and the account service fail.

    ivr_webhook_duration_seconds{route}               histogram: request in -> TwiML out
    ivr_calls_total{outcome}                          calls ended, by the call log's outcome
                                                      (completed, transferred, transfer_failed,
                                                      abandoned, busy, no-answer, ...)
    ivr_redis_errors_total{operation, error}          a Store operation that failed
    ivr_account_service_errors_total{operation, error}

gunicorn answers with several worker processes, each counting on its own; prometheus_client's
multiprocess mode adds them up: every worker writes its counts to files in
PROMETHEUS_MULTIPROC_DIR, and whichever worker answers /metrics reads them all. Under gunicorn
with that variable unset, each gunicorn master gets a folder of its own under
`<instance>/metrics/` (the folders of masters that have stopped are removed as a worker
starts), so a restart starts from zero and the workers of one master share their counts. Set
PROMETHEUS_MULTIPROC_DIR yourself for gunicorn's --preload, and empty it before each start.
Outside gunicorn (tests, `flask run`) the counts are the process's own.

With IVR_METRICS_TOKEN set, /metrics wants `Authorization: Bearer <token>` (401 otherwise).
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import redis
from flask import Flask, Response, current_app, request

from services.accounts.errors import AccountsError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from .hotline import Hotline

log = logging.getLogger("ivr.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds; the bounds the hotline is held to (3 ms p50, 15-20 ms p99, a second a caller notices).
BUCKETS = (0.001, 0.003, 0.005, 0.01, 0.015, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0)


@dataclass(frozen=True, slots=True)
class Metrics:
    """The hotline's metrics and where /metrics reads them from."""

    webhook_seconds: Histogram
    calls: Counter
    redis_errors: Counter
    account_errors: Counter
    registry: CollectorRegistry | None  # None: multiprocess mode, read from `folder`
    folder: str | None
    token: str | None

    def webhook(self, route: str, seconds: float) -> None:
        """A webhook of `route` was answered in `seconds`."""
        self.webhook_seconds.labels(route).observe(seconds)

    def call_ended(self, outcome: str) -> None:
        """A call ended, with `outcome` (counted by the status callback that ended it)."""
        self.calls.labels(outcome).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format, summed over every worker in multiprocess mode."""
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = self.registry
        if registry is None:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.folder)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def init_app(app: Flask, token: str | None) -> Metrics:
    """Count the app's webhooks and the hotline's failures; serve them at /metrics."""
    folder = _multiprocess_folder(Path(app.instance_path))
    from prometheus_client import CollectorRegistry, Counter, Histogram, values

    multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
    registry = None if multiprocess else CollectorRegistry()
    metrics = Metrics(
        Histogram("ivr_webhook_duration_seconds", "Webhook answer time, by route",
                  ["route"], buckets=BUCKETS, registry=registry),
        Counter("ivr_calls", "Calls ended, by outcome in the call log", ["outcome"],
                registry=registry),
        Counter("ivr_redis_errors", "Redis operations that failed", ["operation", "error"],
                registry=registry),
        Counter("ivr_account_service_errors", "Account-service calls that failed",
                ["operation", "error"], registry=registry),
        registry,
        os.environ.get(MULTIPROC_ENV) if multiprocess else None,
        token,
    )  # fmt: skip
    app.extensions["ivr.metrics"] = metrics
    hotline: Hotline = app.extensions["ivr"]
    hotline.on_ended = metrics.call_ended
    hotline.store = cast(Any, _Counting(hotline.store, (redis.RedisError, OSError),
                                        metrics.redis_errors))  # fmt: skip
    hotline.accounts = cast(Any, _Counting(hotline.accounts, (AccountsError,),
                                           metrics.account_errors))  # fmt: skip
    app.add_url_rule("/metrics", "metrics", _serve)
    if folder is None and os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        log.warning("prometheus_client was loaded before %s was set: /metrics shows only the "
                    "counts of the worker that answers it", MULTIPROC_ENV)  # fmt: skip
    return metrics


# --- counting ------------------------------------------------------------------------


class _Counting:
    """`target` as it is, but each of its public methods that raises one of `errors` is
    counted in `counter` by operation (the method's name) and error (the exception's class)."""

    def __init__(self, target: Any, errors: tuple[type[BaseException], ...], counter: Any) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_errors", errors)
        object.__setattr__(self, "_counter", counter)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name.startswith("_") or not callable(value):
            return value
        errors, counter = self._errors, self._counter

        @functools.wraps(value)
        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return value(*args, **kwargs)
            except errors as exc:
                counter.labels(name, type(exc).__name__).inc()
                raise

        object.__setattr__(self, name, counted)  # made once: found without __getattr__ after
        return counted

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)  # tests and tools see through to the object
        self.__dict__.pop(name, None)


# --- serving -------------------------------------------------------------------------


def _serve() -> Response:
    metrics: Metrics = current_app.extensions["ivr.metrics"]
    if metrics.token is not None:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {metrics.token}".encode()):
            return Response("unauthorized\n", 401, {"WWW-Authenticate": "Bearer"},
                            mimetype="text/plain")  # fmt: skip
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics.exposition(), 200, {"Content-Type": CONTENT_TYPE_LATEST})


# --- the multiprocess folder ---------------------------------------------------------


def _multiprocess_folder(instance: Path) -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, made under the instance folder for this gunicorn master when
    unset; None outside gunicorn, or when prometheus_client was loaded before it was set."""
    import sys

    folder = os.environ.get(MULTIPROC_ENV)
    if not folder and os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/"):
        root = instance / "metrics"
        mine = root / _process_name(os.getppid())
        root.mkdir(parents=True, exist_ok=True)
        for old in root.iterdir():
            if old != mine and not _running(old.name):
                shutil.rmtree(old, ignore_errors=True)
        mine.mkdir(exist_ok=True)
        folder = os.environ[MULTIPROC_ENV] = str(mine)
    if not folder:
        return None
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return folder


def _process_name(pid: int) -> str:
    """`pid-starttime`: a later process given the same pid is not taken for this one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return str(pid)
    return f"{pid}-{stat[stat.rindex(')') + 2:].split()[19]}"  # field 22 of proc(5)


def _running(name: str) -> bool:
    pid = name.split("-", 1)[0]
    if not pid.isdigit():
        return True  # not one of ours: leave it
    if "-" in name:
        return _process_name(int(pid)) == name
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
