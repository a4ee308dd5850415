"""The firmware <-> host frame protocol (docs/serial-protocol.md is the spec; this is its reference codec).

On the wire every frame is ``0x00 COBS(body) 0x00``; the body is

    type u8 | flags u8 | seq u16 | payload (0..MAX_PAYLOAD_BYTES) | crc32 u32

all little-endian, the CRC being CRC-32/ISO-HDLC (``zlib.crc32``, the one in
zlib, Ethernet and most MCU SDKs) over type..payload. COBS (Cheshire & Baker,
1999, via the maintained ``cobs`` package) removes every zero byte from the
body, so a zero always ends a frame: a receiver that lost sync (noise, a cut
frame, a reset mid-byte) is back in step at the next zero. The leading zero
ends whatever garbage came before, so noise between frames never costs the
frame after it (an empty frame between two zeros is ignored).

``FrameDecoder`` never raises on bad bytes: it counts them (``DecodeCounts``)
and goes on, because a serial line is noisy by nature and one bad frame must
not end a recording. Payload layouts of each frame type are frozen
dataclasses with ``pack()`` / ``unpack()``; ``unpack`` raises ``ValueError``
naming the field that was wrong (the decoder counts those as malformed).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from cobs import cobs

from edgerun.errors import FrameError, UsageError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "PROTOCOL_VERSION",
    "SAMPLE_TYPES",
    "DecodeCounts",
    "ErrorMsg",
    "Frame",
    "FrameDecoder",
    "Heartbeat",
    "Hello",
    "HelloAck",
    "ResultMsg",
    "Samples",
    "encode_frame",
    "frame_wire_bytes",
]

PROTOCOL_VERSION = 1
#: Bound on one frame's payload: a host never buffers more than this (plus COBS overhead) per frame.
MAX_PAYLOAD_BYTES = 1024
_HEADER = struct.Struct("<BBH")
_CRC = struct.Struct("<I")
_OVERHEAD_BYTES = _HEADER.size + _CRC.size
#: Longest encoded frame (COBS adds one byte per 254); longer runs without a zero are noise.
MAX_ENCODED_BYTES = MAX_PAYLOAD_BYTES + _OVERHEAD_BYTES + (MAX_PAYLOAD_BYTES + _OVERHEAD_BYTES) // 254 + 2

# Frame types. Device -> host: HELLO, SAMPLES; host -> device: HELLO_ACK, RESULT; both: HEARTBEAT, ERROR.
HELLO, HELLO_ACK, SAMPLES, RESULT, HEARTBEAT, ERROR = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06
TYPE_NAMES = {HELLO: "HELLO", HELLO_ACK: "HELLO_ACK", SAMPLES: "SAMPLES", RESULT: "RESULT"}
TYPE_NAMES |= {HEARTBEAT: "HEARTBEAT", ERROR: "ERROR"}

#: sample_type code -> (numpy dtype string, bytes per sample)
SAMPLE_TYPES: dict[int, tuple[str, int]] = {1: ("<i2", 2), 2: ("<i4", 4), 3: ("<f4", 4)}

# HELLO_ACK status codes
ACK_OK, ACK_BAD_VERSION, ACK_BAD_FORMAT = 0, 1, 2
# ERROR codes (128..255 are the firmware's own)
E_NO_SESSION, E_BAD_FRAME, E_OVERLOADED, E_INFERENCE = 1, 2, 3, 4
# RESULT flags
LATE_SOFT, LATE_HARD = 0x01, 0x02


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its type, sequence number and raw payload."""

    type: int
    seq: int
    payload: bytes
    flags: int = 0


