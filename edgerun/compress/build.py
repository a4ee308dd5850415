"""Build and measure each export of a recipe in the staging folder (the runner's export phase).

``Exports`` produces every file once, by name: a source's FP32 ONNX export is the baseline of
all its exports and the input of its quantized ONNX ones. Each file gets a first manifest (so
the runtime applies the right pre/post-processing) and is measured through edgerun's runtime;
``provenance.finish_manifest`` rewrites that manifest once the gate has judged it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun.errors import CompressError, EdgerunError

from . import export as ex
from . import quantize as q
from .data import Dataset
from .gate import Measured, TeacherRef, judge, measure_artifact, runtime_accuracy
from .recipe import ExportSpec, Recipe
from .steps import Trained

SAMPLES_FILE = "reference-test.npz"  # the manifests' ``samples``: the raw test split


class FoldRefused(CompressError):
    """A folded export that the runtime cannot run (the runner fails its gate and writes nothing)."""


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
    folds: dict[str, dict[str, Any]] = field(default_factory=dict)  # per folded file: ops, kept ops, how
    _fold: Any = None  # fold.Folding of the data's pre-processing, split once when an export asks

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
        ex.save_manifest(ex.build_manifest(path, spec.stem, self.data_for(spec), {}, SAMPLES_FILE), path)
        try:
            measured = measure_artifact(path, self.data.test_x, self.data.test_y, latency_runs=0)  # timed later
        except EdgerunError as exc:
            if not spec.fold_preprocessing:
                raise
            raise FoldRefused(
                f"the model with the pre-processing folded in does not run ({exc}); "
                f"a quantized input now takes the values before {[op['op'] for op in self._folding().folded]}: "
                f"fold into the FP32 exports only, or keep the pre-processing in the manifest"
            ) from exc
        self.built[spec.file_name] = (path, measured)
        return path, measured

    def unmeasured(self, spec: ExportSpec) -> Path:
        """Build a file no runtime here can run (Core ML): its manifest says it was not measured."""
        path = self.stage / spec.file_name
        self._produce(spec, path)
        return path

    def data_for(self, spec: ExportSpec) -> Dataset:
        """The data as this export's model takes it: with ``fold_preprocessing``, only the ops that stay."""
        return self._folding().dataset(self.data) if spec.fold_preprocessing else self.data

    def _folding(self) -> Any:  # fold.Folding
        if self._fold is None:
            from .fold import split

            self._fold = split(self.data.pre_ops, "[[export]]", self.data.train_x[0])
        return self._fold

    def fold_check(self, spec: ExportSpec) -> Any:  # fold.FoldCheck
        """The folded export against the same export unfolded (built here when the recipe does not list it)."""
        from .fold import check

        twin = dataclasses.replace(spec, fold_preprocessing=False, name="")
        if twin.file_name == spec.file_name:
            twin = dataclasses.replace(twin, name=f"{twin.stem}-unfolded")
        twin_path, _ = self.measured(twin)
        path, _ = self.built[spec.file_name]
        result = check(path, twin_path, self.data.test_x, self.data.test_y)
        self.folds[spec.file_name]["check"] = result.to_dict()
        return result

    def _model(self, spec: ExportSpec) -> Any:
        """The source's model, BatchNorm folded, and with ``fold_preprocessing`` the pre-processing folded in."""
        model = self.done[spec.source].model
        fused = getattr(model, "fused", lambda: model)()
        if not spec.fold_preprocessing:
            return fused
        from .fold import fold_into

        folding = self._folding()
        folded, how = fold_into(fused, folding, self.data.input_shape)
        self.folds[spec.file_name] = {"ops": list(folding.folded), "kept": list(folding.kept), "how": how}
        self.log(f"  folded {[op['op'] for op in folding.folded]} {how}")
        return folded

    def _produce(self, spec: ExportSpec, path: Path) -> None:
        data = self.data_for(spec)
        calib = data.calibration(self.recipe.data.calibration_samples)
        if spec.format == "coreml":  # converted here, measured only on a Mac (export_coreml.py)
            from .export_coreml import export_coreml

            export_coreml(self._model(spec), data.input_shape, path, spec.precision, data=data)
            return
        if spec.format == "pte":  # ExecuTorch: built from the torch model, FP32 or INT8 (export_executorch.py)
            from . import export_executorch as et

            if spec.precision == "fp32":
                et.export_pte(self._model(spec), data.input_shape, path)
            else:
                et.export_pte_int8(self._model(spec), data.input_shape, path, calib)
            return
        if spec.precision == "fp32":
            (ex.export_onnx if spec.format == "onnx" else ex.export_tflite)(self._model(spec), data.input_shape, path)
            return
        fp32_spec = ExportSpec(spec.source, spec.format, "fp32", fold_preprocessing=spec.fold_preprocessing)
        fp32, _ = self.measured(fp32_spec)
        if spec.fold_preprocessing:
            self.folds[spec.file_name] = dict(self.folds[fp32_spec.file_name])  # the FP32 file it quantizes
        if spec.precision == "mixed":
            self.details[spec.file_name] = _mixed(spec, self.recipe, data, fp32, calib, path, self.log)
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
