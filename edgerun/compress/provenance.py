"""The final manifest of an export: provenance (recipe, lineage, parent), every measured metric, the gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import export as ex
from .build import SAMPLES_FILE, lineage
from .data import Dataset
from .gate import GateVerdict, Measured
from .recipe import ExportSpec, Recipe
from .steps import Trained


def finish_manifest(
    path: Path,
    spec: ExportSpec,
    recipe: Recipe,
    done: dict[str, Trained],
    data: Dataset,
    measured: Measured,
    verdict: GateVerdict,
    baseline: Path,
    detail: dict[str, Any] | None = None,
    latency: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
) -> None:
    """Rewrite the manifest with provenance: recipe, lineage, parent, every measured metric, the gate."""
    from edgerun.artifact import inspect_model, sha256_file

    src = done[spec.source]
    info = inspect_model(path)
    prov: dict[str, Any] = {
        "source_model": f"{spec.source}: {src.how}",
        "recipe": f"{recipe.name}: {' -> '.join(lineage(spec.source, done))} -> {spec.format} {spec.precision} "
        f"{spec.resolved_mode}".rstrip(),
        "recipe_file": shown_path(recipe.source_path),
        "recipe_sha256": recipe.source_sha256 or None,
        "tool": "edgerun compress",
        "training": facts,  # what the seed's result also depends on: torch, threads, CPU
        "created_utc": ex.created_utc(),
        "accuracy": {
            "reference_set": data.description,
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
    name = f"{recipe.name}-{spec.stem}-{spec.format}"
    manifest = ex.build_manifest(path, name, data, prov, SAMPLES_FILE, precision=spec.precision)
    ex.save_manifest(manifest, path)


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
