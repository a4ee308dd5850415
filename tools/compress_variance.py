#!/usr/bin/env python
"""How much a recipe's results move between runs: seeds and torch thread counts, side by side.

A seed fixes a model only for one thread count on one kind of CPU (float reductions are split
and rounded differently elsewhere, and training amplifies the difference). Runs on other seeds
and thread counts stand in for other machines: this runs the recipe once per (seed, threads),
with every gate off (check=False), and prints per artifact the spread of its top-1, of its drop
against its FP32 baseline and of its drop against the teacher, the figures a gate's margin must
cover. Results go to --out/<seed>-<threads>.json (a finished configuration is not rerun).

    python tools/compress_variance.py recipes/digits-demo.toml --seeds 0 1 2 --threads 2
    python tools/compress_variance.py recipes/digits-demo.toml --seeds 0 --threads 1 2 --formats onnx tflite

Measured figures, with the command, are in docs/compress.md ("Accuracy gate").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgerun.compress import load_recipe, run_recipe  # noqa: E402


def run_one(recipe, seed: int, threads: int, formats: list[str], work: Path) -> dict:
    exports = tuple(e for e in recipe.exports if not formats or e.format in formats)
    r = dataclasses.replace(recipe, seed=seed, threads=threads, exports=exports)
    t0 = time.perf_counter()
    result = run_recipe(r, work / f"{seed}-{threads}", check=False, progress=lambda m: print(m, file=sys.stderr))
    rows = {
        row.name: {"accuracy": row.accuracy, "drop_points": row.drop_points, "vs_teacher": row.drop_vs_teacher_points}
        for row in result.rows
    }
    return {"seed": seed, "threads": threads, "seconds": round(time.perf_counter() - t0, 1), "rows": rows}


def summary(runs: list[dict]) -> str:
    names = list(dict.fromkeys(n for r in runs for n in r["rows"]))
    lines = [
        f"{len(runs)} runs: " + ", ".join(f"seed {r['seed']} x {r['threads']} thread(s)" for r in runs),
        f"{'model':<24} {'top-1 min..max':>17} {'drop pt max':>11} {'vs teacher min..max':>20}",
    ]
    for name in names:
        vals = [r["rows"][name] for r in runs if name in r["rows"]]
        acc = [v["accuracy"] * 100 for v in vals]
        drop = [v["drop_points"] for v in vals if v["drop_points"] is not None]
        vt = [v["vs_teacher"] for v in vals if v["vs_teacher"] is not None]
        lines.append(
            f"{name:<24} {min(acc):>7.2f}..{max(acc):<7.2f}  {max(drop, default=0):>+9.2f}  "
            f"{min(vt, default=0):>+8.2f}..{max(vt, default=0):<+8.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", type=Path, help="the recipe TOML (e.g. recipes/digits-demo.toml)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds to run (default: 0 1 2)")
    ap.add_argument("--threads", type=int, nargs="+", default=[2], help="torch threads for the steps (default: 2)")
    ap.add_argument("--formats", nargs="*", default=[], help="only these export formats (default: all)")
    ap.add_argument(
        "--out",
        type=Path,
        default=REPO / "build" / "variance",
        help="per-run JSON and work folders (default: build/variance; finished runs are reused)",
    )
    args = ap.parse_args(argv)
    recipe = load_recipe(args.recipe)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        for threads in args.threads:
            path = args.out / f"{recipe.name}-{seed}-{threads}.json"
            if not path.exists():
                path.write_text(json.dumps(run_one(recipe, seed, threads, args.formats, args.out / "work"), indent=1))
            runs.append(json.loads(path.read_text()))
            print(summary(runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
