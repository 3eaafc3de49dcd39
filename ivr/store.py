"""The only module that talks to Redis: call state, step claims, PIN failure counters.

Keys are hash-tagged so every multi-key script touches one Redis Cluster slot:
  ivr:{<CallSid>}          hash: seq, state (JSON), reply_seq, reply (TwiML)
  ivr:{<CallSid>}:claim    the worker applying step `seq` right now (expires)
  ivr:{id:<digest>}:fails  consecutive wrong PINs for an ID number
  ivr:{id:<digest>}:lock   set for 24 hours after too many
  ivr:{id:<digest>}:checks PIN checks of an ID number in the current window (rate limit)
  ivr:{caller:<key>}:calls calls from one number that keyed an ID number, this window
  ivr:{caller:<key>}:ids   distinct ID numbers (digests) keyed from one number, this window
  ivr:calllog:{<name>}     the call log's outbox (a stream: `ivr.outbox`), and :mover, the
                           lease of the process moving it to the database
A step is applied once: `begin` claims it (or answers a repeated delivery with
the reply already given), `commit` saves the new state and the reply together.
Round trips per webhook: a call's first webhook one (`open`: its state and reply saved
together, or the reply a repeated delivery already got); any other two (`begin`, `commit`);
keying an ID number adds one (the caller's limits and the ID number's lock, sent together)
and a PIN one (the ID number's lock and limit, before any PIN hash is computed; a right PIN's
reset of the failure count goes with the `commit`). Each script touches one slot; commands
sent together are a pipeline without MULTI, each safe to repeat.

Those round trips go through `Lane`: it sends packed commands on one of redis-py's connections,
taken for the trip from those idle (redis-py's command layer costs several times the trip it
wraps).

When Redis is silent past the client timeout, this process stops asking
it for `cooldown` seconds: every operation raises at once, so the hotline answers with its
apology in milliseconds instead of waiting on a stalled server again. (A refused connection
fails at once by itself and starts no cool-down.)
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from .state import CallState

LOCK_SECONDS = 24 * 3600
MAX_FAILURES = 5
CLAIM_MS = 10_000
# Seconds an ended call's state (its last reply) is kept after its status callback, for a
# webhook still in flight or retried then: Twilio gives a webhook 15 s at most, retries
# included. Ended calls outnumber live ones in Redis by their rate times this (at 140 calls a
# second, 600 s kept 84,000 of them, some 20 times the memory of 3,000 live calls).
ENDED_TTL = 120
# The call log's outbox keeps at most about this many webhooks' writes (the database away for
# a quarter of an hour at 1,000 webhooks a second); past that the oldest are dropped.
OUTBOX_MAXLEN = 1_000_000

_T = TypeVar("_T")

_BEGIN = """
local h = redis.call('HMGET', KEYS[1], 'seq', 'state', 'reply_seq', 'reply')
local want = tonumber(ARGV[1])
if (h[1] == false and want == 0) or (h[1] and tonumber(h[1]) == want) then
  if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
    return {'go', h[2] or ''}
  end
  return {'busy', ''}
end
if h[1] == false then return {'missing', ''} end
if h[3] and tonumber(h[3]) == want then return {'replay', h[4]} end
return {'stale', h[4] or ''}
"""

_COMMIT = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'state', ARGV[3],
           'reply_seq', ARGV[4], 'reply', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('DEL', KEYS[2])
return 1
"""

# A call's first webhook, whose reply needs nothing but the menu: KEYS call; ARGV state,
# reply, ttl. Saved as step 0's reply unless the call exists (a repeated delivery: its reply).
_OPEN = """
local h = redis.call('HMGET', KEYS[1], 'seq', 'reply_seq', 'reply')
if h[1] then
  if h[2] and tonumber(h[2]) == 0 then return {'replay', h[3]} end
  return {'stale', h[3] or ''}
end
redis.call('HSET', KEYS[1], 'seq', 1, 'state', ARGV[1], 'reply_seq', 0, 'reply', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {'go', ''}
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

_FAIL = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[2])
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# The caller's limits: KEYS calls, ids; ARGV call_sid, id digest, most calls, most ids, window.
# A member already in a set is always let through; a new one only while the set has room.
_ADMIT = """
local function room(key, member, most, window)
  if most <= 0 or redis.call('SISMEMBER', key, member) == 1 then return true end
  if redis.call('SCARD', key) >= most then return false end
  redis.call('SADD', key, member)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, window) end
  return true
