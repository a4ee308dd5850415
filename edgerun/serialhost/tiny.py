"""DUT mode: benchmark a model that runs *on* the firmware, over the EEMBC EnergyRunner / MLPerf Tiny protocol.

The protocol (mlcommons/tiny ``benchmark/api/internally_implemented.cpp`` and
``benchmark/runner``; reference/peer-tools.md §4): ASCII commands ending in
``%``; the DUT answers with ``m-...`` lines (``e-[...]`` for an error) and ends
every answer with ``m-ready``. ``name%`` -> ``m-name-dut-[...]``;
``profile%`` -> ``m-profile-[...]`` and ``m-model-[...]`` (which picks the
dataset folder); ``db load N%`` -> ``m-[Expecting N bytes]``; ``db <hex>%``
repeated until ``m-load-done``; ``infer N W%`` -> warm-ups, ``m-lap-us-T0``,
N inferences, ``m-lap-us-T1``, ``m-infer-done`` and ``m-results-[...]``;
``results%`` -> ``m-results-[...]``.

Latency comes from the DUT's own timer: (T1 - T0) / N, T being a u32
microsecond counter that may wrap. In energy mode the DUT prints no
timestamps but pulls a GPIO low instead, for an energy monitor to see; that
path needs an ``EnergyMonitor`` (the seam below) which edgerun's power probes
do not provide yet, so an energy-mode DUT without one is a clear error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edgerun.budget import Budget
from edgerun.errors import DutError, DutTimeout, PortUnavailable, UsageError
from edgerun.serialhost.link import close_quietly, port_error_reason, serial_object, set_write_timeout
from edgerun.serialhost.tinydata import TinyDataset, read_dataset

__all__ = ["DutInfo", "EnergyMonitor", "InferReply", "TinyConfig", "TinyDut", "run_tiny"]

#: Bytes per ``db`` command: 31 as the MLPerf Tiny runner sends, so ``db <62 hex>`` fits EE_CMD_SIZE (80).
DB_CHUNK_BYTES = 31
_U32 = 1 << 32
_RESULTS = re.compile(r"^m-results-\[([^\]]*)\]$")
_LAP = re.compile(r"^m-lap-us-(\d+)$")
_NAME = re.compile(r"^m-name-\w+-\[([^\]]*)\]$")


class EnergyMonitor(Protocol):
    """An energy monitor wired to the DUT's timestamp GPIO (EEMBC energy mode): the seam for power probes.

    ``arm()`` before an ``infer``; ``collect()`` after it returns (seconds, joules)
    between the two timestamp edges. No edgerun probe implements it yet.
    """

    def arm(self) -> None: ...

    def collect(self) -> tuple[float, float]: ...


@dataclass(frozen=True)
class DutInfo:
    name: str
    profile: str
    model: str
    timestamp_mode: str  # "performance" or "energy" (from the boot line, else from what timestamp% prints)


@dataclass(frozen=True)
class InferReply:
    iterations: int
    warmups: int
    elapsed_us: int | None  # None in energy mode
    results: tuple[float, ...]


class TinyDut:
    """The host side of the EEMBC command protocol over an open pyserial port."""

    def __init__(self, ser: Any, timeout_s: float = 2.0, infer_timeout_s: float = 120.0) -> None:
        self.ser, self.timeout_s, self.infer_timeout_s = ser, timeout_s, infer_timeout_s
        self.timestamp_mode = "unknown"
        self._pending = b""
        # name% sent by sync() whose answers may still arrive: command() skips them, so a slow
        # answer to a retried name% is never taken as the answer to a later command
        self._stale_names = 0
        self._skip_ready = False

    def command(self, cmd: str, timeout_s: float | None = None) -> list[str]:
        """Send ``cmd%``; return the answer's lines before ``m-ready``. DutError on ``e-[...]`` or silence."""
        self.ser.write(cmd.encode("ascii") + b"%")
        lines: list[str] = []
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while time.monotonic() < deadline:
            for line in self._lines():
                if self._stale(line):
                    continue
                if line == "m-ready":
                    return lines
                self._note_mode(line)
                if line.startswith("e-"):
                    raise DutError(f"DUT answered {cmd + '%'!r} with an error: {line}")
                lines.append(line)
        got = f"; it said {lines[-3:]}" if lines else "; it said nothing"
        raise DutTimeout(f"no m-ready within {timeout_s or self.timeout_s:g} s after {cmd + '%'!r}{got}")

    def _stale(self, line: str) -> bool:
        """True for the lines of a late answer to a retried ``name%`` (``m-name-...`` then its ``m-ready``)."""
        if self._skip_ready and line == "m-ready":
            self._skip_ready = False
            return True
        if self._stale_names and _NAME.match(line):
            self._stale_names -= 1
            self._skip_ready = True
            return True
        return False

    def wait_boot(self, wait_s: float) -> list[str]:
        """Up to ``wait_s`` for a boot banner (a board that reboots on open); it ends at its ``m-ready``."""
        heard: list[str] = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            for line in self._lines():
                self._note_mode(line)
                heard.append(line)
                if line == "m-ready":
                    return heard
        return heard

    def sync(self, timeout_s: float) -> str:
        """Send ``name%`` until the DUT answers ``m-name-<dev>-[<name>]`` then ``m-ready``, as the MLPerf Tiny
        runner retries it; return the name.

        A board that resets when the port opens prints a banner ending in ``m-ready`` and drops what
        arrives while it boots: neither is an answer. Lines before ``m-name-...`` are read (for the
        timestamp mode) and ignored; a retry goes out when an attempt heard no name, each attempt
        waiting longer (0.1 s, 0.2 s, ... up to the command timeout)."""
        # Drain what came before name% (an old banner, a half reply): it is no answer. Read, not
        # reset_input_buffer(), as the MLPerf Tiny runner's reset_port does.
        self.ser.read(self.ser.in_waiting)
        self._pending = b""
        heard: list[str] = []
        deadline, attempt_s, sent = time.monotonic() + timeout_s, 0.1, 0
        while time.monotonic() < deadline:
            self.ser.write(b"name%")
            sent += 1
            name = None
            attempt_end = min(deadline, time.monotonic() + attempt_s)
            while time.monotonic() < attempt_end or name is not None:
                for line in self._lines():
                    m = _NAME.match(line)
                    if name is not None and line == "m-ready":
                        self._stale_names = sent - 1  # every other name% may still be answered
                        return name
                    if m and name is None:
                        name = m.group(1)
                    elif line.startswith("m-") or line.startswith("e-"):
                        self._note_mode(line)
                        heard.append(line)
                if name is not None and time.monotonic() >= deadline + self.timeout_s:
                    break
            attempt_s = min(self.timeout_s, attempt_s * 2)
        said = f"it said {heard[-4:]}" if heard else "it said nothing"
        raise DutTimeout(
            f"no m-name-dut-[<name>] answer to 'name%' on {self.ser.port} within {timeout_s:g} s "
            f"(sent {sent} times; {said}): check the baud rate and that the DUT firmware runs; "
            "a board that reboots when the port opens needs --reset-wait S (or --no-dtr)"
        )

    def _lines(self) -> list[str]:
        data = self.ser.read(max(1, self.ser.in_waiting))
        *complete, self._pending = (self._pending + data).split(b"\n")
        return [raw.decode("ascii", errors="replace").strip() for raw in complete if raw.strip()]

    def _note_mode(self, line: str) -> None:
        if line.startswith("m-timestamp-mode-"):
            self.timestamp_mode = line[len("m-timestamp-mode-") :]

    def discover(self, sync_timeout_s: float = 5.0) -> DutInfo:
        """``name%`` (retried until answered: a board may still be booting) and ``profile%``."""
        name = self.sync(sync_timeout_s)
        if self.timestamp_mode == "unknown":  # its boot lines came before we listened: ask the timer
            stamp = self.command("timestamp")
            self.timestamp_mode = "performance" if any(_LAP.match(line) for line in stamp) else "energy"
        profile_lines = self.command("profile")
        profile = _one(profile_lines, r"^m-profile-\[([^\]]*)\]$", "profile%", "m-profile-[<firmware>]")
        model = _one(profile_lines, r"^m-model-\[([^\]]*)\]$", "profile%", "m-model-[<model>]")
        return DutInfo(name, profile, model, self.timestamp_mode)

    def load(self, data: bytes) -> None:
        """``db load N%`` then ``db <hex>%`` chunks until the DUT says ``m-load-done``."""
        lines = self.command(f"db load {len(data)}")
        if not any(f"Expecting {len(data)} bytes" in line for line in lines):
            raise DutError(f"'db load {len(data)}%': expected m-[Expecting {len(data)} bytes], got {lines}")
        done = False
        for lo in range(0, len(data), DB_CHUNK_BYTES):
            done = "m-load-done" in self.command("db " + data[lo : lo + DB_CHUNK_BYTES].hex())
        if not done:
            raise DutError(f"the DUT never said m-load-done after all {len(data)} bytes")

    def infer(self, iterations: int, warmups: int) -> InferReply:
        lines = self.command(f"infer {iterations} {warmups}", self.infer_timeout_s)
        if "m-infer-done" not in lines:
            raise DutError(f"'infer {iterations} {warmups}%': no m-infer-done in the answer {lines[-5:]}")
        laps = [int(m.group(1)) for m in (_LAP.match(line) for line in lines) if m]
        elapsed = None
        if self.timestamp_mode != "energy":
            if len(laps) != 2:
                raise DutError(
                    f"'infer {iterations} {warmups}%': expected 2 m-lap-us-<us> timestamps around the "
                    f"inferences, got {len(laps)} (lines: {lines[-6:]})"
                )
            elapsed = (laps[1] - laps[0]) % _U32  # a u32 microsecond timer may wrap between the two
        return InferReply(iterations, warmups, elapsed, _results(lines, f"infer {iterations} {warmups}%"))

    def results(self) -> tuple[float, ...]:
        return _results(self.command("results"), "results%")


