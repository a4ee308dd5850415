"""``edgerun mcu check MODEL.tflite --profile wearable-band``: will it fit the microcontroller?

Registered through ``edgerun.cli.COMMAND_MODULES``. Before flashing, with TFLite Micro's real
kernels on the host (``edgerun.engines.tflm``, the ``mcu`` extra):

- ops: every operator the model uses against TFLM's op resolver; all unsupported ones named;
- RAM: the smallest tensor arena that allocates and runs (binary search), against the profile's RAM;
- flash: model bytes + a stated allowance for the TFLM runtime, against the profile's flash
  (``flash_kb``; a profile without it: its model size limit, and the result says so);
- outputs: TFLM's outputs against LiteRT's on the bundled samples, bit-exact or the largest
  difference (quantized units for integer outputs).

No latency: host-side TFLM timing is not the MCU's; ``edgerun serial tiny`` measures the board.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from edgerun.cli.types import finite_float, whole_int
from edgerun.exitcodes import EXIT_FAIL, EXIT_PASS

__all__ = ["RUNTIME_FLASH_BYTES", "check_model", "register"]

# The flash the TFLM runtime adds to the model: an assumption, not a measurement. Sources for its
# order of magnitude: "the core runtime just fits in 16 KB on an Arm Cortex M3" (tensorflow.org/
# lite/microcontrollers); the TFLM framework without kernels is 9,732 bytes on a Cortex-M3
# "bluepill" (tflite-micro, tensorflow/lite/micro/docs/code_size.md). Kernels come on top and
# scale with the op set (CMSIS-NN convolutions are tens of KB): 64 KiB covers the framework and
# a small op set. The application (BLE stack, drivers, RTOS) is not counted.
RUNTIME_FLASH_BYTES = 64 * 1024
RUNTIME_FLASH_SOURCE = (
    "assumed 64 KiB for the TFLM framework plus a small op set's kernels (TFLM documents a 16 KB core "
    "runtime on Cortex-M3, tensorflow.org/lite/microcontrollers, and a 9,732-byte framework without "
    "kernels, tflite-micro docs/code_size.md); the application (BLE stack, drivers) is not counted"
)
RANDOM_SAMPLES = 8


def register(sub: argparse._SubParsersAction) -> None:
    mcu = sub.add_parser(
        "mcu",
        help="microcontroller checks with TFLite Micro (ops, arena, flash) before flashing",
        description="Microcontroller (TFLite Micro) checks, run on this host with TFLM's real kernels.",
    )
    mcu_sub = mcu.add_subparsers(dest="mcu_command", metavar="COMMAND", required=True)
    c = mcu_sub.add_parser(
        "check",
        help="will a .tflite model fit a microcontroller profile",
        description="Ops TFLite Micro supports, the smallest tensor arena (binary search), flash = model + "
        "a stated runtime allowance, each against the profile's RAM/flash -> pass/fail with reasons; "
        "INT8 outputs against LiteRT on the bundled samples. Reports no latency: host-side TFLM timing "
        "is not the MCU's (measure the board with `edgerun serial tiny`). Needs the mcu extra: "
        "pip install 'edgerun[mcu]'.",
    )
    c.add_argument("model", metavar="MODEL", help="a .tflite model, or its .edgerun.json manifest")
    c.add_argument(
        "--profile",
        action="append",
        metavar="NAME|FILE",
        help="device profile to judge against (repeatable; default: wearable-band)",
    )
    c.add_argument(
        "--runtime-flash-kb",
        type=finite_float(0, 1024 * 1024),
        default=RUNTIME_FLASH_BYTES / 1024,
        metavar="KB",
        help=f"flash allowed for the TFLM runtime, KiB (default {RUNTIME_FLASH_BYTES // 1024}: an assumption)",
    )
    c.add_argument(
        "--resolution",
        type=whole_int(1, 1 << 20),
        default=16,
        metavar="BYTES",
        help="arena search resolution in bytes (default 16: TFLM's buffer alignment)",
    )
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from edgerun.profiles import load_profile

    profiles = [load_profile(name) for name in (args.profile or ["wearable-band"])]
    report = check_model(args.model, profiles, round(args.runtime_flash_kb * 1024), args.resolution)
    print(json.dumps(report, indent=1) if args.json else _text(report))
    return EXIT_PASS if all(v["passed"] for v in report["verdicts"]) else EXIT_FAIL


def check_model(
    model: str | Path, profiles: list[Any], runtime_flash_bytes: int = RUNTIME_FLASH_BYTES, resolution: int = 16
) -> dict[str, Any]:
    """Everything ``edgerun mcu check`` reports, as a dict (the --json output)."""
    from edgerun.engines import tflm

    tflm.require_tflm()  # before any work: the one-line install hint
    if resolution < 1:
        from edgerun.errors import UsageError

        raise UsageError(f"--resolution must be >= 1 byte, got {resolution}")
    art, lite_problem = _load(Path(model))
    ops = tflm.model_ops(art.path.read_bytes(), str(art.path))
    start = _generous(tflm, art.path, art.size_bytes)
    unsupported, found = tflm.find_unsupported(art.path, ops, start.arena, first=start)
    report: dict[str, Any] = {
        "model": str(art.path),
        "sha256": art.sha256,
        "model_bytes": art.size_bytes,
        "precision": art.precision,
        "tflite_micro": tflm.engine_version(),
        "measured_on": "host: TFLM reference kernels, 64-bit build (not the device)",
        "ops": {
            "used": ops,
            "unsupported": unsupported,
            "resolver": "TFLM PythonOpsResolver (every kernel TFLM ships)",
        },
        "arena": None,
        "flash": {
            "model_bytes": art.size_bytes,
            "runtime_allowance_bytes": runtime_flash_bytes,
            "runtime_allowance_source": RUNTIME_FLASH_SOURCE
            if runtime_flash_bytes == RUNTIME_FLASH_BYTES
            else "given with --runtime-flash-kb",
            "total_bytes": art.size_bytes + runtime_flash_bytes,
        },
        "outputs": None,
        "problem": None,
        "notes": _notes(),
    }
    if unsupported:
        report["problem"] = f"TFLM has no kernel for {', '.join(unsupported)}"
    elif found.status != "ok":
        report["problem"] = f"TFLM could not run the model: {found.detail}"
    else:
        with tempfile.TemporaryDirectory(prefix="edgerun-mcu-") as tmp:
            feeds_file, lite_outs, inputs_desc = _feeds_and_litert(art, Path(tmp) / "feeds.npz", lite_problem)
            search = tflm.smallest_arena(art.path, start, feeds_file, resolution)
            report["arena"] = {
                "bytes": search.arena_bytes,
                "largest_failing_bytes": search.largest_failing_bytes,
                "resolution_bytes": search.resolution_bytes,
                "recorded_total_bytes": search.recorded_total_bytes,
                "probes": len(search.probes),
            }
            tflm_outs = tflm.run_feeds(art.path, search.arena_bytes, feeds_file) if feeds_file else []
        report["outputs"] = _compare(lite_outs, tflm_outs, inputs_desc, lite_problem)
    report["verdicts"] = [_verdict(report, p) for p in profiles]
    return report


def _load(path: Path) -> tuple[Any, str | None]:
    """The artifact (manifest verified when there is one), and why LiteRT cannot open it, if it cannot.

    A bare .tflite is described by LiteRT: a model with an op LiteRT lacks too (a custom op)
    still gets TFLM's verdict, from the file alone, without the LiteRT comparison.
    """
    from edgerun.artifact import Artifact, load_artifact, sha256_file, sniff_format
    from edgerun.errors import ArtifactError, EngineError

    try:
        art, problem = load_artifact(path), None
    except EngineError as exc:
        fmt = sniff_format(path)
        art = Artifact(path, fmt, "unknown", (), (), sha256_file(path), path.stat().st_size)
        problem = str(exc)
    if art.format != "tflite":
        raise ArtifactError(
            f"{art.path}: edgerun mcu check takes a TFLite model, got {art.format}; export one "
            "(edgerun compress writes INT8 .tflite) and check that"
        )
    return art, problem


def _generous(tflm: Any, path: Path, size: int) -> Any:
    """A probe with an arena large enough to allocate (doubling from max(1 MiB, 10x the model))."""
    arena = max(1 << 20, 10 * size)
    while True:
        found = tflm.probe(path, arena, record=True)
        if found.status != "arena" or arena >= tflm.MAX_ARENA_BYTES:
            return found
        arena = min(2 * arena, tflm.MAX_ARENA_BYTES)


def _feeds_and_litert(art: Any, feeds_file: Path, lite_problem: str | None) -> tuple[Path | None, list[Any], str]:
    """Model inputs (the bundled samples through the manifest's pre-processing, else seeded random)
    written for TFLM's child, and LiteRT's outputs for the same inputs (builtin CPU kernels).
    Without LiteRT (it cannot open the model) TFLM is invoked with zeros and nothing is compared."""
    import numpy as np

    from edgerun.engines import EngineOptions, engine_for
    from edgerun.pipeline import Pipeline
    from edgerun.schema.files import read_samples

    if lite_problem:
        return None, [], "none"
    session = engine_for("tflite").open(art, EngineOptions(threads=1, providers=("CPU",)))
    samples = None
    if art.manifest is not None and art.manifest.samples and art.manifest_path is not None:
        path = art.manifest_path.parent / art.manifest.samples
        if path.exists():
            samples = read_samples(path)[0]
    if samples is not None:
        pipe = Pipeline(art, session)
        feeds = [pipe.preprocess(x) for x in samples]
        desc = f"{len(feeds)} bundled samples ({art.manifest.samples}) through the manifest's pre-processing"
    else:
        rng = np.random.default_rng(0)
        feeds = [[_random(rng, spec) for spec in session.inputs] for _ in range(RANDOM_SAMPLES)]
        desc = f"{RANDOM_SAMPLES} seeded random inputs (the model has no bundled samples)"
    outs = [session.run(list(f)) for f in feeds]
    stacked: dict[str, Any] = {f"in{i}": np.stack([f[i] for f in feeds]) for i in range(len(feeds[0]))}
    np.savez(feeds_file, **stacked)
    lite = [np.stack([o[i] for o in outs]) for i in range(len(outs[0]))]
    return feeds_file, lite, desc


def _random(rng: Any, spec: Any) -> Any:
    import numpy as np

    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _compare(lite: list[Any], micro: list[Any], inputs_desc: str, lite_problem: str | None) -> dict[str, Any] | None:
    import numpy as np

    if lite_problem:
        return {"reference": None, "not_compared": lite_problem, "bit_exact": None, "per_output": []}

    per_output = []
    for i, (a, b) in enumerate(zip(lite, micro)):
        b = b.reshape(a.shape)
        integer = a.dtype.kind in "iu"
        diff = np.abs(a.astype(np.int64) - b.astype(np.int64)) if integer else np.abs(a.astype(np.float64) - b)
        differing = int(np.any(diff.reshape(len(diff), -1) != 0, axis=1).sum())
        per_output.append(
            {
                "index": i,
                "dtype": str(a.dtype),
                "max_abs_diff": int(diff.max()) if integer else float(diff.max()),
                "unit": "quantized units" if integer else str(a.dtype),
                "differing_samples": differing,
            }
        )
    return {
        "reference": "LiteRT, builtin CPU kernels (no XNNPACK)",
        "inputs": inputs_desc,
        "samples": int(len(lite[0])),
        "bit_exact": all(o["max_abs_diff"] == 0 for o in per_output),
        "per_output": per_output,
    }


def _verdict(report: dict[str, Any], profile: Any) -> dict[str, Any]:
    reasons, passed = [], True
    if report["problem"]:
        passed = False
        reasons.append(report["problem"])
    arena = report["arena"]
    if arena is not None:
        ok = arena["bytes"] <= profile.ram_bytes
        passed &= ok
        reasons.append(
            f"RAM: tensor arena {arena['bytes']:,} B {'<=' if ok else '>'} {profile.ram_bytes:,} B of RAM "
            f"({_kib(arena['bytes'])} vs {_kib(profile.ram_bytes)})"
        )
    else:
        reasons.append("RAM: tensor arena not measured (TFLM could not allocate the model)")
    flash = report["flash"]
    if profile.flash_bytes is not None:
        limit, what = profile.flash_bytes, "flash (flash_kb)"
    else:
        limit, what = profile.limits.model_size_limit_bytes, "its model size limit (the profile states no flash_kb)"
    ok = flash["total_bytes"] <= limit
    passed &= ok
    reasons.append(
        f"flash: model {flash['model_bytes']:,} B + runtime {flash['runtime_allowance_bytes']:,} B = "
        f"{flash['total_bytes']:,} B {'<=' if ok else '>'} {limit:,} B, {what}"
    )
    outputs = report["outputs"]
    if outputs is not None and outputs["bit_exact"] is None:
        reasons.append(f"outputs: not compared with LiteRT ({outputs['not_compared']})")
    elif outputs is not None:
        ok = outputs["bit_exact"]
        passed &= ok
        worst = max(o["max_abs_diff"] for o in outputs["per_output"])
        unit = outputs["per_output"][0]["unit"]
        reasons.append(
            f"outputs: bit-exact with LiteRT on {outputs['samples']} inputs"
            if ok
            else f"outputs: differ from LiteRT by up to {worst} {unit} on {outputs['samples']} inputs"
        )
    return {
        "profile": profile.name,
        "ram_bytes": profile.ram_bytes,
        "flash_limit_bytes": limit,
        "flash_limit_source": "flash_kb" if profile.flash_bytes is not None else "limits.model_size_mb",
        "passed": bool(passed),
        "reasons": reasons,
    }


def _kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB"


def _notes() -> list[str]:
    return [
        "the arena is measured on this host: a 32-bit MCU needs less for TFLM's own structs (4-byte pointers), "
        "optimized kernels (CMSIS-NN, ESP-NN) may ask for scratch buffers the reference kernels do not; keep headroom "
        "and confirm on the board (RecordingMicroAllocator)",
        "RAM compares the arena alone: stack, application buffers and a radio stack's RAM come on top",
        "no latency is reported: host-side TFLM timing is not the MCU's (measure the board: edgerun serial tiny)",
    ]


def _text(report: dict[str, Any]) -> str:
    ops = report["ops"]
    lines = [
        f"{report['model']}  ({report['model_bytes']:,} B, {report['precision']}, "
        f"tflite-micro {report['tflite_micro']})",
        "  ops          " + ", ".join(f"{k} x{v}" for k, v in ops["used"].items()),
        "  unsupported  "
        + (", ".join(ops["unsupported"]) if ops["unsupported"] else "none (every op has a TFLM kernel)"),
    ]
    arena = report["arena"]
    if arena:
        recorded = arena["recorded_total_bytes"]
        lines.append(
            f"  arena        {arena['bytes']:,} B smallest that works ({arena['largest_failing_bytes']:,} B fails; "
            f"resolution {arena['resolution_bytes']} B; {arena['probes']} probes); TFLM's recording allocator: "
            + (f"{recorded:,} B" if recorded else "n/a")
            + " [host, not device]"
        )
    flash = report["flash"]
    lines.append(
        f"  flash        {flash['total_bytes']:,} B = model {flash['model_bytes']:,} B + runtime "
        f"{flash['runtime_allowance_bytes']:,} B ({flash['runtime_allowance_source']})"
    )
    outputs = report["outputs"]
    if outputs and outputs["bit_exact"] is None:
        lines.append(f"  outputs      not compared with LiteRT: {outputs['not_compared']}")
    elif outputs:
        diffs = ", ".join(f"out{o['index']}: max diff {o['max_abs_diff']} {o['unit']}" for o in outputs["per_output"])
        lines.append(f"  outputs      vs {outputs['reference']} on {outputs['inputs']}: {diffs}")
    if report["problem"]:
        lines.append(f"  problem      {report['problem']}")
    for v in report["verdicts"]:
        lines.append(f"  {v['profile']:<22} {'PASS' if v['passed'] else 'FAIL'}")
        lines.extend(f"    - {r}" for r in v["reasons"])
    lines.extend(f"  note: {n}" for n in report["notes"])
    return "\n".join(lines)
