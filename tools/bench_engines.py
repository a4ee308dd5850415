#!/usr/bin/env python3
"""edgerun bench's inference stage against each engine's own raw loop: ONNX Runtime, LiteRT, ExecuTorch.

For each artifact (default: the demo network as ONNX, TFLite and ExecuTorch programs, FP32 and INT8):

- edgerun: the steady-state loop of ``edgerun bench`` itself (``edgerun.bench.runner._loop`` on a
  runtime from ``edgerun.load``, the bundled samples cycled), taking each run's inference stage
  (``StageTimes.infer_ns``: what the bench's ``infer`` row reports);
- raw: a second session opened with the engine's own API, nothing of edgerun's in the loop, fed the same
  pre-processed inputs, each call timed with ``perf_counter_ns``:
  onnxruntime ``InferenceSession.run``, LiteRT ``set_tensor / invoke / get_tensor``, ExecuTorch
  ``Method.execute`` on ready-made torch tensors.

Both with the same thread count (default 1), interleaved: ``--rounds`` rounds of ``--runs`` runs each,
the order swapped every round, so drift (other load, frequency, heat) falls on both alike. Prints per
artifact the median of each (us, n = rounds x runs), and edgerun / raw: the acceptance target of issue 15
is within 3% (ratio 0.97..1.03). A figure measured here is this machine's (host CPU), never a device's.

    python tools/bench_engines.py                       # the demo's six files
    python tools/bench_engines.py A.onnx B.tflite C.pte --rounds 20 --runs 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import edgerun  # noqa: E402
from edgerun.bench.runner import _loop, sample_inputs  # noqa: E402
from edgerun.demo import DEMO_DIR  # noqa: E402

DEFAULT = [f"digits-{p}.{f}" for f in ("onnx", "tflite", "pte") for p in ("fp32", "int8")]


def raw_loop(path: Path, fmt: str, threads: int, feeds: list[list[np.ndarray]]) -> Any:
    """A ``run(n) -> ns per call`` closure over a session made with the engine's own API."""
    if fmt == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        ready = [dict(zip(names, f)) for f in feeds]

        def call(i: int) -> None:
            sess.run(None, ready[i])

    elif fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
        ins = [d["index"] for d in interp.get_input_details()]
        outs = [d["index"] for d in interp.get_output_details()]

        def call(i: int) -> None:
            for idx, x in zip(ins, feeds[i]):
                interp.set_tensor(idx, x)
            interp.invoke()
            for idx in outs:
                interp.get_tensor(idx)

    else:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(threads)
        method = Runtime.get().load_program(path).load_method("forward")
        ready = [[torch.from_numpy(x) for x in f] for f in feeds]

        def call(i: int) -> None:
            method.execute(ready[i])

    def run(n: int) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        for k in range(n):
            t0 = perf_counter_ns()
            call(k % len(feeds))
            out[k] = perf_counter_ns() - t0
        return out

    return run


def compare(path: Path, threads: int, rounds: int, runs: int) -> dict[str, Any]:
    rt = edgerun.load(path, threads=threads)
    inputs, source = sample_inputs(rt.artifact, seed=0)
    inputs = inputs[:64]
    feeds = [rt.pipeline.preprocess(x) for x in inputs]
    raw = raw_loop(rt.artifact.path, rt.artifact.format, threads, feeds)
    raw(50)
    _loop(rt, inputs, 50, 0, 10**12, None)  # warm both
    ours_ns, raw_ns = [], []
    for r in range(rounds):
        first, second = ("ours", "raw") if r % 2 == 0 else ("raw", "ours")
        for who in (first, second):
            if who == "raw":
                raw_ns.append(raw(runs))
            else:
                times, _, _ = _loop(rt, inputs, runs, 0, 10**12, None)
                ours_ns.append(times[:, 2])
    ours, bare = np.concatenate(ours_ns), np.concatenate(raw_ns)
    o50, r50 = float(np.median(ours)) / 1e3, float(np.median(bare)) / 1e3
    return {
        "artifact": rt.artifact.name,
        "file": rt.artifact.path.name,
        "engine": f"{rt.load_info.engine} {rt.load_info.engine_version}",
        "threads": threads,
        "inputs": source,
        "n": int(ours.size),
        "edgerun_infer_p50_us": round(o50, 2),
        "raw_p50_us": round(r50, 2),
        "ratio": round(o50 / r50, 4),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="*", help="model files or manifests (default: the demo's six)")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both loops (default 1)")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    ap.add_argument("--runs", type=int, default=200, help="runs per loop per round (default 200)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    paths = [Path(p) for p in args.artifacts] or [DEMO_DIR / n for n in DEFAULT if (DEMO_DIR / n).exists()]
    rows = [compare(p, args.threads, args.rounds, args.runs) for p in paths]
    print(f"{'file':<22} {'engine':<22} {'n':>6} {'edgerun p50 us':>15} {'raw p50 us':>11} {'ratio':>7}")
    for r in rows:
        print(
            f"{r['file']:<22} {r['engine']:<22} {r['n']:>6} {r['edgerun_infer_p50_us']:>15.1f} "
            f"{r['raw_p50_us']:>11.1f} {r['ratio']:>7.3f}"
        )
    print(
        f"\nmedians of the inference stage, measured on this host ({os.cpu_count()} CPUs), {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds x {args.runs} runs per loop; target: ratio within 0.97..1.03"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
