"""Windowing of a sample stream, and the bounded queue between the reader and the inference worker.

``Windower`` cuts a stream of sample chunks (each tagged with the device's
sample index and the host's arrival time) into windows of ``window`` samples
every ``hop`` samples. A window is only ever made of contiguous samples: a
gap in the device's sample index (a lost or corrupted frame) restarts the
window, because an ECG window with a hole in it is a different signal, and a
decision on it would be a decision on data that was never recorded.

``BoundedQueue`` is where the host's real-time policy lives when inference
falls behind the line: ``drop-oldest`` keeps the newest windows and counts
what it threw away (the right choice for a monitor: a stale decision is
worth less than a fresh one), ``block`` stops reading until the worker
catches up (only safe with flow control, or a device that buffers: on a
plain UART the bytes are then lost in the device or the driver instead).
Either way memory is bounded.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edgerun.errors import UsageError

__all__ = ["POLICIES", "BoundedQueue", "Window", "Windower"]

POLICIES = ("drop-oldest", "block")
_INDEX_MOD = 1 << 32  # the device's sample counter is a u32 and wraps


@dataclass(frozen=True)
class Window:
    """``samples``: (window, channels) float32 in physical units; ``end_index``: one past the last sample
    (device counter, mod 2**32); ``arrival_ns``: perf_counter_ns when its last sample arrived."""

    samples: np.ndarray = field(repr=False)
    end_index: int
    arrival_ns: int
    session: int


class Windower:
    """Contiguous fixed-size windows with a hop, from (first_index, samples, arrival_ns) chunks."""

    def __init__(self, window: int, hop: int, channels: int) -> None:
        if window < 1 or hop < 1:
            raise UsageError(f"window and hop must be >= 1 sample, got window={window} hop={hop}")
        self.window, self.hop, self.channels = window, hop, channels
        self._cap = 2 * window + 4096
        self._buf = np.zeros((self._cap, channels), dtype=np.float32)
        self.gaps = 0
        self.samples_lost = 0
        self.samples_overlapping = 0
        self._n = 0
        self._next: int | None = None  # expected index of the next sample (unwrapped)
        self._emit_at = 0  # unwrapped index one past the next window's last sample

    def restart(self) -> None:
        """Forget the partial window (new session, or a gap)."""
        self._n = 0
        self._next = None

    def push(self, first_index: int, samples: np.ndarray, arrival_ns: int, session: int = 0) -> list[Window]:
        """Append one chunk ((n, channels) float32); return the windows it completed, oldest first."""
        first = self._unwrap(first_index)
        if self._next is not None and first != self._next:
            if first > self._next:
                self.gaps += 1
                self.samples_lost += first - self._next
                self.restart()
            else:  # a repeated or overlapping chunk: keep only what is new
                skip = min(self._next - first, len(samples))
                self.samples_overlapping += skip
                samples, first = samples[skip:], first + skip
        if self._next is None:
            self._emit_at = first + self.window
            self._n = 0
        self._append(samples)
        self._next = first + len(samples)
        return self._complete(arrival_ns, session)

    def _unwrap(self, index: int) -> int:
        """The u32 counter made monotonic: the nearest value congruent to ``index`` around the expected one."""
        if self._next is None:
            return index
        delta = (index - self._next) % _INDEX_MOD
        if delta >= _INDEX_MOD // 2:
            delta -= _INDEX_MOD
        return self._next + delta

    def _append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if self._n + n > self._cap:
            keep = min(self._n, self.window)  # everything a future window can still use
            self._buf[:keep] = self._buf[self._n - keep : self._n]
            self._n = keep
            if n > self._cap - keep:  # a chunk longer than the buffer: only its tail matters
                samples = samples[-(self._cap - keep) :]
                n = len(samples)
        self._buf[self._n : self._n + n] = samples
        self._n += n

    def _complete(self, arrival_ns: int, session: int) -> list[Window]:
        out = []
        assert self._next is not None
        buf_start = self._next - self._n  # unwrapped index of _buf[0]
        while self._emit_at <= self._next:
            lo = self._emit_at - self.window - buf_start
            if lo >= 0:
                chunk = self._buf[lo : lo + self.window].copy()
                out.append(Window(chunk, self._emit_at % _INDEX_MOD, arrival_ns, session))
            self._emit_at += self.hop
        return out


class BoundedQueue:
    """A FIFO of at most ``maxsize`` windows with an explicit full-queue policy (see the module doc)."""

    def __init__(self, maxsize: int, policy: str = "drop-oldest") -> None:
        if maxsize < 1:
            raise UsageError(f"queue size must be >= 1, got {maxsize}")
        if policy not in POLICIES:
            raise UsageError(f"queue policy {policy!r}: expected one of {', '.join(POLICIES)}")
        self.maxsize, self.policy = maxsize, policy
        self.dropped = 0
        self.blocked_ns = 0
        self.high_water = 0
        self._items: deque[Window] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: Window, stop: threading.Event | None = None) -> None:
        with self._cond:
            if len(self._items) >= self.maxsize and self.policy == "block":
                t0 = time.perf_counter_ns()
                while len(self._items) >= self.maxsize and not self._closed and not (stop and stop.is_set()):
                    self._cond.wait(0.05)
                self.blocked_ns += time.perf_counter_ns() - t0
            if len(self._items) >= self.maxsize:  # drop-oldest, or a block that was cut short by stop
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()

    def get(self, timeout_s: float) -> Window | None:
        """The oldest window, or None after ``timeout_s`` (or once closed and empty)."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout_s)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
