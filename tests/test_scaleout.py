"""Scale-out: whole calls from test_calls.py again, on the ways the hotline grows.

  redis cluster    one gunicorn, REDIS_URL naming a 3-master Redis Cluster on loopback
  two instances    two gunicorns on different ports sharing Redis and the database, behind a
                   round-robin balancer: each webhook of a call goes to the other instance
  sentinel         one gunicorn, REDIS_URL naming a master through Redis Sentinel

The flows are test_calls.py's own test functions, collected here a second time, so that they
run against these servers (this module's `hotline` and `sim`) and cannot drift apart. The
servers run with the production gunicorn settings (ivr/gunicorn_conf.py: gevent workers), as
every test's hotline server does (tests/hotline_server.py).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
import redis_topologies
import requests
from conftest import fresh_database
from hotline_server import Server, serve
from test_calls import (  # noqa: F401 - collected here again, against this module's servers
    test_a_repeated_webhook_gets_the_same_reply_and_counts_one_pin,
    test_balance_and_transactions_in_mandarin,
    test_silence_in_the_pin_entry_counts_too,
    test_silence_three_times_says_goodbye_and_hangs_up,
    test_the_status_callback_ends_the_call_in_the_log,
    test_three_wrong_keys_reach_an_agent,
    test_wrong_pins_lock_the_id_across_calls_until_unlocked,
    test_zero_goes_to_the_agent_queue_then_asks_for_a_rating,
)
from twilio_sim import Simulator

PUBLIC = "http://hotline.example"  # the balancer's address: what Twilio calls and signs
SHARED = {"IVR_AGENT_QUEUE": "agents", "SECRET_KEY": "scale-out-test-secret-key"}


class Balancer(requests.Session):
    """A round-robin load balancer for one call: Twilio signs and sends to the public URL,
    and each request (repeated deliveries too) goes on to the next instance in turn, which
    checks the signature against PUBLIC_BASE_URL as every instance behind a balancer does."""

    def __init__(self, origins: list[str], routed: list[tuple[str, str]]) -> None:
        super().__init__()
        self.origins = origins
        self.turn = itertools.count()
        self.routed = routed  # (CallSid, origin) of every request sent

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert request.url is not None and request.url.startswith(PUBLIC + "/"), request.url
        origin = self.origins[next(self.turn) % len(self.origins)]
        onward = request.copy()
        onward.url = origin + request.url.removeprefix(PUBLIC)
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        self.routed.append((parse_qs(body).get("CallSid", [""])[0], origin))
        return super().send(onward, **kwargs)


@dataclass
class Topology:
    """The servers of one way of scaling out, as the tests reach them."""

    name: str
    servers: list[Server]
    redis_url: str
    cluster_ports: list[int] = field(default_factory=list)
    routed: list[tuple[str, str]] = field(default_factory=list)

    def simulator(self) -> Simulator:
        if len(self.servers) == 1:
            return Simulator(self.servers[0].url, self.servers[0].token)
        origins = [server.url for server in self.servers]
        return Simulator(PUBLIC, self.servers[0].token,
                         session=lambda: Balancer(origins, self.routed))  # fmt: skip


@pytest.fixture(scope="module", params=["redis cluster", "two instances", "sentinel"])
def topology(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Topology]:
    name: str = request.param
    folder = tmp_path_factory.mktemp(name.replace(" ", "-"))
    with ExitStack() as stack:
        database = stack.enter_context(fresh_database(folder))
        ports: list[int] = []
        if name == "redis cluster":
            ports = stack.enter_context(redis_topologies.cluster(folder / "redis"))
            redis_url = redis_topologies.cluster_url(ports)
        elif name == "sentinel":
            redis_url = stack.enter_context(redis_topologies.sentinel(folder / "redis"))
        env = SHARED | ({"PUBLIC_BASE_URL": PUBLIC} if name == "two instances" else {})
        servers = []
        for i in range(2 if name == "two instances" else 1):  # each its own instance folder
            (folder / f"web{i}").mkdir()
            web = serve(folder / f"web{i}", redis_url, database, extra_env=env)
            servers.append(stack.enter_context(web))
        yield Topology(name, servers, redis_url, ports)


@pytest.fixture
def hotline(topology: Topology) -> Server:
    """The hotline as test_calls.py's flows use it: signing token, `ivr` against its backends."""
    return topology.servers[0]


@pytest.fixture
def sim(topology: Topology) -> Simulator:
    """Twilio calling this topology (through the balancer for two instances)."""
    return topology.simulator()


