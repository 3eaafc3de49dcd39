"""The Redis store against a real Redis (REDIS_URL, or the embedded one): each step of a call
is applied once, repeated deliveries get the same reply, and wrong PINs lock an ID number."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from gevent_worker import ticks_during
from redis.cluster import key_slot

from ivr import store as store_module
from ivr.state import CallState
from ivr.store import (
    ENDED_TTL,
    LANE_CONNECTIONS,
    LOCK_SECONDS,
    MAX_FAILURES,
    Begun,
    Limits,
    Store,
)

PIN = "135790"
ZHANG = "11010519491231002X"


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store(redis_client, call_ttl=3600)


@pytest.fixture
def sid() -> str:
    return "CA" + uuid.uuid4().hex


@pytest.fixture
def digest() -> str:
    return uuid.uuid4().hex * 2


def keys_of(client: redis.Redis, part: str) -> set[bytes]:
    return set(client.scan_iter(match=f"*{part}*", count=1000))


AT_MAIN = CallState(node="main")
AT_BALANCE = CallState(node="balance", account=7, stack=("main",))


def test_the_first_step_goes_and_a_concurrent_delivery_of_it_is_busy(
    store: Store, sid: str
) -> None:
    first = store.begin(sid, 0)
    assert first.outcome == "go" and first.state is None and first.token
    assert store.begin(sid, 0) == Begun("busy")


def test_after_commit_a_repeat_replays_the_reply_and_the_next_step_goes(
    store: Store, sid: str
) -> None:
    first = store.begin(sid, 0)
    assert store.commit(sid, first.token, 0, AT_MAIN, "<Response>main</Response>")
    assert store.begin(sid, 0) == Begun("replay", reply="<Response>main</Response>")
    assert store.begin(sid, 0) == Begun("replay", reply="<Response>main</Response>")
    second = store.begin(sid, 1)
    assert second.outcome == "go" and second.state == AT_MAIN
    assert second.token and second.token != first.token


def test_a_stale_step_gets_the_latest_reply(store: Store, sid: str) -> None:
    for seq, (state, reply) in enumerate([(AT_MAIN, "<r>0</r>"), (AT_BALANCE, "<r>1</r>")]):
        begun = store.begin(sid, seq)
        assert begun.outcome == "go"
        assert store.commit(sid, begun.token, seq, state, reply)
    assert store.begin(sid, 0) == Begun("stale", reply="<r>1</r>")
    assert store.begin(sid, 1) == Begun("replay", reply="<r>1</r>")
    assert store.begin(sid, 2).state == AT_BALANCE


def test_a_step_ahead_of_the_call_is_stale_not_applied(store: Store, sid: str) -> None:
    begun = store.begin(sid, 0)
    store.commit(sid, begun.token, 0, AT_MAIN, "<r>0</r>")
    assert store.begin(sid, 5) == Begun("stale", reply="<r>0</r>")


@pytest.mark.parametrize("seq", [1, 2, 17])
def test_a_later_step_of_an_unknown_call_is_missing(store: Store, sid: str, seq: int) -> None:
    assert store.begin(sid, seq) == Begun("missing")
    assert keys_of(store.redis, sid) == set()


def test_a_commit_with_a_wrong_token_changes_nothing(store: Store, sid: str) -> None:
    begun = store.begin(sid, 0)
    assert not store.commit(sid, "not-the-token", 0, AT_MAIN, "<r>0</r>")
    assert store.redis.exists(f"ivr:{{{sid}}}") == 0
    assert store.begin(sid, 0) == Begun("busy"), "the real claim still holds"
    assert store.commit(sid, begun.token, 0, AT_MAIN, "<r>0</r>")
    assert not store.commit(sid, begun.token, 0, AT_BALANCE, "<r>again</r>"), "a claim is used once"
    assert store.begin(sid, 1).state == AT_MAIN
    assert store.begin(sid, 0).reply == "<r>0</r>"


def test_release_frees_the_claim_and_saves_nothing(store: Store, sid: str) -> None:
    begun = store.begin(sid, 0)
    store.release(sid, "not-the-token")
    assert store.begin(sid, 0).outcome == "busy"
    store.release(sid, begun.token)
    again = store.begin(sid, 0)
    assert again.outcome == "go" and again.state is None
    assert not store.commit(sid, begun.token, 0, AT_MAIN, "<r>late</r>"), "the old claim is gone"
    assert store.commit(sid, again.token, 0, AT_MAIN, "<r>0</r>")


def test_a_claim_expires_on_its_own(store: Store, sid: str) -> None:
    store.begin(sid, 0)
    claims = [k for k in keys_of(store.redis, sid) if k.endswith(b":claim")]
    assert len(claims) == 1
    assert 0 < store.redis.pttl(claims[0]) <= store_module.CLAIM_MS


def test_the_saved_state_is_json_and_expires(store: Store, sid: str) -> None:
    begun = store.begin(sid, 0)
    state = CallState(node="auth.pin", id_digest="d" * 64, id_masked="110***********002X")
    store.commit(sid, begun.token, 0, state, "<r>0</r>")
    (key,) = keys_of(store.redis, sid)
    saved = store.redis.hgetall(key)
    assert CallState.from_json(saved[b"state"]) == state
    assert json.loads(saved[b"state"])["node"] == "auth.pin"
    assert ZHANG.encode() not in b"".join(saved.values()) and PIN.encode() not in saved[b"state"]
    assert 3600 - 5 < store.redis.ttl(key) <= 3600


def test_an_ended_call_is_kept_only_briefly(store: Store, sid: str) -> None:
    """Long enough for a webhook Twilio still retries (15 s at most), not so long that ended
    calls crowd Redis: two minutes."""
    assert 15 < ENDED_TTL <= 120
    begun = store.begin(sid, 0)
    store.commit(sid, begun.token, 0, CallState(node="goodbye", ended=True), "<r>bye</r>")
    (key,) = keys_of(store.redis, sid)
    assert 0 < store.redis.ttl(key) <= ENDED_TTL
    assert store.begin(sid, 0) == Begun("replay", reply="<r>bye</r>")  # a retry, meanwhile

    other = "CA" + uuid.uuid4().hex
    begun = store.begin(other, 0)
    store.commit(other, begun.token, 0, AT_MAIN, "<r>0</r>")
    store.end(other)
    (key,) = keys_of(store.redis, other)
    assert 0 < store.redis.ttl(key) <= ENDED_TTL


def test_the_keys_of_one_call_share_one_cluster_slot(store: Store, sid: str) -> None:
    begun = store.begin(sid, 0)
    during = keys_of(store.redis, sid)
    store.commit(sid, begun.token, 0, AT_MAIN, "<r>0</r>")
    after = keys_of(store.redis, sid)
    assert len(during | after) == 2, during | after
    assert {key_slot(k) for k in during | after} == {key_slot(sid.encode())}


# --- PIN failures and locks ---------------------------------------------------------


def test_five_failures_in_a_row_lock_an_id_number(store: Store, digest: str) -> None:
    assert not store.is_locked(digest)
    for _ in range(MAX_FAILURES - 1):
        assert store.record_failure(digest) is False
        assert not store.is_locked(digest)
    assert store.record_failure(digest) is True
    assert store.is_locked(digest)
    assert store.record_failure(digest) is True, "still locked"
    (lock,) = keys_of(store.redis, digest)
    assert LOCK_SECONDS - 5 < store.redis.ttl(lock) <= LOCK_SECONDS


def test_a_right_pin_starts_the_count_again_with_the_commit(
    store: Store, digest: str, sid: str
) -> None:
    for _ in range(MAX_FAILURES - 1):
        store.record_failure(digest)
    begun = store.begin(sid, 0)
    assert store.commit(sid, begun.token, 0, AT_MAIN, "<r/>", clear_failures=digest)
    assert store.begin(sid, 0) == Begun("replay", reply="<r/>")
    for _ in range(MAX_FAILURES - 1):
        assert not store.record_failure(digest)
    assert not store.is_locked(digest)
    assert store.record_failure(digest)


def test_admitting_an_id_number_also_tells_whether_it_is_locked(
    store: Store, caller: str, digest: str, sid: str
) -> None:
    for _ in range(MAX_FAILURES):
        store.record_failure(digest)
    assert store.admit(caller, sid, digest) == ("ok", True)
    assert store.admit(caller, sid, uuid.uuid4().hex) == ("ok", False)


def test_commands_sent_together_survive_redis_forgetting_its_scripts(
    store: Store, caller: str, digest: str, sid: str
) -> None:
    """After a Redis restart its scripts are gone: the pipeline loads them and goes on."""
    store.redis.script_flush()
    assert store.admit(caller, sid, digest) == ("ok", False)
    begun = store.begin(sid, 0)
    store.redis.script_flush()
    assert store.commit(sid, begun.token, 0, AT_MAIN, "<r/>", clear_failures=digest)


class Named:
    """A store on a client of its own whose connections carry a name, and another client that
    sees them as Redis lists them."""

    def __init__(self, redis_url: str) -> None:
        self.name = "test-" + uuid.uuid4().hex[:12]
        joint = "&" if "?" in redis_url else "?"
        self.client_url = f"{redis_url}{joint}client_name={self.name}"
        self.client = store_module.connect(self.client_url, 1.0)
        self.store = Store(self.client, call_ttl=3600)
        self.watcher_url = redis_url
        self.watcher = store_module.connect(redis_url, 1.0)

    def connections(self) -> list[dict[str, Any]]:
        return [c for c in self.watcher.client_list() if c.get("name") == self.name]

    def close_them(self) -> None:
        for connection in self.connections():
            self.watcher.client_kill_filter(_id=connection["id"])


@pytest.fixture
def named(redis_url: str) -> Iterator[Named]:
    named = Named(redis_url)
    try:
        yield named
    finally:
        named.client.close()
        named.watcher.close()


def test_threads_that_take_turns_share_one_connection(named: Named) -> None:
    """A connection is taken for a round trip and put back after it: one thread's trips go on
    one, and threads that come and go, one after the other, leave no connection behind to pile
    up in Redis."""
    store, connections = named.store, named.connections
    for _ in range(10):
        assert store.begin("CA" + uuid.uuid4().hex, 0).outcome == "go"
    assert len(connections()) == 1, "one thread, one connection, however many trips"

    def one_webhook() -> None:
        sid = "CA" + uuid.uuid4().hex
        begun = store.begin(sid, 0)
        assert store.commit(sid, begun.token, 0, AT_MAIN, "<r/>")

    for _ in range(30):  # threads that come and go, one after the other
        thread = threading.Thread(target=one_webhook)
        thread.start()
        thread.join()
    assert len(connections()) == 1, connections()


def test_in_a_gevent_worker_redis_connections_follow_the_trips_in_flight_not_the_greenlets(
    named: Named,
) -> None:
    """A gevent worker answers each client connection in a greenlet of its own, up to 1,000 at
    once, most of them waiting for the caller's next key. Only the round trips in flight hold a
    Redis connection, and never more than LANE_CONNECTIONS: 300 callers keying at once are all
    answered. A connection per greenlet kept 300 open, or failed past redis-py's pool limit
    (100 in redis-py 8.2: MaxConnectionsError, and the caller heard the apology)."""
    _, (webhooks, open_) = ticks_during("""
        import random, uuid
        from ivr import store as store_module
        from ivr.state import CallState
        client = store_module.connect(sys.argv[1], 1.0)
        store = store_module.Store(client, call_ttl=3600)
        watcher = store_module.connect(sys.argv[2], 1.0)
        answered = []
        def caller():
            sid = "CA" + uuid.uuid4().hex
            for seq in range(4):
                gevent.sleep(random.uniform(0.2, 0.6))  # the caller keys
                begun = store.begin(sid, seq)
                assert store.commit(sid, begun.token, seq, CallState(node="main"), "<r/>")
                answered.append(sid)
            gevent.sleep(10)  # the client connection stays open, idle
        def work():
            callers = [gevent.spawn(caller) for _ in range(300)]
            while len(answered) < 4 * len(callers):
                gevent.sleep(0.05)
            name = sys.argv[3]
            open_ = sum(1 for c in watcher.client_list() if c.get("name") == name)
            gevent.killall(callers)
            return len(answered), open_
    """, named.client_url, named.watcher_url, named.name)
    assert int(webhooks) == 300 * 4
    assert 1 <= int(open_) <= LANE_CONNECTIONS, f"{open_} Redis connections for 300 callers"


def test_round_trips_past_the_most_connections_wait_for_one_to_come_free(named: Named) -> None:
    """Six threads each send a command that takes 0.2 s (BLPOP on an empty list) through a lane
    of two connections: all are answered, two at a time, on two connections."""
    lane = store_module.Lane(named.client.connection_pool, most=2)
    key = "test:empty:" + uuid.uuid4().hex
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(lane.send([("BLPOP", key, 0.2)])))
               for _ in range(6)]  # fmt: skip
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [[None]] * 6
    assert time.monotonic() - started >= 3 * 0.2
    assert len(named.connections()) == 2


def test_a_round_trip_that_finds_no_connection_free_in_time_fails_saying_so(
    named: Named,
) -> None:
    lane = store_module.Lane(named.client.connection_pool, most=1, wait=0.1)
    key = "test:empty:" + uuid.uuid4().hex
    busy = threading.Thread(target=lambda: lane.send([("BLPOP", key, 0.5)]))
    busy.start()
    time.sleep(0.05)
    with pytest.raises(redis.ConnectionError, match=r"no Redis connection came free within 0.1 s"):
        lane.send([("PING",)])
    busy.join()
    assert lane.send([("PING",)]) == [b"PONG"]  # free again


def test_a_connection_redis_closed_is_made_again_for_the_next_trip(
    named: Named, sid: str
) -> None:
    """Redis restarted, or closed an idle connection (its `timeout`): the webhook's trip is
    repeated once on a new connection, and the caller notices nothing."""
    store, connections = named.store, named.connections
    begun = store.begin(sid, 0)
    named.close_them()
    assert not connections()
    assert store.commit(sid, begun.token, 0, AT_MAIN, "<Response>main</Response>")
    assert store.begin(sid, 0) == Begun("replay", reply="<Response>main</Response>")
    assert len(connections()) == 1


def test_a_forked_process_talks_to_redis_on_a_connection_of_its_own(store: Store) -> None:
    """gunicorn forks its workers from a process that may have used the store: parent and
    child each get their own answers, never the other's from a shared connection."""
    assert store.begin("CA" + uuid.uuid4().hex, 0).outcome == "go"  # this thread's connection

    def calls(who: str) -> None:
        for n in range(200):
            sid = f"CA{who}{n}{uuid.uuid4().hex}"
            assert store.open(sid, AT_MAIN, f"<r>{sid}</r>") == Begun("go")
            assert store.begin(sid, 0) == Begun("replay", reply=f"<r>{sid}</r>")

    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports by its exit status)
        code = 1
        try:
            calls("child")
            code = 0
        finally:
            os._exit(code)
    try:
        calls("parent")
    finally:
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child got answers that were not its own"


