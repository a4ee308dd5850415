"""A circuit breaker: closed -> open -> half-open (Fowler; Nygard, *Release It!*).

In house (about 60 lines) rather than purgatory or pybreaker, because the rules
we need are specific: half-open admits exactly *one* probe (the others are
refused as if open, so a recovering server sees one request, not a burst); time
is a monotonic clock, injectable for tests (purgatory reads ``time.time()``,
which jumps with NTP); the state is read from the caller's thread to route a call
before any I/O, and written from the client's event-loop thread, so one lock
guards it; and what counts as a failure (timeouts, 5xx, protocol errors, not
4xx) is decided by the caller, not by exception types.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "STATE_CODES", "CircuitBreaker"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
STATE_CODES = {CLOSED: 0, OPEN: 1, HALF_OPEN: 2}  # the usual breaker-state gauge values


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``reset_s`` one probe may pass."""

    def __init__(self, failure_threshold: int, reset_s: float, clock_ns: Callable[[], int] = time.monotonic_ns):
        self.failure_threshold = failure_threshold
        self.reset_ns = int(reset_s * 1e9)
        self._clock_ns = clock_ns
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._opened_ns = 0
        self._probe_out = False
        self.opened_total = 0

    @property
    def state(self) -> str:
        """The state now: an open breaker whose reset time has passed reads as half-open."""
        with self._lock:
            return self._peek()

    def _peek(self) -> str:
        if self._state == OPEN and self._clock_ns() - self._opened_ns >= self.reset_ns:
            return HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a request go out now? In half-open, only one caller gets True until it reports back."""
        with self._lock:
            state = self._peek()
            if state == CLOSED:
                return True
            if state == OPEN or self._probe_out:
                return False
            self._state, self._probe_out = HALF_OPEN, True
            return True

    def retry_in_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when it would now)."""
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, (self.reset_ns - (self._clock_ns() - self._opened_ns)) / 1e9)

    def success(self) -> None:
        with self._lock:
            self._state, self._failures, self._probe_out = CLOSED, 0, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                if self._state != OPEN:
                    self.opened_total += 1
                self._state, self._opened_ns, self._probe_out = OPEN, self._clock_ns(), False

    def release(self) -> None:
        """The admitted request ended without a verdict (a 4xx, a cancel): free the half-open probe slot."""
        with self._lock:
            self._probe_out = False
