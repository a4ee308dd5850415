#!/usr/bin/env python3
"""How much does edgerun's timed inference stage add over a bare engine loop?

For each artifact, the same engine session runs the same model-ready input
through (a) a bare loop, ``session.run(None, {name: x})`` for onnxruntime or
``set_tensor / invoke / get_tensor`` for LiteRT, and (b) edgerun's timed
inference stage (``Pipeline.timed_infer``, exactly what ``Pipeline.__call__``
times). The two are interleaved, alternating which goes first, so drift
(thermal, frequency, other load) hits both alike. Both are timed with
``perf_counter_ns`` around the call.

Prints, per artifact: median and p99 of each, the overhead (difference of
medians and of p99s) in microseconds, and the ratio. Target: < 5 us overhead
at the median on this machine. Usage:

    python tools/bench_overhead.py [ARTIFACT...] [--pairs 5000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from time import perf_counter_ns
from typing import Any

import numpy as np

import edgerun
from edgerun.bench.runner import sample_inputs
from edgerun.demo import demo_artifacts


def bare_call(session: Any) -> Any:
    """A closure doing what a user's bare engine loop does, on the same native session."""
    native = session.native
    if session.engine == "onnx":
        names = [t.name for t in session.inputs]
        run = native.run

        def onnx_bare(feeds: list[np.ndarray]) -> Any:
            return run(None, {names[0]: feeds[0]} if len(names) == 1 else dict(zip(names, feeds)))

        return onnx_bare
    ins = [d["index"] for d in native.get_input_details()]
    outs = [d["index"] for d in native.get_output_details()]
    set_tensor, invoke, get_tensor = native.set_tensor, native.invoke, native.get_tensor

    def litert_bare(feeds: list[np.ndarray]) -> Any:
        for i, x in zip(ins, feeds):
            set_tensor(i, x)
        invoke()
        return [get_tensor(o) for o in outs]

    return litert_bare


def measure(path: str, pairs: int, threads: int | None) -> dict[str, Any]:
    rt = edgerun.load(path, threads=threads)
    inputs, _ = sample_inputs(rt.artifact, seed=0)
    feeds = rt.pipeline.preprocess(inputs[0])
    bare, timed = bare_call(rt.pipeline.session), rt.pipeline.timed_infer
    for _ in range(50):  # warm both paths
        bare(feeds)
        timed(feeds)
    bare_ns = np.empty(pairs, dtype=np.int64)
    ours_ns = np.empty(pairs, dtype=np.int64)
    for i in range(pairs):
        if i % 2:
            _, ours_ns[i] = timed(feeds)
        t0 = perf_counter_ns()
        bare(feeds)
        bare_ns[i] = perf_counter_ns() - t0
        if not i % 2:
            _, ours_ns[i] = timed(feeds)
    b50, b99 = np.percentile(bare_ns, [50, 99])
    o50, o99 = np.percentile(ours_ns, [50, 99])
    return {
        "artifact": rt.artifact.name,
        "engine": rt.load_info.engine,
        "pairs": pairs,
        "bare_p50_us": b50 / 1e3,
        "bare_p99_us": b99 / 1e3,
        "edgerun_p50_us": o50 / 1e3,
        "edgerun_p99_us": o99 / 1e3,
        "overhead_p50_us": (o50 - b50) / 1e3,
        "overhead_p99_us": (o99 - b99) / 1e3,
        "ratio_p50": o50 / b50,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifacts", nargs="*", help="default: the bundled demo artifacts")
    ap.add_argument("--pairs", type=int, default=5000, help="interleaved bare/edgerun pairs (default 5000)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", help="write the figures as JSON")
    args = ap.parse_args()
    paths = args.artifacts or [str(p) for p in demo_artifacts()]
    rows = [measure(p, args.pairs, args.threads) for p in paths]
    head = (
        f"{'artifact':<22} {'engine':<7} {'n':>6} {'bare p50':>9} {'ours p50':>9} {'ovh p50':>8} "
        f"{'bare p99':>9} {'ours p99':>9} {'ovh p99':>8} {'ratio':>6}"
    )
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(
            f"{r['artifact']:<22} {r['engine']:<7} {r['pairs']:>6} {r['bare_p50_us']:>9.1f} "
            f"{r['edgerun_p50_us']:>9.1f} {r['overhead_p50_us']:>8.2f} {r['bare_p99_us']:>9.1f} "
            f"{r['edgerun_p99_us']:>9.1f} {r['overhead_p99_us']:>8.2f} {r['ratio_p50']:>6.3f}"
        )
    print("all figures in microseconds (us); overhead = edgerun - bare; target < 5 us at p50")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
