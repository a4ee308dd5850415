"""Shared machinery of the serial-attached meters: opening a port, one reader thread, a Trace at stop.

The meters themselves (reference/power-and-thermal-sensors.md §5) differ only in
what they send and how they decode; each module (``serial_ina219``, ``serial_um``,
``serial_ppk2``, ``serial_lpm01a``) subclasses ``SerialMeter`` and fills in four
small hooks. Everything that can go wrong with a serial port is handled here,
once:

- opening: an ``OSError`` from pyserial becomes an actionable sentence (no such
  port, permission denied -> dialout group, busy, Bluetooth meter out of range);
- the port disappearing mid-run (USB unplugged, rfcomm dropped): the reader
  thread ends, ``stop()`` still returns the samples read so far with a note;
- noise: decoders never raise on bad bytes, they count them, and the counts
  travel in the trace notes.

pyserial is imported lazily (``import edgerun`` must stay light); its
``SerialException`` is an ``OSError``, so ``except OSError`` covers it.
Timestamps are ``time.perf_counter_ns()`` like every other probe.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgerun.errors import EdgerunError, InputError, ProbeError, ProbeUnavailable
from edgerun.power.base import SCOPES, Availability, Trace

if TYPE_CHECKING:
    import serial

__all__ = [
    "LineSplitter",
    "SerialMeter",
    "open_port",
    "parse_scope",
    "port_error_reason",
    "read_until",
    "stream_times_ns",
]

#: Read timeout of the reader thread: bounds how long ``stop()`` waits for it.
READ_TIMEOUT_S = 0.1
#: A write that cannot finish in this time means the meter stopped reading.
WRITE_TIMEOUT_S = 1.0
#: ``stop()`` gives the reader thread this long to notice the stop flag.
JOIN_TIMEOUT_S = 2.0


def port_error_reason(port: str, exc: BaseException, device: str = "meter") -> str:
    """One actionable sentence for a port that would not open (pyserial puts the errno on its exception).

    ``device`` names what should be on the other end ("meter", "board"); the serial host shares this.
    """
    code = getattr(exc, "errno", None)
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return (
            f"no such port {port}: is the {device} plugged in and powered (or bound with `rfcomm bind`)? "
            "See ls /dev/serial/by-id/"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied on {port}: add yourself to the dialout group "
            "(sudo usermod -aG dialout $USER, then log in again)"
        )
    if code in (errno.EBUSY, errno.EAGAIN):
        return f"{port} is busy: another program holds it (a serial monitor? find it with `fuser {port}`)"
    if code in (errno.EHOSTDOWN, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH):
        return f"{port} could not reach the Bluetooth meter ({exc}): is it on, in range and not paired to a phone?"
    if "configure port" in str(exc) or code == errno.ENOTTY:
        return f"{port} is not a serial port ({exc})"
    return f"cannot open {port}: {exc}"


def open_port(port: str, baud: int) -> serial.Serial:
    """Open ``port`` raw at ``baud``; raise ProbeUnavailable with ``port_error_reason`` when it will not open."""
    import serial  # lazy: only a session that uses a serial meter pays for pyserial

    try:
        # exclusive: two edgerun processes must not read one meter and each see half the bytes
        return serial.Serial(port, baud, timeout=READ_TIMEOUT_S, write_timeout=WRITE_TIMEOUT_S, exclusive=True)
    except (OSError, ValueError) as exc:  # ValueError: a baud rate pyserial rejects
        raise ProbeUnavailable(port_error_reason(port, exc)) from exc


def _close_quietly(ser: serial.Serial | None) -> None:
    if ser is None:
        return
    with contextlib.suppress(OSError):  # the port may already be gone; closing must not hide the trace
        ser.close()


def parse_scope(scope: str) -> tuple[str, tuple[str, ...]]:
    """``"board"`` -> ("board", ()); ``"rail:vdd_soc"`` -> ("rail", ("vdd_soc",)).

    A meter measures what it is wired to, so the user says which scope that is.
    """
    if scope.startswith("rail:") and len(scope) > len("rail:"):
        return "rail", (scope[len("rail:") :],)
    if scope in SCOPES and scope not in ("rail", "estimate"):
        return scope, ()
    raise InputError(f"scope {scope!r}: expected one of package, module, board, battery or rail:<name>")


def stream_times_ns(index: npt.ArrayLike, chunks: list[tuple[int, int]], rate_hz: float) -> npt.NDArray[np.int64]:
    """Timestamps (perf_counter_ns) of samples of a fixed-rate stream, from their sample indices.

    ``chunks`` holds one ``(arrival_ns, samples_received_so_far)`` per read. A
    sample cannot arrive before it was measured, so the least ``arrival -
    count/rate`` over all reads is the latency-free offset of the meter's clock;
    sample ``i`` (0-based) completes at ``offset + (i + 1)/rate``. This is the
    reference's "stamp each chunk and spread its samples at the nominal rate",
    made immune to USB batching and to a reader that fell behind once.
    """
    idx = np.asarray(index, dtype=np.float64)
    if not chunks:
        return np.zeros(idx.shape, dtype=np.int64)
    period_ns = 1e9 / rate_hz
    offset_ns = min(arrival - count * period_ns for arrival, count in chunks)
    return np.rint(offset_ns + (idx + 1.0) * period_ns).astype(np.int64)


class LineSplitter:
    """Bytes in, complete text lines out, for the ASCII meters.

    The first line after ``reset()`` is dropped unseen: the port was opened in
    the middle of it. A "line" longer than ``max_len`` is binary noise (or a
    wrong baud rate) and is dropped and counted rather than buffered forever.
    """

    def __init__(self, max_len: int = 256) -> None:
        self.max_len = max_len
        self.overlong = 0
        self.reset(mid_line=False)

    def reset(self, *, mid_line: bool = True) -> None:
        self._buf = bytearray()
        self._skip_first = mid_line

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        *complete, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        if len(self._buf) > self.max_len:
            self.overlong += 1
            self._buf.clear()
        if complete and self._skip_first:
            complete.pop(0)
            self._skip_first = False
        # noise bytes >= 0x80 become U+FFFD: the decoders reject them as garbage, but a status line
        # ("Acquisition completed") with a noise prefix is still recognised
        return [raw.decode("ascii", errors="replace").strip() for raw in complete]


class SerialMeter:
    """Base of the serial meter probes: port lifecycle, one daemon reader thread, Trace assembly.

    Subclasses set ``name`` and ``default_baud`` and implement:
    ``_handshake(ser)`` (for ``check()``: None when the meter answered, else why not),
    ``_begin(ser)`` (configure and start the meter; raise ProbeUnavailable if it refuses),
    ``_step(ser)`` (one read/poll, called in a loop on the reader thread),
    ``_end(ser)`` (stop the meter; only called while the port is alive) and
    ``_collect()`` (timestamps, watts, sample rate and notes of the finished run).
    """

    name = "serial"
    default_baud = 115200
    measured = True

    def __init__(self, port: str, baud: int | None = None, scope: str = "board") -> None:
        self.port = port
        self.baud = int(baud) if baud is not None else self.default_baud
        self.scope, self._rails = parse_scope(scope)
        self._ser: serial.Serial | None = None
        self._thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._failure: str | None = None

    # -- the PowerProbe protocol --------------------------------------------------

    def check(self) -> Availability:
        """Whether ``port`` opens and (for meters with a handshake) the meter answers on it."""
        try:
            ser = open_port(self.port, self.baud)
        except ProbeUnavailable as exc:
            return Availability(False, str(exc))
        try:
            reason = self._handshake(ser)
        except OSError as exc:
            reason = f"{self.port} opened but failed during the handshake: {exc}"
        finally:
            _close_quietly(ser)
        if reason is not None:
            return Availability(False, reason)
        return Availability(True, f"{self.name} answers on {self.port} at {self.baud} baud")

    def start(self) -> None:
        """Open the port, configure the meter and start the reader thread. Raises ProbeUnavailable if it cannot."""
        if self._thread is not None:
            raise ProbeError(f"power probe {self.name!r} on {self.port} is already started")
        ser = open_port(self.port, self.baud)
        try:
            ser.reset_input_buffer()  # bytes from before start() belong to nobody's window
            self._begin(ser)
        except OSError as exc:
            _close_quietly(ser)
            raise ProbeUnavailable(f"{self.name} on {self.port} failed while starting: {exc}") from exc
        except BaseException:
            _close_quietly(ser)
            raise
        self._ser, self._failure = ser, None
        self._stop_evt = threading.Event()  # fresh per run: a thread left from a timed-out stop() keeps its own
        self._thread = threading.Thread(target=self._run, name=f"edgerun-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> Trace:
        """Stop the thread and the meter, close the port, return the power trace (W, perf_counter_ns)."""
        if self._thread is None or self._ser is None:
            raise ProbeError(f"power probe {self.name!r} was not started")
        self._stop_evt.set()
        self._thread.join(JOIN_TIMEOUT_S)
        notes = [f"{self.name} on {self.port} at {self.baud} baud"]
        if self._thread.is_alive():
            notes.append(f"reader thread did not stop within {JOIN_TIMEOUT_S} s; samples may be incomplete")
        elif self._failure is not None:
            notes.append(self._failure)
        else:
            try:
                self._end(self._ser)
            except (OSError, EdgerunError) as exc:  # the samples are still good: report, do not raise
                notes.append(f"could not stop the meter cleanly: {exc}")
        _close_quietly(self._ser)
        self._ser, self._thread = None, None
        t_ns, watts, rate_hz, more = self._collect()
        return Trace(
            probe=self.name,
            scope=self.scope,
            kind="power",
            t_ns=np.asarray(t_ns, dtype=np.int64),
            values=np.asarray(watts, dtype=np.float64),
            measured=True,
            sample_rate_hz=rate_hz,
            rails=self._rails,
            notes=tuple(notes + more),
        )

    # -- the reader thread --------------------------------------------------------

    def _run(self) -> None:
        ser, stop_evt = self._ser, self._stop_evt
        assert ser is not None
        while not stop_evt.is_set():
            try:
                self._step(ser)
            except OSError as exc:
                failure = f"port {self.port} lost mid-run: {exc}"
                break
            except Exception as exc:  # a decoder bug must not vanish with the thread: stop() reports it
                failure = f"reader failed: {exc!r}"
                break
        else:
            return
        if self._thread is threading.current_thread():  # not a leftover of an earlier run
            self._failure = failure

    def _read_available(self, ser: serial.Serial) -> bytes:
        """What the port holds now, or whatever arrives within READ_TIMEOUT_S."""
        return bytes(ser.read(max(1, ser.in_waiting)))

    def _wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` on the reader thread; True when stop() was called meanwhile."""
        return self._stop_evt.wait(max(0.0, seconds))

    # -- hooks --------------------------------------------------------------------

    def _handshake(self, ser: serial.Serial) -> str | None:
        return None

    def _begin(self, ser: serial.Serial) -> None:
        return None

    def _step(self, ser: serial.Serial) -> None:
        raise NotImplementedError

    def _end(self, ser: serial.Serial) -> None:
        return None

    def _collect(self) -> tuple[Any, Any, float | None, list[str]]:
        raise NotImplementedError


def read_until(ser: serial.Serial, marker: bytes, timeout_s: float) -> bytes:
    """Bytes read until ``marker`` appears or ``timeout_s`` passes (then the bytes so far)."""
    deadline = time.monotonic() + timeout_s
    got = bytearray()
    while marker not in got and time.monotonic() < deadline:
        got += ser.read(max(1, ser.in_waiting))
    return bytes(got)
