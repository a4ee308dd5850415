"""What a host session counted, and the versioned JSON summary written at exit.

Format history of the summary (``edgerun.serial_host``; bump SCHEMA_VERSION on
any change a reader must know about, and say what changed here):

- 1 (edgerun 0.1): first version. ``stats`` and ``verdicts`` are shaped as in
  ``edgerun.bench`` (``summarize(...).to_dict()``, ``Verdict.to_dict()``);
  ``decision`` latency runs from the arrival of a window's last sample to its
  RESULT frame handed to the port driver.
- 2: ``end`` says how the session ended (``duration``, ``stopped`` by Ctrl-C /
  SIGTERM, or ``gave-up`` on a port that stayed away, with ``message``): every
  end writes a summary. ``samples.gaps``/``lost_in_gaps`` also count samples
  the device skipped between two handshakes of the same boot (an unplug), and
  a ``session`` verdict fails a run with no accepted handshake (a wrong baud).
"""

from __future__ import annotations

import time
from array import array
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgerun.bench.result import artifact_block as bench_artifact_block
from edgerun.bench.result import utc_now
from edgerun.budget import Budget, Verdict, judge_hard, judge_soft, overall
from edgerun.measure.stats import percentile_nearest_rank, summarize

SCHEMA = "edgerun.serial_host"
SCHEMA_VERSION = 2
#: Latency samples kept per series; beyond this (days of a 1 Hz monitor) counts stay exact, samples stop.
MAX_SAMPLES = 1_000_000
_RECENT = 512


@dataclass
class HostCounters:
    """Every count a session keeps (mutated under the host's lock)."""

    port_opens: int = 0
    port_lost: int = 0
    stalls: int = 0
    handshakes: int = 0
    handshakes_rejected: int = 0
    device_resets: int = 0
    repeated_hellos: int = 0
    frames_lost_by_seq: int = 0
    frames_out_of_order: int = 0
    frames_unexpected: int = 0
    payloads_malformed: int = 0
    samples_before_hello: int = 0
    samples_received: int = 0
    windows_made: int = 0
    windows_decided: int = 0
    windows_stale: int = 0
    late_soft: int = 0
    late_hard: int = 0
    inference_errors: int = 0
    results_unsent: int = 0
    heartbeats_received: int = 0
    device_dropped_samples: int = 0
    resync_gaps: int = 0  # samples skipped between two handshakes of one boot (the windower restarts there)
    resync_samples_lost: int = 0
    frames_by_type: dict[str, int] = field(default_factory=dict)
    rejections: list[str] = field(default_factory=list)
    link_events: list[str] = field(default_factory=list)
    device_errors: list[dict[str, Any]] = field(default_factory=list)

    def note_type(self, name: str) -> None:
        self.frames_by_type[name] = self.frames_by_type.get(name, 0) + 1

    def note_bounded(self, items: list[Any], item: Any, limit: int = 20) -> None:
        """Keep the first ``limit`` reasons/errors: enough to diagnose, bounded for a week-long run."""
        if len(items) < limit:
            items.append(item)


class LatencyLog:
    """Per-window latency series in integer ns (decision, queue wait, inference), capped at MAX_SAMPLES."""

    def __init__(self) -> None:
        self.decision_ns = array("q")
        self.queue_ns = array("q")
        self.infer_ns = array("q")
        self.capped = False

    def add(self, decision_ns: int, queue_ns: int, infer_ns: int) -> None:
        if len(self.decision_ns) >= MAX_SAMPLES:
            self.capped = True
            return
        self.decision_ns.append(decision_ns)
        self.queue_ns.append(queue_ns)
        self.infer_ns.append(infer_ns)

    def recent_ms(self, p: float) -> float | None:
        """Percentile ``p`` of the last few hundred decisions, in ms (for the live status line)."""
        recent = sorted(self.decision_ns[-_RECENT:])
        return percentile_nearest_rank(recent, p) / 1e6 if recent else None


@dataclass(frozen=True)
class HostStatus:
    """A snapshot for the live status line."""

    elapsed_s: float
    link: str  # "up", "silent", "down"
    session: int
    device: str
    windows_decided: int
    windows_dropped: int
    late_soft: int
    late_hard: int
    p50_ms: float | None
    p99_ms: float | None
    crc_failed: int
    frames_lost: int
    out_of_order: int
    queue_depth: int
    last_label: str
    samples_received: int = 0
    frames_good: int = 0


