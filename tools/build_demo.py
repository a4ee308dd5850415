#!/usr/bin/env python
"""Build the bundled demo artifacts (edgerun/demo/) through the compression toolkit.

Runs recipes/digits-demo.toml, the lecture's case study on scikit-learn's digits
(bundled with scikit-learn; nothing is downloaded): teacher CNN -> distilled student
(T=3, 0.7/0.3, attention transfer) -> 25% of channels pruned -> FP32 / INT8 / mixed /
INT4 ONNX and FP32 / INT8 / INT4 TFLite, plus an INT4 ONNX from a quantization-aware
fine-tune. Every artifact is measured through edgerun's runtime and gated (INT8 within
1 point of FP32). The recipe's full output (every variant, report.json, pareto.png)
goes to --work; the five demo files are then laid out under their demo names
(digits-*.onnx / .tflite, manifests, digits-test.npz) in --out.

    pip install -e '.[compress]'
    python tools/build_demo.py                             # 3-5 min on 2 idle cores (43 min loaded), into build/demo
    edgerun bench build/demo/*.edgerun.json                # benchmark the rebuilt set
    SOURCE_DATE_EPOCH=1795800000 python tools/build_demo.py --out edgerun/demo   # refresh the bundle
    python tools/build_demo.py --readme-table docs/img/digits-demo-report.json  # the README's table, no rebuild

Set SOURCE_DATE_EPOCH to pin the manifests' ``created_utc``. The run ends by printing the README's
compression table (Markdown) rendered from its report.json; docs/img/digits-demo-report.json is the
report of the run the README's table and docs/img/digits-demo-pareto.png come from.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")  # reproducible float reductions on a 2-core box

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgerun.artifact import parse_manifest, write_manifest  # noqa: E402
from edgerun.errors import EdgerunError  # noqa: E402

# recipe export -> demo file name (the names edgerun/demo and its tests use)
LAYOUT = {
    "pruned-fp32.onnx": "digits-fp32.onnx",
    "pruned-int8.onnx": "digits-int8.onnx",
    "pruned-qat4-int4.onnx": "digits-int4.onnx",  # QAT: weight-only INT4 within the 1-point gate
    "pruned-fp32.tflite": "digits-fp32.tflite",
    "pruned-int8.tflite": "digits-int8.tflite",
}
# The recipe's ExecuTorch programs (pruned-{fp32,int8}.pte) stay in --work, in the report and the README's
# table, but are not laid out: a recipe's .pte names its tensors input_0 / output_0, while the bundled
# digits-{fp32,int8}.pte (tools/build_demo_pte.py, from the bundled FP32 ONNX's weights) keep the ONNX
# files' input / logits names, which edgerun bench and tests/test_engine_executorch.py rely on.
SAMPLES = "digits-test.npz"

# report row (file name) -> the README table's description, in the README's order
README_ROWS = {
    "teacher-fp32.onnx": "teacher FP32 ONNX",
    "student-fp32.onnx": "distilled student FP32 ONNX (T=3, attention transfer)",
    "pruned-fp32.onnx": "pruned student FP32 ONNX (25% of all channels removed, ranked globally)",
    "pruned-int8.onnx": "pruned INT8 ONNX (static QDQ)",
    "pruned-mixed.onnx": "pruned mixed INT8/FP32 ONNX (sensitivity-guided)",
    "pruned-int4.onnx": "pruned INT4 ONNX (weight-only, after training)",
    "pruned-qat4-int4.onnx": "pruned INT4 ONNX after 3 epochs of 4-bit QAT",
    "pruned-fp32.tflite": "pruned FP32 TFLite",
    "pruned-int8.tflite": "pruned INT8 TFLite (full integer, int8 IO)",
    "pruned-int4.tflite": "pruned INT4 TFLite (weight-only)",
    "pruned-fp32.pte": "pruned FP32 ExecuTorch (XNNPACK)",
    "pruned-int8.pte": "pruned INT8 ExecuTorch (XNNPACK, PT2E static)",
}


def readme_table(report: dict) -> str:
    """The README's compression table (Markdown) from a run's report.json (``edgerun.compress.report`` v1).

    Every figure is the report's: size KB = bytes / 1024 rounded, top-1 and both drops in points as the
    gate computed them, p50 = the interleaved median (latency_n runs). Parameters are shown for the FP32
    rows only (a quantized file's count mixes weights, scales and zero points). A row that failed its
    gate says so; a row the report lacks (e.g. no executorch package) is left out."""
    rows = {r["name"]: r for r in report["rows"]}
    out = [
        "| model | params | size KB | top-1 | drop vs its FP32 | drop vs teacher | p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in README_ROWS.items():
        r = rows.get(name)
        if r is None:
            continue
        fp32 = r["precision"] == "fp32" and r["kind"] == "onnx"  # a baseline: its own drop is 0 by definition
        drop = r["drop_points"]
        vs_teacher = r["drop_vs_teacher_points"]
        cells = [
            label + ("" if r["gate"] == "pass" else f" ({r['gate']}: missed its gate)"),
            f"{r['params']:,}" if fp32 else "",
            f"{round(r['size_bytes'] / 1024)}",
            f"{r['accuracy']:.2%}",
            "-" if fp32 or drop is None else f"{drop:.2f}",
            "-" if name == "teacher-fp32.onnx" or vs_teacher is None else f"{vs_teacher:.2f}",
            "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.2f}",
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def lay_out(work: Path, out: Path) -> None:
    """Copy the five files under their demo names, with manifests renamed to match."""
    out.mkdir(parents=True, exist_ok=True)
    for src_name, dst_name in LAYOUT.items():
        shutil.copy2(work / src_name, out / dst_name)
        data = json.loads((work / (src_name + ".edgerun.json")).read_text())
        manifest = parse_manifest(data, src_name)
        precision, fmt = dst_name.split("-")[1].split(".")
        manifest = manifest.replace(name=f"digits-cnn-{precision}-{fmt}", model_file=dst_name, samples=SAMPLES)
        write_manifest(manifest, out / dst_name)
    shutil.copy2(work / "reference-test.npz", out / SAMPLES)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--recipe", type=Path, default=REPO / "recipes" / "digits-demo.toml", help="default recipes/digits-demo.toml"
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=REPO / "build" / "compress" / "digits-demo",
        help="every variant, report.json and pareto.png (default build/compress/digits-demo)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "build" / "demo", help="default build/demo (not edgerun/demo)")
    ap.add_argument(
        "--readme-table", type=Path, metavar="REPORT", help="only print the README's table from this report.json"
    )
    args = ap.parse_args(argv)
    if args.readme_table:
        print(readme_table(json.loads(args.readme_table.read_text())))
        return 0
    from edgerun.compress import load_recipe, run_recipe  # torch: only for a rebuild, not for --readme-table

    try:
        # check=False: only the five demo files must pass their gates here. The other variants are the
        # comparison table's (PTQ INT4, mixed, TFLite INT4); a tiny model's accuracy after post-training
        # INT4 differs by an image or two across CPUs and kernels, so one of them missing its gate on
        # another machine is reported, not a failed build.
        result = run_recipe(
            load_recipe(args.recipe), args.work, check=False, progress=lambda m: print(m, file=sys.stderr)
        )
    except EdgerunError as exc:
        print(f"build_demo: {exc}", file=sys.stderr)
        return 1
    print(result.table)
    failed = {p.spec.file_name: p.verdict.reason for p in result.failed}
    for name, reason in failed.items():
        if name not in LAYOUT:
            print(f"build_demo: warning: comparison variant {name} missed its gate ({reason}); not written")
    demo_failed = [f"{name}: {failed[name]}" for name in LAYOUT if name in failed]
    if demo_failed:
        print(f"build_demo: demo artifacts missed their accuracy gate: {'; '.join(demo_failed)}", file=sys.stderr)
        return 1
    lay_out(args.work, args.out)
    print("\nREADME table (from report.json):\n" + readme_table(json.loads((args.work / "report.json").read_text())))
    print(f"\ndemo artifacts in {args.out}; every variant, report.json and pareto.png in {args.work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
