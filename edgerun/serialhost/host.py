"""SerialHost: the host is the wearable's brain. Frames in, windows through the Runtime, results out.

Two threads. The *reader* (the caller of ``run``) owns the port: it reads,
decodes frames (frames.py), answers the handshake, checks sequence numbers,
cuts windows (window.py) and puts them on a bounded queue; it also sends
heartbeats, notices a silent line, and reopens the port with backoff after an
unplug. The *worker* takes windows off the queue, runs them through the
Runtime and writes a RESULT frame per window. A window's decision latency
runs from the arrival of its last sample (the read that completed its frame)
to its RESULT frame handed to the port driver (``write`` returned): that is
what the budgets judge.

A new HELLO (a device reset, or a device answering ERROR NO_SESSION) starts a
new session: the partial window is dropped, and windows of the old session
still in the queue are discarded as stale rather than answered into a session
that no longer knows them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerun.budget import Budget, limit_ns
from edgerun.errors import EdgerunError, FrameError, PortUnavailable, UsageError
from edgerun.serialhost import frames as fr
from edgerun.serialhost.handshake import check_hello, model_window
from edgerun.serialhost.hoststats import HostCounters, HostStatus, LatencyLog, build_summary, status_of
from edgerun.serialhost.link import Backoff, close_quietly, open_port
from edgerun.serialhost.window import BoundedQueue, Window, Windower

__all__ = ["GaveUp", "HostConfig", "SerialHost"]


@dataclass(frozen=True)
class HostConfig:
    """How the host runs. ``window``/``hop`` in samples (None: from the model; hop defaults to a quarter
    window); ``give_up_s``: stop reconnecting after this long without a port (None: keep trying)."""

    port: str
    baud: int = 921600
    window: int | None = None
    hop: int | None = None
    queue_size: int = 8
    policy: str = "drop-oldest"
    budget: Budget = field(default_factory=Budget)
    heartbeat_s: float = 1.0
    silence_s: float = 3.0
    reconnect: bool = True
    give_up_s: float | None = None
    backoff_max_s: float = 1.0
    status_every_s: float = 0.5
    no_session_every_s: float = 0.25


_INDEX_MOD = 1 << 32  # SAMPLES first_index is a u32


class GaveUp(PortUnavailable):
    """The port stayed away longer than give_up_s; ``summary`` is the session's summary up to then."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


