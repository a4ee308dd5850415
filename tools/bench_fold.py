#!/usr/bin/env python3
"""What does ``fold_preprocessing`` save per call? The same export with and without it, side by side.

For each recipe it runs the recipe's steps once with two exports of ``--source`` in ``--format``
(FP32): as the recipe would build it, and with ``fold_preprocessing = true`` (the manifest keeps
only the ops that cannot fold; edgerun/compress/fold.py). Then one runtime per file (1 thread)
runs every raw test sample in turn, interleaved call by call in a fresh random order per call,
with an A/A control (a second runtime of the unfolded file):

- ``e2e``: ``Runtime.run(raw)`` timed around the call (validation, pre ops, engine, post ops);
- ``pre``: the pre-processing stage as edgerun times it (``times.pre_ns``);
- ``infer``: the inference stage (``times.infer_ns``): folding adds its Mul/Add here when it
  could not go into the first layer's weights.

Figures: medians per round, then the median over rounds with the range; ratio = folded /
unfolded e2e; A/A = control / unfolded (what noise alone gives now). n = rounds x pairs calls
per arm. Measured on this machine, emulated nothing: a host CPU, not an edge device. Usage:

    python tools/bench_fold.py [RECIPE...] [--rounds 5] [--pairs 300] [--json FILE]

Default recipes: recipes/examples/breast-cancer.toml (source "pruned", onnx) and
recipes/examples/scans.toml (source "pruned", onnx).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT = [REPO / "recipes/examples/breast-cancer.toml", REPO / "recipes/examples/scans.toml"]
ARMS = ("unfolded", "folded", "control")


def build(recipe_path: Path, source: str, fmt: str, out: Path) -> tuple[Path, Path, str]:
    """Run the recipe's steps with the two exports only; (unfolded file, folded file, how it folded)."""
    from edgerun.compress import load_recipe, run_recipe
    from edgerun.compress.recipe import ExportSpec

    recipe = load_recipe(recipe_path)
    specs = (ExportSpec(source, fmt), ExportSpec(source, fmt, fold_preprocessing=True))  # type: ignore[arg-type]
    recipe = dataclasses.replace(recipe, exports=specs)
    result = run_recipe(recipe, out, keep_failed=True, check=False)
    paths = [next(p.path for p in result.produced if p.spec == s) for s in specs]
    how = json.loads(paths[1].with_name(paths[1].name + ".edgerun.json").read_text())
    return paths[0], paths[1], how["provenance"]["folded_preprocessing"]["how"]


def measure(unfolded: Path, folded: Path, rounds: int, pairs: int) -> dict[str, Any]:
    import edgerun

    rts = {"unfolded": edgerun.load(unfolded, threads=1), "folded": edgerun.load(folded, threads=1)}
    rts["control"] = edgerun.load(unfolded, threads=1)
    with np.load(unfolded.parent / "reference-test.npz") as z:
        x = z["x"]
    for rt in rts.values():  # warm-up: allocations, kernel choice, the fused op plans
        for i in range(20):
            rt.run(x[i % len(x)])
    rng = np.random.default_rng(0)
    per_round = []
    for _ in range(rounds):
        t: dict[str, dict[str, list[int]]] = {a: {"e2e": [], "pre": [], "infer": []} for a in ARMS}
        for i in range(pairs):
            sample = x[i % len(x)]
            for arm in rng.permutation(ARMS):
                t0 = perf_counter_ns()
                res = rts[arm].run(sample)
                t1 = perf_counter_ns()
                t[arm]["e2e"].append(t1 - t0)
                t[arm]["pre"].append(res.times.pre_ns)
                t[arm]["infer"].append(res.times.infer_ns)
        per_round.append({a: {k: float(np.median(v)) / 1e3 for k, v in t[a].items()} for a in ARMS})
    ratio = [r["folded"]["e2e"] / r["unfolded"]["e2e"] for r in per_round]
    aa = [r["control"]["e2e"] / r["unfolded"]["e2e"] for r in per_round]

    def over_rounds(values: list[float]) -> dict[str, float]:
        return {"median": float(np.median(values)), "min": min(values), "max": max(values)}

    return {
        "n_per_arm": rounds * pairs,
        "rounds": rounds,
        "unit": "us",
        "arms": {a: {k: over_rounds([r[a][k] for r in per_round]) for k in ("e2e", "pre", "infer")} for a in ARMS},
        "ratio_folded_vs_unfolded_e2e": over_rounds(ratio),
        "aa_control_vs_unfolded_e2e": over_rounds(aa),
        "provenance": "measured, this host CPU, edgerun runtime, 1 thread",
    }


def _f(d: dict[str, float], digits: int = 1) -> str:
    return f"{d['median']:.{digits}f} [{d['min']:.{digits}f}-{d['max']:.{digits}f}]"


def main() -> int:
    ap = argparse.ArgumentParser(
        description="Per-call cost of an export with and without fold_preprocessing, measured side by side.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("recipes", nargs="*", type=Path, help="recipe files (default: two worked examples)")
    ap.add_argument("--source", default="pruned", help="the step whose model is exported (default: pruned)")
    ap.add_argument("--format", default="onnx", choices=("onnx", "tflite"), help="export format (default: onnx)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; ratios are reported per round (default 5)")
    ap.add_argument("--pairs", type=int, default=300, help="calls of every arm per round (default 300)")
    ap.add_argument("--json", type=Path, help="write the figures as JSON to this file")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, recipe in enumerate(args.recipes or DEFAULT):
            print(f"{recipe.name}: building the two exports ...", file=sys.stderr)
            unfolded, folded, how = build(recipe, args.source, args.format, Path(tmp) / str(i))
            r = measure(unfolded, folded, args.rounds, args.pairs)
            r |= {"folded": how, "files": [unfolded.name, folded.name]}
            results[recipe.name] = r
            a = r["arms"]
            print(f"{recipe.name} ({args.format} fp32, n = {r['n_per_arm']} calls per arm, {r['rounds']} rounds)")
            print(f"  folded {how}")
            for arm in ARMS:
                stages = "  ".join(f"{k} {_f(a[arm][k])} us" for k in ("e2e", "pre", "infer"))
                print(f"  {arm:<9} {stages}")
            print(
                f"  folded / unfolded e2e {_f(r['ratio_folded_vs_unfolded_e2e'], 3)}; "
                f"A/A {_f(r['aa_control_vs_unfolded_e2e'], 3)}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