end
if not room(KEYS[1], ARGV[1], tonumber(ARGV[3]), ARGV[5]) then return 'calls' end
if not room(KEYS[2], ARGV[2], tonumber(ARGV[4]), ARGV[5]) then return 'ids' end
return 'ok'
"""

# Before a PIN is checked: KEYS fails, lock, checks; ARGV most checks, window.
_GATE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 'locked' end
local most = tonumber(ARGV[1])
if most > 0 then
  if tonumber(redis.call('GET', KEYS[3]) or '0') >= most then return 'limited' end
  redis.call('INCR', KEYS[3])
  if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ARGV[2]) end
end
return 'ok'
"""


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits against PIN guessing, per `window` seconds (0: no limit): calls that key an ID
    number from one caller number, distinct ID numbers keyed from one caller number, and PIN
    checks of one ID number (whoever calls)."""

    window: int = 3600
    caller_calls: int = 20
    caller_ids: int = 5
    id_checks: int = 10


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin` found: go ahead (with the state), or answer with a reply already given."""

    outcome: Literal["go", "busy", "replay", "stale", "missing"]
    state: CallState | None = None
    reply: str | None = None
    token: str = ""


# Connections a process's client may open (per node of a Cluster): above what a gevent worker
# can have in flight (worker_connections, 1,000), so that no command is refused for want of
# one. redis-py decides otherwise (100 in redis-py 8.2; past it, MaxConnectionsError). The
# webhooks' round trips take at most LANE_CONNECTIONS of them.
MAX_CONNECTIONS = 1024


def connect(url: str, timeout: float) -> redis.Redis:
    """The one way the hotline, the console, `ivr` and the benchmark reach REDIS_URL.

    A client with short timeouts and one quick retry for a stale pooled connection (one the
    server closed). A server silent past `timeout` is not asked again: a stalled Redis would
    only double the caller's wait before the apology. Besides redis://, rediss:// and unix://:

      redis+cluster://[[user]:password@]host:port[,host:port...]          Redis Cluster
      redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]
                                                the master Sentinel names `service`
    (rediss+…: TLS; the password is the data nodes'; `?sentinel_password=` the Sentinels').
    """
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis+cluster", "rediss+cluster"):
        return _cluster(url, timeout)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        return _sentinel(url, timeout)
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
    )


def _nodes(url: str, default_port: int) -> tuple[list[tuple[str, int]], dict[str, Any], str]:
    """(host, port) pairs, the credentials and TLS, and the path of a cluster or Sentinel URL."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    nodes = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or "]" in port:  # no port, or a bare [IPv6] address
            host, port = item.strip(), str(default_port)
        host = host.strip("[]")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL: {item.strip()!r} is not host:port")
        nodes.append((host, int(port)))
    options: dict[str, Any] = {"ssl": True} if parts.scheme.lower().startswith("rediss") else {}
    if user:
        options["username"] = unquote(user)
    if password:
        options["password"] = unquote(password)
    return nodes, options, parts.path


def _cluster(url: str, timeout: float) -> redis.Redis:
    """Redis Cluster from its seed nodes; made on first use (see `_Deferred`)."""
    from redis.cluster import ClusterNode, RedisCluster

    nodes, options, path = _nodes(url, 6379)
    if path.strip("/") not in ("", "0"):
        raise ValueError("REDIS_URL: a Redis Cluster has only database 0")

    def make() -> Any:
        seeds = [ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=seeds,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),  # one retry, after the client re-reads the slot map
            max_connections=MAX_CONNECTIONS,  # (a pool per node)
            **options,
        )

    return cast(redis.Redis, _Deferred(make))


def _sentinel(url: str, timeout: float) -> redis.Redis:
    """The master that Redis Sentinel names; each new connection asks the Sentinels where it
    is, so after a failover the retry reaches the new master."""
    from redis.sentinel import Sentinel

    nodes, options, path = _nodes(url, 26379)
    service, _, db = path.strip("/").partition("/")
    if not service or not (db or "0").isdigit():
        raise ValueError("REDIS_URL: redis+sentinel://host:port[,host:port]/service[/db]")
    query = parse_qs(urlsplit(url).query)
    sentinel_options: dict[str, Any] = {"socket_timeout": timeout,
                                        "socket_connect_timeout": timeout}  # fmt: skip
    if "ssl" in options:
        sentinel_options["ssl"] = True
    if "sentinel_password" in query:
        sentinel_options["password"] = query["sentinel_password"][0]
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_options)
    master: redis.Redis = sentinel.master_for(
        service,
        db=int(db or 0),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        health_check_interval=30,
        max_connections=MAX_CONNECTIONS,
        **options,
    )
    return master


class _Deferred:
    """A Redis Cluster client made when first used. RedisCluster asks the seed nodes for the
    slot map as it is made: made at start, a web worker could not even boot while the cluster
    is out of reach, where it should answer callers with the apology. Until it is made, every
    command raises ConnectionError, and the next one tries again."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from redis.exceptions import RedisClusterException

                    try:
                        self._client = self._make()
                    except RedisClusterException as exc:  # not a RedisError: say it as one
                        raise redis.ConnectionError(str(exc)) from None
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)

    def register_script(self, script: str) -> Script:
        """A script bound to this client (as bytes, its SHA needs no encoder from the cluster)."""
        return Script(cast(redis.Redis, self), script.encode())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _is_cluster(client: Any) -> bool:
    from redis.cluster import RedisCluster

    return isinstance(client, (_Deferred, RedisCluster))


