#!/usr/bin/env python3
"""The bundled demo through onnxruntime-gpu's CUDA and TensorRT providers, side by side with the CPU.

For a machine with an NVIDIA GPU (a Jetson, a workstation) and ``onnxruntime-gpu`` installed
(on a Jetson: NVIDIA's JetPack wheel, ``edgerun target setup --system-site-packages``). Each
demo ONNX model is benchmarked with ``edgerun bench`` once per provider list:

    cpu | cuda,cpu | tensorrt,cuda,cpu | tensorrt:fp16,cuda,cpu

with a TensorRT engine cache in a fresh temporary folder, so each TensorRT row's
``session create`` is an engine build (the cold start), reported apart from the steady state.
Each result's ``engine`` block says which provider ran each node (``node_placement``),
the provider options onnxruntime applied and the engine cache (docs/engines.md).

Where there is no CUDA GPU, or onnxruntime lacks the CUDA provider, it prints why on stderr
and exits 3 (skipped): nothing is measured, nothing is faked.

    python tools/gpu_check.py [--runs 500] [--json results.json] [MODEL.onnx ...]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "edgerun" / "demo"
EXIT_SKIPPED = 3
# row label -> --providers ({cache}: a fresh engine cache folder per TensorRT row)
ROWS = {
    "cpu": "cpu",
    "cuda": "cuda,cpu",
    "tensorrt": "tensorrt:cache={cache}/fp32,cuda,cpu",
    "tensorrt fp16": "tensorrt:fp16:cache={cache}/fp16,cuda,cpu",
}


def skip_reason() -> str | None:
    """Why this machine cannot run the check, or None when it can."""
    try:
        import onnxruntime
    except ImportError:
        return "onnxruntime is not installed"
    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        return (
            f"this onnxruntime ({onnxruntime.__version__}) has no CUDA provider (it offers {', '.join(available)}); "
            "install onnxruntime-gpu (Jetson: NVIDIA's JetPack wheel) on a machine with an NVIDIA GPU"
        )
    if not glob.glob("/proc/driver/nvidia/gpus/*") and not Path("/dev/nvhost-gpu").exists():
        return "no NVIDIA GPU found (no /proc/driver/nvidia/gpus/* and no Jetson /dev/nvhost-gpu)"
    return None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark the demo ONNX models on onnxruntime-gpu's CPU, CUDA and TensorRT providers "
        f"and print one table. Exits {EXIT_SKIPPED} with the reason where there is no CUDA GPU."
    )
    p.add_argument("models", nargs="*", type=Path, help="ONNX models (default: the bundled demo's)")
    p.add_argument("--runs", type=int, default=500, help="minimum timed runs per row (default 500)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="minimum timed seconds per row (default 2)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write every result (edgerun.bench schema)")
    return p.parse_args(argv)


def run_rows(models: list[Path], args: argparse.Namespace, cache: Path) -> list[dict]:
    from edgerun.cli import main

    results = []
    for row, providers in ROWS.items():
        out = cache / f"{row.replace(' ', '-')}.json"
        argv = ["bench", *map(str, models), "--providers", providers.format(cache=cache), "--runs", str(args.runs)]
        argv += ["--min-seconds", str(args.min_seconds), "--no-energy", "--json", str(out), "-q"]
        main(argv)
        for result in json.loads(out.read_text())["results"]:
            result["gpu_check_row"] = row
            if "artifact" in result:
                result["artifact"]["name"] += f" [{row}]"  # the table's column heading
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reason = skip_reason()
    if reason is not None:
        print(f"gpu_check: skipped: {reason}", file=sys.stderr)
        return EXIT_SKIPPED
    models = args.models or sorted(DEMO.glob("*.onnx"))
    from edgerun.bench.report import side_by_side

    with tempfile.TemporaryDirectory(prefix="edgerun-gpu-check-") as tmp:
        cache = Path(tmp)
        results = run_rows(models, args, cache)
    ok = [r for r in results if r.get("status") == "ok"]
    print(side_by_side(ok))
    for r in ok:
        placed = (r["engine"].get("node_placement") or {}).get("by_provider")
        print(f"{r['artifact']['name']}: nodes per provider {placed}")
    for r in results:
        if r.get("status") != "ok":
            print(f"{r.get('artifact', {}).get('name', '?')}: {r.get('error')}")
    if args.json:
        args.json.write_text(json.dumps({"results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