def encode_frame(frame_type: int, seq: int, payload: bytes = b"", flags: int = 0) -> bytes:
    """The wire bytes of one frame: 0x00, COBS(header | payload | crc32), 0x00."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise UsageError(f"payload is {len(payload)} bytes; the protocol allows at most {MAX_PAYLOAD_BYTES}")
    body = _HEADER.pack(frame_type, flags, seq & 0xFFFF) + payload
    return b"\x00" + cobs.encode(body + _CRC.pack(zlib.crc32(body))) + b"\x00"


def frame_wire_bytes(payload_bytes: int) -> int:
    """Bytes one frame with ``payload_bytes`` of payload occupies on the wire (COBS and both delimiters)."""
    body = payload_bytes + _OVERHEAD_BYTES
    return body + body // 254 + 1 + 2


@dataclass
class DecodeCounts:
    """What a decoder saw: good frames, and each way a frame can be bad (never raised, always counted)."""

    frames: int = 0
    crc_failed: int = 0
    malformed: int = 0  # COBS violations, too short for a header and CRC
    oversize: int = 0  # a run of bytes longer than any legal frame: noise or a wrong baud rate
    noise_bytes: int = 0  # bytes thrown away in bad or oversize frames

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class FrameDecoder:
    """Bytes in, ``Frame`` objects out; resynchronises at every 0x00, counts what it throws away.

    The first partial frame after ``reset(mid_frame=True)`` (a port just opened
    in the middle of the stream) is dropped silently: it is not an error.
    """

    def __init__(self) -> None:
        self.counts = DecodeCounts()
        self._buf = bytearray()
        self._skip_first = False
        self._overflowing = False

    def reset(self, *, mid_frame: bool = True) -> None:
        self._buf.clear()
        self._skip_first = mid_frame
        self._overflowing = False

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data``, in order."""
        out: list[Frame] = []
        *complete, rest = bytes(data).split(b"\x00")
        for i, piece in enumerate(complete):
            encoded = bytes(self._buf) + piece if i == 0 else piece
            overflowed = self._overflowing if i == 0 else False
            if i == 0:
                self._buf.clear()
                self._overflowing = False
            if self._skip_first:
                self._skip_first = False
                continue
            frame = self._decode(encoded, overflowed)
            if frame is not None:
                out.append(frame)
        self._append_rest(rest)
        return out

    def _append_rest(self, rest: bytes) -> None:
        if self._overflowing:
            self.counts.noise_bytes += len(rest)
            return
        self._buf += rest
        if len(self._buf) > MAX_ENCODED_BYTES:
            # bounded memory: a zero-free run this long cannot be a frame; drop it until the next zero
            self.counts.oversize += 1
            self.counts.noise_bytes += len(self._buf)
            self._buf.clear()
            self._overflowing = True

    def _decode(self, encoded: bytes, overflowed: bool) -> Frame | None:
        if overflowed:
            self.counts.noise_bytes += len(encoded)
            return None
        if not encoded:
            return None  # the gap between one frame's closing zero and the next one's leading zero
        try:
            body = cobs.decode(encoded)
        except cobs.DecodeError:
            body = b""
        if len(body) < _OVERHEAD_BYTES:
            self._bad("malformed", encoded)
            return None
        (crc,) = _CRC.unpack_from(body, len(body) - _CRC.size)
        if zlib.crc32(memoryview(body)[: -_CRC.size]) != crc:
            self._bad("crc_failed", encoded)
            return None
        frame_type, flags, seq = _HEADER.unpack_from(body)
        self.counts.frames += 1
        return Frame(frame_type, seq, bytes(body[_HEADER.size : -_CRC.size]), flags)

    def _bad(self, kind: str, encoded: bytes) -> None:
        setattr(self.counts, kind, getattr(self.counts, kind) + 1)
        self.counts.noise_bytes += len(encoded) + 1


# --- payloads -------------------------------------------------------------------------


def _need_len(payload: bytes, at_least: int, what: str) -> None:
    if len(payload) < at_least:
        raise FrameError(f"{what} payload is {len(payload)} bytes; expected at least {at_least}")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


_HELLO = struct.Struct("<BBBBIfI")


@dataclass(frozen=True)
class Hello:
    """Device -> host, first frame after boot (and after ERROR NO_SESSION): what the sensor stream is.

    ``sample_rate_mhz`` is in millihertz (250 Hz = 250_000) so fractional rates survive;
    a sample's physical value is ``raw * scale`` (mV for ECG); ``boot_id`` is random per
    boot so the host can tell a reset from a repeated HELLO.
    """

    protocol_version: int
    sample_type: int
    channels: int
    sample_rate_mhz: int
    scale: float
    boot_id: int
    device: str = ""
    flags: int = 0

    @property
    def sample_rate_hz(self) -> float:
        return self.sample_rate_mhz / 1000.0

    def pack(self) -> bytes:
        head = _HELLO.pack(
            self.protocol_version,
            self.sample_type,
            self.channels,
            self.flags,
            self.sample_rate_mhz,
            self.scale,
            self.boot_id,
        )
        return head + self.device.encode()[:32]

    @classmethod
    def unpack(cls, payload: bytes) -> Hello:
        _need_len(payload, _HELLO.size, "HELLO")
        version, stype, channels, flags, rate, scale, boot = _HELLO.unpack_from(payload)
        return cls(version, stype, channels, rate, scale, boot, _text(payload[_HELLO.size :]), flags)