class Store:
    """Call state and authentication counters in Redis."""

    def __init__(
        self, client: redis.Redis, call_ttl: int = 4 * 3600, *, limits: Limits | None = None,
        cooldown: float = 0.0,
    ) -> None:  # fmt: skip
        self.redis = client
        self.call_ttl = call_ttl
        self.limits = limits or Limits()
        self.cooldown = cooldown
        self._down_until = 0.0
        self._guard = threading.Lock()
        self._begin = client.register_script(_BEGIN)
        self._commit = client.register_script(_COMMIT)
        self._fail = client.register_script(_FAIL)
        self._release = client.register_script(_RELEASE)
        self._admit = client.register_script(_ADMIT)
        self._gate = client.register_script(_GATE)
        self._open = client.register_script(_OPEN)
        # One server holds every key: commands sent together go in one round trip. (A Redis
        # Cluster's nodes hold different slots, and its client pipelines no scripts.)
        self._lane = None if _is_cluster(client) else Lane(client.connection_pool)

    def _ask(self, operation: Callable[[], _T]) -> _T:
        """Run one Redis operation, failing at once while Redis is known to be out of reach."""
        if self.cooldown and time.monotonic() < self._down_until:
            raise redis.ConnectionError("Redis failed a moment ago; not asking again yet")
        try:
            return operation()
        except redis.TimeoutError:  # a refused connection fails at once anyway: no cool-down
            with self._guard:
                self._down_until = time.monotonic() + self.cooldown
            raise

    @staticmethod
    def _call_keys(call_sid: str) -> list[str]:
        return [f"ivr:{{{call_sid}}}", f"ivr:{{{call_sid}}}:claim"]

    @staticmethod
    def _id_keys(digest: str) -> list[str]:
        return [f"ivr:{{id:{digest}}}:fails", f"ivr:{{id:{digest}}}:lock"]

    @staticmethod
    def _checks_key(digest: str) -> str:
        return f"ivr:{{id:{digest}}}:checks"

    @staticmethod
    def _caller_keys(caller_key: str) -> list[str]:
        return [f"ivr:{{caller:{caller_key}}}:calls", f"ivr:{{caller:{caller_key}}}:ids"]

    def begin(self, call_sid: str, seq: int) -> Begun:
        """Claim step `seq` of a call, or learn that it was already answered."""
        token = secrets.token_hex(8)
        outcome, payload = self._together(
            (self._begin, self._call_keys(call_sid), [seq, token, CLAIM_MS])
        )[0]
        kind: Any = outcome.decode()
        if kind == "go":
            state = CallState.from_json(payload) if payload else None
            return Begun("go", state=state, token=token)
        return Begun(kind, reply=payload.decode() if payload else None)

    def open(
        self, call_sid: str, state: CallState, reply: str, log: _Command | None = None
    ) -> Begun:  # fmt: skip
        """A call's first step, when its reply needs nothing but the menu: save the state and
        reply in one round trip ("go"), or find the call begun (a repeated delivery: "replay"
        with the reply it got; "stale" with the latest one). `log`: the call-log entries'
        `outbox_add`, sent in the same round trip."""
        ttl = ENDED_TTL if state.ended else self.call_ttl
        args: list[Any] = [state.to_json(), reply, ttl]
        opening: _Command = (self._open, self._call_keys(call_sid)[:1], args)
        outcome, payload = self._together(opening, *([log] if log else []))[0]
        kind: Any = outcome.decode()
        return Begun(kind, reply=payload.decode() if payload else None)

    def commit(
        self, call_sid: str, token: str, seq: int, state: CallState, reply: str,
        clear_failures: str | None = None, log: _Command | None = None,
    ) -> bool:  # fmt: skip
        """Save the state after step `seq` and the reply it got; False if the claim was lost.
        `clear_failures`: an ID number's digest whose wrong PINs in a row start again from
        zero (its PIN was right); `log`: the step's call-log entries' `outbox_add`; both sent
        in the same round trip."""
        ttl = ENDED_TTL if state.ended else self.call_ttl
        args: list[Any] = [token, seq + 1, state.to_json(), seq, reply, ttl]
        commands: list[_Command] = [(self._commit, self._call_keys(call_sid), args)]
        if clear_failures is not None:
            commands.append(("DEL", self._id_keys(clear_failures)[:1], []))
        if log is not None:
            commands.append(log)
        return bool(self._together(*commands)[0])

    def _together(self, *commands: _Command) -> list[Any]:
        """Commands sent in one round trip (a pipeline without MULTI), their raw answers.
        Scripts go by their SHA alone; if Redis has forgotten one (it restarted), it is loaded
        and that script sent again (only it: the others have run). On a Redis Cluster they are
        sent one after the other, each to the node holding its slot."""
        lane = self._lane
        if lane is None:
            return [self._ask(lambda: _send(self.redis, c)) for c in commands]  # noqa: B023

        answers = self._ask(lambda: lane.send([_words(c) for c in commands]))
        again = [i for i, answer in enumerate(answers)
                 if isinstance(answer, redis.exceptions.NoScriptError)]  # fmt: skip
        if again:
            scripts = {cast(Script, commands[i][0]).script for i in again}
            loads = [("SCRIPT", "LOAD", script) for script in scripts]
            resent = self._ask(lambda: lane.send([*loads, *(_words(commands[i]) for i in again)]))
            for i, answer in zip(again, resent[len(loads):], strict=True):
                answers[i] = answer
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def release(self, call_sid: str, token: str) -> None:
        """Give a claim back without saving (the step failed half-way)."""
        self._together((self._release, [self._call_keys(call_sid)[1]], [token]))

    def abandon(self, call_sid: str) -> None:
        """Drop whatever claim the call holds: its caller has given up on that step (after an
        apology), so no worker is applying it for them any more."""
        self._ask(lambda: self.redis.delete(self._call_keys(call_sid)[1]))

    def end(self, call_sid: str, log: _Command | None = None) -> None:
        """The call is over: keep its state a little longer for late duplicates, then forget it.
        `log`: the call's end's `outbox_add`, sent in the same round trip."""
        expire: _Command = ("EXPIRE", self._call_keys(call_sid)[:1], [ENDED_TTL])
        self._together(expire, *([log] if log else []))

    # --- the call log's outbox (ivr.outbox) ---------------------------------------------------

    @staticmethod
    def outbox_key(name: str) -> str:
        return f"ivr:calllog:{{{name}}}"

    @staticmethod
    def outbox_add(key: str, payload: bytes) -> _Command:
        """The command that adds one webhook's call-log writes to the outbox (at most
        OUTBOX_MAXLEN entries kept: past that, while the database is away, the oldest go)."""
        return ("XADD", [key], ["MAXLEN", "~", OUTBOX_MAXLEN, "*", "w", payload])

    def outbox_put(self, key: str, payload: bytes) -> None:
        """Add to the outbox on its own (writes that go with no other command)."""
        self._together(self.outbox_add(key, payload))

    def outbox_read(
        self, key: str, after: str, count: int, trim: bool = False
    ) -> list[tuple[str, bytes]]:  # fmt: skip
        """Up to `count` outbox entries after `after`, oldest first: (id, payload). `trim`:
        first forget the entries up to `after` (they are in the database), in the same round
        trip."""
        read: _Command = ("XREAD", [], ["COUNT", count, "STREAMS", key, after])
        if trim:
            ms, _, seq = after.partition("-")
            forget: _Command = ("XTRIM", [key], ["MINID", "~", f"{ms}-{int(seq or 0) + 1}"])
            answer = self._together(forget, read)[1]
        else:
            answer = self._together(read)[0]
        # Raw (RESP2 lists, RESP3 a map), or as redis-py's XREAD callback left it (the cluster).
        streams = answer.items() if isinstance(answer, dict) else answer or []
        return [(_text(entry_id), _fields(fields)[b"w"])
                for _, entries in streams for entry_id, fields in entries]  # fmt: skip

    def outbox_length(self, key: str) -> int:
        """How many entries the outbox holds (moved ones go with the mover's next read)."""
        return int(self._ask(lambda: self.redis.xlen(key)))

    def outbox_id(self, key: str) -> str:
        """The id of this Redis's outbox stream (made on first ask): its place in the database
        is kept under it, so a Redis started afresh, or another Redis on the same database,
        starts from its own beginning."""
        made = secrets.token_hex(8)
        ident = self._together(("SET", [f"{key}:id"], [made, "NX"]),
                               ("GET", [f"{key}:id"], []))[1]  # fmt: skip
        return _text(ident)

    def outbox_last(self, key: str) -> str | None:
        """The newest entry still in the outbox, or None."""
        newest = self._ask(lambda: self.redis.xrevrange(key, count=1))
        return _text(newest[0][0]) if newest and newest[0][0] else None

    def outbox_lease(self, key: str, seconds: float) -> Any:
        """The lease that lets one process at a time move the outbox (redis-py's Lock)."""
        return self.redis.lock(f"{key}:mover", timeout=seconds, blocking=False,
                               thread_local=False)  # fmt: skip

    def admit(
        self, caller_key: str, call_sid: str, digest: str
    ) -> tuple[Literal["ok", "calls", "ids"], bool]:  # fmt: skip
        """May this call from this caller (a keyed hash of the number) try this ID number, and
        is the ID number locked? `calls`: too many calls from the number tried ID numbers this
        window; `ids`: too many distinct ID numbers were tried from it. One round trip (the two
        sent together); a Redis failure raises."""
        limits = self.limits
        args: list[Any] = [call_sid, digest, limits.caller_calls, limits.caller_ids, limits.window]

        answer, locked = self._together(
            (self._admit, self._caller_keys(caller_key), args),
            ("EXISTS", self._id_keys(digest)[1:], []),
        )
        word: Literal["ok", "calls", "ids"] = _word(answer, ("ok", "calls", "ids"))
        return word, bool(locked)

    def gate_pin(self, digest: str) -> Literal["ok", "locked", "limited"]:
        """Before a PIN of an ID number is checked: is the ID number locked, or has it had its
        PIN checks for this window? Counts this check. One round trip; a Redis failure raises."""
        keys = [*self._id_keys(digest), self._checks_key(digest)]
        args: list[Any] = [self.limits.id_checks, self.limits.window]
        answer = self._together((self._gate, keys, args))[0]
        word: Literal["ok", "locked", "limited"] = _word(answer, ("ok", "locked", "limited"))
        return word

    def is_locked(self, digest: str) -> bool:
        """Whether an ID number is locked after too many wrong PINs (for tools and tests: a
        webhook learns it from `admit` or `gate_pin`)."""
        return bool(self._ask(lambda: self.redis.exists(self._id_keys(digest)[1])))

    def record_failure(self, digest: str) -> bool:
        """Count a wrong PIN for an ID number; True if it is (now) locked."""
        keys = self._id_keys(digest)
        return bool(self._together((self._fail, keys, [MAX_FAILURES, LOCK_SECONDS]))[0])

    def unlock(self, digest: str) -> bool:
        """Lift an ID number's lock, its failure count and its PIN-check limit; True if it was
        locked."""
        fails, lock = self._id_keys(digest)
        locked = bool(self.redis.exists(lock))
        self.redis.delete(fails, lock, self._checks_key(digest))
        return locked