def test_commands_sent_together_are_one_round_trip_as_redis_counts_them(named: Named) -> None:
    """A webhook's state, reply and call-log entries are sent together and answered in one
    write: one round trip as Redis counts them, not one per command waiting for the last.
    (Whether they leave in one write of ours only shows under load: bench/calls.py counts
    that. Other clients of a shared Redis may add a few writes meanwhile.)"""
    store, outbox = named.store, Store.outbox_key("test-" + uuid.uuid4().hex)

    def writes() -> int:
        return int(named.watcher.info("stats")["total_writes_processed"])

    store.begin("CA" + uuid.uuid4().hex, 0)  # connected, scripts loaded
    before = writes()
    for _ in range(20):
        sid = "CA" + uuid.uuid4().hex
        log = Store.outbox_add(outbox, b"{}")
        assert store.open(sid, AT_MAIN, "<r/>", log) == Begun("go")
    trips = writes() - before - 1  # the second INFO's own answer
    assert 20 <= trips <= 25, trips
    named.watcher.delete(outbox)


def test_a_first_step_saved_in_one_round_trip_replays_to_a_repeat(store: Store, sid: str) -> None:
    assert store.open(sid, AT_MAIN, "<Response>welcome</Response>") == Begun("go")
    again = store.open(sid, CallState(node="other"), "<Response>other</Response>")
    assert again == Begun("replay", reply="<Response>welcome</Response>")
    assert store.begin(sid, 0) == Begun("replay", reply="<Response>welcome</Response>")
    nxt = store.begin(sid, 1)
    assert nxt.outcome == "go" and nxt.state == AT_MAIN
    assert store.commit(sid, nxt.token, 1, AT_BALANCE, "<Response>balance</Response>")
    assert store.open(sid, AT_MAIN, "<r/>") == Begun("stale", reply="<Response>balance</Response>")
    assert 3500 < store.redis.ttl(f"ivr:{{{sid}}}") <= 3600