def test_the_calls_really_ran_on_the_topology(topology: Topology) -> None:
    """After the flows: the cluster's masters each hold call state (keys spread over slots, so
    one-slot scripts were exercised on every node), or every call alternated between both
    instances, or the master Sentinel names holds the calls."""
    call = topology.simulator().call(from_="+8613800001111")
    call.press("1").expect_heard("身份证")
    call.hangup()
    if topology.name == "redis cluster":
        held = [redis.Redis(port=port).dbsize() for port in topology.cluster_ports]
        assert all(n > 0 for n in held), f"keys per master: {held}"
    elif topology.name == "two instances":
        by_call: dict[str, set[str]] = {}
        for sid, origin in topology.routed:
            by_call.setdefault(sid, set()).add(origin)
        assert len(by_call) >= 10, by_call.keys()  # the flows' calls and this one
        assert all(len(origins) == 2 for origins in by_call.values()), by_call
        for server in topology.servers:
            assert "POST /voice/in/" in Path(server.log).read_text()
    else:
        from ivr import store

        client = store.connect(topology.redis_url, 2.0)
        try:
            assert client.exists(f"ivr:{{{call.phone.sid}}}") == 1
        finally:
            client.close()


def test_console_sessions_and_sign_in_throttles_work_on_the_topology(topology: Topology) -> None:
    """The supervisor console's Redis use (a transaction on one session key, a pipeline over
    two throttle keys in different slots, scripts) through the same client as the hotline's."""
    from ivr import store
    from ivr.supervisor.store import ConsoleStore, Limits

    client = store.connect(topology.redis_url, 2.0)
    try:
        console = ConsoleStore(client, limits=Limits(per_user=2, per_ip=50, window=60))
        session_id = console.open_session(7, 1, "zhang")
        found = console.session(session_id)
        assert found is not None and (found.supervisor_id, found.username) == (7, "zhang")
        console.close_session(session_id)
        assert console.session(session_id) is None
        user = f"user-{uuid.uuid4().hex[:8]}"
        assert console.blocked_for(user, "10.0.0.1") == 0
        console.record_failure(user, "10.0.0.1")
        console.record_failure(user, "10.0.0.1")
        assert 0 < console.blocked_for(user, "10.0.0.1") <= 60
        console.clear_failures(user)
        assert console.blocked_for(user, "10.0.0.1") == 0
    finally:
        client.close()


def test_redis_urls_that_cannot_name_a_cluster_or_sentinel_master_are_refused() -> None:
    from ivr import store

    for url in ("redis+cluster://127.0.0.1:7000/3", "redis+cluster://127.0.0.1:x",
                "redis+sentinel://127.0.0.1:26379", "redis+sentinel://127.0.0.1:26379/svc/x"):
        with pytest.raises(ValueError, match="REDIS_URL"):
            store.connect(url, 0.2)


def test_after_a_sentinel_failover_a_calls_next_step_reaches_the_new_master(
    tmp_path: Path,
) -> None:
    """Sentinel promotes the replica between two steps of a call; the worker's connection
    still leads to the old master, now a replica that refuses writes. The next step's round
    trip is made again on a connection to the new master, and the call goes on where it was."""
    from ivr import store
    from ivr.state import CallState

    with (
        redis_topologies.sentinel_with_replica(tmp_path) as (url, sentinel, master, replica),
        closing(store.connect(url, 1.0)) as client,
        closing(redis.Redis(port=master, socket_timeout=1)) as old,
        closing(redis.Redis(port=replica, socket_timeout=1)) as new,
        closing(redis.Redis(port=sentinel, socket_timeout=5)) as watcher,
    ):
        calls = store.Store(client, call_ttl=3600)
        sid = "CA" + uuid.uuid4().hex
        assert calls.open(sid, CallState(node="main"), "<r>welcome</r>").outcome == "go"
        assert old.wait(1, 5000) == 1, "the replica has the call"

        watcher.execute_command("SENTINEL", "FAILOVER", "hotline")
        redis_topologies.wait_until(lambda: old.info("replication")["role"] == "slave",
                                    "the old master made a replica")  # fmt: skip

        begun = calls.begin(sid, 1)
        assert begun.outcome == "go" and begun.state == CallState(node="main")
        assert calls.commit(sid, begun.token, 1, CallState(node="balance"), "<r>balance</r>")
        assert calls.begin(sid, 1).reply == "<r>balance</r>"
        assert new.info("replication")["role"] == "master"
        assert new.hget(f"ivr:{{{sid}}}", "reply") == b"<r>balance</r>"


def test_a_cluster_out_of_reach_at_start_gets_the_apology_not_a_dead_worker(
    tmp_path: Path, database_url: str
) -> None:
    """RedisCluster reads the slot map as it is made: the hotline must still start (and answer
    with the apology) while the cluster does not answer."""
    from hotline_server import free_port

    from ivr import create_app
    from ivr.config import Settings
    from ivr.phone import sign

    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    app = create_app(Settings.from_env({
        "IVR_INSTANCE_PATH": str(tmp_path), "TWILIO_AUTH_TOKEN": "t", "REDIS_URL": url,
        "DATABASE_URL": database_url, "IVR_REDIS_COOLDOWN": "0",
    }))  # fmt: skip
    client = app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json["redis"] == "ConnectionError"
    params = {"CallSid": "CA" + uuid.uuid4().hex, "From": "+8613800138000", "To": "+8612333"}
    reply = client.post("/voice", data=params, headers={
        "X-Twilio-Signature": sign("t", "http://localhost/voice", params)})  # fmt: skip
    assert reply.status_code == 200 and "technical problem" in reply.text
    app.extensions["ivr"].outbox.stop()
    app.extensions["ivr.engine"].dispose()


