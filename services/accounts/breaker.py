"""A circuit breaker for calls to the account service: stop piling on a service that is down.

One breaker per process (each gunicorn worker has its own; nothing is shared through Redis):

    closed     calls go through; `failures` AccountsUnavailable in a row open it
    open       calls fail at once with CircuitOpen (an AccountsUnavailable) for `cooldown` s
    half-open  after the cool-down one trial call goes through, the others still fail at once;
               the trial succeeding closes the breaker, failing opens it for another cool-down

Any answer from the service, "not found" included, counts as the service being up.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .errors import AccountsUnavailable, CircuitOpen

log = logging.getLogger(__name__)

_R = TypeVar("_R")


class CircuitBreaker:
    """Fail fast after `failures` failures in a row, for `cooldown` seconds; 0 failures: off."""

    def __init__(
        self, failures: int = 5, cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._in_a_row = 0
        self._open_until: float | None = None  # None: closed
        self._trial = False  # a half-open trial call is under way

    @property
    def state(self) -> str:
        """`closed`, `open` or `half-open` (for logs and tests)."""
        with self._lock:
            if self._open_until is None:
                return "closed"
            return "open" if self._clock() < self._open_until and not self._trial else "half-open"

    def call(self, operation: Callable[[], _R]) -> _R:
        """Run `operation` unless the breaker is open; count its AccountsUnavailable."""
        self._enter()
        try:
            result = operation()
        except AccountsUnavailable:
            self._failed()
            raise
        except Exception:  # NotFound and the like: the service answered
            self._succeeded()
            raise
        self._succeeded()
        return result

    def _enter(self) -> None:
        if self.failures <= 0:
            return
        with self._lock:
            if self._open_until is None:
                return
            if self._clock() < self._open_until or self._trial:
                raise CircuitOpen("account service circuit open: failing fast")
            self._trial = True  # the cool-down is over: this call is the trial

    def _failed(self) -> None:
        if self.failures <= 0:
            return
        with self._lock:
            self._in_a_row += 1
            if self._trial or self._in_a_row >= self.failures:
                if self._open_until is None or self._trial:
                    log.warning("account service: %d failures in a row; failing fast for %g s",
                                self._in_a_row, self.cooldown)  # fmt: skip
                self._open_until = self._clock() + self.cooldown
            self._trial = False

    def _succeeded(self) -> None:
        with self._lock:
            if self._open_until is not None:
                log.warning("account service answers again: breaker closed")
            self._in_a_row, self._open_until, self._trial = 0, None, False
