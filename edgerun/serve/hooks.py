"""The reference server's test hooks: injected faults, a hold that keeps requests in flight, and counters.

Set from Python by tests and tools (never from a request); ``edgerun.serve.server``
re-exports them, so ``from edgerun.serve.server import Faults, Hold`` works.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Faults", "Hold", "ServerStats"]


class Hold:
    """Keeps infer requests at the server until ``release()``: for tests, a request known to be in flight.

    A sleep can only guess that a request has reached the server and is still there;
    ``wait_arrived`` knows it, and the request stays until the test lets it go. The
    held requests wait on the server's event loop, not in worker threads, so one
    never released leaves no blocked thread behind (``serve_in_thread`` releases
    the hold on exit anyway).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: list[asyncio.Future[None]] = []
        self.arrived = 0
        self.released = False

    async def enter(self) -> None:
        """Called by the server per infer request: count it, then wait for the release."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            self.arrived += 1
            self._cond.notify_all()
            if self.released:
                return
            self._waiting.append(waiter)
        await waiter

    def wait_arrived(self, n: int = 1, timeout_s: float = 30.0) -> bool:
        """Block until ``n`` requests have reached the hold (False if ``timeout_s`` passes first)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.arrived >= n, timeout_s)

    def release(self) -> None:
        """Let the held requests go on, and every later one through at once."""
        with self._cond:
            self.released = True
            waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            with contextlib.suppress(RuntimeError):  # the server's loop is closed already: nothing to wake
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():  # a request cancelled at shutdown is done already
        waiter.set_result(None)


@dataclass(frozen=True)
class Faults:
    """Misbehaviour for tests; replace ``server.faults`` whole to change it."""

    delay_s: float = 0.0
    hold: Hold | None = None  # every infer waits here until the test releases it
    status: int | None = None  # answer every infer with this status and an {"error"} body
    retry_after_s: float | None = None
    corrupt: str | None = None  # "shape" | "dtype" | "name" | "id" | "json" | "header-length"
    huge_reply_bytes: int = 0  # answer 200 with a JSON body this large, streamed without a Content-Length


@dataclass
class ServerStats:
    requests: int = 0
    infer_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # The last requests only (bounded: a long-running server must not grow): for tests.
    auth_headers_seen: deque[str] = field(default_factory=lambda: deque(maxlen=1000))  # never the value
    body_sha256: deque[str] = field(default_factory=lambda: deque(maxlen=1000))  # to check the client's audit
    input_names: deque[list[str]] = field(default_factory=lambda: deque(maxlen=1000))
    request_ids: deque[Any] = field(default_factory=lambda: deque(maxlen=1000))  # the "id" each infer carried
    # Requests that ended in an unexpected exception (a 500 and a traceback in the log): a bug.
    internal_errors: int = 0
