#!/usr/bin/env python3
"""Serial power-meter emulator on a real pseudo-terminal, for edgerun's serial probes.

Speaks each meter protocol of reference/power-and-thermal-sensors.md §5 as the
edgerun.power.serial_* modules read it (their docstrings cite the upstream
sources: rfinnie/rdserialtool, sigrokproject/libsigrok, IRNAS/ppk2-api-python,
NordicSemiconductor/pc-nrfconnect-ppk, mlcommons/tiny):

    ina219   CSV lines t_us,bus_V,current_mA,power_mW at --rate-hz (default 200), 5 V bus
    um24c/um25c/um34c   a 130-byte frame per 0xF0 request, 5 V bus
    ppk2     0x19 metadata (non-trivial calibration), then 100 kS/s uint32 words after 0x06
    lpm01a   "PowerShield > ack ..." replies, then "dddd-ee" current lines at the set freq

The emulated power is --watts, or --step-watts from --step-at seconds into the
stream. Faults: --noise-bytes N injects N random bytes after every
--noise-every units (a unit is a line, a frame, or 1000 PPK2 samples);
--truncate-every N cuts every Nth unit short (PPK2: loses 2 bytes of a word);
--drop-after N closes the pty master after N units, as if the meter were
unplugged. The ina219 stream starts --boot-delay seconds after the pty opens
(an Uno resets when its port is opened), so a probe opened meanwhile sees the
header line. The LPM01A "TimeStamp" status line format is made up; the probe
relies only on its prefix.

By hand:  python tools/meter_emulator.py --meter um25c --watts 2.5   (prints the pty path)
In tests: with MeterEmulator("ppk2", watts=0.05) as emu: probe = Ppk2Probe(emu.path) ...
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import struct
import threading
import time
import tty
from typing import Protocol

import numpy as np

METERS = ("ina219", "um24c", "um25c", "um34c", "ppk2", "lpm01a")
UM_IDS = {"um24c": (0x0963, 100, 1000), "um25c": (0x09C9, 1000, 10000), "um34c": (0x0D4C, 100, 1000)}
UM34C_XOR_POSITIONS: tuple[int, ...] = (1, 3, 7, 9, 15, 17, 19, 23, 31, 39, 41, 45, 49, 53, 55, 57, 59, 63, 67, 69)
UM34C_XOR_POSITIONS += (73, 79, 83, 89, 97, 99, 109, 111, 113, 119, 121, 127)
PPK2_CAL = {  # deliberately far from the defaults, so a decoder that ignores the metadata fails
    "R": (1000.5, 100.2, 10.05, 0.95, 0.045),
    "GS": (0.5, 0.5, 0.5, 0.5, 0.5),
    "GI": (1.02, 1.02, 1.02, 1.02, 1.02),
    "O": (112.7, 68.4, 55.1, 60.0, 58.5),
    "S": (-2e-6, -2e-6, -2e-6, -2e-6, -2e-6),
    "I": (1e-6, 1e-6, 1e-6, 1e-6, 1e-6),
    "UG": (1.0, 1.0, 1.0, 1.0, 1.0),
}
ADC_MULT = 1.8 / 163840


class _Protocol(Protocol):
    def __init__(self, emu: MeterEmulator) -> None: ...

    def on_input(self, data: bytes) -> None: ...

    def tick(self) -> None: ...


class MeterEmulator:
    """One emulated meter on a fresh pty, served by a daemon thread. ``start()`` returns the slave path."""

    def __init__(
        self,
        meter: str,
        watts: float = 2.5,
        *,
        step_at_s: float | None = None,
        step_watts: float | None = None,
        noise_bytes: int = 0,
        noise_every: int = 10,
        truncate_every: int | None = None,
        drop_after: int | None = None,
        header: bool = True,
        boot_delay_s: float = 0.0,
        rate_hz: float = 200.0,
        seed: int = 0,
        lossless: bool = False,
    ) -> None:
        if meter not in METERS:
            raise ValueError(f"meter {meter!r}: expected one of {', '.join(METERS)}")
        self.meter, self.watts, self.step_at_s, self.step_watts = meter, watts, step_at_s, step_watts
        self.noise_bytes, self.noise_every = noise_bytes, max(1, noise_every)
        self.truncate_every, self.drop_after = truncate_every, drop_after
        self.header, self.boot_delay_s, self.rate_hz = header, boot_delay_s, rate_hz
        self.rng = np.random.default_rng(seed)
        self.units = self.noise_events = self.truncated = 0
        # lossless: wait for a slow reader as a USB CDC meter does (its NAKs are flow control) instead of
        # dropping what a UART could not send; tx_dropped_bytes counts what a lossy line lost
        self.lossless, self.tx_dropped_bytes = lossless, 0
        self.stream_t0_ns: int | None = None  # perf_counter_ns when the stream began (the step is relative to it)
        self.path = ""
        self._stop, self._dropped, self._drop_now = threading.Event(), threading.Event(), threading.Event()
        self._master = self._slave = -1
        self._started_ns = 0
        protocols: dict[str, type[_Protocol]] = {"ina219": _Ina219, "ppk2": _Ppk2, "lpm01a": _Lpm01a}
        self._proto = protocols.get(meter, _Um)(self)
        self._thread = threading.Thread(target=self._serve, name=f"emulator-{meter}", daemon=True)

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> str:
        self._started_ns = time.perf_counter_ns()
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # before any open: a cooked pty would echo our replies back to us
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._thread.start()
        return self.path

    def drop(self, timeout_s: float = 2.0) -> None:
        """Close the master now: the port vanishes under whoever has it open."""
        self._drop_now.set()
        self._dropped.wait(timeout_s)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def __enter__(self) -> MeterEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers for the protocols -------------------------------------------------

    def watts_at(self, t_s: float) -> float:
        if self.step_at_s is not None and self.step_watts is not None and t_s >= self.step_at_s:
            return self.step_watts
        return self.watts

    def begin_stream(self) -> None:
        self.stream_t0_ns = time.perf_counter_ns()

    def stream_s(self) -> float:
        return 0.0 if self.stream_t0_ns is None else (time.perf_counter_ns() - self.stream_t0_ns) / 1e9

    def send(self, data: bytes) -> None:
        """Write all of ``data``; bytes nobody reads within 50 ms are dropped (counted), as a UART
        would, unless ``lossless`` (then it waits until the reader drains, or the emulator stops)."""
        view, deadline = memoryview(data), time.monotonic() + 0.05
        while view and self._master >= 0:
            try:
                view = view[os.write(self._master, view) :]
            except BlockingIOError:
                stopping = self._stop.is_set() or self._drop_now.is_set()
                if stopping or (not self.lossless and time.monotonic() > deadline):
                    self.tx_dropped_bytes += len(view)
                    return
                select.select([], [self._master], [], 0.01)
            except OSError:
                return

    def unit(self, data: bytes, cut: int | None = None) -> None:
        """Send one unit (line/frame/sample block) with the configured faults around it."""
        self.units += 1
        if self.truncate_every and self.units % self.truncate_every == 0:
            self.truncated += 1
            data = data[: cut if cut is not None else len(data) // 2]
        self.send(data)
        if self.noise_bytes and self.units % self.noise_every == 0:
            self.noise_events += 1
            self.send(self.rng.integers(0, 256, self.noise_bytes, dtype=np.uint8).tobytes())
        if self.drop_after is not None and self.units >= self.drop_after:
            self._drop_now.set()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if self._drop_now.is_set():
                os.close(self._master)
                self._master = -1
                self._dropped.set()
                return
            readable, _, _ = select.select([self._master], [], [], 0.002)
            if readable:
                try:
                    self._proto.on_input(os.read(self._master, 4096))
                except OSError:  # EIO: no slave open (between probe sessions); harmless
                    time.sleep(0.002)
            self._proto.tick()


class _Ina219:
    def __init__(self, emu: MeterEmulator) -> None:
        self.emu, self.sent, self.volts = emu, 0, 5.0

    def on_input(self, data: bytes) -> None:
        pass  # a logging sketch ignores the host

    def tick(self) -> None:
        if self.emu.stream_t0_ns is None:
            if time.perf_counter_ns() - self.emu._started_ns < self.emu.boot_delay_s * 1e9:
                return  # the sketch is still booting (opening an Uno's port resets it)
            self.emu.begin_stream()
            if self.emu.header:
                self.emu.send(b"t_us,bus_V,current_mA,power_mW\r\n")
        due = int(self.emu.stream_s() * self.emu.rate_hz) + 1  # the sketch prints a line as soon as it stamps it
        for k in range(self.sent, due):
            t_s = k / self.emu.rate_hz
            watts = self.emu.watts_at(t_s)
            line = f"{int(t_s * 1e6)},{self.volts:.3f},{watts / self.volts * 1000:.2f},{watts * 1000:.2f}\r\n"
            self.emu.unit(line.encode())
        self.sent = max(self.sent, due)


def um_frame(meter: str, watts: float, volts: float = 5.0) -> bytes:
    """One 130-byte UM24C/UM25C/UM34C reply for a load of ``watts`` on a ``volts`` bus."""
    model_id, v_scale, a_scale = UM_IDS[meter]
    frame = bytearray(130)
    v_raw, a_raw = round(volts * v_scale), round(watts / volts * a_scale)
    struct.pack_into(">HHHIHH", frame, 0, model_id, v_raw, a_raw, round(watts * 1000), 25, 77)
    if meter == "um34c":
        xor = 0
        for pos in UM34C_XOR_POSITIONS:
            xor ^= frame[pos]
        frame[-1] = xor
    else:
        frame[-2:] = b"\xff\xf1"
    return bytes(frame)


def ppk2_metadata() -> str:
    """The emulated reply to 0x19: ``KEY<range>: value`` lines ending in END."""
    lines = [f"{k}{r}: {v[r]}" for k, v in PPK2_CAL.items() for r in range(5)]
    return "Calibrated: 0\n" + "\n".join(lines) + "\nHW: 9173\nIA: 56\nEND\n"


class _Um:
    def __init__(self, emu: MeterEmulator) -> None:
        self.emu = emu

    def frame(self) -> bytes:
        return um_frame(self.emu.meter, self.emu.watts_at(self.emu.stream_s()))

    def on_input(self, data: bytes) -> None:
        for byte in data:
            if byte == 0xF0:
                if self.emu.stream_t0_ns is None:
                    self.emu.begin_stream()
                self.emu.unit(self.frame(), cut=60)

    def tick(self) -> None:
        pass


class _Ppk2:
    ARGS = {0x11: 1, 0x0D: 2, 0x0C: 1}  # opcode -> argument bytes; the rest take none

    def __init__(self, emu: MeterEmulator) -> None:
        self.emu, self.pending = emu, bytearray()
        self.volts, self.dut_on, self.streaming, self.sent, self.block = 3.3, False, False, 0, 0

    def on_input(self, data: bytes) -> None:
        self.pending += data
        while self.pending:
            op, need = self.pending[0], self.ARGS.get(self.pending[0], 0)
            if len(self.pending) < 1 + need:
                return
            args, self.pending = self.pending[1 : 1 + need], self.pending[1 + need :]
            self.command(op, bytes(args))

    def command(self, op: int, args: bytes) -> None:
        if op == 0x19:
            self.emu.send(ppk2_metadata().encode())
        elif op == 0x0D:
            self.volts = ((args[0] - 3) * 256 + args[1] - 32 + 800) / 1000
        elif op == 0x0C:
            self.dut_on = args[0] == 1
        elif op == 0x06:
            self.streaming, self.sent = True, 0
            self.emu.begin_stream()
        elif op == 0x07:
            self.streaming = False

    def tick(self) -> None:
        if not self.streaming:
            return
        due = int(self.emu.stream_s() * 100_000)
        while self.sent < due:
            n = min(due - self.sent, 1000 - self.block)
            words = encode_ppk2(self.current_a(self.sent / 100_000), self.volts, np.arange(self.sent, self.sent + n))
            self.sent, self.block = self.sent + n, self.block + n
            if self.block == 1000:  # one unit = 1000 samples: faults land between blocks
                self.block = 0
                self.emu.unit(words.tobytes(), cut=len(words.tobytes()) - 2)
            else:
                self.emu.send(words.tobytes())

    def current_a(self, t_s: float) -> float:
        return self.emu.watts_at(t_s) / self.volts if self.dut_on else 0.0


def encode_ppk2(amps: float, vdd_v: float, index: np.ndarray) -> np.ndarray:
    """uint32 words for a constant current: the most sensitive range that holds it, calibration inverted."""
    cal = {k: np.asarray(v) for k, v in PPK2_CAL.items()}
    c = amps / cal["UG"] - cal["S"] * vdd_v - cal["I"]
    raw = (-cal["GI"] + np.sqrt(cal["GI"] ** 2 + 4 * cal["GS"] * c)) / (2 * cal["GS"])  # UG*(r*(GS*r+GI)+..)
    adc = np.rint((raw * cal["R"] / ADC_MULT + cal["O"]) / 4)
    rng = next((r for r in range(5) if 0 <= adc[r] <= 0x3FFF), 4)
    word = (int(np.clip(adc[rng], 0, 0x3FFF)) | (rng << 14)) & 0xFFFFFFFF
    return (word | ((index % 64) << 18)).astype("<u4")


class _Lpm01a:
    KNOWN = {"volt", "freq", "acqtime", "acqmode", "output", "format", "trigsrc", "trigdelay", "eventsrc"}
    KNOWN |= {"pwr", "pwrend", "lcd", "status", "powershield", "version", "htc", "hrc", "start", "stop"}

    def __init__(self, emu: MeterEmulator) -> None:
        self.emu, self.pending = emu, b""
        self.volts, self.freq_hz, self.control, self.streaming, self.sent = 3.3, 100.0, False, False, 0

    def on_input(self, data: bytes) -> None:
        *lines, self.pending = (self.pending + data).split(b"\n")
        for raw in lines:
            self.command(raw.decode("ascii", errors="replace").strip())

    def reply(self, text: str) -> None:
        self.emu.send(f"PowerShield > {text}\r\n".encode())

    def command(self, line: str) -> None:
        word, _, arg = line.partition(" ")
        if word not in self.KNOWN or (not self.control and word not in ("htc", "powershield", "version")):
            self.reply(f"error {line}")
            self.reply("Error detail: " + ("unknown command" if word not in self.KNOWN else "host control required"))
            return
        if word == "stop":
            self.streaming = False
            self.reply("Acquisition completed")
            return
        self.control = word != "hrc" and (self.control or word == "htc")
        if word == "volt":
            self.volts = float(arg.rstrip("m")) / (1000 if arg.endswith("m") else 1)
        elif word == "freq":
            self.freq_hz = float(arg.rstrip("k")) * (1000 if arg.endswith("k") else 1)
        self.reply(f"ack {line}")
        if word == "start":
            self.streaming, self.sent = True, 0
            self.emu.begin_stream()

    def tick(self) -> None:
        if not self.streaming:
            return
        for k in range(self.sent, int(self.emu.stream_s() * self.freq_hz)):
            amps = self.emu.watts_at(k / self.freq_hz) / self.volts
            self.emu.unit(f"{lpm01a_value(amps)}\r\n".encode(), cut=3)
            if k % 1000 == 999:
                self.emu.send(f"TimeStamp: {k // 1000 + 1:03d}s 000ms, buff 00%\r\n".encode())
            self.sent = k + 1


def lpm01a_value(amps: float) -> str:
    """6.409e-4 A -> "6409-07" (a 4-digit mantissa and a signed 2-digit power of ten)."""
    if amps <= 0:
        return "0000+00"
    exp = 3 - math.floor(math.log10(amps))
    mantissa = round(amps * 10.0**exp)
    if mantissa >= 10000:
        mantissa, exp = round(mantissa / 10), exp - 1
    return f"{mantissa:04d}{'-' if exp >= 0 else '+'}{abs(exp):02d}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--meter", choices=METERS, required=True)
    parser.add_argument("--watts", type=float, default=2.5)
    parser.add_argument("--step-at", type=float, default=None, help="seconds into the stream")
    parser.add_argument("--step-watts", type=float, default=None)
    parser.add_argument("--noise-bytes", type=int, default=0)
    parser.add_argument("--noise-every", type=int, default=10)
    parser.add_argument("--truncate-every", type=int, default=None)
    parser.add_argument("--drop-after", type=int, default=None)
    parser.add_argument("--rate-hz", type=float, default=200.0, help="ina219 line rate")
    parser.add_argument("--boot-delay", type=float, default=0.0, help="ina219: seconds before the first line")
    args = parser.parse_args(argv)
    emu = MeterEmulator(
        args.meter,
        args.watts,
        step_at_s=args.step_at,
        step_watts=args.step_watts,
        noise_bytes=args.noise_bytes,
        noise_every=args.noise_every,
        truncate_every=args.truncate_every,
        drop_after=args.drop_after,
        boot_delay_s=args.boot_delay,
        rate_hz=args.rate_hz,
    )
    print(emu.start(), flush=True)
    try:
        while not emu._dropped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