class SerialHost:
    """Streams a firmware's sensor frames through ``runtime`` (anything with ``run(x)`` and ``artifact``)."""

    def __init__(self, runtime: Any, config: HostConfig, on_status: Callable[[HostStatus], None] | None = None):
        self.runtime, self.config, self.on_status = runtime, config, on_status
        self.artifact = runtime.artifact
        win, self.model_channels, self.layout = model_window(self.artifact)
        window = config.window or win
        if window is None:
            raise UsageError("the model's window length is dynamic: give --window N")
        if win is not None and config.window is not None and config.window != win:
            raise UsageError(f"--window {config.window}: the model takes windows of exactly {win} samples")
        self.window = window
        self.hop = config.hop or max(1, window // 4)
        signal = (self.artifact.manifest.provenance if self.artifact.manifest else {}).get("signal", {})
        self.model_rate_hz: float | None = signal.get("sample_rate_hz")
        self.labels = tuple(self.artifact.manifest.labels) if self.artifact.manifest else ()
        self.counters = HostCounters()
        self.latencies = LatencyLog()
        self.decoder = fr.FrameDecoder()
        self.windower = Windower(window, self.hop, self.model_channels or 1)
        self.queue = BoundedQueue(config.queue_size, config.policy)
        self.hello: fr.Hello | None = None
        self.session = 0
        self.last_label = ""
        self._lock = threading.Lock()  # counters and session state, shared with the worker
        self._write_lock = threading.Lock()
        self._ser: Any = None
        self._tx_seq = 0
        self._rx_seq: int | None = None
        self._asked_hello_at = float("-inf")  # when we last sent ERROR NO_SESSION (asking for a HELLO)
        self._soft_ns, self._hard_ns = limit_ns(config.budget.soft_ms), limit_ns(config.budget.hard_ms)
        self.t0_ns = 0
        self._stop = threading.Event()
        self.end: dict[str, str] = {"reason": "running"}
        # Where the sample stream stood when the windower last restarted (a re-handshake, a reopen),
        # as (boot id, next sample index): the first SAMPLES after a handshake of the same boot show how
        # many samples the device skipped meanwhile, which the restarted windower cannot see.
        self._resume: tuple[int, int] | None = None
        self._stream_at: tuple[int, int] | None = None

    # -- the run ---------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, duration_s: float | None = None) -> dict[str, Any]:
        """Serve until ``stop`` is set or ``duration_s`` passes; return the JSON summary.

        Raises PortUnavailable when the port does not open at start, or stays away
        longer than ``give_up_s`` after an unplug.
        """
        stop = self._stop = stop or threading.Event()
        self.t0_ns = time.perf_counter_ns()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        self._open()
        done = threading.Event()
        worker = threading.Thread(target=self._work, args=(done,), name="edgerun-serial-worker", daemon=True)
        worker.start()
        gave_up: PortUnavailable | None = None
        try:
            self._read_loop(stop, deadline)
            self.end = {"reason": "stopped" if stop.is_set() else "duration"}
        except PortUnavailable as exc:  # the port stayed away past give_up_s: still a session to report
            gave_up, self.end = exc, {"reason": "gave-up", "message": str(exc)}
        finally:
            self.queue.close()
            done.set()
            worker.join(5.0)
            with self._write_lock:
                close_quietly(self._ser)
                self._ser = None
        summary = build_summary(self, time.perf_counter_ns() - self.t0_ns)
        if gave_up is not None:
            raise GaveUp(str(gave_up), summary) from gave_up
        return summary

    def _read_loop(self, stop: threading.Event, deadline: float | None) -> None:
        timers = {"heartbeat": 0.0, "status": 0.0, "heard": time.monotonic()}
        silent = False
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if self._ser is None and not self._reopen(stop, deadline):
                return
            try:
                data = self._ser.read(max(1, self._ser.in_waiting))
            except (OSError, TypeError, AttributeError) as exc:  # pyserial: OSError; closed fd: TypeError
                self._lose(exc)
                continue
            now = time.monotonic()
            if data:
                arrival_ns = time.perf_counter_ns()
                timers["heard"], silent = now, False
                for frame in self.decoder.feed(data):
                    self._dispatch(frame, arrival_ns, timers)
            elif not silent and self.hello is not None and now - timers["heard"] > self.config.silence_s:
                silent = True
                with self._lock:
                    self.counters.stalls += 1
            self._tick(now, timers, silent)

    def _tick(self, now: float, timers: dict[str, float], silent: bool) -> None:
        if now - timers["heartbeat"] >= self.config.heartbeat_s:
            timers["heartbeat"] = now
            uptime_ms = (time.perf_counter_ns() - self.t0_ns) // 1_000_000
            self._send(fr.HEARTBEAT, fr.Heartbeat(uptime_ms, self.counters.windows_decided).pack())
        if self.on_status is not None and now - timers["status"] >= self.config.status_every_s:
            timers["status"] = now
            self.on_status(status_of(self, "silent" if silent else "up"))

    # -- port ------------------------------------------------------------------------

    def _open(self) -> None:
        ser = open_port(self.config.port, self.config.baud)
        ser.reset_input_buffer()  # bytes from before we listened belong to nobody
        with self._write_lock:
            self._ser = ser
        self.decoder.reset(mid_frame=True)
        self.windower.restart()
        self._resume = self._stream_at
        self._rx_seq = None
        with self._lock:
            self.counters.port_opens += 1
        # We cannot know whether the device reset while we were away (or streams already):
        # ask for a HELLO now rather than wait for its next one. Samples that were already on
        # the way do not ask again before no_session_every_s (one HELLO, not two).
        self._asked_hello_at = time.monotonic()
        self._send(fr.ERROR, fr.ErrorMsg(fr.E_NO_SESSION, 0, "host connected: send HELLO").pack())

    def _lose(self, exc: BaseException) -> None:
        with self._write_lock:
            close_quietly(self._ser)
            self._ser = None
        with self._lock:
            self.counters.port_lost += 1
            self.counters.note_bounded(self.counters.link_events, f"port lost: {exc}")

    def _reopen(self, stop: threading.Event, deadline: float | None) -> bool:
        """Retry opening the port with backoff; False when told to stop. Raises after give_up_s."""
        if not self.config.reconnect:
            raise PortUnavailable(f"{self.config.port} went away and reconnecting is off")
        backoff = Backoff(max_s=self.config.backoff_max_s)
        lost_at = time.monotonic()
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                self._open()
                return True
            except PortUnavailable:
                give_up = self.config.give_up_s
                if give_up is not None and time.monotonic() - lost_at > give_up:
                    raise
                if self.on_status is not None:
                    self.on_status(status_of(self, "down"))
                stop.wait(backoff.next_delay_s())
        return False

    def _send(self, frame_type: int, payload: bytes) -> bool:
        """Write one frame; False when the port is down or the write failed (the reader notices the loss)."""
        with self._write_lock:
            if self._ser is None:
                return False
            wire = fr.encode_frame(frame_type, self._tx_seq, payload)
            self._tx_seq = (self._tx_seq + 1) & 0xFFFF
            try:
                self._ser.write(wire)
                return True
            except (OSError, TypeError, AttributeError):
                return False

    # -- frames ----------------------------------------------------------------------

    def _dispatch(self, frame: fr.Frame, arrival_ns: int, timers: dict[str, float]) -> None:
        with self._lock:
            self.counters.note_type(fr.TYPE_NAMES.get(frame.type, f"0x{frame.type:02x}"))
        try:
            if frame.type == fr.HELLO:
                self._on_hello(frame)
            elif frame.type == fr.SAMPLES:
                self._on_samples(frame, arrival_ns, timers)
            elif frame.type == fr.HEARTBEAT:
                self._on_heartbeat(frame)
            elif frame.type == fr.ERROR:
                self._on_device_error(frame)
            else:
                with self._lock:
                    self.counters.frames_unexpected += 1
        except FrameError:  # a payload too short for its type: counted, never fatal
            with self._lock:
                self.counters.payloads_malformed += 1

    def _seq_ok(self, seq: int) -> bool:
        """Count frames missing (gap) or arriving out of order (behind: dropped) by sequence number."""
        if self._rx_seq is None:
            self._rx_seq = (seq + 1) & 0xFFFF
            return True
        delta = (seq - self._rx_seq) & 0xFFFF
        if delta >= 0x8000:  # behind what we already saw: a duplicate or a reordered frame
            with self._lock:
                self.counters.frames_out_of_order += 1
            return False
        with self._lock:
            self.counters.frames_lost_by_seq += delta
        self._rx_seq = (seq + 1) & 0xFFFF
        return True

    def _on_hello(self, frame: fr.Frame) -> None:
        hello = fr.Hello.unpack(frame.payload)
        reason, status = check_hello(hello, self.model_channels, self.model_rate_hz)
        if reason is not None:
            with self._lock:
                self.counters.handshakes_rejected += 1
                self.counters.note_bounded(self.counters.rejections, reason)
            self._send(fr.HELLO_ACK, fr.HelloAck(fr.PROTOCOL_VERSION, status, 0, 0, reason).pack())
            return
        with self._lock:
            previous = self.hello
            self.counters.handshakes += 1
            if previous is not None and previous.boot_id != hello.boot_id:
                self.counters.device_resets += 1
                self._stream_at = None  # a new boot counts from 0: nothing was skipped
            elif previous is not None:
                self.counters.repeated_hellos += 1
            self.hello, self.session = hello, self.session + 1
        self._rx_seq = (frame.seq + 1) & 0xFFFF
        if self.windower.channels != hello.channels:  # a model that takes any channel count
            self.windower = Windower(self.window, self.hop, hello.channels)
        self.windower.restart()
        self._resume = self._stream_at
        ack = fr.HelloAck(fr.PROTOCOL_VERSION, fr.ACK_OK, self.window, self.hop, "\n".join(self.labels))
        self._send(fr.HELLO_ACK, ack.pack())

    def _on_samples(self, frame: fr.Frame, arrival_ns: int, timers: dict[str, float]) -> None:
        hello = self.hello
        if hello is None:
            with self._lock:
                self.counters.samples_before_hello += 1
            now = time.monotonic()
            if now - self._asked_hello_at >= self.config.no_session_every_s:
                self._asked_hello_at = now
                self._send(fr.ERROR, fr.ErrorMsg(fr.E_NO_SESSION, frame.seq, "no session: send HELLO").pack())
            return
        if not self._seq_ok(frame.seq):
            return
        msg = fr.Samples.unpack(frame.payload)
        dtype, size = fr.SAMPLE_TYPES[hello.sample_type]
        if len(msg.data) % (size * hello.channels):
            raise FrameError(f"SAMPLES payload of {len(msg.data)} bytes is not whole {hello.channels}-channel samples")
        raw = np.frombuffer(msg.data, dtype=dtype).reshape(-1, hello.channels)
        samples = raw.astype(np.float32) * np.float32(hello.scale)
        self._count_skipped(hello.boot_id, msg.first_index)
        windows = self.windower.push(msg.first_index, samples, arrival_ns, self.session)
        self._stream_at = (hello.boot_id, (msg.first_index + len(samples)) % _INDEX_MOD)
        with self._lock:
            self.counters.samples_received += len(samples)
            self.counters.windows_made += len(windows)
        for w in windows:
            self.queue.put(w, self._stop)

    def _count_skipped(self, boot_id: int, first_index: int) -> None:
        """After a restart, samples between where this boot's stream stood and where it resumes are a gap."""
        resume, self._resume = self._resume, None
        if resume is None or resume[0] != boot_id:
            return
        skipped = (first_index - resume[1]) % _INDEX_MOD
        if 0 < skipped < _INDEX_MOD // 2:  # ahead (behind would be a replay: nothing lost)
            with self._lock:
                self.counters.resync_gaps += 1
                self.counters.resync_samples_lost += skipped

    def _on_heartbeat(self, frame: fr.Frame) -> None:
        if self.hello is not None and not self._seq_ok(frame.seq):
            return
        beat = fr.Heartbeat.unpack(frame.payload)
        with self._lock:
            self.counters.heartbeats_received += 1
            self.counters.device_dropped_samples = beat.counter

    def _on_device_error(self, frame: fr.Frame) -> None:
        if self.hello is not None:
            self._seq_ok(frame.seq)
        err = fr.ErrorMsg.unpack(frame.payload)
        with self._lock:
            item = {"code": err.code, "ref_seq": err.ref_seq, "message": err.message}
            self.counters.note_bounded(self.counters.device_errors, item)

    # -- the worker ------------------------------------------------------------------

    def _work(self, done: threading.Event) -> None:
        while not (done.is_set() and len(self.queue) == 0):
            w = self.queue.get(0.05)
            if w is not None:
                self._decide(w)

    def _decide(self, w: Window) -> None:
        if w.session != self.session:
            with self._lock:
                self.counters.windows_stale += 1
            return
        started_ns = time.perf_counter_ns()
        try:
            res = self.runtime.run(self._model_input(w.samples))
        except EdgerunError as exc:
            with self._lock:
                self.counters.inference_errors += 1
            self._send(fr.ERROR, fr.ErrorMsg(fr.E_INFERENCE, 0, f"inference failed: {exc}"[:200]).pack())
            return
        index, score = self._top1(res)
        so_far_ns = time.perf_counter_ns() - w.arrival_ns
        flags = fr.LATE_SOFT if so_far_ns >= self._soft_ns else 0
        flags |= fr.LATE_HARD if so_far_ns >= self._hard_ns else 0
        msg = fr.ResultMsg(w.end_index, so_far_ns // 1000, index, flags, score)
        sent = self._send(fr.RESULT, msg.pack())
        latency_ns = time.perf_counter_ns() - w.arrival_ns
        with self._lock:
            self._count_decision(sent, latency_ns, started_ns - w.arrival_ns, res)
            self.last_label = self.labels[index] if index < len(self.labels) else str(index)

    def _count_decision(self, sent: bool, latency_ns: int, queue_ns: int, res: Any) -> None:
        c = self.counters
        if not sent:
            c.results_unsent += 1
            return
        c.windows_decided += 1
        c.late_soft += latency_ns >= self._soft_ns
        c.late_hard += latency_ns >= self._hard_ns
        times = getattr(res, "times", None)
        self.latencies.add(latency_ns, queue_ns, times.total_ns if times is not None else 0)

    def _model_input(self, samples: np.ndarray) -> np.ndarray:
        if self.layout == "N":
            return samples[:, 0]
        return samples.T.copy() if self.layout == "CN" else samples

    @staticmethod
    def _top1(res: Any) -> tuple[int, float]:
        if res.top:
            return int(res.top[0].index), float(res.top[0].score)
        first = np.asarray(next(iter(res.outputs.values()))).reshape(-1)
        return int(first.argmax()), float(first.max())

    @property
    def port_open(self) -> bool:
        return self._ser is not None
