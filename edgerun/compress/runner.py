"""Run a recipe end to end: steps -> exports -> runtime measurement -> gate -> write -> Pareto report.

The phases live in their own modules: the steps in ``steps.py``, building and measuring each
export in ``build.py``, the gate in ``gate.py``, the final manifests in ``provenance.py``, the
report in ``report.py``. This module runs them in order and decides what is written.

Everything is built in a staging folder first. An artifact is copied to the output
folder only when it passes the gate (or with ``keep_failed``, marked as failed in its
manifest), so a broken gate never leaves a usable-looking file behind.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun.errors import AccuracyGateError

from . import export as ex
from .build import SAMPLES_FILE, Exports, FoldRefused
from .data import Dataset, load_dataset
from .fold import gate_fold
from .gate import GateVerdict, Measured, judge
from .latency import interleaved
from .provenance import Context, finish_manifest, finish_unmeasured
from .recipe import ExportSpec, Recipe
from .report import Row, format_details, format_folds, format_table, plot, write_json
from .steps import Trained, run_step
from .train import seed_everything, torch_threads, training_facts


@dataclass(frozen=True)
class Produced:
    spec: ExportSpec
    path: Path  # in the output folder when kept, else in the (deleted) staging folder
    measured: Measured | None  # None: not measured (Core ML off Apple hardware), so no verdict either
    verdict: GateVerdict | None
    kept: bool
    row: Row


@dataclass(frozen=True)
class RunResult:
    out_dir: Path
    rows: tuple[Row, ...]
    produced: tuple[Produced, ...]
    table: str
    plot_path: Path | None
    details: dict[str, dict[str, Any]] = field(default_factory=dict)  # per file: mixed-precision analysis

    @property
    def failed(self) -> tuple[Produced, ...]:
        return tuple(p for p in self.produced if p.verdict is not None and not p.verdict.passed)

    def raise_for_gate(self) -> None:
        if self.failed:
            lines = [f"  {p.spec.file_name}: {p.verdict.reason}" for p in self.failed if p.verdict]
            kept = any(p.kept for p in self.failed)
            if kept:
                tail = "written anyway (--keep-failed), marked failed in their manifests"
            else:
                tail = "not written (rerun with --keep-failed to keep them for inspection)"
            head = f"accuracy gate failed for {len(self.failed)} artifact(s), {tail}:\n"
            raise AccuracyGateError(head + "\n".join(lines))


def default_out_dir(recipe: Recipe) -> Path:
    return Path(recipe.out_dir or f"build/compress/{recipe.name}")


def run_recipe(
    recipe: Recipe,
    out_dir: Path | None = None,
    *,
    keep_failed: bool = False,
    check: bool = True,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Run every step and export; raise AccuracyGateError (after writing what passed) when ``check``."""
    t0 = time.perf_counter()
    log = (lambda msg: progress(f"[{time.perf_counter() - t0:7.1f}s] {msg}")) if progress else (lambda msg: None)
    out = Path(out_dir) if out_dir is not None else default_out_dir(recipe)
    rng = seed_everything(recipe.seed)
    base_dir = Path(recipe.base_dir or ".")
    data = load_dataset(recipe.data, base_dir)
    log(
        f"data: {data.description}; train {len(data.train_y)}, validation {len(data.val_y)}; raw sample "
        f"{list(data.train_x.shape[1:])} {data.train_x.dtype} -> model input {list(data.input_shape)}; "
        f"{data.n_classes} classes"
    )
    done: dict[str, Trained] = {}
    with torch_threads(recipe.threads):
        facts = training_facts()
        log(f"steps on torch {facts['torch']}, {facts['threads']} thread(s), {facts['cpu']}")
        for i, step in enumerate(recipe.steps, 1):
            log(f"step {i}/{len(recipe.steps)}: {step.kind} {step.name!r}")
            done[step.name] = run_step(step, done, data, rng, log, base_dir)
            t = done[step.name]
            log(f"  {step.name}: {t.params} parameters, torch top-1 {t.accuracy:.2%}")
    out.mkdir(parents=True, exist_ok=True)
    details: dict[str, dict[str, Any]] = {}
    folds: dict[str, dict[str, Any]] = {}  # per folded file: what folded, where, the check (fold.py)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as tmp:
        produced = _export_all(recipe, done, data, Path(tmp), out, keep_failed, log, details, facts, folds)
    details = {p.spec.file_name: details[p.spec.file_name] for p in produced if p.spec.file_name in details}
    folds = {p.spec.file_name: folds[p.spec.file_name] for p in produced if "check" in folds.get(p.spec.file_name, {})}
    rows = _torch_rows(recipe, done) + [p.row for p in produced]
    table = format_table(rows)
    write_json(rows, out / "report.json", details, folds)
    png = plot(rows, out / "pareto.png", recipe.name)
    (out / "report.txt").write_text("\n\n".join([table, *format_details(details), *format_folds(folds)]) + "\n")
    log(f"done: {sum(p.kept for p in produced)} artifact(s) in {out}")
    result = RunResult(out, tuple(rows), tuple(produced), table, png, details)
    if check:
        result.raise_for_gate()
    return result