def _one(lines: list[str], pattern: str, cmd: str, expected: str) -> str:
    for line in lines:
        m = re.match(pattern, line)
        if m:
            return m.group(1)
    raise DutError(f"{cmd!r}: expected a line {expected}, got {lines}")


def _results(lines: list[str], cmd: str) -> tuple[float, ...]:
    for line in lines:
        m = _RESULTS.match(line)
        if m:
            try:
                return tuple(float(v) for v in m.group(1).split(",") if v.strip())
            except ValueError as exc:
                raise DutError(f"{cmd!r}: m-results-[...] must hold comma-separated numbers, got {line!r}") from exc
    raise DutError(f"{cmd!r}: expected m-results-[<scores>], got {lines}")


@dataclass(frozen=True)
class TinyConfig:
    """A DUT session: ``iterations``/``warmups`` per performance run, on the first ``perf_files`` inputs
    (EEMBC reports the median of 5); every input (or the first ``limit``) for accuracy."""

    port: str
    baud: int = 115200
    iterations: int = 100
    warmups: int = 10
    perf_files: int = 5
    limit: int | None = None
    timeout_s: float = 2.0
    infer_timeout_s: float = 120.0
    budget: Budget = field(default_factory=Budget)
    sync_timeout_s: float = 10.0  # name% retried this long: a board may take seconds to boot
    reset_wait_s: float = 0.0  # after open, wait up to this long for a boot banner
    no_dtr: bool = False  # open with DTR/RTS low, so an auto-reset board does not reboot

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmups < 0 or self.perf_files < 0:
            raise UsageError(
                f"iterations must be >= 1, warmups and perf_files >= 0; got {self.iterations}, "
                f"{self.warmups}, {self.perf_files}"
            )


