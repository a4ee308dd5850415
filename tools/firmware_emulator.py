#!/usr/bin/env python3
"""Wearable firmware emulator on a real pseudo-terminal, for edgerun's serial host and DUT runner.

Two firmwares (docs/serial-protocol.md, reference/peer-tools.md §4):

    host   streams simulated ECG (edgerun.serialhost.ecgsim) as SAMPLES frames at the
           sensor's rate (--pace sensor, x --speed) or as fast as a --baud line allows
           (--pace line); answers HELLO_ACK / RESULT / ERROR frames; records the results
    dut    an EEMBC EnergyRunner / MLPerf Tiny DUT: name%, profile%, db load/db, infer,
           results%, running --artifact with edgerun on the loaded bytes; its u32 us
           timer reports --latency-us per inference (default: the time really taken)

Faults, host mode (every N-th SAMPLES frame): --noise-every/--noise-bytes (random bytes
after it), --crc-every (one byte flipped), --truncate-every (cut in half), --drop-every
(never sent, sequence number consumed), --reorder-every (swapped with the next); at a
time after streaming starts: --reset-at S (reboot: new boot id, seq and index from 0),
--stall-at S --stall-s D (silence), --unplug-at S --unplug-s D (the pty vanishes, then
comes back behind the same --link), --stop-at S (silent from then on); by count:
--stop-after N (silent after N SAMPLES frames, so a test knows every count exactly).
DUT mode: --fault no-name | garbled-results | no-ready | infer-error | one-timestamp |
energy-mode, --wrong-every N (every N-th results% reply names a wrong class),
--reset-on-open (reboots when a host opens the port, deaf for --boot-s, then prints a
banner ending in m-ready, like a DTR auto-reset board). The DUT parses as the real
firmware (mlcommons/tiny api/internally_implemented.cpp): nothing stripped, 80-char
commands, never more than N bytes stored after 'db load N'.

By hand:  python tools/firmware_emulator.py host --link /tmp/ecg-device    (prints the path)
          python tools/firmware_emulator.py dataset --out /tmp/ecg-dataset (an EEMBC dataset)
In tests: with FirmwareEmulator(HostFirmware(speed=20)) as emu: ... emu.path ...

Test seams (host mode), so tests wait on conditions instead of guessing times:
``HostFirmware.quiet()`` ends the stream and sends one marker frame (ERROR code
QUIET_CODE) after everything else, so "the host recorded the marker" means "the host
read every byte the firmware wrote"; ``streamed_all`` says --stop-after/--stop-at is
reached; ``marks`` holds the sample index at each timed event (reset, stall, unplug,
replug, stop); ``FirmwareEmulator.tx_bytes``/``rx_bytes`` count the pty's traffic.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import struct
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any, Protocol

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgerun.serialhost import ECG_DEMO_DIR  # noqa: E402
from edgerun.serialhost import frames as fr  # noqa: E402
from edgerun.serialhost.ecgsim import RHYTHMS, EcgStream  # noqa: E402

ECG_RATE_HZ = 250.0
SCALE_MV = 0.001  # int16 counts of 1 uV: +-32 mV, more than any surface ECG
#: ERROR code (the firmware's own range, 128..255) of the marker ``HostFirmware.quiet()`` sends last.
QUIET_CODE = 0x80
QUIET_MESSAGE = "emulator: stream ended"


class Firmware(Protocol):
    def attach(self, emu: FirmwareEmulator) -> None: ...

    def boot(self) -> None: ...

    def on_input(self, data: bytes) -> None: ...

    def tick(self, now: float) -> None: ...


class FirmwareEmulator:
    """A pty (optionally behind a stable symlink, like /dev/serial/by-id/) served by a daemon thread."""

    def __init__(self, firmware: Firmware, link: str | None = None, uart_drop_s: float = 0.05) -> None:
        self.firmware, self.link, self.uart_drop_s = firmware, link, uart_drop_s
        self.path = ""
        self.tx_bytes = self.tx_dropped_bytes = self.rx_bytes = 0
        self.opens = 0  # times a host opened the port (seen as the flush pyserial does on open)
        self._overflowing = False
        self._rx_backlog = bytearray()  # read while a send waited for room; handed to the firmware next
        self._master = self._slave = -1
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="firmware-emulator", daemon=True)
        firmware.attach(self)

    def start(self) -> str:
        self._plug()
        self.firmware.boot()
        self._thread.start()
        return self.link or self.path

    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # raw before anyone opens it: a cooked pty would echo frames back
        # Packet mode (after setraw, whose own flush would read as an open): every read of the master
        # starts with a status byte, and a host opening the port shows up as TIOCPKT_FLUSHREAD, since
        # pyserial flushes its input on open. That is how a board that resets on open knows to reset.
        fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
        os.set_blocking(master, False)
        self.path = os.ttyname(slave)
        if self.link:
            tmp = f"{self.link}.tmp{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(self.path, tmp)
            os.replace(tmp, self.link)  # atomic: a reader never sees a missing or half-made link
        with self._lock:
            self._master, self._slave = master, slave

    def unplug(self) -> None:
        """The device vanishes: the link goes, then the master closes (the host's reads fail)."""
        if self.link:  # first, so a host that notices the loss cannot reopen the dying pty through it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.link)
        with self._lock:
            for fd in (self._master, self._slave):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = -1

    def replug(self) -> None:
        self._plug()

    @property
    def plugged(self) -> bool:
        return self._master >= 0

    def send(self, data: bytes, wait: bool = False) -> None:
        """Write all of ``data``; unless ``wait``, bytes nobody reads within uart_drop_s are lost, as on a UART.

        Once bytes were lost, later sends do not wait at all until the reader drains again
        (a UART does not slow down for a host that is gone). While a send waits for room it
        keeps receiving, as a UART's RX does while TX is stalled: the host's writes never block
        on a device that is itself waiting for the host (the bytes reach the firmware after the
        send, in order)."""
        grace = 0.0 if self._overflowing else self.uart_drop_s
        view, deadline = memoryview(data), time.monotonic() + grace
        while view:
            with self._lock:
                fd = self._master
                if fd < 0:
                    return
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    n = 0
                except OSError:
                    return
            self.tx_bytes += n
            view = view[n:]
            if n:
                self._overflowing = False
            if view and not n:
                if not wait and time.monotonic() >= deadline:
                    self.tx_dropped_bytes += len(view)
                    self._overflowing = True
                    return
                with contextlib.suppress(OSError, ValueError):  # the pty went away: the write says so next
                    readable, _, _ = select.select([fd], [fd], [], 0.005)
                    if readable:
                        self._rx_backlog += self._read(fd)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self.unplug()

    def __enter__(self) -> FirmwareEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, fd: int) -> bytes:
        packet = os.read(fd, 65536)
        if not packet:
            return b""
        if packet[0] != termios.TIOCPKT_DATA:  # a status packet: no data follows
            if packet[0] & termios.TIOCPKT_FLUSHREAD:
                self.opens += 1
                on_open = getattr(self.firmware, "on_open", None)
                if on_open is not None:
                    on_open()
            return b""
        data = packet[1:]
        self.rx_bytes += len(data)
        return data

    def _serve(self) -> None:
        while not self._stop.is_set():
            fd = self._master
            data = b""
            if fd >= 0:
                with contextlib.suppress(OSError, ValueError):
                    readable, _, _ = select.select([fd], [], [], 0.001)
                    if readable:
                        data = self._read(fd)
            else:
                time.sleep(0.001)
            if self._rx_backlog:
                data, self._rx_backlog = bytes(self._rx_backlog) + data, bytearray()
            if data:
                with contextlib.suppress(ValueError):  # a payload this firmware cannot parse
                    self.firmware.on_input(data)
            self.firmware.tick(time.monotonic())