_ACK = struct.Struct("<BBHII")


@dataclass(frozen=True)
class HelloAck:
    """Host -> device: the handshake's answer. ``text``: class labels joined by newlines, or why it was rejected."""

    protocol_version: int
    status: int
    window_samples: int
    hop_samples: int
    text: str = ""

    def pack(self) -> bytes:
        head = _ACK.pack(self.protocol_version, self.status, 0, self.window_samples, self.hop_samples)
        return head + self.text.encode()[: MAX_PAYLOAD_BYTES - _ACK.size]

    @classmethod
    def unpack(cls, payload: bytes) -> HelloAck:
        _need_len(payload, _ACK.size, "HELLO_ACK")
        version, status, _, window, hop = _ACK.unpack_from(payload)
        return cls(version, status, window, hop, _text(payload[_ACK.size :]))


_SAMPLES = struct.Struct("<I")


@dataclass(frozen=True)
class Samples:
    """Device -> host: ``first_index`` (the device's u32 sample counter since boot) and raw interleaved samples."""

    first_index: int
    data: bytes = field(repr=False)

    def pack(self) -> bytes:
        return _SAMPLES.pack(self.first_index & 0xFFFFFFFF) + self.data

    @classmethod
    def unpack(cls, payload: bytes) -> Samples:
        _need_len(payload, _SAMPLES.size, "SAMPLES")
        return cls(_SAMPLES.unpack_from(payload)[0], bytes(payload[_SAMPLES.size :]))


_RESULT = struct.Struct("<IIHBBf")


@dataclass(frozen=True)
class ResultMsg:
    """Host -> device: one window's decision. ``end_index`` is one past the window's last sample;
    ``latency_us`` runs from that sample's arrival to this frame's encoding; ``flags`` LATE_SOFT/LATE_HARD."""

    end_index: int
    latency_us: int
    class_index: int
    flags: int
    score: float

    def pack(self) -> bytes:
        latency = min(self.latency_us, 0xFFFFFFFF)
        return _RESULT.pack(self.end_index & 0xFFFFFFFF, latency, self.class_index, self.flags, 0, self.score)

    @classmethod
    def unpack(cls, payload: bytes) -> ResultMsg:
        _need_len(payload, _RESULT.size, "RESULT")
        end, latency, cls_idx, flags, _, score = _RESULT.unpack_from(payload)
        return cls(end, latency, cls_idx, flags, score)


_HEARTBEAT = struct.Struct("<II")


@dataclass(frozen=True)
class Heartbeat:
    """Both ways, about once a second: the sender's uptime (ms) and one counter (device: samples it
    dropped itself; host: windows decided this session)."""

    uptime_ms: int
    counter: int = 0

    def pack(self) -> bytes:
        return _HEARTBEAT.pack(self.uptime_ms & 0xFFFFFFFF, self.counter & 0xFFFFFFFF)

    @classmethod
    def unpack(cls, payload: bytes) -> Heartbeat:
        _need_len(payload, _HEARTBEAT.size, "HEARTBEAT")
        return cls(*_HEARTBEAT.unpack_from(payload))


_ERROR = struct.Struct("<BBH")


@dataclass(frozen=True)
class ErrorMsg:
    """Both ways: ``code`` (E_* or 128..255 for the firmware's own), the seq it refers to, a short message."""

    code: int
    ref_seq: int = 0
    message: str = ""

    def pack(self) -> bytes:
        return _ERROR.pack(self.code, 0, self.ref_seq & 0xFFFF) + self.message.encode()[:200]

    @classmethod
    def unpack(cls, payload: bytes) -> ErrorMsg:
        _need_len(payload, _ERROR.size, "ERROR")
        code, _, ref = _ERROR.unpack_from(payload)
        return cls(code, ref, _text(payload[_ERROR.size :]))
