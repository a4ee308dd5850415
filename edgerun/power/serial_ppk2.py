"""Nordic Power Profiler Kit II (PPK2): 100 kS/s current over USB CDC-ACM, averaged to blocks.

Reference: reference/power-and-thermal-sensors.md §5, "PPK2", after
IRNAS/ppk2-api-python (src/ppk2_api/ppk2_api.py) and Nordic's
NordicSemiconductor/pc-nrfconnect-ppk (src/device/serialDevice.ts):

- one-byte opcodes: 0x19 metadata (text ending ``END`` with the calibration
  ``R0-R4, GS, GI, O, S, I, UG`` per range), ``0x11 0x01/0x02`` ampere/source
  mode, ``0x0D b1 b2`` source mV (800 mV = 3,32), ``0x0C 0x01/0x00`` DUT power,
  0x06 start, 0x07 stop;
- stream: little-endian uint32 per sample at 100 kS/s; bits 0-13 ADC, 14-16
  range, 18-23 a 6-bit sample counter (pc-nrfconnect-ppk ``MEAS_COUNTER``),
  24-31 logic inputs D0-D7;
- current = UG*(r*(GS*r + GI) + S*vdd_V + I) with r = (adc*4 - O)*(1.8/163840)/R,
  all per range (IRNAS ``get_adc_result``).

Why not the ``ppk2-api`` package (0.9.2, June 2023, the IRNAS code): it is
GPL-2.0 (edgerun is Apache-2.0), it installs a stray top-level
``power_profiler`` module, its ``_write_serial`` logs and swallows write errors
(a meter unplugged mid-run would go unnoticed), it prints to stdout on bad
samples, and it converts 100 kS/s one sample at a time in Python. The protocol
is small, so it is implemented here and decoded with numpy.

Decoding: the counter must step by 1 (mod 64) from word to word. A stream is
locked when 8 consecutive words do; bytes scanned while unlocked are counted as
skipped (noise), and a counter jump after relocking counts lost samples, which
keeps the sample index, and so the timestamps, right. The word just before a
break and the first word of a lock are dropped too: that is where injected
noise would hide if it passed the counter test by chance (1 in 64); with them
dropped, garbage needs two chance passes in a row (1 in 4096). Samples are averaged in blocks of
``block_samples`` (default 100 -> 1 kHz) and stamped on the nominal 100 kS/s
grid (``stream_times_ns``). Unlike nRF Connect, no spike filter is applied at
range switches: a block mean spreads those few 10 us samples over the block.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from edgerun.errors import InputError, ProbeUnavailable
from edgerun.power.serial_base import SerialMeter, read_until, stream_times_ns

if TYPE_CHECKING:
    import serial

__all__ = ["SAMPLE_RATE_HZ", "Ppk2Calibration", "Ppk2Decoder", "Ppk2Probe", "source_voltage_bytes"]

SAMPLE_RATE_HZ = 100_000
OP_METADATA, OP_MODE, OP_SOURCE_MV, OP_DUT_POWER, OP_START, OP_STOP = 0x19, 0x11, 0x0D, 0x0C, 0x06, 0x07
MODE_AMPERE, MODE_SOURCE = 0x01, 0x02
ADC_MULT = 1.8 / 163840
LOCK_WORDS = 8
COUNTER_MOD = 64
METADATA_TIMEOUT_S = 1.5
_META_LINE = re.compile(r"^\s*(R|GS|GI|O|S|I|UG)([0-4])\s*:\s*(\S+)\s*$")


def source_voltage_bytes(mv: int) -> tuple[int, int]:
    """The two argument bytes of opcode 0x0D for ``mv`` millivolts (800 -> (3, 32), IRNAS encoding)."""
    if not 800 <= mv <= 5000:
        raise InputError(f"voltage_mv {mv}: the PPK2 sources 800-5000 mV")
    code = mv - 800 + 32
    return 3 + code // 256, code % 256


def _five(value: float) -> tuple[float, ...]:
    return (value,) * 5


@dataclass(frozen=True)
class Ppk2Calibration:
    """Per-range calibration from the 0x19 metadata; defaults are IRNAS's uncalibrated values."""

    r: tuple[float, ...] = (1031.64, 101.65, 10.15, 0.94, 0.043)
    gs: tuple[float, ...] = field(default_factory=lambda: _five(1.0))
    gi: tuple[float, ...] = field(default_factory=lambda: _five(1.0))
    o: tuple[float, ...] = field(default_factory=lambda: _five(0.0))
    s: tuple[float, ...] = field(default_factory=lambda: _five(0.0))
    i: tuple[float, ...] = field(default_factory=lambda: _five(0.0))
    ug: tuple[float, ...] = field(default_factory=lambda: _five(1.0))

    @classmethod
    def from_metadata(cls, text: str) -> Ppk2Calibration:
        """Parse ``KEY<range>: value`` lines; a zero R keeps the default (some PPK2s report one, per IRNAS)."""
        cal = cls()
        for line in text.splitlines():
            m = _META_LINE.match(line)
            if m is None:
                continue
            key, rng = m.group(1).lower(), int(m.group(2))
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            if key == "r" and value == 0.0:
                continue
            values = list(getattr(cal, key))
            values[rng] = value
            cal = replace(cal, **{key: tuple(values)})
        return cal

    def current_a(self, words: npt.NDArray[np.uint32], vdd_v: float) -> npt.NDArray[np.float64]:
        """Current in amperes of each raw sample word."""
        rng = np.minimum((words >> 14) & 0x7, 4)  # 5-7 do not exist; IRNAS clamps them to 4
        adc4 = (words & 0x3FFF).astype(np.float64) * 4.0
        per = {k: np.asarray(getattr(self, k))[rng] for k in ("r", "gs", "gi", "o", "s", "i", "ug")}
        raw = (adc4 - per["o"]) * (ADC_MULT / per["r"])
        return per["ug"] * (raw * (per["gs"] * raw + per["gi"]) + (per["s"] * vdd_v + per["i"]))