# --- host mode ------------------------------------------------------------------------


def corrupt_frame(frame_type: int, seq: int, payload: bytes) -> bytes:
    """A frame whose payload lost one bit after its CRC was computed (a pure CRC failure, framing intact)."""
    import struct
    import zlib

    from cobs import cobs

    body = struct.pack("<BBH", frame_type, 0, seq & 0xFFFF) + payload
    crc = struct.pack("<I", zlib.crc32(body))
    flipped = bytearray(body)
    flipped[-1] ^= 0x01
    return b"\x00" + cobs.encode(bytes(flipped) + crc) + b"\x00"


class HostFirmware:
    """A wearable streaming ECG to a host (see the module doc for pacing and faults)."""

    def __init__(
        self,
        rhythms: tuple[str, ...] = ("normal",),
        segment_s: float = 20.0,
        chunk: int = 25,
        pace: str = "sensor",
        speed: float = 1.0,
        baud: int = 921600,
        seed: int = 0,
        wait_when_full: bool = False,
        **faults: Any,
    ) -> None:
        self.rhythms, self.segment_s, self.chunk, self.pace, self.speed = rhythms, segment_s, chunk, pace, speed
        self.baud, self.seed, self.wait = baud, seed, wait_when_full
        self.version = faults.pop("protocol_version", fr.PROTOCOL_VERSION)
        self.rate_hz = faults.pop("rate_hz", ECG_RATE_HZ)
        self.faults = faults
        self.rng = np.random.default_rng(seed)
        self.decoder = fr.FrameDecoder()
        self.acks: list[fr.HelloAck] = []
        self.results: list[tuple[float, fr.ResultMsg]] = []
        self.errors: list[fr.ErrorMsg] = []
        self.host_heartbeats = self.boots = self.frames_sent = self.chunks_sent = 0
        self.injected = {"crc": 0, "drop": 0, "truncate": 0, "reorder": 0, "noise": 0}
        self.truth: dict[int, bytearray] = {}  # boot id -> rhythm index of every sample sent
        self.emu: FirmwareEmulator | None = None
        self._events_done: set[str] = set()
        self._held: bytes | None = None
        self._stream_t0: float | None = None
        self.marks: dict[str, int] = {}  # timed event -> the sample index (``self.index``) when it happened
        self.quiet_sent = threading.Event()
        self._quiet_asked = False

    def attach(self, emu: FirmwareEmulator) -> None:
        self.emu = emu

    def boot(self) -> None:
        """Power-on: a new boot id, counters from zero, a HELLO."""
        self.boots += 1
        self.boot_id = int(self.rng.integers(1, 2**32))
        self.seq = self.index = self.samples_sent_bytes = 0
        self.session = False
        self.stream = EcgStream(self.rhythms[0], self.rate_hz, self.seed + self.boots)
        self.truth[self.boot_id] = bytearray()
        self._pending = np.zeros(0, np.float32)
        self._pending_labels = np.zeros(0, np.int8)
        self._hello_at = 0.0
        self._beat_at = time.monotonic()
        self._stream_t0 = None
        self._send_hello(time.monotonic())

    def quiet(self) -> None:
        """End the stream for good (thread-safe): the firmware's thread sends a held (reordered)
        frame, then one ERROR frame with code QUIET_CODE, then nothing; ``quiet_sent`` is set once
        that marker is written. Frames are in order on the line, so a host that recorded the marker
        has read every byte before it."""
        self._quiet_asked = True

    def _go_quiet(self) -> None:
        if self._held is not None:
            self._emit(self._held)
            self._held = None
        self._emit(self._frame(fr.ERROR, fr.ErrorMsg(QUIET_CODE, 0, QUIET_MESSAGE).pack()))
        self.quiet_sent.set()

    @property
    def streamed_all(self) -> bool:
        """True once --stop-after's frames are sent, or --stop-at's time is reached."""
        if self.faults.get("stop_after") is not None:
            return self.chunks_sent >= self.faults["stop_after"]
        return "stop" in self.marks

    def _send_hello(self, now: float) -> None:
        if self._quiet_asked:
            return
        self._hello_at = now
        rate_mhz = round(self.rate_hz * 1000)
        hello = fr.Hello(self.version, 1, 1, rate_mhz, SCALE_MV, self.boot_id, "edgerun-emu-ecg")
        self._emit(self._frame(fr.HELLO, hello.pack()))

    def _frame(self, frame_type: int, payload: bytes) -> bytes:
        wire = fr.encode_frame(frame_type, self.seq, payload)
        self.seq = (self.seq + 1) & 0xFFFF
        return wire

    def _emit(self, data: bytes) -> None:
        assert self.emu is not None
        self.emu.send(data, wait=self.wait)
        self.frames_sent += 1

    def on_input(self, data: bytes) -> None:
        now = time.monotonic()
        for frame in self.decoder.feed(data):
            if frame.type == fr.HELLO_ACK:
                ack = fr.HelloAck.unpack(frame.payload)
                self.acks.append(ack)
                if ack.status == fr.ACK_OK and not self.session:
                    self.session = True
                    if self._stream_t0 is None:  # the sensor's clock starts once per boot
                        self._stream_t0 = now
            elif frame.type == fr.RESULT:
                self.results.append((now, fr.ResultMsg.unpack(frame.payload)))
            elif frame.type == fr.ERROR:
                err = fr.ErrorMsg.unpack(frame.payload)
                self.errors.append(err)
                if err.code == fr.E_NO_SESSION:
                    self.session = False
                    self._send_hello(now)  # not once quiet()
            elif frame.type == fr.HEARTBEAT:
                self.host_heartbeats += 1

    def tick(self, now: float) -> None:
        if self._quiet_asked:
            if not self.quiet_sent.is_set():
                self._go_quiet()
            return
        if not self.session:
            if now - self._hello_at > 0.5:  # the host may not be listening yet: say hello again
                self._send_hello(now)
            return
        if self._timed_events(now):
            return
        if now - self._beat_at >= 1.0:
            self._beat_at = now
            self._emit(self._frame(fr.HEARTBEAT, fr.Heartbeat(int(now * 1000), 0).pack()))
        for _ in range(64):  # bounded work per tick, so input is read in between
            if not self._due(now) or self._stopped_by_count():
                break
            self._send_chunk()

    def _stopped_by_count(self) -> bool:
        n = self.faults.get("stop_after")
        return n is not None and self.chunks_sent >= n

    def _timed_events(self, now: float) -> bool:
        """Resets, stalls and unplugs at their times; True while the device is silent."""
        assert self._stream_t0 is not None and self.emu is not None
        t = now - self._stream_t0
        f = self.faults
        if f.get("reset_at") is not None and t >= f["reset_at"] and "reset" not in self._events_done:
            self._events_done.add("reset")
            self.marks["reset"] = self.index
            self.boot()
            return True
        if f.get("stop_at") is not None and t >= f["stop_at"]:
            self.marks.setdefault("stop", self.index)
            return True  # the sensor went quiet for good (tests compare exact counts after it)
        stall_at, stall_s = f.get("stall_at"), f.get("stall_s", 0.0)
        if stall_at is not None and stall_at <= t < stall_at + stall_s:
            self.marks.setdefault("stall", self.index)
            return True
        unplug_at, unplug_s = f.get("unplug_at"), f.get("unplug_s", 0.0)
        if unplug_at is not None and unplug_at <= t < unplug_at + unplug_s:
            if self.emu.plugged:
                self.marks["unplug"] = self.index
                self.emu.unplug()
            return True
        if unplug_at is not None and t >= unplug_at + unplug_s and "replug" not in self._events_done:
            self._events_done.add("replug")
            self.emu.replug()
            self._skip_backlog()
            self.marks["replug"] = self.index
        return False

    def _skip_backlog(self) -> None:
        """The sensor kept sampling while unplugged: those samples are gone (the host sees a gap)."""
        assert self._stream_t0 is not None
        due = int((time.monotonic() - self._stream_t0) * self.rate_hz * self.speed)
        while self.index + self.chunk <= due:
            _, labels = self._next_samples()
            self.truth[self.boot_id] += labels.astype(np.int8).tobytes()
            self.index += len(labels)

    def _due(self, now: float) -> bool:
        assert self._stream_t0 is not None
        elapsed = now - self._stream_t0
        if self.pace == "line":
            return self.samples_sent_bytes + fr.frame_wire_bytes(4 + 2 * self.chunk) <= elapsed * self.baud / 10
        return self.index + self.chunk <= elapsed * self.rate_hz * self.speed

    def _next_samples(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self._pending) < self.chunk:
            t = self.index / self.rate_hz
            rhythm = self.rhythms[int(t // self.segment_s) % len(self.rhythms)]
            if rhythm != self.stream.rhythm:
                self.stream.set_rhythm(rhythm)
            x, labels = self.stream.read(max(self.chunk, 1000))
            self._pending = np.concatenate([self._pending, x])
            self._pending_labels = np.concatenate([self._pending_labels, labels])
        x, self._pending = self._pending[: self.chunk], self._pending[self.chunk :]
        lab, self._pending_labels = self._pending_labels[: self.chunk], self._pending_labels[self.chunk :]
        return x, lab

    def _send_chunk(self) -> None:
        x, labels = self._next_samples()
        counts = np.clip(np.rint(x / SCALE_MV), -32768, 32767).astype("<i2")
        payload = fr.Samples(self.index, counts.tobytes()).pack()
        self.truth[self.boot_id] += labels.astype(np.int8).tobytes()
        self.index += len(counts)
        self.chunks_sent += 1
        if self._every("crc_every"):  # a bit flipped on the line: the CRC no longer matches the body
            self.injected["crc"] += 1
            wire = corrupt_frame(fr.SAMPLES, self.seq, payload)
            self.seq = (self.seq + 1) & 0xFFFF
        else:
            wire = self._frame(fr.SAMPLES, payload)
        self.samples_sent_bytes += len(wire)
        self._faulty_send(wire)

    def _every(self, name: str) -> bool:
        n = self.faults.get(name)
        return bool(n) and self.chunks_sent % n == 0

    def _faulty_send(self, wire: bytes) -> None:
        if self._every("drop_every"):
            self.injected["drop"] += 1
            return
        if self._every("truncate_every"):
            self.injected["truncate"] += 1
            wire = wire[: len(wire) // 2]
        if self._every("reorder_every"):
            self.injected["reorder"] += 1
            self._held = wire
            return
        self._emit(wire)
        if self._held is not None:
            self._emit(self._held)
            self._held = None
        if self._every("noise_every"):
            self.injected["noise"] += 1
            self._emit(self.rng.integers(0, 256, self.faults.get("noise_bytes", 16), dtype=np.uint8).tobytes())

    def window_truth(self, boot_id: int, end_index: int, window: int) -> set[str]:
        """The rhythms present in the ``window`` samples before ``end_index`` of boot ``boot_id``."""
        labels = np.frombuffer(bytes(self.truth[boot_id][max(0, end_index - window) : end_index]), np.int8)
        return {RHYTHMS[i] for i in np.unique(labels)}


# --- DUT mode -------------------------------------------------------------------------

#: From mlcommons/tiny benchmark/api/internally_implemented.h and submitter_implemented.h.
EE_CMD_SIZE = 80
MAX_DB_INPUT_SIZE = 96 * 96 * 3
DUT_FAULTS = ("no-name", "garbled-results", "no-ready", "infer-error", "one-timestamp", "energy-mode")


class DutFirmware:
    """An EEMBC / MLPerf Tiny DUT that runs ``artifact`` with edgerun on the bytes it is loaded with."""

    def __init__(
        self,
        artifact: str | Path = ECG_DEMO_DIR / "ecg-int8.tflite",
        model: str = "ecg01",
        latency_us: int | None = None,
        clock_start_us: int = 0,
        fault: str | None = None,
        wrong_every: int = 0,
        reset_on_open: bool = False,
        boot_s: float = 0.3,
    ) -> None:
        import edgerun
        from edgerun.pipeline import compile_post

        if fault is not None and fault not in DUT_FAULTS:
            raise ValueError(f"fault {fault!r}: expected one of {', '.join(DUT_FAULTS)}")
        self.rt = edgerun.load(artifact, threads=1)
        m = self.rt.artifact.manifest
        post_ops = [op for op in (m.postprocess if m else ()) if op.get("op") not in ("topk", "argmax")]
        out_spec = self.rt.pipeline.session.outputs[0]
        self.post = compile_post(post_ops, out_spec, (), str(artifact)).transforms
        self.spec = self.rt.pipeline.session.inputs[0]
        self.model, self.latency_us, self.fault, self.wrong_every = model, latency_us, fault, wrong_every
        self.clock_start_us = clock_start_us
        self.reset_on_open, self.boot_s = reset_on_open, boot_s
        self.resets = 0
        self.dropped_while_booting = 0  # bytes that arrived while the parser was off (as on a real board)
        self.overrun_bytes = 0  # hex bytes sent past the N of 'db load N' (a host bug: never stored)
        self._booted_at: float | None = None  # None: booting, the UART not listening yet
        self.commands: list[str] = []
        self.results_replies = 0
        self._line = b""
        self._buf = bytearray()
        self._expect = 0
        self._scores: list[float] = []
        self._t0 = self._reset_at = time.monotonic()
        self._virtual_us = 0
        self.emu: FirmwareEmulator | None = None

    def attach(self, emu: FirmwareEmulator) -> None:
        self.emu = emu

    def say(self, *lines: str) -> None:
        assert self.emu is not None
        self.emu.send("".join(f"{line}\r\n" for line in lines).encode(), wait=True)

    def clock_us(self) -> int:
        real = (time.monotonic() - self._t0) * 1e6
        return int(self.clock_start_us + real + self._virtual_us) % (1 << 32)

    def boot(self) -> None:
        """The banner of ee_benchmark_initialize(); only after it does the parser take commands."""
        mode = "energy" if self.fault == "energy-mode" else "performance"
        self._line, self._buf, self._expect = b"", bytearray(), 0
        banner = ["ULPMark for tinyML Firmware V0.0.1 (edgerun emulator)"] if self.resets else []
        self.say(*banner, f"m-timestamp-mode-{mode}", f"m-lap-us-{self.clock_us()}", "m-init-done", "m-ready")
        self._booted_at = time.monotonic()

    def on_open(self) -> None:
        """DTR rose (the host opened the port): an auto-reset board reboots and is deaf until it has booted."""
        if self.reset_on_open:
            self.resets += 1
            self._booted_at = None
            self._reset_at = time.monotonic()

    def tick(self, now: float) -> None:
        if self._booted_at is None and now - self._reset_at >= self.boot_s:
            self.boot()

    def on_input(self, data: bytes) -> None:
        if self._booted_at is None:  # the UART is not initialised yet: the bytes are simply lost
            self.dropped_while_booting += len(data)
            return
        *commands, self._line = (self._line + data).split(b"%")
        for raw in commands:
            # As ee_serial_callback: nothing stripped (a stray CR/LF becomes part of the command, which
            # then is unknown), and past EE_CMD_SIZE characters each new one overwrites the last slot.
            if len(raw) > EE_CMD_SIZE:
                raw = raw[:EE_CMD_SIZE] + raw[-1:]
            cmd = raw.decode("ascii", errors="replace")
            self.commands.append(cmd)
            lines = self.handle(cmd)
            if not (self.fault == "no-ready" and cmd.startswith("infer")):
                lines.append("m-ready")
            self.say(*lines)

    def handle(self, cmd: str) -> list[str]:
        tokens = [t for t in cmd.split(" ") if t]  # strtok(p, " "): only spaces separate
        if not tokens:
            return ["e-[Unknown command: ]"]
        word, *args = tokens
        if word == "name":
            return ["m-hello-there"] if self.fault == "no-name" else ["m-name-dut-[edgerun-emulator]"]
        if word == "profile":
            return ["m-profile-[edgerun firmware emulator]", f"m-model-[{self.model}]"]
        if word == "timestamp":  # energy mode: a GPIO edge, nothing printed
            return [] if self.fault == "energy-mode" else [f"m-lap-us-{self.clock_us()}"]
        if word == "db":
            return self._db(args)
        if word == "infer":
            return self._infer(args)
        if word == "results":
            return [self._results_line(for_results_cmd=True)]
        if word == "help":
            return ["edgerun firmware emulator", "name, profile, timestamp, db load N, db HEX, infer N W, results"]
        return [f"e-[Unknown command: {word}]"]

    def _db(self, args: list[str]) -> list[str]:
        if not args:
            return ["e-[Command 'db' requires a subcommand]"]
        if args[0] == "load":
            if len(args) < 2:
                return ["e-[Command 'db load' requires the # of bytes]"]
            n = int(args[1]) if args[1].isdigit() else 0  # atoi
            if n == 0:
                return ["e-[Command 'db load' must be >0 bytes]"]
            self._expect, self._buf = n, bytearray()
            if n > MAX_DB_INPUT_SIZE:
                return [f"Supplied buffer size {n} exceeds maximum of {MAX_DB_INPUT_SIZE}"]
            return [f"m-[Expecting {self._expect} bytes]"]
        if args[0] == "print":
            return [f"m-buffer-{self._buf[:16].hex('-')}"]
        hexes = args[0]
        if len(hexes) % 2:
            return ["e-[Insufficent number of hex digits]"]
        out: list[str] = []
        for i in range(0, len(hexes), 2):
            pair = hexes[i : i + 2]
            if any(c not in "0123456789abcdefABCDEF" for c in pair):
                return out + [f"e-[Invalid hex digit '{pair}']"]
            if len(self._buf) >= self._expect:  # the firmware would write past its buffer: count, never store
                self.overrun_bytes += 1
                continue
            self._buf.append(int(pair, 16))
            if len(self._buf) == self._expect:
                return ["m-load-done"]  # "Disregard the remainder of the digits when done."
        return out

    def _infer(self, args: list[str]) -> list[str]:
        n, w = (int(args[0]) if args else 1), (int(args[1]) if len(args) > 1 else 10)
        need = int(np.prod([d or 1 for d in self.spec.shape])) * np.dtype(self.spec.dtype).itemsize
        if len(self._buf) != need:
            return [f"e-[Input db has {len(self._buf)} bytes, expected {need}]"]
        if self.fault == "infer-error":
            return ["e-[Inference failed: arena too small]"]
        x = np.frombuffer(bytes(self._buf), dtype=self.spec.dtype).reshape([d or 1 for d in self.spec.shape])
        out = [f"m-warmup-start-{w}", "m-warmup-done", f"m-infer-start-{n}"]
        t0 = self.clock_us()
        for _ in range(n if self.latency_us is None else 1):
            y = self.rt.pipeline.session.run([x])[0]
        t1 = self.clock_us()
        if self.latency_us is not None:  # the MCU's timer says exactly what we were told the MCU takes
            t1 = t0 + n * self.latency_us
            self._virtual_us += t1 - self.clock_us()
            t1 %= 1 << 32
        for op in self.post:
            y = op(y)
        self._scores = [float(v) for v in np.asarray(y).reshape(-1)]
        laps = [] if self.fault == "energy-mode" else [f"m-lap-us-{t0}", f"m-lap-us-{t1}"]
        if self.fault == "one-timestamp":
            laps = laps[:1]
        return out + laps + ["m-infer-done", self._results_line(for_results_cmd=False)]

    def _results_line(self, for_results_cmd: bool) -> str:
        scores = list(self._scores)
        if for_results_cmd:
            self.results_replies += 1
            if self.wrong_every and self.results_replies % self.wrong_every == 0 and scores:
                scores = scores[-1:] + scores[:-1]  # rotate: the top class moves to a wrong index
        if self.fault == "garbled-results":
            return "m-results-[0.125,zz,0.5]"
        return "m-results-[" + ",".join(f"{v:0.3f}" for v in scores) + "]"


# --- command line -----------------------------------------------------------------------


def make_dataset(artifact: str | Path, out: str | Path, n: int | None = None) -> Path:
    """An EEMBC dataset folder from the artifact's bundled samples (its manifest's ``samples`` .npz)."""
    import edgerun
    from edgerun.serialhost.tinydata import write_dataset

    rt = edgerun.load(artifact)
    data = np.load(Path(rt.artifact.path).parent / rt.artifact.manifest.samples)
    x, y = data["x"][:n], data["y"][:n]
    return write_dataset(rt, list(x), [int(v) for v in y], out)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    h = sub.add_parser("host", help="stream simulated ECG frames to `edgerun serial host`")
    h.add_argument("--rhythm", default="cycle", help=f"{', '.join(RHYTHMS)} or cycle (default: cycle, 20 s each)")
    h.add_argument("--segment-s", type=float, default=20.0)
    h.add_argument("--chunk", type=int, default=25, help="samples per SAMPLES frame (default 25)")
    h.add_argument("--pace", choices=("sensor", "line"), default="sensor")
    h.add_argument("--speed", type=float, default=1.0, help="sensor pace multiplier (default 1: real time)")
    h.add_argument("--baud", type=int, default=921600, help="line pace: the emulated line's baud rate")
    h.add_argument("--rate-hz", type=float, default=ECG_RATE_HZ)
    h.add_argument("--protocol-version", type=int, default=fr.PROTOCOL_VERSION)
    for name in ("noise-every", "noise-bytes", "crc-every", "truncate-every", "drop-every", "reorder-every"):
        h.add_argument(f"--{name}", type=int)
    h.add_argument("--stop-after", type=int, help="silent after this many SAMPLES frames")
    for name in ("reset-at", "stall-at", "stall-s", "unplug-at", "unplug-s", "stop-at"):
        h.add_argument(f"--{name}", type=float)
    d = sub.add_parser("dut", help="an MLPerf Tiny DUT for `edgerun serial tiny`")
    d.add_argument("--artifact", default=str(ECG_DEMO_DIR / "ecg-int8.tflite"))
    d.add_argument("--model", default="ecg01", help="what profile%% names as m-model (the dataset folder)")
    d.add_argument("--latency-us", type=int, help="per-inference time the DUT's timer reports (default: real)")
    d.add_argument("--clock-start-us", type=int, default=0)
    d.add_argument("--fault", choices=DUT_FAULTS)
    d.add_argument("--wrong-every", type=int, default=0)
    d.add_argument(
        "--reset-on-open",
        action="store_true",
        help="reboot when a host opens the port (as DTR auto-reset boards do): deaf for --boot-s, then a banner",
    )
    d.add_argument("--boot-s", type=float, default=0.3, help="boot time after a reset (default 0.3)")
    for p in (h, d):
        p.add_argument("--link", help="also make this symlink to the pty (stable across unplugs)")
        p.add_argument("--duration", type=float, help="stop after this many seconds")
    ds = sub.add_parser("dataset", help="write an EEMBC dataset folder from an artifact's bundled samples")
    ds.add_argument("--artifact", default=str(ECG_DEMO_DIR / "ecg-int8.tflite"))
    ds.add_argument("--out", required=True)
    ds.add_argument("--n", type=int)
    return ap


def _firmware(args: argparse.Namespace) -> Firmware:
    if args.mode == "dut":
        return DutFirmware(
            args.artifact,
            args.model,
            args.latency_us,
            args.clock_start_us,
            args.fault,
            args.wrong_every,
            reset_on_open=args.reset_on_open,
            boot_s=args.boot_s,
        )
    faults = {k: v for k, v in vars(args).items() if v is not None and k.replace("_", "-") in _FAULT_FLAGS}
    rhythms = RHYTHMS if args.rhythm == "cycle" else (args.rhythm,)
    return HostFirmware(
        rhythms,
        args.segment_s,
        args.chunk,
        args.pace,
        args.speed,
        args.baud,
        **faults,
        protocol_version=args.protocol_version,
        rate_hz=args.rate_hz,
    )


_FAULT_FLAGS = {
    "noise-every",
    "noise-bytes",
    "crc-every",
    "truncate-every",
    "drop-every",
    "reorder-every",
    "stop-after",
}
_FAULT_FLAGS |= {"reset-at", "stall-at", "stall-s", "unplug-at", "unplug-s", "stop-at"}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.mode == "dataset":
        print(make_dataset(args.artifact, args.out, args.n))
        return 0
    fw = _firmware(args)
    emu = FirmwareEmulator(fw, link=args.link)
    stop = threading.Event()
    # SIGTERM (kill, a test's terminate()) ends like Ctrl-C: through close(), which removes the --link
    # symlink; the default action would leave it dangling at a pty that no longer exists.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print(emu.start(), flush=True)
        stop.wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
    report = {"tx_bytes": emu.tx_bytes, "tx_dropped_bytes": emu.tx_dropped_bytes, "rx_bytes": emu.rx_bytes}
    if isinstance(fw, HostFirmware):
        report |= {"boots": fw.boots, "frames_sent": fw.frames_sent, "results_received": len(fw.results)}
    print(json.dumps(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
