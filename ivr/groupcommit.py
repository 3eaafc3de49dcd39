"""Group commit: many threads' writes, one transaction.

Each web worker answers many webhooks at once (one per thread), and every webhook adds a few
entries to the call log. Written one transaction per webhook, the database's per-transaction
work (the connection, BEGIN, COMMIT, each statement's preparation) is most of what a webhook
costs. Here the webhook's thread hands its writes to one writer thread per process and waits:
the writer takes everything waiting, writes it in one transaction, and wakes every thread
whose writes it held. A webhook is answered only once its entries are written (they survive a
worker killed a moment later), and under load the writes of many webhooks share a transaction.

When the database does not answer, the writer keeps what it holds and tries again every
`retry` seconds; a webhook waits at most `wait` seconds for its write, then goes on (the caller
is not kept waiting for the log), and its entries are written when the database is back.
At most `limit` writes are held; past that the oldest are dropped, and said so in the log.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger("ivr.groupcommit")

T = TypeVar("T")
SAY_EVERY = 10.0  # seconds between two log lines about dropped writes


@dataclass(slots=True)
class _Pending(Generic[T]):
    items: Sequence[T]
    done: threading.Event = field(default_factory=threading.Event)


class GroupCommit(Generic[T]):
    """Hand writes to one writer thread that writes whatever is waiting in one go.

    `write(items)` writes a batch in one transaction or raises; `retryable` tells a database
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
        self._queue: deque[_Pending[T]] = deque()
        self._held = 0  # items queued or being written
        self._cond = threading.Condition()
        self._pid = 0  # the process whose writer thread runs (a forked child starts its own)
        self._dropped = 0  # since it was last said in the log
        self._said_at = -SAY_EVERY

    def put(self, items: Sequence[T]) -> bool:
        """Write `items` (together, in order); True once written, False if still held after
        `wait` seconds (the database is slow or away: they are written when it answers)."""
        if not items:
            return True
        pending = _Pending(items)
        with self._cond:
            self._start()
            self._queue.append(pending)
            self._held += len(items)
            self._shed()
            self._cond.notify()
        return pending.done.wait(self.wait)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything handed over so far is written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._held and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            return not self._held

    def _start(self) -> None:
        """Start this process's writer thread if it has none (called holding the lock)."""
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._queue.clear()  # a forked child's copy of its parent's queue is not its to write
        self._held = 0
        thread = threading.Thread(target=self._run, name=f"{self.name} writer", daemon=True)
        thread.start()
        atexit.register(self.flush)

    def _shed(self) -> None:
        """Drop the oldest waiting writes beyond `limit` (called holding the lock)."""
        while self._held > self.limit and len(self._queue) > 1:
            oldest = self._queue.popleft()
            self._held -= len(oldest.items)
            self._dropped += len(oldest.items)
            oldest.done.set()
        now = time.monotonic()
        if self._dropped and now >= self._said_at + SAY_EVERY:
            log.error("%s: dropped %d writes the database could not take in time",
                      self.name, self._dropped)  # fmt: skip
            self._dropped, self._said_at = 0, now

    def _take(self) -> list[_Pending[T]]:
        """Everything waiting (up to `batch` items), after waiting for something."""
        with self._cond:
            while not self._queue:
                self._cond.wait()
            taken: list[_Pending[T]] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0].items) <= self.batch):
                pending = self._queue.popleft()
                taken.append(pending)
                count += len(pending.items)
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            self._write_all(taken)
            with self._cond:
                self._held -= sum(len(p.items) for p in taken)
                self._cond.notify_all()
            for pending in taken:
                pending.done.set()

    def _write_all(self, taken: list[_Pending[T]]) -> None:
        """Write a batch, trying again while the database is away; a batch that cannot be
        written is written one webhook's writes at a time, and what still fails is dropped."""
        items = [item for pending in taken for item in pending.items]
        away = False
        while True:
            try:
                self._write(items)
                if away:
                    log.warning("%s: the database answers again; held writes written", self.name)
                return
            except Exception as exc:
                if not self._retryable(exc):
                    break
                if not away:
                    log.error("%s: the database is out of reach (%s); holding %d writes, "
                              "trying again", self.name, type(exc).__name__, len(items))
                    away = True
                time.sleep(self.retry)
        for pending in taken:
            try:
                self._write(list(pending.items))
            except Exception as exc:
                log.error("%s: dropped %d writes the database refused (%s)", self.name,
                          len(pending.items), type(exc).__name__)  # fmt: skip
