"""``edgerun info``: registered through ``edgerun.cli.COMMAND_MODULES``.

Nothing heavy is imported at module level: the artifact inspection is imported inside the command.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgerun.exitcodes import EXIT_PASS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    i = sub.add_parser(
        "info",
        help="describe an artifact",
        description="Format, precision, IO specs, size, "
        "parameter count, op histogram, opsets and the manifest's provenance.",
    )
    i.add_argument("artifact", metavar="ARTIFACT")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from edgerun.artifact import inspect_model, load_artifact

    if str(args.artifact).rstrip("/").endswith((".mlpackage", ".mlpackage.edgerun.json")):
        return _coreml(args)
    art = load_artifact(args.artifact)
    info = inspect_model(art.path, art.format)
    data = {
        "name": art.name,
        "path": str(art.path),
        "manifest": str(art.manifest_path) if art.manifest_path else None,
        "format": art.format,
        "precision": art.precision,
        "precision_detected": info.precision,
        "sha256": art.sha256,
        "sha256_verified": art.manifest is not None,
        "size_bytes": art.size_bytes,
        # an ONNX model's weights in files beside it: in size_bytes and in the sha256 (docs/manifest.md)
        "external_data": [str(p) for p in art.external_data],
        "parameter_count": info.parameter_count,
        "parameter_dtypes": info.parameter_dtypes,
        "versions": info.versions,
        "inputs": [t.to_dict() for t in art.inputs],
        "outputs": [t.to_dict() for t in art.outputs],
        "raw_inputs": [t.to_dict() for t in art.raw_inputs],
        "preprocess": list(art.manifest.preprocess) if art.manifest else [],
        "postprocess": list(art.manifest.postprocess) if art.manifest else [],
        "op_histogram": info.op_histogram,
        "provenance": art.manifest.provenance if art.manifest else {},
    }
    if args.json:
        print(json.dumps(data, indent=1))
        return EXIT_PASS
    print(_info_text(art, info, data))
    return EXIT_PASS


def _info_text(art: Any, info: Any, data: dict[str, Any]) -> str:
    lines = [
        f"{art.name}",
        f"  file         {art.path} ({art.size_bytes / 1e6:.3f} MB)",
        *(
            [f"  data files   {', '.join(p.name for p in art.external_data)} (in size and sha256)"]
            if art.external_data
            else []
        ),
        f"  manifest     {art.manifest_path or '(none: specs read from the model)'}",
        f"  sha256       {art.sha256}" + ("  (verified against manifest)" if art.manifest else ""),
        f"  format       {art.format}   " + "  ".join(f"{k}={v}" for k, v in info.versions.items()),
        f"  precision    {art.precision} (detected from the model: {info.precision})",
        f"  parameters   {info.parameter_count:,}  "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(info.parameter_dtypes.items())),
        "  inputs       " + "; ".join(t.describe() for t in art.inputs),
        "  outputs      " + "; ".join(t.describe() for t in art.outputs),
    ]
    if art.manifest:
        lines.append("  raw input    " + "; ".join(t.describe() for t in art.raw_inputs))
        lines.append("  pre          " + " -> ".join(op.get("op", "?") for op in art.manifest.preprocess))
        lines.append("  post         " + " -> ".join(op.get("op", "?") for op in art.manifest.postprocess))
    lines.append("  ops          " + ", ".join(f"{k} x{v}" for k, v in info.op_histogram.items()))
    prov = data["provenance"]
    if prov:
        lines.append("  provenance")
        for key, value in prov.items():
            if key == "accuracy" and isinstance(value, dict) and isinstance(value.get("value"), (int, float)):
                # The schema types accuracy.value (a finite number) but lets it be absent or null.
                value = (
                    f"{value.get('metric', 'accuracy')} {value['value'] * 100:.2f}% on "
                    f"{value.get('reference_set', '?')} (n={value.get('n', '?')}, "
                    f"measured with {value.get('measured_with', '?')})"
                )
            lines.extend(_provenance_lines(key, value, indent=4))
    return "\n".join(lines)


def _provenance_lines(key: str, value: Any, indent: int) -> list[str]:
    """Nested provenance (metrics, gate, sensitivity tables) as indented key/value lines, not raw dicts."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        out = [f"{pad}{key}"]
        for sub, subvalue in value.items():
            out.extend(_provenance_lines(str(sub), subvalue, indent + 2))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [f"{pad}{key:<20} ({len(value)} entries; `edgerun info --json` lists them)"]
    return [f"{pad}{key:<20} {value}"]


def _coreml(args: argparse.Namespace) -> int:
    """A Core ML package: read (Manifest.json, the model spec), never run (edgerun/coreml.py)."""
    from edgerun.coreml import MACOS_ONLY, coreml_info, load_coreml_artifact

    art = load_coreml_artifact(args.artifact)
    info = coreml_info(art.path)
    data = {
        "name": art.name,
        "path": str(art.path),
        "manifest": str(art.manifest_path) if art.manifest_path else None,
        "format": "coreml",
        "precision": art.precision,
        "precision_detected": info["precision_detected"],
        "sha256": art.sha256,
        "sha256_verified": art.manifest is not None,
        "size_bytes": art.size_bytes,
        "parameter_count": info["parameter_count"],
        "parameter_dtypes": info["parameter_dtypes"],
        "versions": info["versions"],
        "inputs": [t.to_dict() for t in art.inputs],
        "outputs": [t.to_dict() for t in art.outputs],
        "op_histogram": info["op_histogram"],
        "provenance": art.manifest.provenance if art.manifest else {},
        "runs_on": MACOS_ONLY.format(platform="other platforms"),
    }
    if args.json:
        print(json.dumps(data, indent=1))
        return EXIT_PASS
    lines = [
        art.name,
        f"  package      {art.path} ({art.size_bytes / 1e6:.3f} MB)",
        f"  manifest     {art.manifest_path or '(none: specs read from the package)'}",
        f"  sha256       {art.sha256}" + ("  (verified against manifest)" if art.manifest else ""),
        "  format       coreml   " + "  ".join(f"{k}={v}" for k, v in info["versions"].items()),
        f"  precision    {art.precision} (detected from the package: {info['precision_detected']})",
        f"  parameters   {info['parameter_count']:,}  "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(info["parameter_dtypes"].items())),
        "  inputs       " + "; ".join(t.describe() for t in art.inputs),
        "  outputs      " + "; ".join(t.describe() for t in art.outputs),
        "  ops          " + ", ".join(f"{k} x{v}" for k, v in info["op_histogram"].items()),
        f"  runs on      macOS only: {data['runs_on']}",
    ]
    for key, value in data["provenance"].items():
        lines.extend(_provenance_lines(key, value, indent=4))
    print("\n".join(lines))
    return EXIT_PASS
