"""Group commit: many threads' writes, one transaction.

Each web worker answers many webhooks at once (one per thread). A webhook whose call-log
entries cannot go through the outbox (`ivr.outbox`: Redis is failing, or the database has not
yet named the outbox) writes them here, and so may many at once. Written one transaction per
webhook, the database's per-transaction work (the connection, BEGIN, COMMIT, each statement's
preparation) is most of what a webhook costs. Here a thread with writes to make queues them;
if no thread is writing, it becomes the writer itself (no hand-over to another thread: alone,
a webhook writes its own entries as it would without any of this) and writes everything
queued, in order, in one transaction; the threads that queued writes meanwhile wait, and the
next of them writes what queued up during that transaction. A webhook is answered only once
its entries are written (they survive a worker killed a moment later).

When the database does not answer, the writes are kept, and a thread of its own tries them
again every `retry` seconds until it takes them; a webhook waits at most `wait` seconds for
its write, then goes on (the caller is not kept waiting for the log), and its entries are
written when the database is back. At most `limit` writes are held; past that the oldest are
dropped, and said so in the log.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger("ivr.groupcommit")

T = TypeVar("T")
SAY_EVERY = 10.0  # seconds between two log lines about dropped writes


@dataclass(slots=True)
class _Pending(Generic[T]):
    items: Sequence[T]
    wake: threading.Condition  # its thread waits on this (the group's lock) and nothing else
    done: bool = False  # no longer held: written, or dropped
    written: bool = False
    waiting: bool = False  # its thread is waiting for it
    results: Sequence[Any] = ()  # what the write said of each of its items

    def finish(self, written: bool) -> None:
        """Written or dropped: its thread (if still waiting) goes on."""
        self.done, self.written = True, written
        if self.waiting:
            self.wake.notify()


class GroupCommit(Generic[T]):
    """Write what threads hand over in batches, one batch at a time, in the order handed over.

    `write(items)` writes a batch in one transaction or raises (and may return a result for
    each item, which `submit` hands back); `retryable` tells a database
    out of reach (try the same batch again later) from a batch that cannot be written (each
    of its writes is then tried alone, and one that still fails is dropped and logged)."""

    def __init__(
        self,
        write: Callable[[list[T]], object],
        retryable: Callable[[BaseException], bool],
        *,
        name: str,
        wait: float = 1.0,
        retry: float = 0.5,
        limit: int = 100_000,
        batch: int = 2_000,
    ) -> None:
        self._write = write
        self._retryable = retryable
        self.name = name
        self.wait = wait
        self.retry = retry
        self.limit = limit
        self.batch = batch
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # flush and the retry thread wait on it
        self._queue: deque[_Pending[T]] = deque()
        self._held = 0  # items queued or being written
        self._writing = False  # a thread is writing a batch now
        self._waiting = 0  # threads waiting for their writes (one of them writes next)
        self._away = False  # the database is out of reach: the retry thread has the queue
        self._pid = os.getpid()
        self._dropped = 0  # since it was last said in the log
        self._said_at = -SAY_EVERY
        atexit.register(self.flush)

    def put(self, items: Sequence[T]) -> bool:
        """Write `items` (together, in order); True once written, False if still held after
        `wait` seconds (the database is slow or away: they are written when it answers)."""
        return self.submit(items) is not None

    def submit(self, items: Sequence[T]) -> Sequence[Any] | None:
        """`put`, giving back what the write returned for each of `items` once written (empty
        when it returns nothing), or None if they are still held after `wait` seconds."""
        if not items:
            return ()
        pending = _Pending(items, threading.Condition(self._lock))
        with self._lock:
            self._forked()
            self._queue.append(pending)
            self._held += len(items)
            self._shed()
            pending.waiting = True
            try:
                mine = self._turn(lambda: pending.done, time.monotonic() + self.wait, pending.wake)
            finally:
                pending.waiting = False
            if not mine:
                return pending.results if pending.written else None
        self._lead(lambda: pending.done)
        return pending.results if pending.written else None

    def flush(self, timeout: float = 5.0) -> bool:
        """Write everything handed over so far (or wait while the database is away); False if
        some is still held after `timeout` seconds."""
        with self._lock:
            if not self._turn(lambda: not self._held, time.monotonic() + timeout, self._cond):
                return not self._held
        self._lead(lambda: not self._queue)
        return True

    # --- inside -------------------------------------------------------------------------

    def _turn(self, done: Callable[[], bool], deadline: float, wake: threading.Condition) -> bool:
        """Wait (holding the lock, woken through `wake`) until `done`, or until this thread may
        write: True then, with the writing claimed. False when done, or at the deadline.

        Each waiting thread is woken alone: when its writes are written, or when it is the
        next to write (waking every waiting thread after each transaction, most of them to
        find nothing to do, cost a webhook more than its share of the transaction)."""
        self._waiting += 1
        try:
            while not done():
                if not self._writing and not self._away:
                    self._writing = True
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wake.wait(left)
            return False
        finally:
            self._waiting -= 1

    def _lead(self, done: Callable[[], bool]) -> None:
        """Write batches until `done`, and on while writes are queued that no waiting thread
        will write (their threads stopped waiting); then let the next writer go."""
        while True:
            taken = self._take()
            written = self._write_batch(taken) if taken else True
            with self._lock:
                self._settle(taken, written)
                if not written or (done() and (self._waiting or not self._queue)):
                    self._writing = False
                    self._next()
                    return

    def _next(self) -> None:
        """Wake the thread that writes next (called holding the lock, with no writer): the
        oldest queued hand-over's, if its thread still waits; flush and retry are told too."""
        for pending in self._queue:
            if pending.waiting:
                pending.wake.notify()
                break
        self._cond.notify_all()

    def _forked(self) -> None:
        """In a forked child, forget the parent's queue and writer (called holding the lock)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue.clear()
            self._held, self._writing, self._away, self._waiting = 0, False, False, 0

    def _take(self) -> list[_Pending[T]]:
        """What is queued, oldest first, up to `batch` items (at least one hand-over)."""
        with self._lock:
            taken: list[_Pending[T]] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0].items) <= self.batch):
                pending = self._queue.popleft()
                taken.append(pending)
                count += len(pending.items)
            return taken

    def _settle(self, taken: list[_Pending[T]], written: bool) -> None:
        """After a batch (called holding the lock): done, or back to the queue's front while
        the database is away (and the retry thread started)."""
        if written:
            for pending in taken:
                pending.finish(True)
            self._held -= sum(len(p.items) for p in taken)
            self._cond.notify_all()
            return
        self._queue.extendleft(reversed(taken))
        if not self._away:
            self._away = True
            threading.Thread(target=self._retry, name=f"{self.name} retry", daemon=True).start()

    def _write_batch(self, taken: list[_Pending[T]]) -> bool:
        """One try: True if written (or what the database refused dropped), False if it is
        out of reach. A refused batch is written one hand-over at a time."""
        try:
            results = self._write([item for pending in taken for item in pending.items])
        except Exception as exc:
            if self._retryable(exc):
                return False
        else:
            if isinstance(results, Sequence):
                start = 0
                for pending in taken:
                    pending.results = results[start : start + len(pending.items)]
                    start += len(pending.items)
            return True
        for pending in taken:
            try:
                results = self._write(list(pending.items))
                if isinstance(results, Sequence):
                    pending.results = results
            except Exception as exc:
                log.error("%s: dropped %d writes the database refused (%s)", self.name,
                          len(pending.items), type(exc).__name__)  # fmt: skip
        return True

    def _retry(self) -> None:
        """While the database is away: try the queue again every `retry` seconds."""
        with self._lock:
            held = self._held
        log.error("%s: the database is out of reach; holding %d writes, trying again",
                  self.name, held)  # fmt: skip
        while True:
            time.sleep(self.retry)
            while True:
                taken = self._take()
                if not taken:
                    with self._lock:
                        if not self._queue:
                            self._away = False
                            self._next()
                            log.warning("%s: the database answers again; held writes written",
                                        self.name)  # fmt: skip
                            return
                    continue
                written = self._write_batch(taken)
                with self._lock:
                    self._settle(taken, written)
                if not written:
                    break

    def _shed(self) -> None:
        """Drop the oldest waiting writes beyond `limit` (called holding the lock)."""
        while self._held > self.limit and len(self._queue) > 1:
            oldest = self._queue.popleft()
            self._held -= len(oldest.items)
            self._dropped += len(oldest.items)
            oldest.finish(False)  # not written: its thread's `put` says False
        now = time.monotonic()
        if self._dropped and now >= self._said_at + SAY_EVERY:
            log.error("%s: dropped %d writes the database could not take in time",
                      self.name, self._dropped)  # fmt: skip
            self._dropped, self._said_at = 0, now
