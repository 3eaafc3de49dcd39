"""The console's only Redis module: supervisor sessions and sign-in throttles.

Keys (hash-tagged like the hotline's, one slot per script):
  ivr:{sup:session:<sha256 of the session id>}  hash: uid, ver, user, created
  ivr:{sup:fails:user:<sha256 of the username>}  failed sign-ins for a username
  ivr:{sup:fails:ip:<sha256 of the address>}     failed sign-ins from an address
The browser holds the session id; Redis holds only its digest, so a copy of
Redis opens no session. A session ends after `idle` seconds without a request
or `lifetime` seconds after sign-in, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

SESSION_IDLE = 3600  # an hour without a request signs a supervisor out
SESSION_LIFETIME = 12 * 3600  # and nobody stays signed in longer than a working day
USER_LIMIT = 5  # failed sign-ins for one username ...
IP_LIMIT = 20  # ... or from one address ...
WINDOW = 15 * 60  # ... within this many seconds block further tries until it ends

_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_TOUCH = """
local h = redis.call('HMGET', KEYS[1], 'uid', 'ver', 'user', 'created')
if not h[1] then return false end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return h
"""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in supervisor's session, as kept in Redis."""

    supervisor_id: int
    version: int
    username: str
    created: float


@dataclass(frozen=True, slots=True)
class Limits:
    """How many failed sign-ins are allowed, and for how long they count."""

    per_user: int = USER_LIMIT
    per_ip: int = IP_LIMIT
    window: int = WINDOW


class ConsoleStore:
    """Sessions and sign-in throttles for the supervisor console."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        limits: Limits | None = None,
        idle: int = SESSION_IDLE,
        lifetime: int = SESSION_LIFETIME,
    ) -> None:
        self.redis = client
        self.limits = limits or Limits()
        self.idle = idle
        self.lifetime = lifetime
        self._fail = client.register_script(_FAIL)
        self._touch = client.register_script(_TOUCH)

    # --- sessions ------------------------------------------------------------------

    def open_session(self, supervisor_id: int, version: int, username: str) -> str:
        """Start a session; returns its new random id (for the browser, never stored)."""
        session_id = secrets.token_urlsafe(32)
        key = _session_key(session_id)
        fields = {"uid": supervisor_id, "ver": version, "user": username, "created": time.time()}
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            pipe.expire(key, self.idle)
            pipe.execute()
        return session_id

    def session(self, session_id: str) -> Session | None:
        """The live session with this id (its idle time starts again), or None."""
        if not session_id:
            return None
        key = _session_key(session_id)
        found: Any = self._touch(keys=[key], args=[self.idle])
        if not found:
            return None
        uid, ver, user, created = (_text(v) for v in found)
        session = Session(int(uid), int(ver), user, float(created))
        if time.time() - session.created > self.lifetime:
            self.redis.delete(key)
            return None
        return session

    def close_session(self, session_id: str) -> None:
        """End a session (sign-out)."""
        if session_id:
            self.redis.delete(_session_key(session_id))

    # --- throttles -----------------------------------------------------------------

    def blocked_for(self, username: str, client: str) -> int:
        """Seconds until sign-in may be tried again for this username or address (0: now)."""
        user_key, ip_key = _fail_keys(username, client)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(user_key)
            pipe.ttl(user_key)
            pipe.get(ip_key)
            pipe.ttl(ip_key)
            user_n, user_ttl, ip_n, ip_ttl = pipe.execute()
        waits = [0]
        if user_n is not None and int(user_n) >= self.limits.per_user:
            waits.append(max(int(user_ttl), 1))
        if ip_n is not None and int(ip_n) >= self.limits.per_ip:
            waits.append(max(int(ip_ttl), 1))
        return max(waits)

    def record_failure(self, username: str, client: str) -> None:
        """Count a failed sign-in against the username and the address."""
        for key in _fail_keys(username, client):
            self._fail(keys=[key], args=[self.limits.window])

    def clear_failures(self, username: str) -> None:
        """A successful sign-in: the username's failures start from zero (the address's stay)."""
        self.redis.delete(_fail_keys(username, "")[0])


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _session_key(session_id: str) -> str:
    return f"ivr:{{sup:session:{_digest(session_id)}}}"


def _fail_keys(username: str, client: str) -> tuple[str, str]:
    user = _digest(username.strip().lower())
    return f"ivr:{{sup:fails:user:{user}}}", f"ivr:{{sup:fails:ip:{_digest(client)}}}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
