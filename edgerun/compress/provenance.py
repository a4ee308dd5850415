"""The final manifest of an export: provenance (recipe, lineage, parent), every measured metric, the gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import export as ex
from .build import SAMPLES_FILE, lineage
from .data import Dataset
from .gate import GateVerdict, Measured
from .recipe import ExportSpec, Recipe
from .steps import Trained

# A .pte holds no tensor names (ExecuTorch's schema/program.fbs: a plan's inputs and outputs are
# EValue indices; a Tensor's optional fully_qualified_name names external weights, not IO), so the
# manifest carries the names every other export of the recipe has.
PTE_IO_NAMES = (
    "input / logits, as in the recipe's ONNX and TFLite exports, written here: a .pte holds no tensor names "
    "(ExecuTorch's program schema has none for a method's inputs and outputs), so edgerun reads them from "
    "this manifest"
)


@dataclass(frozen=True)
class Context:
    """What every final manifest of a run draws on; ``data`` as this export's model takes it (folded or not)."""

    recipe: Recipe
    done: dict[str, Trained]
    data: Dataset
    fold: dict[str, Any] | None = None  # fold_preprocessing: ops folded, ops kept, how, the check
    facts: dict[str, Any] | None = None  # what the seed's result also depends on: torch, threads, CPU


def _common(spec: ExportSpec, ctx: Context) -> dict[str, Any]:
    recipe, done = ctx.recipe, ctx.done
    prov: dict[str, Any] = {
        "source_model": f"{spec.source}: {done[spec.source].how}",
        "recipe": f"{recipe.name}: {' -> '.join(lineage(spec.source, done))} -> {spec.format} {spec.precision} "
        f"{spec.resolved_mode}".rstrip(),
        "recipe_file": shown_path(recipe.source_path),
        "recipe_sha256": recipe.source_sha256 or None,
        "tool": "edgerun compress",
        "training": ctx.facts,
        "created_utc": ex.created_utc(),
    }
    if ctx.fold is not None:
        prov["folded_preprocessing"] = ctx.fold
    if spec.format == "pte":
        prov["io_names"] = PTE_IO_NAMES
    return prov


def finish_manifest(
    path: Path,
    spec: ExportSpec,
    ctx: Context,
    measured: Measured,
    verdict: GateVerdict,
    baseline: Path,
    detail: dict[str, Any] | None = None,
    latency: dict[str, Any] | None = None,
) -> None:
    """Rewrite the manifest with provenance: recipe, lineage, parent, every measured metric, the gate."""
    from edgerun.artifact import inspect_model, sha256_file

    src = ctx.done[spec.source]
    info = inspect_model(path)
    prov = _common(spec, ctx) | {
        "accuracy": {
            "reference_set": ctx.data.description,
            "metric": "top1",
            "value": round(measured.accuracy, 4),
            "n": measured.n,
            "top1_ties": measured.ties,  # of n: top-1 decided by lowest index among equal scores
            "measured_with": f"edgerun runtime ({measured.engine})",
        },
        "metrics": {
            "size_bytes": path.stat().st_size,
            "parameters": info.parameter_count,
            "parameter_dtypes": info.parameter_dtypes,
            "weight_sparsity": round(1 - src.nonzero_params / src.params, 4),
            "latency_p50_ms": round(measured.latency_p50_ms, 4),
            "latency": latency,
            "torch_top1": round(src.accuracy, 4),
        },
        "gate": verdict.to_dict(),
    }
    if detail is not None:
        prov["mixed_precision"] = detail
    if spec.precision != "fp32" or path != baseline:
        prov["parent_sha256"] = sha256_file(baseline)
    name = f"{ctx.recipe.name}-{spec.stem}-{spec.format}"
    manifest = ex.build_manifest(path, name, ctx.data, prov, SAMPLES_FILE, precision=spec.precision)
    ex.save_manifest(manifest, path)


def finish_unmeasured(path: Path, spec: ExportSpec, ctx: Context) -> None:
    """A Core ML package's manifest: provenance, and ``accuracy`` / ``gate`` as "not measured" (no number)."""
    import json

    from edgerun.artifact import manifest_path_for, parse_manifest, write_manifest

    from .export_coreml import NOT_MEASURED

    manifest_path = manifest_path_for(path)  # export_coreml wrote it in staging a moment ago
    manifest = parse_manifest(json.loads(manifest_path.read_text()), str(manifest_path))
    prov = dict(manifest.provenance) | _common(spec, ctx)
    prov["accuracy"] = {"value": None, "status": "not measured", "reason": NOT_MEASURED}  # never a number
    prov["gate"] = {"passed": None, "reason": f"not measured: {NOT_MEASURED}"}
    prov["metrics"] = {"torch_top1": round(ctx.done[spec.source].accuracy, 4)}
    manifest = manifest.replace(
        name=f"{ctx.recipe.name}-{spec.stem}-{spec.format}", provenance=prov, samples=SAMPLES_FILE
    )
    write_manifest(manifest, path)


def shown_path(path: str) -> str | None:
    """The recipe's path relative to the working directory (a repo checkout), else its file name:
    a build machine's absolute path tells a reader of the manifest nothing."""
    if not path:
        return None
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name