def test_unlock_lifts_the_lock_and_the_count(store: Store, digest: str) -> None:
    assert store.unlock(digest) is False, "nothing to lift"
    for _ in range(MAX_FAILURES):
        store.record_failure(digest)
    assert store.unlock(digest) is True
    assert not store.is_locked(digest)
    for _ in range(MAX_FAILURES - 1):
        assert not store.record_failure(digest)
    assert not store.is_locked(digest)


def test_counts_are_per_id_number(store: Store, digest: str) -> None:
    other = uuid.uuid4().hex * 2
    for _ in range(MAX_FAILURES):
        store.record_failure(digest)
    assert store.is_locked(digest) and not store.is_locked(other)
    assert not store.record_failure(other)


def test_the_keys_of_one_id_number_share_one_cluster_slot(store: Store, digest: str) -> None:
    store.record_failure(digest)
    counting = keys_of(store.redis, digest)
    for _ in range(MAX_FAILURES - 1):
        store.record_failure(digest)
    locked = keys_of(store.redis, digest)
    assert len(counting) == len(locked) == 1 and counting != locked
    assert {key_slot(k) for k in counting | locked} == {key_slot(f"id:{digest}".encode())}


def test_the_failure_count_expires(store: Store, digest: str) -> None:
    store.record_failure(digest)
    (fails,) = keys_of(store.redis, digest)
    assert 0 < store.redis.ttl(fails) <= LOCK_SECONDS