# One command for `_together`: a script, or a Redis command's name; its keys; its arguments
# (as Redis takes them).
_Command = tuple[Script | str, list[str], list[Any]]


def _words(command: _Command) -> tuple[Any, ...]:
    """A command as Redis reads it; a script goes by its SHA."""
    name, keys, args = command
    if isinstance(name, str):
        return (name, *keys, *args)
    return ("EVALSHA", name.sha, len(keys), *keys, *args)


def _send(client: Any, command: _Command) -> Any:
    """Send one command through redis-py (a Redis Cluster: it finds the node by the keys). A
    script's object loads the script if the node has forgotten it."""
    name, keys, args = command
    if isinstance(name, str):
        return client.execute_command(name, *keys, *args)
    return name(keys, args, client=client)


LANE_CONNECTIONS = 64  # Redis connections a process's webhooks use at most, one a trip in flight
# Seconds a trip waits for one of them to come free. It waits behind the worker's other
# webhooks (a burst of new calls keeps the CPU busy and the connections with it), and a caller
# would rather hear a late answer than the apology: Twilio waits 15 s.
LANE_WAIT = 5.0


class Lane:
    """Round trips on redis-py's connections, each taken for one trip from a stack of idle ones
    and put back after it. A process opens as many connections as it has had trips in flight
    at once, however many threads or greenlets answer webhooks (a gevent worker runs one per
    client connection, up to 1,000), and at most `most`: past that a trip waits for a
    connection to come free (a burst of new calls would otherwise open one for each, every new
    connection's handshake slowing the rest), and fails as a ConnectionError if none does
    within `wait` seconds.

    redis-py's Connection still connects (AUTH, HELLO, SELECT, TLS, timeouts, the master that
    Sentinel names), checks an idle connection's health, reads replies with hiredis and raises
    its own errors, and the client's Retry repeats a trip whose connection failed. What is left
    out is its command layer: encoding each argument, the pool's checkout and return and its
    observability events, response callbacks. That layer cost 58-85 µs of client CPU per trip
    against 18-22 µs for the same trips here (bench/roundtrip.py, docs/benchmark.md). Answers
    are Redis's raw replies; a command's error reply is its answer (a ResponseError), as in a
    pipeline. A forked child opens connections of its own."""

    def __init__(
        self, pool: redis.ConnectionPool, most: int = LANE_CONNECTIONS, wait: float = LANE_WAIT
    ) -> None:
        self.pool = pool
        self.most = most
        self.wait = wait
        self._start()

    def _start(self) -> None:
        """This process's connections: none yet. (The condition is made here, in the process
        that uses it: in a gevent worker, after gevent has made `threading` its own.)"""
        self._pid = os.getpid()
        self._idle: list[Any] = []  # (pop and append: each atomic under the GIL)
        self._made = 0  # connections this process opened (under the condition's lock)
        self._waiting = 0  # trips waiting for one to come free (under the lock)
        self._came_free = threading.Condition()

    def _take(self) -> Any:
        if self._pid != os.getpid():  # a forked child: the parent's connections are not its own
            self._start()
        try:
            return self._idle.pop()  # the usual way: no lock
        except IndexError:
            pass
        deadline = time.monotonic() + self.wait
        with self._came_free:
            self._waiting += 1  # (before looking: a connection given back from now on wakes us)
            try:
                while True:
                    try:
                        return self._idle.pop()
                    except IndexError:
                        pass
                    if self._made < self.most:
                        self._made += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._came_free.wait(left):
                        raise redis.ConnectionError(
                            f"no Redis connection came free within {self.wait} s "
                            f"({self.most} round trips in flight in this process)"
                        )
            finally:
                self._waiting -= 1
        try:
            return self.pool.get_connection()
        except BaseException:
            with self._came_free:
                self._made -= 1
                self._came_free.notify()
            raise

    def _give(self, connection: Any) -> None:
        if self._pid != os.getpid():
            return
        self._idle.append(connection)
        if self._waiting:  # (read after the append: a trip that began waiting before it sees it)
            with self._came_free:
                self._came_free.notify()

    def send(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Commands (each as Redis reads it) in one round trip; their answers in order."""
        connection = self._take()
        packed = [hiredis.pack_command(tuple(c)) for c in commands]
        message = [b"".join(packed)]  # one write: Redis reads them all, answers in one

        def trip() -> list[Any]:
            # Connected as the pool connects: under Sentinel, connect() asks where the master
            # is now (sending on a closed connection would go back to its old address).
            if not connection.is_connected:
                connection.connect()
            connection.send_packed_command(message)
            answers = []
            for _ in packed:
                try:
                    answers.append(connection.read_response())
                except redis.ResponseError as error:
                    answers.append(error)
            return answers

        try:
            return cast(list[Any], connection.retry.call_with_retry(
                trip, lambda _error: connection.disconnect()))
        except BaseException:
            # Replies may be left unread (a greenlet killed mid-trip): the next trip on this
            # connection would read them as its own. It connects afresh instead.
            connection.disconnect()
            raise
        finally:
            self._give(connection)


def _fields(fields: Any) -> dict[bytes, Any]:
    """A stream entry's fields: a flat list as Redis sends them, or a dict (redis-py's)."""
    return fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=True))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _word(answer: bytes, allowed: tuple[str, ...]) -> Any:
    """A script's one-word answer, checked against the words it may say."""
    word: Any = answer.decode()
    if word not in allowed:
        raise redis.ResponseError(f"unexpected answer from a script: {word[:20]!r}")
    return word
