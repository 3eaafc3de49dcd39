"""Scale-out: whole calls from test_calls.py again, on the ways the hotline grows.

  redis cluster    one gunicorn, REDIS_URL naming a 3-master Redis Cluster on loopback
  two instances    two gunicorns on different ports sharing Redis and the database, behind a
                   round-robin balancer: each webhook of a call goes to the other instance
  sentinel         one gunicorn, REDIS_URL naming a master through Redis Sentinel

The flows are test_calls.py's own test functions, collected here a second time, so that they
run against these servers (this module's `hotline` and `sim`) and cannot drift apart. The
servers run with the production gunicorn settings (ivr/gunicorn_conf.py: threaded workers).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
import requests
import redis_topologies
from conftest import fresh_database
from hotline_server import Server, serve
from twilio_sim import Simulator

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

PUBLIC = "http://hotline.example"  # the balancer's address: what Twilio calls and signs
SHARED = {"IVR_AGENT_QUEUE": "agents", "SECRET_KEY": "scale-out-test-secret-key"}
PRODUCTION = ("--config", "python:ivr.gunicorn_conf")


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
            servers.append(stack.enter_context(serve(folder / f"web{i}", redis_url, database,
                                                     extra_env=env, options=PRODUCTION)))  # fmt: skip
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
