"""The only module that talks to Redis: call state, step claims, PIN failure counters.

Keys are hash-tagged so every multi-key script touches one Redis Cluster slot:
  ivr:{<CallSid>}          hash: seq, state (JSON), reply_seq, reply (TwiML)
  ivr:{<CallSid>}:claim    the worker applying step `seq` right now (expires)
  ivr:{id:<digest>}:fails  consecutive wrong PINs for an ID number
  ivr:{id:<digest>}:lock   set for 24 hours after too many
A step is applied once: `begin` claims it (or answers a repeated delivery with
the reply already given), `commit` saves the new state and the reply together.
Every webhook costs two round trips: `begin` and `commit`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .state import CallState

LOCK_SECONDS = 24 * 3600
MAX_FAILURES = 5
CLAIM_MS = 10_000
ENDED_TTL = 600

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
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'state', ARGV[3], 'reply_seq', ARGV[4], 'reply', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('DEL', KEYS[2])
return 1
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


@dataclass(frozen=True, slots=True)
class Begun:
    """What `begin` found: go ahead (with the state), or answer with a reply already given."""

    outcome: Literal["go", "busy", "replay", "stale", "missing"]
    state: CallState | None = None
    reply: str | None = None
    token: str = ""


def connect(url: str, timeout: float) -> redis.Redis:
    """A client with short timeouts and one quick retry (a stale pooled connection)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
    )


class Store:
    """Call state and authentication counters in Redis."""

    def __init__(self, client: redis.Redis, call_ttl: int = 4 * 3600) -> None:
        self.redis = client
        self.call_ttl = call_ttl
        self._begin = client.register_script(_BEGIN)
        self._commit = client.register_script(_COMMIT)
        self._fail = client.register_script(_FAIL)
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def _call_keys(call_sid: str) -> list[str]:
        return [f"ivr:{{{call_sid}}}", f"ivr:{{{call_sid}}}:claim"]

    @staticmethod
    def _id_keys(digest: str) -> list[str]:
        return [f"ivr:{{id:{digest}}}:fails", f"ivr:{{id:{digest}}}:lock"]

    def begin(self, call_sid: str, seq: int) -> Begun:
        """Claim step `seq` of a call, or learn that it was already answered."""
        token = secrets.token_hex(8)
        outcome, payload = self._begin(self._call_keys(call_sid), [seq, token, CLAIM_MS])
        kind: Any = outcome.decode()
        if kind == "go":
            state = CallState.from_json(payload) if payload else None
            return Begun("go", state=state, token=token)
        return Begun(kind, reply=payload.decode() if payload else None)

    def commit(self, call_sid: str, token: str, seq: int, state: CallState, reply: str) -> bool:
        """Save the state after step `seq` and the reply it got; False if the claim was lost."""
        ttl = ENDED_TTL if state.ended else self.call_ttl
        args: list[Any] = [token, seq + 1, state.to_json(), seq, reply, ttl]
        return bool(self._commit(self._call_keys(call_sid), args))

    def release(self, call_sid: str, token: str) -> None:
        """Give a claim back without saving (the step failed half-way)."""
        self._release([self._call_keys(call_sid)[1]], [token])

    def end(self, call_sid: str) -> None:
        """The call is over: keep its state a little longer for late duplicates, then forget it."""
        self.redis.expire(self._call_keys(call_sid)[0], ENDED_TTL)

    def is_locked(self, digest: str) -> bool:
        """Whether an ID number is locked after too many wrong PINs."""
        return bool(self.redis.exists(self._id_keys(digest)[1]))

    def record_failure(self, digest: str) -> bool:
        """Count a wrong PIN for an ID number; True if it is (now) locked."""
        return bool(self._fail(self._id_keys(digest), [MAX_FAILURES, LOCK_SECONDS]))

    def clear_failures(self, digest: str) -> None:
        """A right PIN: the failures in a row start again from zero."""
        self.redis.delete(self._id_keys(digest)[0])

    def unlock(self, digest: str) -> bool:
        """Lift an ID number's lock and its failure count; True if it was locked."""
        fails, lock = self._id_keys(digest)
        locked = bool(self.redis.exists(lock))
        self.redis.delete(fails, lock)
        return locked