# --- the limits against PIN guessing (issue 6) ----------------------------------------------


@pytest.fixture
def caller() -> str:
    return uuid.uuid4().hex * 2


def limited(client: redis.Redis, **limits: int) -> Store:
    return Store(client, limits=Limits(**{"window": 3600, **limits}))


def test_calls_from_one_number_are_admitted_up_to_the_limit(
    redis_client: redis.Redis, caller: str, digest: str
) -> None:
    store = limited(redis_client, caller_calls=3, caller_ids=100)
    sids = ["CA" + uuid.uuid4().hex for _ in range(4)]
    assert [store.admit(caller, sid, digest) for sid in sids[:3]] == [("ok", False)] * 3
    assert store.admit(caller, sids[3], digest) == ("calls", False)
    assert store.admit(caller, sids[0], digest)[0] == "ok", "a call already admitted goes on"
    assert store.admit(uuid.uuid4().hex, sids[3], digest)[0] == "ok", "per caller number"


def test_distinct_id_numbers_from_one_number_are_admitted_up_to_the_limit(
    redis_client: redis.Redis, caller: str
) -> None:
    store = limited(redis_client, caller_calls=100, caller_ids=2)
    sid, ids = "CA" + uuid.uuid4().hex, [uuid.uuid4().hex for _ in range(3)]
    assert store.admit(caller, sid, ids[0])[0] == "ok"
    assert store.admit(caller, sid, ids[1])[0] == "ok"
    assert store.admit(caller, sid, ids[2])[0] == "ids"
    assert store.admit(caller, sid, ids[0])[0] == "ok", "one already tried is not a new one"
    keys = keys_of(store.redis, caller)
    assert len(keys) == 2 and all(0 < store.redis.ttl(k) <= 3600 for k in keys)
    assert {key_slot(k) for k in keys} == {key_slot(f"caller:{caller}".encode())}
    assert store.redis.scard(next(k for k in keys if k.endswith(b":ids"))) == 2, "bounded"


