"""Build and measure each export of a recipe in the staging folder (the runner's export phase).

``Exports`` produces every file once, by name: a source's FP32 ONNX export is the baseline of
all its exports and the input of its quantized ONNX ones. Each file gets a first manifest (so
the runtime applies the right pre/post-processing) and is measured through edgerun's runtime;
``provenance.finish_manifest`` rewrites that manifest once the gate has judged it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun.errors import CompressError

from . import export as ex
from . import quantize as q
from .data import Dataset
from .gate import Measured, TeacherRef, judge, measure_artifact, runtime_accuracy
from .recipe import ExportSpec, Recipe
from .steps import Trained

SAMPLES_FILE = "reference-test.npz"  # the manifests' ``samples``: the raw test split


@dataclass
class Exports:
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