def test_a_production_worker_keeps_the_app_out_of_the_collectors_full_scans(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """gunicorn's post_worker_init (ivr/gunicorn_conf.py) freezes what the built app holds for
    good: a full collection then scans a small fraction of the objects, not all of them with
    the GIL held. In a process of its own: freezing this one would keep the tests' garbage."""
    import json
    import subprocess
    import sys

    script = """
import gc, json, sys
from ivr import create_app, gunicorn_conf
from ivr.config import Settings
app = create_app(Settings.from_env(json.loads(sys.argv[1])))
gc.collect()
before = len(gc.get_objects())
gunicorn_conf.post_worker_init(None)
print(before, len(gc.get_objects()))
app.extensions["ivr"].outbox.stop()
"""
    env = {"IVR_INSTANCE_PATH": str(tmp_path), "TWILIO_AUTH_TOKEN": "t",
           "REDIS_URL": redis_url, "DATABASE_URL": database_url}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, json.dumps(env)], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    before, after = map(int, done.stdout.split())
    assert before > 50_000  # the app, its libraries and their tables
    assert after < before / 20  # what a full collection still scans


def test_a_production_worker_is_a_gevent_worker_whose_loop_hands_the_gil_over_soon() -> None:
    """Production runs gevent workers (ivr/gunicorn_conf.py). In one, a PIN's hash ends in a
    native thread that needs the GIL back from the loop: the loop lets go of it within 0.5 ms,
    not Python's 5. Anywhere else (a gthread worker, a script) the interval stays Python's."""
    import subprocess
    import sys

    script = """
import sys
if sys.argv[1] == "gevent":
    from gevent import monkey; monkey.patch_all()
from ivr import gunicorn_conf
gunicorn_conf.post_worker_init(None)
print(gunicorn_conf.worker_class, sys.getswitchinterval())
"""

    def worker(kind: str) -> list[str]:
        return subprocess.run([sys.executable, "-c", script, kind], capture_output=True,
                              text=True, timeout=60, check=True).stdout.split()  # fmt: skip

    assert worker("gevent") == ["gevent", "0.0005"]
    assert worker("gthread") == ["gevent", "0.005"]


def test_300_callers_at_once_on_one_gevent_worker_all_hear_the_welcome_and_the_menu(
    tmp_path: Path, redis_url: str, database_url: str
) -> None:
    """A gevent worker answers every client connection at once, each in a greenlet: 300
    calls whose connections all stay open (a balancer's keep-alive) each hear the welcome, and
    then the ID prompt for their key, on one worker. None hears the apology. Until session 12
    each greenlet kept a Redis connection while it lived; past 100 in a worker, redis-py
    refused the next (MaxConnectionsError) and the caller heard the apology."""
    import http.client
    import re
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlencode, urlsplit

    from ivr.phone import sign

    callers = 300
    with serve(tmp_path, redis_url, database_url, workers=1) as server:
        address = urlsplit(server.url)
        all_answered = threading.Barrier(callers)

        def post(connection: http.client.HTTPConnection, path: str, params: dict[str, str]) -> str:
            signature = sign(server.token, server.url + path, params)
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": signature}  # fmt: skip
            connection.request("POST", path, urlencode(params), headers)
            answer = connection.getresponse()
            assert answer.status == 200, answer.status
            return answer.read().decode()

        def call(n: int) -> tuple[str, str]:
            params = {"AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01",
                      "CallSid": "CA" + uuid.uuid4().hex, "CallStatus": "ringing",
                      "Direction": "inbound", "From": f"+86138{n:08d}",
                      "To": "+8612333"}  # fmt: skip
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
            try:
                welcome = post(connection, "/voice", params)
                all_answered.wait(timeout=120)  # every caller's connection open at once
                action = re.search(r'action="([^"]+)"', welcome)
                assert action is not None, welcome
                params |= {"CallStatus": "in-progress", "Digits": "1"}
                return welcome, post(connection, action.group(1), params)
            finally:
                connection.close()

        with ThreadPoolExecutor(callers) as pool:
            answers = list(pool.map(call, range(callers)))
    welcomes, menus = zip(*answers, strict=True)
    assert sum("欢迎致电12333" in w for w in welcomes) == callers, [
        w for w in welcomes if "欢迎致电12333" not in w][:1]  # fmt: skip
    assert sum("身份证" in m for m in menus) == callers, [m for m in menus if "身份证" not in m][:1]