def test_a_limit_of_zero_is_no_limit_and_counts_nothing(
    redis_client: redis.Redis, caller: str
) -> None:
    store = limited(redis_client, caller_calls=0, caller_ids=0, id_checks=0)
    for _ in range(30):
        assert store.admit(caller, "CA" + uuid.uuid4().hex, uuid.uuid4().hex) == ("ok", False)
    digest = uuid.uuid4().hex
    assert [store.gate_pin(digest) for _ in range(30)] == ["ok"] * 30
    assert keys_of(store.redis, caller) == set() and keys_of(store.redis, digest) == set()


def test_pin_checks_of_an_id_number_are_let_through_up_to_the_limit(
    redis_client: redis.Redis, digest: str
) -> None:
    store = limited(redis_client, id_checks=3)
    assert [store.gate_pin(digest) for _ in range(4)] == ["ok", "ok", "ok", "limited"]
    (checks,) = keys_of(store.redis, digest)
    assert checks.endswith(b":checks") and 0 < store.redis.ttl(checks) <= 3600
    assert key_slot(checks) == key_slot(f"id:{digest}".encode())
    store.unlock(digest)
    assert store.gate_pin(digest) == "ok", "an unlock lifts the limit too"


def test_a_locked_id_number_is_refused_before_its_checks_are_counted(
    redis_client: redis.Redis, digest: str
) -> None:
    store = limited(redis_client, id_checks=3)
    for _ in range(MAX_FAILURES):
        store.record_failure(digest)
    assert [store.gate_pin(digest) for _ in range(5)] == ["locked"] * 5
    assert not [k for k in keys_of(store.redis, digest) if k.endswith(b":checks")]


