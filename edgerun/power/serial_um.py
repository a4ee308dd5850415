"""RuiDeng (RDTech) UM24C / UM25C / UM34C USB power meters, polled over Bluetooth SPP.

Reference: reference/power-and-thermal-sensors.md §5, "RuiDeng UM24C/25C/34C",
after rfinnie/rdserialtool (rdserial/um/__init__.py): bind the meter with
``rfcomm bind 0 <MAC>``, send the byte ``0xF0`` and read a 130-byte big-endian
frame: @2 voltage u16 (/100 V; UM25C /1000), @4 current u16 (/1000 A; UM25C
/10000), @6 power u32 (/1000 W), @10 temperature (degC).

Framing and integrity, after sigrokproject/libsigrok
(src/hardware/rdtech-um/protocol.c): a frame starts with the model ID word
(0x0963 UM24C, 0x09C9 UM25C, 0x0D4C UM34C), which selects the scale; UM24C and
UM25C frames end with the constant 0xFFF1, UM34C frames with an XOR of 32 fixed
byte positions. Bytes before an ID are skipped and counted; a frame that fails
its check (short, truncated or garbled) is counted and the search resumes past
its ID. As an extra check the meter's power must agree with its own V x I.

The meter updates its display at 2 Hz and is usable at about 1-2 Hz, so it
is polled at ``poll_hz`` (default 2). A reading is stamped when its request was
sent: it describes the meter's state then, and the Bluetooth return leg (tens
of ms) would otherwise bias every stamp late.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.errors import InputError, ProbeUnavailable
from edgerun.power.serial_base import SerialMeter

if TYPE_CHECKING:
    import serial

__all__ = ["FRAME_LEN", "MODELS", "RdtechUmProbe", "UmFrameSync", "UmModel", "UmReading", "decode_frame"]

FRAME_LEN = 130
POLL_REQUEST = b"\xf0"
#: The first reply may take a while: opening /dev/rfcommN is what connects the Bluetooth link.
IDENTIFY_TIMEOUT_S = 2.0
#: UM34C checksum: XOR of these byte positions, stored in the last byte (libsigrok csum_ok_um34c).
UM34C_XOR_POSITIONS: tuple[int, ...] = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69)
UM34C_XOR_POSITIONS += (73, 79, 83, 89, 97, 99, 109, 111, 113, 119, 121, 127)


@dataclass(frozen=True)
class UmModel:
    name: str
    model_id: int
    volts_per_lsb: float
    amps_per_lsb: float
    xor_checksum: bool  # False: the frame ends with 0xFFF1


MODELS = {
    m.model_id: m
    for m in (
        UmModel("UM24C", 0x0963, 0.01, 0.001, False),
        UmModel("UM25C", 0x09C9, 0.001, 0.0001, False),
        UmModel("UM34C", 0x0D4C, 0.01, 0.001, True),
    )
}
_BY_NAME = {m.name.lower(): m for m in MODELS.values()}


@dataclass(frozen=True)
class UmReading:
    model: UmModel
    volts: float
    amps: float
    watts: float
    temp_c: int


def frame_ok(frame: bytes | bytearray, model: UmModel) -> bool:
    """The frame's integrity check for ``model`` (length, end marker or XOR checksum)."""
    if len(frame) != FRAME_LEN:
        return False
    if model.xor_checksum:
        xor = 0
        for pos in UM34C_XOR_POSITIONS:
            xor ^= frame[pos]
        return xor == frame[-1]
    return frame[-2:] == b"\xff\xf1"


def decode_frame(frame: bytes | bytearray) -> UmReading | None:
    """One 130-byte frame -> reading, or None when it is not a valid frame of a known model."""
    if len(frame) != FRAME_LEN:
        return None
    model = MODELS.get(struct.unpack_from(">H", frame, 0)[0])
    if model is None or not frame_ok(frame, model):
        return None
    raw_v, raw_a, raw_mw, temp_c = struct.unpack_from(">HHIH", frame, 2)
    volts, amps, watts = raw_v * model.volts_per_lsb, raw_a * model.amps_per_lsb, raw_mw / 1000.0
    # the meter's own W must match its V x I (resolution: 10 mV x 1 mA on the coarser models)
    if abs(watts - volts * amps) > 0.05 * max(watts, volts * amps) + 0.02:
        return None
    return UmReading(model, volts, amps, watts, temp_c)


