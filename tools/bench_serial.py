#!/usr/bin/env python3
"""Can the serial host keep up with a 921600-baud line? Frames/s achieved against the line's limit.

The firmware emulator (tools/firmware_emulator.py, in its own process so it
does not share this one's CPU) streams simulated ECG SAMPLES frames through a
pseudo-terminal paced at the byte rate of a ``--baud`` 8N1 line (10 bits per
byte): the most a real USB-UART at that rate could deliver. This process runs
``SerialHost`` with the bundled ECG demo model, as ``edgerun serial host``
does, once per ``--hop``. Printed per run: the line's theoretical SAMPLES
frame rate, the rate the host actually took in (from its live status, over the
streaming interval), windows decided per second, frames and windows lost, and
the per-window decision latency p50 / p99 (last sample in -> RESULT written).

"Keeps up" means: no frame lost or corrupted, no window dropped by the queue,
at least 97% of the line's frame rate taken in, and every decision under the
hard budget (10 ms). A p99 with fewer than 662 windows behind it is marked *
(not valid, as in `edgerun bench`).

    python tools/bench_serial.py                      # 20 s per hop, hops 250 and 1000
    python tools/bench_serial.py --seconds 30 --hop 125 --chunk 64
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edgerun  # noqa: E402
from edgerun.serialhost import ECG_DEMO_DIR  # noqa: E402
from edgerun.serialhost.frames import frame_wire_bytes  # noqa: E402
from edgerun.serialhost.host import HostConfig, SerialHost  # noqa: E402


def start_emulator(link: Path, baud: int, chunk: int, seconds: float) -> subprocess.Popen[str]:
    argv = [sys.executable, str(ROOT / "tools" / "firmware_emulator.py"), "host", "--pace", "line"]
    argv += ["--baud", str(baud), "--chunk", str(chunk), "--link", str(link), "--duration", str(seconds)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # the path: the pty exists from here on
    return proc


def intake_rate(points: list[tuple[float, int, int]]) -> tuple[float, float]:
    """(frames/s, samples/s) between the first and the last status snapshot that saw samples flowing."""
    flowing = [p for p in points if p[2] > 0]
    if len(flowing) < 2:
        return 0.0, 0.0
    (t0, f0, s0), (t1, f1, s1) = flowing[0], flowing[-1]
    return (f1 - f0) / (t1 - t0), (s1 - s0) / (t1 - t0)


def one_run(args: argparse.Namespace, hop: int, runtime: Any) -> dict[str, Any]:
    points: list[tuple[float, int, int]] = []

    def note(st: Any) -> None:
        points.append((time.perf_counter(), st.frames_good, st.samples_received))

    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "ttyBench"
        proc = start_emulator(link, args.baud, args.chunk, args.seconds + 5)
        try:
            config = HostConfig(port=str(link), baud=args.baud, hop=hop, queue_size=args.queue, status_every_s=0.1)
            summary = SerialHost(runtime, config, on_status=note).run(duration_s=args.seconds)
        finally:
            proc.terminate()
            proc.wait(5)
    frames_s, samples_s = intake_rate(points)
    return {"hop": hop, "summary": summary, "frames_s": frames_s, "samples_s": samples_s}


def verdict(run: dict[str, Any], line_frames_s: float) -> tuple[bool, str]:
    s = run["summary"]
    f, w = s["frames"], s["windows"]
    bad = f["crc_failed"] + f["malformed"] + f["lost_by_seq"] + f["out_of_order"]
    p99 = s["stats"]["decision"]["percentiles"]["p99"] if s["stats"]["decision"] else None
    problems = []
    if bad:
        problems.append(f"{bad} frames lost or bad")
    if w["dropped"]:
        problems.append(f"{w['dropped']} windows dropped")
    if run["frames_s"] < 0.97 * line_frames_s:
        problems.append(f"took in {run['frames_s'] / line_frames_s:.1%} of the line")
    if p99 is None or s["verdicts"]["hard"]["status"] != "pass":
        problems.append("a decision at or over the hard budget")
    return not problems, "yes" if not problems else "NO: " + "; ".join(problems)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baud", type=int, default=921600)
    ap.add_argument("--chunk", type=int, default=32, help="int16 samples per SAMPLES frame (default 32)")
    ap.add_argument("--hop", type=int, action="append", help="samples between windows (repeatable; 250 and 1000)")
    ap.add_argument("--seconds", type=float, default=20.0, help="streaming seconds per run (default 20)")
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--artifact", default=str(ECG_DEMO_DIR / "ecg-int8.tflite"))
    args = ap.parse_args(argv)
    runtime = edgerun.load(args.artifact, threads=1)
    wire = frame_wire_bytes(4 + 2 * args.chunk)
    line_frames_s = args.baud / 10 / wire
    print(
        f"line {args.baud} baud 8N1 = {args.baud // 10} B/s; a SAMPLES frame of {args.chunk} int16 samples is "
        f"{wire} B on the wire -> {line_frames_s:.1f} frames/s ({line_frames_s * args.chunk:.0f} samples/s) at most"
    )
    print(f"model {runtime.artifact.name}, window 1000 samples, {os.cpu_count()} CPUs, emulator in its own process")
    head = f"{'hop':>5} {'frames/s':>9} {'of line':>8} {'windows/s':>10} {'lost/bad':>9} {'dropped':>8} "
    head += f"{'p50 ms':>7} {'p99 ms':>7}  keeps up"
    print(head + "\n" + "-" * len(head))
    ok_all = True
    for hop in args.hop or [250, 1000]:
        run = one_run(args, hop, runtime)
        s = run["summary"]
        f, w = s["frames"], s["windows"]
        pct = s["stats"]["decision"]["percentiles"] if s["stats"]["decision"] else None
        ok, why = verdict(run, line_frames_s)
        ok_all &= ok
        p50 = f"{pct['p50']['value_ns'] / 1e6:7.3f}" if pct else "      -"
        p99 = f"{pct['p99']['value_ns'] / 1e6:6.3f}{'' if pct['p99']['valid'] else '*'}" if pct else "      -"
        lost = f["crc_failed"] + f["malformed"] + f["lost_by_seq"] + f["out_of_order"]
        print(
            f"{hop:>5} {run['frames_s']:9.1f} {run['frames_s'] / line_frames_s:8.1%} "
            f"{run['samples_s'] / hop:10.1f} {lost:>9} {w['dropped']:>8} {p50} {p99}  {why}"
        )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