def host_verdicts(
    log: LatencyLog, budget: Budget, c: HostCounters, dropped: int, bad_frames: int = 0
) -> dict[str, Verdict]:
    """Hard and soft on decision latency (as in bench), and coverage: every complete window got a decision."""
    samples = np.asarray(log.decision_ns, dtype=np.int64)
    out = {"hard": judge_hard(samples, budget), "soft": judge_soft(samples, budget)}
    missing = dropped + c.inference_errors + c.results_unsent
    made = max(c.windows_made - c.windows_stale, 0)
    if made == 0:
        out["coverage"] = Verdict("coverage", "not-valid", None, None, "windows", "no complete window to decide")
    elif missing:
        reason = (
            f"{missing} of {made} windows got no result "
            f"({dropped} dropped by the queue, {c.inference_errors} inference errors, {c.results_unsent} unsent)"
        )
        out["coverage"] = Verdict("coverage", "fail", float(missing), 0.0, "windows", reason, missing / made, made)
    else:
        reason = f"all {made} complete windows got a result"
        out["coverage"] = Verdict("coverage", "pass", 0.0, 0.0, "windows", reason, 0.0, made)
    out["session"] = _session_verdict(c, bad_frames)
    return out


def _session_verdict(c: HostCounters, bad_frames: int) -> Verdict:
    """A session with no accepted handshake measured nothing: a failure with its likely cause, not a short run."""
    if c.handshakes:
        return Verdict("session", "pass", float(c.handshakes), 1.0, "handshakes", f"{c.handshakes} handshakes")
    if c.handshakes_rejected:
        why = f"every HELLO was refused ({'; '.join(c.rejections[:2])})"
    elif bad_frames:
        why = f"{bad_frames} bad frames and no HELLO: is --baud the device's baud rate?"
    else:
        why = "the device sent no HELLO: is its firmware streaming, at this --baud?"
    return Verdict("session", "fail", 0.0, 1.0, "handshakes", f"no handshake: {why}")


def _stats(log: LatencyLog) -> dict[str, Any]:
    series = {"decision": log.decision_ns, "queue_wait": log.queue_ns, "infer": log.infer_ns}
    return {k: summarize(np.asarray(v, dtype=np.int64)).to_dict() if len(v) else None for k, v in series.items()}


def _warnings(c: HostCounters, log: LatencyLog, windower: Any, decode: dict[str, int]) -> list[str]:
    out = []
    if log.capped:
        out.append(f"latency samples capped at {MAX_SAMPLES}; counts stay exact")
    gaps, lost = windower.gaps + c.resync_gaps, windower.samples_lost + c.resync_samples_lost
    if gaps:
        out.append(f"{gaps} gaps in the sample stream ({lost} samples never arrived)")
    bad = decode["crc_failed"] + decode["malformed"] + decode["oversize"]
    if bad:
        out.append(f"{bad} bad frames on the line (noise, truncation or a wrong baud rate)")
    if c.handshakes_rejected:
        out.append(f"{c.handshakes_rejected} handshakes rejected: {'; '.join(c.rejections[:3])}")
    if c.device_dropped_samples:
        out.append(f"the device reports {c.device_dropped_samples} samples it dropped itself")
    return out


