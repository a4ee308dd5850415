"""Run a recipe end to end: steps -> exports -> runtime measurement -> gate -> write -> Pareto report.

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

from edgerun.errors import AccuracyGateError, CompressError

from . import export as ex
from . import quantize as q
from .data import Dataset, load_dataset
from .gate import GateVerdict, Measured, TeacherRef, judge, measure_artifact, runtime_accuracy
from .latency import interleaved
from .recipe import ExportSpec, Recipe
from .report import Row, format_details, format_table, plot, write_json
from .steps import Trained, run_step
from .train import seed_everything, torch_threads, training_facts

SAMPLES_FILE = "reference-test.npz"


@dataclass(frozen=True)
class Produced:
    spec: ExportSpec
    path: Path  # in the output folder when kept, else in the (deleted) staging folder
    measured: Measured
    verdict: GateVerdict
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
        return tuple(p for p in self.produced if not p.verdict.passed)

    def raise_for_gate(self) -> None:
        if self.failed:
            lines = [f"  {p.spec.file_name}: {p.verdict.reason}" for p in self.failed]
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
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as tmp:
        produced = _export_all(recipe, done, data, Path(tmp), out, keep_failed, log, details, facts)
    details = {p.spec.file_name: details[p.spec.file_name] for p in produced if p.spec.file_name in details}
    rows = _torch_rows(recipe, done) + [p.row for p in produced]
    table = format_table(rows)
    write_json(rows, out / "report.json", details)
    png = plot(rows, out / "pareto.png", recipe.name)
    (out / "report.txt").write_text("\n\n".join([table, *format_details(details)]) + "\n")
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
) -> list[Produced]:
    ex.write_samples(stage / SAMPLES_FILE, data.test_x, data.test_y)
    exports = _Exports(recipe, done, data, stage, log, details)
    judged = []
    for i, spec in enumerate(recipe.exports, 1):
        log(f"export {i}/{len(recipe.exports)}: {spec.file_name}")
        base_path, base = exports.baseline(spec.source)
        path, measured = exports.measured(spec)
        teacher = exports.teacher(spec, measured.accuracy)
        verdict = judge(spec, recipe.gate, measured.accuracy, base.accuracy, teacher)
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
        _finish_manifest(
            path,
            spec,
            recipe,
            done,
            data,
            measured,
            verdict,
            base_path,
            details.get(spec.file_name),
            lat.to_dict(),
            facts,
        )
        kept = verdict.passed or keep_failed
        if kept:
            if not any(p.kept for p in produced):  # the kept manifests' ``samples``, copied once
                shutil.copy2(stage / SAMPLES_FILE, out / SAMPLES_FILE)
            for f in (path, path.with_name(path.name + ".edgerun.json")):
                shutil.copy2(f, out / f.name)
        row = _export_row(spec, path, measured, verdict, kept, done)
        produced.append(Produced(spec, out / path.name if kept else path, measured, verdict, kept, row))
    return produced


@dataclass
class _Exports:
    """What the export phase shares: every file is built in ``stage`` and measured once, then
    reused by name (a source's FP32 ONNX is the baseline of all its exports and the input of
    its quantized ONNX ones). ``details`` collects the mixed-precision analyses."""

    recipe: Recipe
    done: dict[str, Trained]
    data: Dataset
    stage: Path
    log: Callable[[str], None]
    details: dict[str, dict[str, Any]]
    built: dict[str, tuple[Path, Measured]] = field(default_factory=dict)

    def baseline(self, source: str) -> tuple[Path, Measured]:
        """The source model's FP32 ONNX export, measured through the runtime: every gate's reference."""
        spec = ExportSpec(source=source, format="onnx", precision="fp32")
        if spec.file_name not in self.built:
            self.log(f"  baseline {spec.file_name}")
        return self.measured(spec)

    def teacher(self, spec: ExportSpec, accuracy: float) -> TeacherRef:
        """The recipe's teacher (its FP32 ONNX through the runtime) and the points lost on the way
        to this export: each step's PyTorch top-1 against the previous one, then the export's."""
        name = self.recipe.teacher
        _, t_measured = self.baseline(name)
        chain = lineage(spec.source, self.done)
        chain = chain[chain.index(name) + 1 :] if name in chain else chain
        prev, losses = self.done[name].accuracy, []
        for step in chain:
            acc = self.done[step].accuracy
            losses.append((f"step {step!r} ({self.recipe.step(step).kind})", (prev - acc) * 100.0))
            prev = acc
        losses.append((f"export {spec.file_name}", (prev - accuracy) * 100.0))
        return TeacherRef(name, t_measured.accuracy, tuple(losses))

    def measured(self, spec: ExportSpec) -> tuple[Path, Measured]:
        if spec.file_name in self.built:
            return self.built[spec.file_name]
        path = self.stage / spec.file_name
        self._produce(spec, path)
        # A first manifest so the runtime applies the right pre/post-processing; metrics come after.
        ex.save_manifest(ex.build_manifest(path, spec.stem, self.data, {}, SAMPLES_FILE), path)
        measured = measure_artifact(path, self.data.test_x, self.data.test_y, latency_runs=0)  # timed later
        self.built[spec.file_name] = (path, measured)
        return path, measured

    def _produce(self, spec: ExportSpec, path: Path) -> None:
        model = self.done[spec.source].model
        fused = getattr(model, "fused", lambda: model)()
        calib = self.data.calibration(self.recipe.data.calibration_samples)
        if spec.format == "pte":  # ExecuTorch: built from the torch model, FP32 or INT8 (export_executorch.py)
            from . import export_executorch as et

            if spec.precision == "fp32":
                et.export_pte(fused, self.data.input_shape, path)
            else:
                et.export_pte_int8(fused, self.data.input_shape, path, calib)
            return
        if spec.precision == "fp32":
            (ex.export_onnx if spec.format == "onnx" else ex.export_tflite)(fused, self.data.input_shape, path)
            return
        fp32, _ = self.measured(ExportSpec(source=spec.source, format=spec.format, precision="fp32"))
        if spec.precision == "mixed":
            self.details[spec.file_name] = _mixed(spec, self.recipe, self.data, fp32, calib, path, self.log)
            return
        key = (spec.format, spec.precision, spec.resolved_mode)
        makers: dict[tuple[str, str, str], Callable[[], Any]] = {
            ("onnx", "int8", "static"): lambda: q.onnx_int8_static(fp32, path, calib),
            ("onnx", "int8", "dynamic"): lambda: q.onnx_int8_dynamic(fp32, path),
            ("onnx", "int4", "weight-only"): lambda: q.onnx_int4(fp32, path),
            ("tflite", "int8", "static"): lambda: q.tflite_int8(fp32, path, calib),
            ("tflite", "int4", "weight-only"): lambda: q.tflite_int4(fp32, path),
        }
        if key not in makers:
            raise CompressError(f"[[export]] {spec.file_name}: {key} is not one of {sorted(makers)}")
        makers[key]()


def _mixed(
    spec: ExportSpec,
    recipe: Recipe,
    data: Dataset,
    fp32: Path,
    calib: Any,
    path: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """ONNX mixed INT8/FP32: sensitivity and trials through edgerun's runtime on the selection set
    (validation), target = this export's limits; the gate then judges the result on the test split."""
    from .mixed import onnx_mixed

    sel_x, sel_y, sel_what = data.selection()
    base = runtime_accuracy(fp32, sel_x, sel_y)

    def evaluate(trial: Path) -> float:
        ex.save_manifest(ex.build_manifest(trial, trial.stem, data, {}, None), trial)
        return runtime_accuracy(trial, sel_x, sel_y)

    def accept(acc: float) -> bool:
        return judge(spec, recipe.gate, acc, base).passed

    limit = recipe.gate.max_drop_points if spec.max_drop_points is None else spec.max_drop_points
    floor = recipe.gate.min_accuracy
    target = f"drop <= {limit:g} points vs FP32 {base:.2%} and top-1 >= {floor:.2%} (on {sel_what})"
    res = onnx_mixed(fp32, path, calib, evaluate, accept, base, target=target, log=log)
    log(f"  mixed: {len(res.quantized)} layer(s) INT8, FP32 kept: {list(res.excluded) or 'none'}")
    return res.to_dict()


def lineage(name: str, done: dict[str, Trained]) -> list[str]:
    """Step names from the first ancestor to ``name`` (distillation follows its first teacher)."""
    chain = [name]
    while (parent := done[chain[0]].parent) is not None:
        chain.insert(0, parent.split(",")[0])
    return chain


def _finish_manifest(
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
        "recipe_file": _shown_path(recipe.source_path),
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


def _shown_path(path: str) -> str | None:
    """The recipe's path relative to the working directory (a repo checkout), else its file name:
    a build machine's absolute path tells a reader of the manifest nothing."""
    if not path:
        return None
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.name
