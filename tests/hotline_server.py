"""The hotline served for real: gunicorn, a real Redis, a real database, test accounts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

TOKEN = "test-auth-token-0123456789abcdef"
PEPPER = f"test-pepper-{uuid.uuid4().hex}"  # fresh per run: no lock outlives it
DATA = Path(__file__).parent / "data"
BIN = Path(sys.executable).parent
# The PIN-guessing limits, out of the way of tests that call many times from one number or
# for one account (tests of the limits themselves set their own through `extra_env`).
RELAXED_LIMITS = {
    "IVR_LIMIT_CALLER_CALLS": "100000",
    "IVR_LIMIT_CALLER_IDS": "100000",
    "IVR_LIMIT_ID_CHECKS": "100000",
}


@dataclass(frozen=True)
class Server:
    """A running hotline: its URL, how to sign for it, its environment and its log."""

    url: str
    token: str
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def catch_up(self) -> None:
        """Wait until every webhook this hotline answered is in its call log's tables."""
        caught_up(self.env["REDIS_URL"], self.env["DATABASE_URL"])

    def ivr(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the `ivr` command against this hotline's Redis and database."""
        return subprocess.run([str(BIN / "ivr"), *args], env=dict(self.env), input=stdin,
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def caught_up(redis_url: str, database_url: str) -> None:
    """Wait until the call log's outbox in this Redis is moved to this database."""
    from ivr import store
    from ivr.calllog import CallLog
    from ivr.outbox import Outbox
    from services.accounts.db import make_engine

    client, engine = store.connect(redis_url, 2.0), make_engine(database_url)
    try:
        assert Outbox(store.Store(client), CallLog(engine)).catch_up(), "outbox not moved"
    finally:
        client.close()
        engine.dispose()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# gunicorn as production runs it (the Procfile, `ivr serve`).
DEPLOYED_SETTINGS = ("--config", "python:ivr.gunicorn_conf")


@contextmanager
def serve(
    folder: Path, redis_url: str, database_url: str, *, workers: int = 2,
    extra_env: Mapping[str, str] | None = None, healthy: bool = True, options: Sequence[str] = (),
) -> Iterator[Server]:  # fmt: skip
    """Start gunicorn with the hotline on a free port, with the settings it is deployed with
    (ivr/gunicorn_conf.py: gevent workers, as `ivr serve` and the Procfile run it); stop it
    afterwards.

    `healthy=False`: up once /healthz answers, 503 "degraded" included (for a hotline started
    with Redis or the database out of reach on purpose)."""
    env = {
        **RELAXED_LIMITS,
        **os.environ,
        "IVR_INSTANCE_PATH": str(folder),
        "TWILIO_AUTH_TOKEN": TOKEN,
        "IVR_PIN_PEPPER": PEPPER,
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        **(extra_env or {}),
    }
    env.pop("IVR_DEV_MODE", None)
    imported = subprocess.run([str(BIN / "ivr"), "accounts", "import", str(DATA / "accounts.json")],
                              env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    log = folder / "server.log"
    with gunicorn("ivr:create_app()", env, log, workers=workers, healthy=healthy,
                  options=(*DEPLOYED_SETTINGS, *options)) as (url, process):  # fmt: skip
        yield Server(url, TOKEN, env, log, process)


@contextmanager
def gunicorn(
    app: str, env: Mapping[str, str], log: Path, *, workers: int = 2, port: int | None = None,
    healthy: bool = True, options: Sequence[str] = (),
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:  # fmt: skip
    """Serve the WSGI app `app` (e.g. `ivr:create_app()`) with gunicorn on `port` (default: a
    free one), its output in `log`, until /healthz answers 200 (or 503 unless `healthy`);
    stop it afterwards. Yields its base URL and process."""
    port = port or free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--workers", str(workers), "--bind", f"127.0.0.1:{port}",
             "--access-logfile", "-", "--log-level", "info", *options, app],
            env=dict(env), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log, healthy)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(
    url: str, process: subprocess.Popen[bytes], log: Path, healthy: bool = True
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            status = requests.get(f"{url}/healthz", timeout=5).status_code
            if status == 200 or (not healthy and status == 503):
                return
        except (requests.ConnectionError, requests.Timeout):  # a worker still booting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up:\n{log.read_text()}")
