"""The call log's outbox: webhooks hand their call-log writes to Redis, a mover writes them to
the database.

A webhook's writes (the call's start, the webhook's entries, the call's end) go into a Redis
stream in the same round trip that saves the call's state, so a webhook is answered without
waiting for the database, and what it said is kept (Redis keeps the stream: the embedded
Redis in its append-only file) before the caller hears it. One process at a time, holding a
lease in Redis, moves the stream to the database: every few milliseconds, whatever has
arrived, oldest first, in one transaction, with its place in the stream written in that same
transaction (`CallLog.write(moved=...)`, under the stream's own id, which its Redis keeps):
an entry is written once even if a mover dies between writing and telling Redis, or two
movers overlap, and a Redis started afresh (or another Redis on the same database) is moved
from its own beginning. The stream is one queue for every
worker and machine, so a call's writes reach the database in the order its webhooks were
answered, whichever worker answered each.

Every worker runs a mover thread; one holds the lease and moves, the others try for it every
second, so a mover killed with its worker is replaced within LEASE seconds. In a gevent
worker the mover is a greenlet, and its transactions run in a native thread (`off_loop`):
the worker's webhooks are answered while SQLite writes. Readers that must
see every call up to now (the console, `ivr calls`) call `catch_up` first.

The stream's key is named by the database (a name kept in its `call_log_outbox` row), so
hotlines sharing a Redis but not a database keep apart. Nothing secret is in the stream: the
caller's number is masked and keyed before it goes there, the entries are redacted already.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis
import sqlalchemy as sa

from services.offload import off_loop

from .calllog import (
    Appended,
    CallLog,
    Ended,
    Entry,
    Moved,
    Noted,
    Opened,
    Started,
    Write,
    mask_number,
)
from .store import OUTBOX_MAXLEN, Store

log = logging.getLogger("ivr.outbox")

BATCH = 500  # stream entries (webhooks) moved in one transaction at most
PAUSE = 0.05  # seconds a mover waits when it found less than a batch
IDLE = 0.5  # ... and at most, when it keeps finding fewer than ENOUGH (twice as long each time)
ENOUGH = 50  # entries worth a Redis round trip every PAUSE
LEASE = 5.0  # seconds a mover's lease lasts without being renewed
RETRY = 1.0  # seconds between tries for the lease, or after the database or Redis failed
SAY_EVERY = 10.0  # seconds between two log lines about the same failure
HOLD = 100_000  # writes held for the outbox while Redis is down, at most


class Outbox:
    """The call log's outbox for one database: hand writes over (`command`, `put`), move them
    (`start` a mover thread, or `move` once), and wait until they are moved (`catch_up`)."""

    def __init__(
        self, store: Store, calllog: CallLog, caller_key: Callable[[str], str] | None = None,
        on_ended: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.store = store
        self.calllog = calllog
        self.caller_key = caller_key
        self.on_ended = on_ended  # told each call's outcome, once, when its end is moved
        self._key: str | None = None
        self._naming = threading.Lock()  # one thread at a time asks the database for the name
        self._asked = -RETRY  # when the database was last asked for the outbox's name
        self._lease: Any = None
        self._renew_at = 0.0
        self._moved = ""  # the last entry moved, while this process holds the lease
        self._trim = False  # entries up to it are still in Redis
        self._stream = ""  # the id of the stream in this Redis
        self._moving = threading.Lock()  # one move at a time in this process
        self._pid = 0  # the process whose mover thread runs
        self._said: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._held: deque[Write] = deque(maxlen=HOLD)
        self._holding = threading.Lock()

    # --- handing writes over ---------------------------------------------------------------

    @property
    def key(self) -> str | None:
        """The stream's key, or None while the database has not said its name (then writes
        go to the database directly). While one thread asks the database, the others wait
        for its answer: a webhook writing directly while others of the same call go through
        the outbox would reach the log out of order."""
        if self._key is not None:
            return self._key
        with self._naming:
            if self._key is None and time.monotonic() - self._asked >= RETRY:
                try:
                    name = self.calllog.outbox_name()
                except sa.exc.SQLAlchemyError as exc:
                    self._say("name", "call log: could not learn the outbox's name from the "
                              "database (%s); writing to the database directly", _kind(exc))
                else:
                    self._key = self.store.outbox_key(name)
                self._asked = time.monotonic()
        return self._key

    def command(self, writes: Sequence[Write]) -> Any:
        """The Redis command that hands `writes` over, to send with the webhook's others; None
        if the outbox is not known yet."""
        key = self.key
        return None if key is None else self.store.outbox_add(key, self.encode(writes))

    def put(self, writes: Sequence[Write]) -> bool:
        """Hand `writes` over on their own; False if the outbox is not known (Redis errors
        raise)."""
        key = self.key
        if key is None:
            return False
        self.store.outbox_put(key, self.encode(writes))
        return True

    def hold(self, writes: Sequence[Write]) -> None:
        """Hand `writes` over once Redis answers again (tried before each webhook and by the
        mover thread): writes the database did not take because their call's start is still
        in the outbox (an apology or a call's end while Redis is down). At most HOLD are
        held; past that the oldest go."""
        with self._holding:
            self._held.extend(writes)

    def hand_held(self) -> None:
        """Hand the held writes over, if there are any and Redis answers (each webhook asks
        first, so that they go before its own writes)."""
        if not self._held:
            return
        with self._holding:
            writes = list(self._held)
            self._held.clear()
        if not writes:
            return
        try:
            handed = self.put(writes)
        except redis.RedisError:
            handed = False
        if not handed:
            with self._holding:
                self._held.extendleft(reversed(writes))

    def encode(self, writes: Sequence[Write]) -> bytes:
        """Writes as the stream keeps them: JSON, the caller's number masked and keyed."""
        return json.dumps([self._encode(write) for write in writes],
                          separators=(",", ":"), ensure_ascii=False).encode()  # fmt: skip

    def _encode(self, write: Write) -> list[Any]:
        sid = write.call_sid
        if isinstance(write, Started | Opened):
            key = write.key
            if key is None:
                key = self.caller_key(write.caller) if self.caller_key else ""
            head = [sid, mask_number(write.caller), key, write.at.isoformat()]
            if isinstance(write, Started):
                return ["s", *head]
            return ["o", *head, write.lang, _entries(write.entries)]
        if isinstance(write, Appended):
            return ["a", sid, write.lang, _entries(write.entries)]
        if isinstance(write, Noted):
            return ["n", sid, _entries(write.entries)]
        return ["e", sid, write.status, write.duration, write.at.isoformat()]

    # --- moving them -----------------------------------------------------------------------

    def start(self) -> None:
        """Run this process's mover thread (again after a fork: threads do not survive it)."""
        if self._pid == os.getpid():
            return
        with self._moving:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._lease, self._moved, self._stopping = None, "", threading.Event()
            self._thread = threading.Thread(target=self._run, name="call-log mover", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop this process's mover (at the process's end, or the app's): move what is left
        if no other process is moving, and give the lease back (another process takes it at
        once, not after LEASE)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2 * LEASE)  # its pass in hand finishes first
        try:
            while self.move():
                pass
            self._let_go()
        except (redis.RedisError, sa.exc.SQLAlchemyError, OSError) as exc:
            log.warning("call log: the outbox was left to another process (%s)", _kind(exc))
        finally:
            self._lease = None

    def _let_go(self) -> None:
        """Give the lease back, if this process holds it."""
        with self._moving:
            lease, self._lease = self._lease, None
            if lease is not None:
                lease.release()

    def _run(self) -> None:
        pause = wait = PAUSE
        while not self._stopping.is_set():
            try:
                self.hand_held()
                moved = self.move()
            except (redis.RedisError, sa.exc.SQLAlchemyError, OSError) as exc:
                self._say("move", "call log: moving the outbox to the database failed (%s); "
                          "trying again", _kind(exc))  # fmt: skip
                if isinstance(exc, sa.exc.SQLAlchemyError):
                    self._fill_level()
                wait = RETRY
            except Exception:  # a bug must not stop the mover for good
                log.exception("call log: the outbox's mover failed")
                wait = RETRY
            else:
                if moved is None:
                    wait = RETRY  # another process moves
                elif moved < BATCH:  # (a quiet line: look less often, up to IDLE)
                    pause = wait = PAUSE if moved >= ENOUGH else min(pause * 2, IDLE)
                else:
                    wait = 0.0
            # writes held while Redis was down go to the outbox soon after it is back
            self._stopping.wait(min(wait, PAUSE) if self._held else wait)

    def move(self) -> int | None:
        """Move one batch if this process holds the lease (taking it if it is free): how many
        stream entries were moved, or None if another process holds the lease."""
        key = self.key
        if key is None:
            return None
        with self._moving:
            if not self._hold(key):
                return None
            if not self._moved:
                self._stream = self.store.outbox_id(key)
                self._moved, self._trim = self.calllog.outbox_moved(self._stream), True
            entries = self.store.outbox_read(key, self._moved, BATCH, trim=self._trim)
            self._trim = False
            if entries:
                last = entries[-1][0]
                writes = [write for _, payload in entries for write in decode(payload)]
                try:
                    done = off_loop(self.calllog.write, writes,
                                    moved=(self._stream, self._moved, last))
                except Moved:  # another mover had the lease meanwhile: start from its place
                    self._moved = ""
                    return 0
                self._moved, self._trim = last, True  # forgotten in Redis with the next read
                self._tell(writes, done)
            return len(entries)

    def _fill_level(self) -> None:
        """While the database does not take the outbox, say how full it grows: past
        OUTBOX_MAXLEN entries Redis drops the oldest as new ones come."""
        key = self._key
        try:
            held = self.store.outbox_length(key) if key is not None else 0
        except redis.RedisError:
            return
        if held >= OUTBOX_MAXLEN:
            self._say("full", "call log: the outbox is full (%d webhooks' entries) and the "
                      "database still does not take them: the oldest are being dropped, and "
                      "their calls' timelines will have gaps", held)  # fmt: skip
        elif held >= OUTBOX_MAXLEN // 2:
            self._say("filling", "call log: the outbox holds %d webhooks' entries, %d %% of "
                      "what it keeps (%d) while the database does not take them",
                      held, 100 * held // OUTBOX_MAXLEN, OUTBOX_MAXLEN)  # fmt: skip

    def _hold(self, key: str) -> bool:
        """Whether this process holds the lease (renewed well before it lapses)."""
        now = time.monotonic()
        if self._lease is not None and now < self._renew_at:
            return True
        try:
            if self._lease is not None:
                self._lease.reacquire()
            else:
                lease = self.store.outbox_lease(key, LEASE)
                if not lease.acquire(blocking=False):
                    return False
                self._lease, self._moved = lease, ""
        except redis.exceptions.LockError:  # it lapsed: another process may move now
            self._lease, self._moved = None, ""
            return False
        self._renew_at = now + LEASE / 3
        return True

    def _tell(self, writes: Sequence[Write], done: Sequence[bool | str]) -> None:
        """Each call ended by these writes: its outcome, to whoever counts them."""
        if self.on_ended is None:
            return
        for write, result in zip(writes, done, strict=True):
            if isinstance(write, Ended) and result:
                self.on_ended(str(result))

    def catch_up(self, timeout: float = 2 * LEASE) -> bool:
        """Wait until every write handed over before now is in the database (moving them
        here if no other process is): True, or False after `timeout` seconds. A process
        without a mover of its own (`ivr calls`) gives the lease back when done."""
        key = self.key
        if key is None:
            return True
        try:
            return self._catch_up(key, timeout)
        except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
            self._say("catch_up", "call log: could not bring the outbox up to date (%s)",
                      _kind(exc))  # fmt: skip
            return False
        finally:
            if self._pid != os.getpid():  # no mover thread here to keep moving
                with contextlib.suppress(redis.RedisError):
                    self._let_go()

    def _catch_up(self, key: str, timeout: float) -> bool:
        """`catch_up`'s waiting: until the database's place passes the newest entry."""
        last = self.store.outbox_last(key)
        stream = self.store.outbox_id(key) if last is not None else ""
        deadline = time.monotonic() + timeout
        while last is not None and _order(self.calllog.outbox_moved(stream)) < _order(last):
            if time.monotonic() > deadline:
                return False
            if self.move() is None:  # another process moves: wait for it
                time.sleep(PAUSE / 5)
        return True

    def _say(self, what: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._said.get(what, -SAY_EVERY) >= SAY_EVERY:
            self._said[what] = now
            log.error(message, *args)


def decode(payload: bytes) -> list[Write]:
    """The writes of one stream entry."""
    writes: list[Write] = []
    for item in json.loads(payload):
        kind, sid, *rest = item
        if kind in ("s", "o"):
            caller, key, at = rest[0], rest[1], _time(rest[2])
            if kind == "s":
                writes.append(Started(sid, caller, at, key))
            else:
                writes.append(Opened(sid, caller, at, _from(rest[4]), rest[3], key))
        elif kind == "a":
            writes.append(Appended(sid, _from(rest[1]), rest[0]))
        elif kind == "n":
            writes.append(Noted(sid, _from(rest[0])))
        else:
            writes.append(Ended(sid, rest[0], rest[1], _time(rest[2])))
    return writes


def _entries(entries: Sequence[Entry]) -> list[list[Any]]:
    return [[entry.at.isoformat(), entry.kind, entry.data] for entry in entries]


def _from(items: Sequence[Sequence[Any]]) -> tuple[Entry, ...]:
    return tuple(Entry(_time(at), kind, data) for at, kind, data in items)


def _time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _kind(exc: BaseException) -> str:
    return type(exc).__name__