def test_abandon_drops_the_claim_and_keeps_the_state(store: Store, sid: str) -> None:
    first = store.begin(sid, 0)
    store.commit(sid, first.token, 0, AT_MAIN, "<r>0</r>")
    orphan = store.begin(sid, 1)
    assert store.begin(sid, 1).outcome == "busy"
    store.abandon(sid)
    again = store.begin(sid, 1)
    assert again.outcome == "go" and again.state == AT_MAIN
    assert not store.commit(sid, orphan.token, 1, AT_BALANCE, "<r>late</r>")


# --- a Redis that does not answer -------------------------------------------------------


@pytest.fixture
def silent() -> Iterator[str]:
    """A loopback server that accepts connections and never answers (a stalled Redis)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


def test_a_silent_redis_costs_one_timeout_then_fails_fast_for_the_cool_down(silent: str) -> None:
    client = store_module.connect(silent, 0.2)
    store = Store(client, cooldown=0.5)
    try:
        started = time.perf_counter()
        with pytest.raises(redis.TimeoutError):
            store.begin("CA" + uuid.uuid4().hex, 0)
        first = time.perf_counter() - started
        assert 0.15 < first < 0.35, f"{first:.3f} s: one timeout, not retried"
        started = time.perf_counter()
        for _ in range(10):
            with pytest.raises(redis.ConnectionError):
                store.is_locked("d" * 64)
        assert time.perf_counter() - started < 0.05, "failing fast while it cools down"
        time.sleep(0.55)
        started = time.perf_counter()
        with pytest.raises(redis.TimeoutError):
            store.gate_pin("d" * 64)  # asked again after the cool-down
        assert time.perf_counter() - started > 0.15
    finally:
        client.close()


def test_a_refused_connection_starts_no_cool_down() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = store_module.connect(f"redis://127.0.0.1:{port}/0", 0.2)
    store = Store(client, cooldown=60.0)
    try:
        for _ in range(2):
            with pytest.raises(redis.ConnectionError) as raised:
                store.begin("CA" + uuid.uuid4().hex, 0)
            assert "moment ago" not in str(raised.value), "it was really asked again"
    finally:
        client.close()
