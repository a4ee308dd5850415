"""The sampling loop every polled probe shares: a daemon thread reads one sensor at ``rate_hz``.

The sampler runs in its own thread and stamps samples with the clock the inference loop
uses, ``time.perf_counter_ns()`` (base.py), so a window's edges and its samples share one
time base.

A sensor family only says how to open (``_open``), read (``_read``) and close; this
class owns the thread, the timestamps and what happens when a read fails. A read that
fails in the middle of a run (the file disappears, the command stops answering) ends
the trace with a note naming the time and the error; ``stop()`` never raises for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgerun.errors import ProbeError, ProbeUnavailable, UsageError
from edgerun.power.base import Availability, Trace

# Runs argv (here, or over adb/ssh) and returns its stdout, or None when it is missing or fails:
# the convention of edgerun.detection.CommandRunner, restated to keep this module light.
CommandRunner = Callable[[Sequence[str]], "str | None"]


class ReadFailed(ProbeError):
    """A sensor read produced nothing usable (no output, unparsable text). Internal: ``PolledProbe``
    catches it (READ_ERRORS) and reports a ProbeUnavailable (first read) or the trace's failure."""


# What a read may raise when the sensor goes away or answers garbage; anything else is a bug.
READ_ERRORS = (OSError, ValueError, ReadFailed)


class PolledProbe:
    """Base of the polled probes (PowerProbe protocol): subclasses set the class attributes below."""

    name = "polled"
    scope = "board"
    measured = True
    kind = "power"  # "power" (W) or "energy" (cumulative J)
    final_read = True  # take one more read in stop() so the trace reaches the stop instant

    def __init__(self, rate_hz: float) -> None:
        if not rate_hz > 0:
            raise UsageError(f"rate_hz must be positive, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_ns: list[int] = []
        self._values: list[float] = []
        self._failure: str | None = None

    # ----------------------------------------------------------------- sensor family hooks

    def check(self) -> Availability:
        raise NotImplementedError

    def _open(self) -> None:
        """Resolve files / units before the first read; raise ProbeUnavailable if impossible."""
        availability = self.check()
        if not availability.available:
            raise ProbeUnavailable(f"power probe {self.name!r} is not available: {availability.reason}")

    def _read(self) -> float:
        """One reading: watts for kind "power", cumulative joules for kind "energy"."""
        raise NotImplementedError

    def _sample(self) -> tuple[int, float]:
        # Stamp the middle of the read: slow reads (PMIC ~23 ms, dumpsys) are centred on it.
        before_ns = time.perf_counter_ns()
        value = self._read()
        after_ns = time.perf_counter_ns()
        return (before_ns + after_ns) // 2, value

    def _close(self) -> None:
        """Release what _open took (a subprocess); called in stop() before the thread is joined."""

    def _notes(self) -> tuple[str, ...]:
        return ()

    def _rails(self) -> tuple[str, ...]:
        return ()

    def _counter_max_j(self) -> float | None:
        return None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Open the sensor, take the first reading now, then sample on a daemon thread."""
        if self._thread is not None:
            raise ProbeError(f"power probe {self.name!r} is already started")
        self._open()
        self._t_ns, self._values, self._failure = [], [], None
        # A fresh event per run: a thread left over from a run whose stop() timed out still
        # sees its own (set) event and can never write into this run's samples.
        self._stop = threading.Event()
        try:
            self._append(*self._sample())
        except READ_ERRORS as exc:
            self._close()
            raise ProbeUnavailable(f"power probe {self.name!r}: the first read failed: {exc}") from exc
        self._thread = threading.Thread(
            target=self._loop, args=(self._stop,), name=f"edgerun-power-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> Trace:
        """Stop sampling and return everything read since start() (one last read if the sensor is still there)."""
        thread = self._thread
        if thread is None:
            raise ProbeError(f"power probe {self.name!r} was not started")
        self._stop.set()
        self._close()
        # A read stuck in a dead command must not hang the benchmark: wait a bounded time.
        thread.join(timeout=max(2.0, 5.0 / self.rate_hz))
        self._thread = None
        if self.final_read and self._failure is None and not thread.is_alive():
            self._try_sample(None)
        return self._trace()

    def _loop(self, stop: threading.Event) -> None:
        period_ns = int(1e9 / self.rate_hz)
        next_ns = time.perf_counter_ns() + period_ns
        while not stop.wait(max(0.0, (next_ns - time.perf_counter_ns()) / 1e9)):
            if not self._try_sample(stop):
                return
            # A read slower than the period must not make the loop burst to catch up.
            next_ns = max(next_ns + period_ns, time.perf_counter_ns())

    def _try_sample(self, stop: threading.Event | None) -> bool:
        """One read into the trace; ``stop`` is the loop's event, None for stop()'s final read."""
        try:
            t_ns, value = self._sample()
        except READ_ERRORS as exc:
            if stop is not None and stop.is_set():
                return False  # stopped meanwhile (a killed subprocess): not a sensor failure
            self._fail(exc)
            return False
        if stop is not None and stop.is_set():
            return False  # stop() has taken over; its own final read ends the trace
        self._append(t_ns, value)
        return True

    def _fail(self, exc: Exception) -> None:
        with self._lock:
            count = len(self._t_ns)
            since_s = (time.perf_counter_ns() - self._t_ns[0]) / 1e9 if count else 0.0
            self._failure = (
                f"{self.name}: sensor read failed {since_s:.3f} s after start, after {count} samples "
                f"({type(exc).__name__}: {exc}); the trace ends there"
            )

    def _append(self, t_ns: int, value: float) -> None:
        with self._lock:
            self._t_ns.append(t_ns)
            self._values.append(float(value))

    def _trace(self) -> Trace:
        with self._lock:
            t_ns = np.asarray(self._t_ns, dtype=np.int64)
            values = np.asarray(self._values, dtype=np.float64)
        notes = self._notes() + ((self._failure,) if self._failure else ())
        return Trace(
            probe=self.name,
            scope=self.scope,
            kind=self.kind,
            t_ns=t_ns,
            values=values,
            measured=self.measured,
            sample_rate_hz=self.rate_hz,
            counter_max_j=self._counter_max_j(),
            rails=self._rails(),
            notes=notes,
        )


def read_text(path: Path) -> str:
    """The stripped text of a sysfs file (OSError when it is gone or unreadable)."""
    return path.read_text(encoding="utf-8", errors="replace").strip()


def default_runner(root: Path, run: CommandRunner | None) -> CommandRunner:
    """``run`` if given; else local commands, but only when ``root`` is this machine's "/".

    Same rule as ``edgerun.detection.detect``: a fixture tree is not this machine, so its
    commands must come from the caller (a fake runner in tests, adb/ssh in the lab).
    """
    if run is not None:
        return run
    from edgerun._commands import run_local

    return run_local if Path(root).resolve() == Path("/") else _no_commands


def _no_commands(argv: Sequence[str]) -> str | None:
    return None
