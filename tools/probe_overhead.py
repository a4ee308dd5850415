#!/usr/bin/env python3
"""What does a power probe's sampling thread cost the inference it measures?

For each artifact, blocks of inferences run alternately with no probe and with
a probe sampling at ``--rate`` Hz (default 100), so drift hits both alike. Two
real probes are tried, because no power sensor exists on a development box:

- ``estimate``: the labelled CPU-utilisation estimate (reads /proc/stat via psutil);
- ``rapl-tree``: the RAPL probe reading a powercap sysfs tree laid out as the kernel
  documents it (Documentation/power/powercap/powercap.rst), in a temporary folder:
  the same open/read/parse work a real ``energy_uj`` read costs, minus the MSR access.

Prints the median and p99 end-to-end latency with the probe off and on, and the
overhead in percent. Target: under 1% on the median at 100 Hz. Usage:

    python tools/probe_overhead.py [ARTIFACT...] [--rate 100] [--blocks 20] [--block-size 200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

import edgerun
from edgerun.bench.runner import sample_inputs
from edgerun.demo import DEMO_DIR


def _rapl_tree(root: Path) -> Path:
    zone = root / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("17515587911\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return root


def _probe(kind: str, rate_hz: float, tmp: Path) -> Any:
    if kind == "estimate":
        from edgerun.power.estimate import EstimateProbe

        return EstimateProbe(rate_hz=rate_hz)
    from edgerun.power.rapl import RaplProbe

    return RaplProbe(root=_rapl_tree(Path(tempfile.mkdtemp(dir=tmp))), rate_hz=rate_hz)


def _block(rt: Any, inputs: list[Any], n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = rt.pipeline(inputs[i % len(inputs)])[2].total_ns
    return out


def measure(path: Path, kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    rt = edgerun.load(path, threads=args.threads)
    inputs, _ = sample_inputs(rt.artifact, seed=0)
    _block(rt, inputs, 200)  # warm-up
    off, on, samples = [], [], 0
    for b in range(2 * args.blocks):
        if b % 2 == 0:
            off.append(_block(rt, inputs, args.block_size))
            continue
        probe = _probe(kind, args.rate, tmp)
        probe.start()
        on.append(_block(rt, inputs, args.block_size))
        samples += len(probe.stop().t_ns)
    off_ns, on_ns = np.concatenate(off), np.concatenate(on)
    p_off, p_on = np.percentile(off_ns, [50, 99]), np.percentile(on_ns, [50, 99])
    return {
        "artifact": rt.artifact.name,
        "probe": kind,
        "n": int(off_ns.size),
        "off_p50_us": p_off[0] / 1e3,
        "on_p50_us": p_on[0] / 1e3,
        "off_p99_us": p_off[1] / 1e3,
        "on_p99_us": p_on[1] / 1e3,
        "overhead_p50_pct": (p_on[0] - p_off[0]) / p_off[0] * 100,
        "overhead_p99_pct": (p_on[1] - p_off[1]) / p_off[1] * 100,
        "probe_samples": samples,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="*", type=Path, help="default: digits-fp32.onnx and digits-int8.tflite")
    ap.add_argument("--rate", type=float, default=100.0, help="probe sampling rate in Hz (default 100)")
    ap.add_argument("--blocks", type=int, default=20, help="blocks per condition (default 20)")
    ap.add_argument("--block-size", type=int, default=200, help="inferences per block (default 200)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    paths = args.artifacts or [DEMO_DIR / "digits-fp32.onnx", DEMO_DIR / "digits-int8.tflite"]
    head = (
        f"{'artifact':<24} {'probe':<10} {'n':>6} {'off p50':>8} {'on p50':>8} {'ovh p50':>8} "
        f"{'off p99':>8} {'on p99':>8} {'ovh p99':>8} {'samples':>7}"
    )
    print(head + "\n" + "-" * len(head))
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            for kind in ("estimate", "rapl-tree"):
                r = measure(path, kind, args, Path(tmp))
                print(
                    f"{r['artifact']:<24} {r['probe']:<10} {r['n']:>6} {r['off_p50_us']:>8.1f} {r['on_p50_us']:>8.1f} "
                    f"{r['overhead_p50_pct']:>7.2f}% {r['off_p99_us']:>8.1f} {r['on_p99_us']:>8.1f} "
                    f"{r['overhead_p99_pct']:>7.2f}% {r['probe_samples']:>7}"
                )
    print(f"latencies in microseconds (end to end: pre + infer + post); probe at {args.rate:g} Hz; target < 1% at p50")
    return 0


if __name__ == "__main__":
    sys.exit(main())