class Ppk2Decoder:
    """Raw stream bytes in, block-mean currents out, indexed on the meter's 100 kS/s sample grid."""

    def __init__(self, cal: Ppk2Calibration, vdd_v: float, block_samples: int) -> None:
        self.cal, self.vdd_v, self.block = cal, vdd_v, block_samples
        self._buf = bytearray()
        self._locked = False
        self._pending: int | None = None  # last accepted word, committed once its successor checks out
        self._last_counter: int | None = None  # counter of the last committed word
        self.next_index = 0  # sample index after the last committed word
        self.skipped_bytes = self.lost_samples = self.breaks = 0
        self._open: tuple[int, float, float, int] | None = None  # (block id, sum A, sum index, count)
        self.block_ids: list[int] = []
        self.block_amps: list[float] = []
        self.block_index: list[float] = []  # mean sample index: a partial block or lost samples shift it

    def feed(self, data: bytes) -> None:
        self._buf += data
        pos = 0
        while len(self._buf) - pos >= 4:
            if not self._locked:
                pos = self._find_lock(pos)
                if not self._locked:
                    break
            pos = self._take_locked(pos)
        del self._buf[:pos]

    def _find_lock(self, pos: int) -> int:
        """Scan all four byte alignments for LOCK_WORDS words with consecutive counters."""
        avail = len(self._buf) - pos
        if avail < 4 * LOCK_WORDS:
            return pos
        best = None
        for align in range(4):
            n = (avail - align) // 4
            words = np.frombuffer(self._buf, dtype="<u4", count=n, offset=pos + align)
            ok = np.diff((words >> 18) & 0x3F) % COUNTER_MOD == 1
            runs = np.convolve(ok.astype(np.int32), np.ones(LOCK_WORDS - 1, dtype=np.int32), "valid")
            hits = np.flatnonzero(runs == LOCK_WORDS - 1)
            if hits.size and (best is None or align + 4 * hits[0] < best):
                best = align + 4 * int(hits[0])
        if best is None:  # no lock anywhere: keep the tail, a lock may straddle the next read
            keep = 4 * LOCK_WORDS - 1
            self.skipped_bytes += max(0, avail - keep)
            return pos + max(0, avail - keep)
        first = int.from_bytes(self._buf[pos + best : pos + best + 4], "little")
        if self._last_counter is None:  # the stream's first word is sample 0, used or not
            self._last_counter, self.next_index = (first >> 18) & 0x3F, 1
        self.skipped_bytes += best
        self._locked = True
        return pos + best + 4  # the first word of a lock may be noise that matched by chance: never use it

    def _take_locked(self, pos: int) -> int:
        n = (len(self._buf) - pos) // 4
        words = np.frombuffer(self._buf, dtype="<u4", count=n, offset=pos).copy()
        counters = ((words >> 18) & 0x3F).astype(np.int64)
        prev = np.concatenate(([-1 if self._pending is None else (self._pending >> 18) & 0x3F], counters[:-1]))
        cont = ((counters - prev) % COUNTER_MOD == 1) | (prev < 0)
        bad = np.flatnonzero(~cont)
        end = int(bad[0]) if bad.size else n
        accepted = words[:end]
        if self._pending is not None and end > 0:
            accepted = np.concatenate(([self._pending], accepted)).astype(np.uint32)
        if end > 0:
            self._commit(accepted[:-1])
            self._pending = int(accepted[-1])
        if end < n:  # a break: drop the suspect word before it and relock from here
            self._pending, self._locked = None, False
            self.breaks += 1
        return pos + 4 * end

    def _commit(self, words: npt.NDArray[np.uint32]) -> None:
        if words.size == 0:
            return
        counters = ((words >> 18) & 0x3F).astype(np.int64)
        first = 1 if self._last_counter is None else (int(counters[0]) - self._last_counter) % COUNTER_MOD
        first = first or COUNTER_MOD  # a jump of exactly 64 samples reads as 0
        steps = np.concatenate(([first], np.diff(counters) % COUNTER_MOD))
        self.lost_samples += int(steps.sum()) - words.size
        index = self.next_index - 1 + np.cumsum(steps)
        self._last_counter, self.next_index = int(counters[-1]), int(index[-1]) + 1
        self._accumulate(index, self.cal.current_a(words, self.vdd_v))

    def _accumulate(self, index: npt.NDArray[np.int64], amps: npt.NDArray[np.float64]) -> None:
        block_ids = index // self.block
        starts = np.concatenate(([0], np.flatnonzero(np.diff(block_ids)) + 1))
        sums, index_sums = np.add.reduceat(amps, starts), np.add.reduceat(index.astype(np.float64), starts)
        counts = np.diff(np.append(starts, amps.size))
        for bid, amp_sum, idx_sum, count in zip(block_ids[starts].tolist(), sums, index_sums, counts.tolist()):
            if self._open is not None and self._open[0] == bid:
                _, amp0, idx0, count0 = self._open
                amp_sum, idx_sum, count = amp_sum + amp0, idx_sum + idx0, count + count0
            elif self._open is not None:
                self._close_block()
            self._open = (bid, float(amp_sum), float(idx_sum), count)

    def _close_block(self) -> None:
        if self._open is not None:
            bid, amp_sum, idx_sum, count = self._open
            self.block_ids.append(bid)
            self.block_amps.append(amp_sum / count)
            self.block_index.append(idx_sum / count)
            self._open = None

    def finish(self) -> None:
        """Commit the pending word and close the last (possibly partial) block."""
        self.skipped_bytes += len(self._buf)  # a partial word, or too few bytes to lock on
        self._buf.clear()
        if self._pending is not None:
            self._commit(np.array([self._pending], dtype=np.uint32))
            self._pending = None
        self._close_block()