def _export_all(
    recipe: Recipe,
    done: dict[str, Trained],
    data: Dataset,
    stage: Path,
    out: Path,
    keep_failed: bool,
    log: Callable[[str], None],
    details: dict[str, dict[str, Any]],
    facts: dict[str, Any] | None = None,
    folds: dict[str, dict[str, Any]] | None = None,
) -> list[Produced]:
    ex.write_samples(stage / SAMPLES_FILE, data.test_x, data.test_y)
    exports = Exports(recipe, done, data, stage, log, details, folds=folds if folds is not None else {})
    judged, refused = [], []
    for i, spec in enumerate(recipe.exports, 1):
        log(f"export {i}/{len(recipe.exports)}: {spec.file_name}")
        if not spec.measurable:
            continue  # Core ML: converted below, after the measured files
        base_path, base = exports.baseline(spec.source)
        try:
            path, measured = exports.measured(spec)
        except FoldRefused as exc:
            log(f"  {spec.file_name}: gate FAIL ({exc})")
            refused.append(_refused(spec, recipe, base.accuracy, str(exc), done))
            continue
        teacher = exports.teacher(spec, measured.accuracy)
        verdict = judge(spec, recipe.gate, measured.accuracy, base.accuracy, teacher)
        if spec.fold_preprocessing:
            verdict = gate_fold(verdict, exports.fold_check(spec), log, spec.file_name)
        gate = "pass" if verdict.passed else "FAIL"
        log(f"  {spec.file_name}: top-1 {measured.accuracy:.2%}, gate {gate} ({verdict.reason})")
        judged.append((spec, path, measured, verdict, base_path))
    # Latency last, all files side by side in interleaved rounds (edgerun/compress/latency.py).
    timed = interleaved([j[1] for j in judged], data.test_x)
    produced: list[Produced] = []
    for spec, path, measured, verdict, base_path in judged:
        lat = timed[path]
        measured = dataclasses.replace(measured, latency_p50_ms=lat.p50_ms, latency_n=lat.n)
        log(f"  {spec.file_name}: p50 {lat.p50_ms:.3f} ms (n = {lat.n}, {lat.rounds} interleaved rounds)")
        ctx = Context(recipe, done, exports.data_for(spec), exports.folds.get(spec.file_name), facts)
        finish_manifest(path, spec, ctx, measured, verdict, base_path, details.get(spec.file_name), lat.to_dict())
        kept = verdict.passed or keep_failed
        if kept:
            _keep(path, stage, out, first=not any(p.kept for p in produced))
        row = _export_row(spec, path, measured, verdict, kept, done)
        produced.append(Produced(spec, out / path.name if kept else path, measured, verdict, kept, row))
    produced += refused
    for spec in (s for s in recipe.exports if not s.measurable):
        path = exports.unmeasured(spec)
        ctx = Context(recipe, done, exports.data_for(spec), exports.folds.get(spec.file_name), facts)
        finish_unmeasured(path, spec, ctx)
        log(f"  {spec.file_name}: not measured (Core ML runs only on Apple hardware), written without a gate")
        _keep(path, stage, out, first=not any(p.kept for p in produced))
        produced.append(Produced(spec, out / path.name, None, None, True, _unmeasured_row(spec, path, done)))
    return produced


def _keep(path: Path, stage: Path, out: Path, first: bool) -> None:
    """Copy a file (a Core ML package: a folder) and its manifest to ``out``; the samples with the first."""
    if first:  # the kept manifests' ``samples``, copied once
        shutil.copy2(stage / SAMPLES_FILE, out / SAMPLES_FILE)
    if path.is_dir():
        shutil.copytree(path, out / path.name)
    else:
        shutil.copy2(path, out / path.name)
    manifest = path.with_name(path.name + ".edgerun.json")
    shutil.copy2(manifest, out / manifest.name)


def _torch_rows(recipe: Recipe, done: dict[str, Trained]) -> list[Row]:
    first = done[recipe.teacher].accuracy
    return [
        Row(
            t.name,
            "torch",
            "fp32",
            t.parent or "-",
            t.params,
            t.nonzero_params,
            None,
            t.accuracy,
            (first - t.accuracy) * 100,
            None,
            "-",
            True,
            (first - t.accuracy) * 100,
        )
        for t in done.values()
    ]


def _refused(spec: ExportSpec, recipe: Recipe, base: float, why: str, done: dict[str, Trained]) -> Produced:
    """An export that does not run at all: a failed verdict with no accuracy, nothing written."""
    limit = recipe.gate.max_drop_points if spec.max_drop_points is None else spec.max_drop_points
    nan = float("nan")
    verdict = GateVerdict(False, nan, base, nan, limit, recipe.gate.min_accuracy, why)
    src = done[spec.source]
    row = Row(spec.file_name, spec.format, spec.precision, spec.source, src.params, src.nonzero_params, None,
              None, None, None, "FAIL", False)  # fmt: skip
    return Produced(spec, Path(spec.file_name), None, verdict, False, row)


def _unmeasured_row(spec: ExportSpec, path: Path, done: dict[str, Trained]) -> Row:
    src = done[spec.source]
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    nonzero = src.params - round((1 - src.nonzero_params / src.params) * src.params)
    return Row(
        spec.file_name, spec.format, spec.precision, spec.source, src.params, nonzero, size,
        None, None, None, "not measured", True,
    )  # fmt: skip


def _export_row(
    spec: ExportSpec, path: Path, measured: Measured, verdict: GateVerdict, kept: bool, done: dict[str, Trained]
) -> Row:
    from edgerun.artifact import inspect_model

    info = inspect_model(path)
    src = done[spec.source]
    # Quantization keeps zeros zero, so the source's weight sparsity carries over to the file.
    nonzero = info.parameter_count - round((1 - src.nonzero_params / src.params) * info.parameter_count)
    return Row(
        spec.file_name,
        spec.format,
        spec.precision,
        spec.source,
        info.parameter_count,
        nonzero,
        path.stat().st_size,
        measured.accuracy,
        verdict.drop_points,
        measured.latency_p50_ms,
        "pass" if verdict.passed else "FAIL",
        kept,
        verdict.drop_vs_teacher_points,
        measured.latency_n,
    )