def build_summary(host: Any, duration_ns: int) -> dict[str, Any]:
    """The JSON summary of a finished host run (see the format history above)."""
    from edgerun import __version__
    from edgerun.bench.environment import environment

    c, log, cfg, q = host.counters, host.latencies, host.config, host.queue
    decode = host.decoder.counts.to_dict()
    bad = decode["crc_failed"] + decode["malformed"] + decode["oversize"]
    verdicts = host_verdicts(log, cfg.budget, c, q.dropped, bad)
    counts = asdict(c)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created_utc": utc_now(),
        "edgerun_version": __version__,
        "artifact": artifact_block(host.artifact),
        "environment": environment(),
        "port": {"path": cfg.port, "baud": cfg.baud},
        "config": config_block(host),
        "budget": {"soft_ms": cfg.budget.soft_ms, "hard_ms": cfg.budget.hard_ms, "percentile": cfg.budget.percentile},
        "duration_ns": duration_ns,
        "end": dict(host.end),
        "device": device_block(host.hello),
        "link": {k: counts[k] for k in ("port_opens", "port_lost", "stalls", "link_events")},
        "sessions": {
            k: counts[k]
            for k in ("handshakes", "handshakes_rejected", "device_resets", "repeated_hellos", "samples_before_hello")
        }
        | {"rejections": c.rejections},
        "frames": decode
        | {
            "lost_by_seq": c.frames_lost_by_seq,
            "out_of_order": c.frames_out_of_order,
            "unexpected_type": c.frames_unexpected,
            "payload_malformed": c.payloads_malformed,
            "by_type": dict(c.frames_by_type),
        },
        "samples": {
            "received": c.samples_received,
            "gaps": host.windower.gaps + c.resync_gaps,
            "lost_in_gaps": host.windower.samples_lost + c.resync_samples_lost,
            "overlapping": host.windower.samples_overlapping,
            "dropped_by_device": c.device_dropped_samples,
        },
        "windows": {
            "made": c.windows_made,
            "decided": c.windows_decided,
            "dropped": q.dropped,
            "stale": c.windows_stale,
            "late_soft": c.late_soft,
            "late_hard": c.late_hard,
            "inference_errors": c.inference_errors,
            "results_unsent": c.results_unsent,
            "queue": {"size": q.maxsize, "policy": q.policy, "high_water": q.high_water, "blocked_ns": q.blocked_ns},
        },
        "device_reports": {"heartbeats": c.heartbeats_received, "errors": c.device_errors},
        "stats": _stats(log),
        "verdicts": {k: v.to_dict() for k, v in verdicts.items()},
        "overall": overall(verdicts.values()),
        "warnings": _warnings(c, log, host.windower, decode),
    }


def status_of(host: Any, link: str) -> HostStatus:
    """The live status line's snapshot of ``host`` (a SerialHost); ``link`` as the reader sees it."""
    c, h = host.counters, host.hello
    device = f"{h.device or 'device'} {h.sample_rate_hz:g} Hz x{h.channels}" if h else "no handshake yet"
    return HostStatus(
        elapsed_s=(time.perf_counter_ns() - host.t0_ns) / 1e9,
        link=link if host.port_open else "down",
        session=host.session,
        device=device,
        windows_decided=c.windows_decided,
        windows_dropped=host.queue.dropped,
        late_soft=c.late_soft,
        late_hard=c.late_hard,
        p50_ms=host.latencies.recent_ms(50.0),
        p99_ms=host.latencies.recent_ms(99.0),
        crc_failed=host.decoder.counts.crc_failed,
        frames_lost=c.frames_lost_by_seq,
        out_of_order=c.frames_out_of_order,
        queue_depth=len(host.queue),
        last_label=host.last_label,
        samples_received=c.samples_received,
        frames_good=host.decoder.counts.frames,
    )


def artifact_block(a: Any) -> dict[str, Any]:
    """As in a bench result, plus the signal the model expects (rate, window, channels)."""
    prov = a.manifest.provenance if a.manifest else {}
    return {**bench_artifact_block(a), "signal": prov.get("signal")}


def config_block(host: Any) -> dict[str, Any]:
    cfg = host.config
    return {
        "window_samples": host.window,
        "hop_samples": host.hop,
        "queue_size": cfg.queue_size,
        "policy": cfg.policy,
        "heartbeat_s": cfg.heartbeat_s,
        "silence_s": cfg.silence_s,
        "reconnect": cfg.reconnect,
        "give_up_s": cfg.give_up_s,
    }


def device_block(h: Any) -> dict[str, Any] | None:
    """The device as its last accepted HELLO described it (None: no handshake happened)."""
    if h is None:
        return None
    from edgerun.serialhost.frames import SAMPLE_TYPES

    return {
        "name": h.device,
        "boot_id": h.boot_id,
        "protocol_version": h.protocol_version,
        "sample_rate_hz": h.sample_rate_hz,
        "channels": h.channels,
        "sample_type": SAMPLE_TYPES.get(h.sample_type, ("?", 0))[0],
        "scale": h.scale,
    }