class UmFrameSync:
    """Resynchronising frame splitter: bytes in, valid readings out, bad frames and skipped bytes counted."""

    def __init__(self, model: UmModel | None = None) -> None:
        self.model = model
        self.bad_frames = 0
        self.skipped_bytes = 0
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def discard(self) -> None:
        """Drop what is buffered; a frame that started but never completed counts as a bad (short) frame."""
        start = self._next_id()
        if start >= 0:
            self.bad_frames += 1
        self.skipped_bytes += start if start >= 0 else len(self._buf)
        self._buf.clear()

    def _next_id(self) -> int:
        ids = [self.model.model_id] if self.model else list(MODELS)
        found = [i for i in (self._buf.find(struct.pack(">H", mid)) for mid in ids) if i >= 0]
        return min(found) if found else -1

    def feed(self, data: bytes) -> list[UmReading]:
        self._buf += data
        readings: list[UmReading] = []
        while True:
            start = self._next_id()
            if start < 0:  # keep one byte: it may be the first half of the next ID
                self.skipped_bytes += max(0, len(self._buf) - 1)
                del self._buf[: max(0, len(self._buf) - 1)]
                return readings
            self.skipped_bytes += start
            del self._buf[:start]
            if len(self._buf) < FRAME_LEN:
                return readings
            reading = decode_frame(self._buf[:FRAME_LEN])
            if reading is None:
                self.bad_frames += 1
                del self._buf[:2]  # past this ID; the real frame may start inside the bad one
                continue
            del self._buf[:FRAME_LEN]
            readings.append(reading)


class RdtechUmProbe(SerialMeter):
    """Power from a RuiDeng UM24C/UM25C/UM34C on ``port`` (``/dev/rfcommN``, default 9600 baud).

    ``model`` ("um24c", "um25c", "um34c") is optional: the meter names itself in
    every frame. When given, a meter that names itself otherwise is refused.
    ``check()`` sends one 0xF0 request and needs one valid frame back.
    """

    name = "rdtech-um"
    default_baud = 9600

    def __init__(
        self,
        port: str,
        baud: int | None = None,
        scope: str = "board",
        *,
        model: str | None = None,
        poll_hz: float = 2.0,
        response_timeout_s: float = 1.0,
    ) -> None:
        super().__init__(port, baud, scope)
        if model is not None and model.lower() not in _BY_NAME:
            raise InputError(f"model {model!r}: expected one of um24c, um25c, um34c (or None to detect)")
        if not 0.0 < poll_hz <= 20.0:
            raise InputError(f"poll_hz {poll_hz}: expected 0 < poll_hz <= 20 (the meter updates at about 2 Hz)")
        self.model = _BY_NAME[model.lower()] if model else None
        self.poll_hz = float(poll_hz)
        self.response_timeout_s = float(response_timeout_s)
        self._reset()

    def _reset(self) -> None:
        self._sync = UmFrameSync()
        self._t_ns: list[int] = []
        self._watts: list[float] = []
        self._timeouts = 0
        self._seen: UmModel | None = None

    def _poll_once(self, ser: serial.Serial, timeout_s: float) -> UmReading | None:
        """Send one request; the first valid reading within ``timeout_s`` (stamped in ``_t_ns``) or None."""
        t_req_ns = time.perf_counter_ns()
        ser.write(POLL_REQUEST)
        deadline_ns = t_req_ns + int(timeout_s * 1e9)
        while time.perf_counter_ns() < deadline_ns and not self._stop_evt.is_set():
            readings = self._sync.feed(self._read_available(ser))
            if readings:
                self._t_ns.append(t_req_ns)
                self._watts.append(readings[-1].watts)
                return readings[-1]
        if self._stop_evt.is_set():
            return None  # stop() cut the wait short: not the meter's fault
        if self._sync.buffered == 0:
            self._timeouts += 1
        ser.reset_input_buffer()  # a late reply must not be stamped with the next request's time
        self._sync.discard()
        return None

    def _identify(self, ser: serial.Serial) -> str | None:
        timeout_s = max(self.response_timeout_s, IDENTIFY_TIMEOUT_S)
        reading = self._poll_once(ser, timeout_s)
        if reading is None:
            return (
                f"no valid UM frame on {self.port} in {timeout_s} s: is it a UM24C/25C/34C "
                "bound with `rfcomm bind`, switched on, and not connected to the phone app?"
            )
        if self.model is not None and reading.model != self.model:
            return f"the meter on {self.port} is a {reading.model.name}, not a {self.model.name}: pass model=None"
        self._seen = reading.model
        self._sync.model = reading.model  # lock onto its ID: fewer false frame starts in noise
        return None

    def _handshake(self, ser: serial.Serial) -> str | None:
        self._reset()
        reason = self._identify(ser)
        self._reset()
        return reason

    def _begin(self, ser: serial.Serial) -> None:
        self._reset()
        reason = self._identify(ser)
        if reason is not None:
            raise ProbeUnavailable(reason)

    def _step(self, ser: serial.Serial) -> None:
        t0 = time.perf_counter()
        self._poll_once(ser, self.response_timeout_s)
        self._wait(1.0 / self.poll_hz - (time.perf_counter() - t0))

    def _collect(self) -> tuple[Any, Any, float | None, list[str]]:
        model = self._seen.name if self._seen else "unknown model"
        notes = [f"meter: {model}; power is the meter's own W reading, polled at {self.poll_hz:g} Hz"]
        counts = {
            "bad frames (short, truncated or failed checksum)": self._sync.bad_frames,
            "stray bytes skipped": self._sync.skipped_bytes,
            "requests without a reply": self._timeouts,
        }
        notes += [f"{n} {what}" for what, n in counts.items() if n]
        return np.asarray(self._t_ns, dtype=np.int64), np.asarray(self._watts), self.poll_hz, notes