class Ppk2Probe(SerialMeter):
    """Power from a PPK2 on ``port``: current x ``voltage_mv``, in blocks of ``block_samples`` (default 1 kHz).

    ``mode="source"``: the PPK2 powers the DUT at ``voltage_mv`` (800-5000).
    ``mode="ampere"``: the PPK2 sits in series with the DUT's own supply and
    ``voltage_mv`` must be that supply's voltage: it is not measured.
    ``check()`` sends 0x19 and needs the metadata (ending ``END``) back.
    The DUT is powered on at ``start()`` and left on at ``stop()``: cutting it
    between the idle and load windows would reboot the device under test.
    """

    name = "ppk2"
    default_baud = 115200  # USB CDC-ACM: the rate is nominal

    def __init__(
        self,
        port: str,
        baud: int | None = None,
        scope: str = "board",
        *,
        voltage_mv: int = 3300,
        mode: str = "source",
        block_samples: int = 100,
    ) -> None:
        super().__init__(port, baud, scope)
        source_voltage_bytes(voltage_mv)  # validates the range
        if mode not in ("source", "ampere"):
            raise InputError(f"mode {mode!r}: expected 'source' or 'ampere'")
        if not 1 <= block_samples <= SAMPLE_RATE_HZ:
            raise InputError(f"block_samples {block_samples}: expected 1..{SAMPLE_RATE_HZ}")
        self.voltage_mv, self.mode, self.block_samples = int(voltage_mv), mode, int(block_samples)
        self.calibration = Ppk2Calibration()
        self._reset()

    def _reset(self) -> None:
        self._decoder = Ppk2Decoder(self.calibration, self.voltage_mv / 1000.0, self.block_samples)
        self._chunks: list[tuple[int, int]] = []

    def _metadata(self, ser: serial.Serial) -> str | None:
        ser.write(bytes([OP_STOP]))  # a PPK2 left streaming by a crashed run would bury the reply
        time.sleep(0.05)
        ser.reset_input_buffer()
        ser.write(bytes([OP_METADATA]))
        text = read_until(ser, b"END", METADATA_TIMEOUT_S).decode("ascii", errors="replace")
        return text if "END" in text else None

    def _handshake(self, ser: serial.Serial) -> str | None:
        if self._metadata(ser) is None:
            return f"{self.port} opened but did not answer the PPK2 metadata request (0x19 ... END): is it a PPK2?"
        return None

    def _begin(self, ser: serial.Serial) -> None:
        text = self._metadata(ser)
        if text is None:
            raise ProbeUnavailable(f"{self.port} did not answer the PPK2 metadata request (0x19 ... END)")
        self.calibration = Ppk2Calibration.from_metadata(text)
        self._reset()
        b1, b2 = source_voltage_bytes(self.voltage_mv)
        mode = MODE_SOURCE if self.mode == "source" else MODE_AMPERE
        for command in ((OP_MODE, mode), (OP_SOURCE_MV, b1, b2), (OP_DUT_POWER, 1), (OP_START,)):
            ser.write(bytes(command))

    def _step(self, ser: serial.Serial) -> None:
        data = self._read_available(ser)
        if data:
            arrival_ns = time.perf_counter_ns()
            self._decoder.feed(data)
            self._chunks.append((arrival_ns, self._decoder.next_index))

    def _end(self, ser: serial.Serial) -> None:
        ser.write(bytes([OP_STOP]))
        deadline = time.monotonic() + 0.05  # samples already in flight were measured before stop()
        while time.monotonic() < deadline and ser.in_waiting:
            self._step(ser)

    def _collect(self) -> tuple[Any, Any, float | None, list[str]]:
        dec = self._decoder
        dec.finish()
        t_ns = stream_times_ns(dec.block_index, self._chunks, SAMPLE_RATE_HZ)
        watts = np.asarray(dec.block_amps, dtype=np.float64) * (self.voltage_mv / 1000.0)
        how = "supplied" if self.mode == "source" else "stated (not measured)"
        notes = [f"power = current x {how} {self.voltage_mv} mV; {self.block_samples}-sample block means"]
        counts = {"stray bytes skipped": dec.skipped_bytes, "samples lost or dropped at resyncs": dec.lost_samples}
        notes += [f"{n} {what}" for what, n in counts.items() if n]
        notes += self._rate_note()
        return t_ns, watts, SAMPLE_RATE_HZ / self.block_samples, notes

    def _rate_note(self) -> list[str]:
        """Timestamps assume the nominal 100 kS/s; say so when the samples did not arrive at that rate."""
        if len(self._chunks) < 2 or self._chunks[-1][0] - self._chunks[0][0] < 500_000_000:
            return []
        (t0, n0), (t1, n1) = self._chunks[0], self._chunks[-1]
        rate = (n1 - n0) / ((t1 - t0) / 1e9)
        if abs(rate / SAMPLE_RATE_HZ - 1.0) <= 0.02:
            return []
        return [f"samples arrived at {rate:.0f} S/s, not the nominal {SAMPLE_RATE_HZ}: timestamps may drift"]
