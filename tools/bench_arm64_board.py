"""How much slower the emulated arm64 board is than this machine, measured side by side.

    python tools/bench_arm64_board.py URL [--rounds 3] [--samples 30] [ARTIFACT ...]

URL is a board set up with ``edgerun target setup`` (tools/arm64_board.py start prints it).
Each round times the same inferences (``edgerun.load(...).run`` on the first SAMPLES bundled
digits, one thread, after 3 warm-up runs) here and then on the board, so both see the same
load on this machine; it prints each side's median per inference (ms, n = SAMPLES per round)
and their ratio per round. The board is qemu-user on this CPU: the ratio is the cost of
emulation here, not a comparison with a real arm64 board.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"
SAMPLES = DEMO / "digits-test.npz"
DEFAULT = ("digits-int8.tflite", "digits-int8.onnx", "digits-fp32.onnx")
TIMEIT = """import json, sys, time, numpy as np, edgerun
x = np.load(sys.argv[2])["x"][: int(sys.argv[3])]
rt = edgerun.load(sys.argv[1], threads=1)
for s in x[:3]:
    rt.run(s)
ns = []
for s in x:
    t = time.perf_counter_ns(); rt.run(s); ns.append(time.perf_counter_ns() - t)
print(json.dumps(ns))
"""


def _median_ms(stdout: str) -> float:
    return statistics.median(json.loads(stdout.strip().splitlines()[-1])) / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="the board's target URL (ssh://edgerun-arm64?ssh_config=...)")
    ap.add_argument("artifacts", nargs="*", type=Path, help=f"models (default: {', '.join(DEFAULT)})")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--samples", type=int, default=30, help="inferences timed per side and round (default 30)")
    args = ap.parse_args(argv)
    from edgerun.targets import open_target, parse_target
    from edgerun.targets.bench import stage_artifact

    board = open_target(parse_target(args.url))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "timeit.py"
        script.write_text(TIMEIT)
        board.push(script, "timeit.py", 120)
        board.push(SAMPLES, f"samples/{SAMPLES.name}", 300)
    print(f"{'artifact':22} {'round':>5} {'here ms':>9} {'board ms':>10} {'ratio':>7}   (median of n={args.samples})")
    for art in args.artifacts or [DEMO / name for name in DEFAULT]:
        remote = stage_artifact(board, art).remote_model
        for rnd in range(1, args.rounds + 1):
            here = subprocess.run([sys.executable, "-c", TIMEIT, str(art), str(SAMPLES), str(args.samples)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            there = board.run([str(board.python), board.path("timeit.py"), remote,
                               board.path(f"samples/{SAMPLES.name}"), str(args.samples)], 1800)  # fmt: skip
            there.check(args.url, "timing on the board")
            h, b = _median_ms(here.stdout), _median_ms(there.text)
            print(f"{art.name:22} {rnd:>5} {h:>9.3f} {b:>10.3f} {b / h:>6.0f}x", flush=True)
    print("the board is EMULATED (qemu-user on this CPU): the ratio is the cost of emulation, not a real board's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