@dataclass
class TinyRun:
    """What one session measured, before it becomes JSON (tinyresult.py)."""

    info: DutInfo
    dataset: TinyDataset
    perf: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)
    energy: list[dict[str, Any]] = field(default_factory=list)


def open_dut_port(port: str, baud: int, no_dtr: bool = False) -> Any:
    """Open the DUT's port raw at ``baud``; with ``no_dtr`` DTR and RTS stay low from the start.

    Arduino-class boards reset when DTR rises, which an ordinary open does: setting the lines
    before ``open()`` (pyserial applies them as it opens) keeps such a board running. ``port`` may
    be an ``rfc2217://`` or ``socket://`` URL (edgerun/serialhost/link.py says what DTR does there)."""
    ser = serial_object(port)
    ser.baudrate, ser.timeout = baud, 0.05
    set_write_timeout(ser, port)
    if no_dtr:
        ser.dtr = ser.rts = False
    try:
        ser.open()
    except (OSError, ValueError) as exc:  # ValueError: a baud rate pyserial rejects
        raise PortUnavailable(port_error_reason(port, exc)) from exc
    return ser


def run_tiny(
    config: TinyConfig,
    dataset_dir: str | Path,
    energy_monitor: EnergyMonitor | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> TinyRun:
    """Discover the DUT, run the performance and accuracy phases; raise DutError / PortUnavailable."""
    ser = open_dut_port(config.port, config.baud, config.no_dtr)
    try:
        dut = TinyDut(ser, config.timeout_s, config.infer_timeout_s)
        if config.reset_wait_s > 0:
            dut.wait_boot(config.reset_wait_s)
        info = dut.discover(config.sync_timeout_s)
        if info.timestamp_mode == "energy" and energy_monitor is None:
            raise DutError(
                f"{info.name} is in energy mode (m-timestamp-mode-energy): it prints no timestamps and "
                "needs an energy monitor on its timestamp GPIO, which edgerun does not drive yet; "
                "flash the performance-mode firmware"
            )
        data = read_dataset(dataset_dir, info.model, config.limit)
        run = TinyRun(info, data)
        _performance(dut, config, run, energy_monitor, progress)
        _accuracy(dut, run, progress)
        return run
    except OSError as exc:  # the port vanished mid-session
        raise DutError(f"{config.port} failed during the DUT session: {exc}") from exc
    finally:
        close_quietly(ser)


def _performance(dut: TinyDut, config: TinyConfig, run: TinyRun, monitor: EnergyMonitor | None, progress: Any) -> None:
    for i, f in enumerate(run.dataset.files[: config.perf_files]):
        dut.load(f.segments[0])  # as the runner: performance and energy runs use only the first segment
        if monitor is not None:
            monitor.arm()
        reply = dut.infer(config.iterations, config.warmups)
        if monitor is not None:
            seconds, joules = monitor.collect()
            run.energy.append({"file": f.name, "seconds": seconds, "joules": joules, "iterations": reply.iterations})
            elapsed_us = reply.elapsed_us if reply.elapsed_us is not None else round(seconds * 1e6)
        else:
            elapsed_us = reply.elapsed_us or 0
        per_ns = round(elapsed_us * 1000 / reply.iterations)
        run.perf.append(
            {"file": f.name, "iterations": reply.iterations, "warmups": reply.warmups}
            | {"elapsed_us": elapsed_us, "per_inference_ns": per_ns}
        )
        if progress is not None:
            progress("performance", (i + 1) / max(1, min(config.perf_files, len(run.dataset.files))))


def _accuracy(dut: TinyDut, run: TinyRun, progress: Any) -> None:
    n = len(run.dataset.files)
    for i, f in enumerate(run.dataset.files):
        # ad01: every segment is inferred and the file scored by their mean, as main.py averages them
        per_segment, reply = [], None
        for segment in f.segments:
            dut.load(segment)
            reply = dut.infer(1, 0)
            per_segment.append(dut.results())  # results% as the runner asks, not the copy infer printed
        if len({len(s) for s in per_segment}) != 1:
            raise DutError(f"results% for {f.name}: segments gave different score counts")
        scores = tuple(float(sum(col) / len(col)) for col in zip(*per_segment))
        # ad01's DUT may print one anomaly score per segment for its 2 classes (main.py takes that too)
        if len(scores) != f.classes and not (f.bytes_to_send is not None and len(scores) == 1):
            raise DutError(f"results% for {f.name}: {len(scores)} scores, but the dataset says {f.classes} classes")
        predicted = max(range(len(scores)), key=scores.__getitem__)
        run.files.append(
            {
                "file": f.name,
                "label": f.label,
                "predicted": predicted,
                "correct": predicted == f.label,
                "scores": list(scores),
                "latency_ns": None if reply is None or reply.elapsed_us is None else reply.elapsed_us * 1000,
            }
        )
        if progress is not None:
            progress("accuracy", (i + 1) / n)
