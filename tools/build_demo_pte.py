#!/usr/bin/env python
"""ExecuTorch variants of the bundled demo network, built from its committed FP32 ONNX.

The bundled ONNX and TFLite files come from one training run (tools/build_demo.py; minutes of training
that floats make slightly different on every machine). To compare engines on *the same* network, this
tool takes the trained weights from edgerun/demo/digits-fp32.onnx (the pruned, BatchNorm-folded model),
runs that graph as a torch module (each ONNX node as the torch op of the same definition; the module's
output is checked against onnxruntime before anything is exported), and exports it with the compression
toolkit's own functions (edgerun/compress/export_executorch.py, as recipes/digits-demo.toml's
``format = "pte"`` exports do): FP32, and INT8 calibrated on the recipe's calibration images. Each file
then goes through the recipe's accuracy gate against the FP32 ONNX (measured through edgerun's runtime on
the 450-image test split) and against the teacher's top-1 that the FP32 ONNX's manifest records (its
``provenance.gate.teacher_accuracy``, from the recipe run), and gets a manifest; only passing files are written.

    pip install -e '.[compress]'
    python tools/build_demo_pte.py                         # into build/demo-pte
    SOURCE_DATE_EPOCH=1795800000 python tools/build_demo_pte.py --out edgerun/demo
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "2")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from edgerun.artifact import load_artifact, sha256_file  # noqa: E402
from edgerun.demo import DEMO_DIR  # noqa: E402

SAMPLES = "digits-test.npz"
OPS = ("Constant", "Conv", "Clip", "Relu", "Transpose", "MatMul", "Add", "ReduceMean", "Gemm", "Flatten", "Reshape")


def onnx_as_torch(path: Path) -> Any:
    """A torch module computing the ONNX graph at ``path`` node by node (the ops in ``OPS`` only)."""
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    unknown = sorted({n.op_type for n in graph.node} - set(OPS))
    if unknown:
        raise SystemExit(f"build_demo_pte: {path} has ops this converter does not handle: {unknown}")

    # Every constant as numpy too: Clip bounds, ReduceMean axes and Reshape shapes must be plain Python
    # values while torch.export traces (a tensor there would be data it cannot see).
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts |= {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"}

    def const(name: str) -> Any:
        return consts[name].tolist()

    def _param(t: torch.Tensor) -> torch.nn.Parameter:  # weights as a trained module holds them
        return torch.nn.Parameter(t, requires_grad=False)

    class OnnxGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.names: dict[str, str] = {}
            for i, init in enumerate(graph.initializer):
                self.register_parameter(f"c{i}", _param(torch.from_numpy(numpy_helper.to_array(init).copy())))
                self.names[init.name] = f"c{i}"
            self.linear: dict[str, str] = {}  # node output -> its weight as a Linear's (out, in) buffer
            for k, n in enumerate(graph.node):
                if n.op_type == "MatMul" and n.input[1] in consts and consts[n.input[1]].ndim == 2:
                    w = consts[n.input[1]].T
                elif n.op_type == "Gemm":
                    trans_b = any(at.name == "transB" and at.i for at in n.attribute)
                    w = consts[n.input[1]] if trans_b else consts[n.input[1]].T
                else:
                    continue
                self.register_parameter(f"w{k}", _param(torch.from_numpy(np.array(w, dtype=w.dtype, order="C"))))
                self.linear[n.output[0]] = f"w{k}"
            for n in graph.node:
                if n.op_type == "Constant":
                    i = len(self.names)
                    self.register_parameter(
                        f"c{i}", _param(torch.from_numpy(numpy_helper.to_array(n.attribute[0].t).copy()))
                    )
                    self.names[n.output[0]] = f"c{i}"

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            env: dict[str, Any] = {graph.input[0].name: x}
            env.update({k: getattr(self, v) for k, v in self.names.items()})
            for n in graph.node:
                a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
                ins = [env[i] if i else None for i in n.input]
                op = n.op_type
                if op == "Constant":
                    continue
                if op == "Conv":
                    p = a.get("pads", [0, 0, 0, 0])
                    assert p[:2] == p[2:], "asymmetric padding"
                    out = F.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a.get("strides", [1, 1]),
                                   p[:2], a.get("dilations", [1, 1]), a.get("group", 1))  # fmt: skip
                elif op == "Clip":
                    lo = float(const(n.input[1])) if len(n.input) > 1 and n.input[1] else None
                    hi = float(const(n.input[2])) if len(n.input) > 2 and n.input[2] else None
                    out = torch.clamp(ins[0], lo, hi)
                elif op == "Relu":
                    out = torch.relu(ins[0])
                elif op == "Transpose":
                    out = ins[0].permute(*a["perm"])
                elif n.output[0] in self.linear and op == "MatMul":  # x @ W, W constant: a Linear layer in torch
                    out = F.linear(ins[0], getattr(self, self.linear[n.output[0]]))
                elif op == "MatMul":
                    out = torch.matmul(ins[0], ins[1])
                elif op == "Add":
                    out = ins[0] + ins[1]
                elif op == "ReduceMean":
                    axes = a.get("axes") or [int(v) for v in const(n.input[1])]
                    out = ins[0].mean(dim=list(axes), keepdim=True)  # the form XNNPACK's mean takes
                    if not a.get("keepdims", 1):
                        out = out.reshape([d for i, d in enumerate(out.shape) if i not in axes])
                elif op == "Flatten":
                    out = torch.flatten(ins[0], a.get("axis", 1))
                elif op == "Reshape":
                    out = ins[0].reshape([int(v) for v in const(n.input[1])])
                else:  # Gemm: a Linear layer when alpha = beta = 1
                    assert a.get("alpha", 1.0) == a.get("beta", 1.0) == 1.0, "Gemm with alpha/beta"
                    out = F.linear(ins[0], getattr(self, self.linear[n.output[0]]), ins[2])
                env[n.output[0]] = out
            return env[graph.output[0].name]

    return OnnxGraph().eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "digits-demo.toml")
    ap.add_argument("--onnx", type=Path, default=DEMO_DIR / "digits-fp32.onnx", help="the trained FP32 network")
    ap.add_argument("--out", type=Path, default=REPO / "build" / "demo-pte", help="default build/demo-pte")
    args = ap.parse_args(argv)

    import shutil

    import torch

    from edgerun.compress import export as ex
    from edgerun.compress import load_recipe
    from edgerun.compress.data import load_dataset
    from edgerun.compress.export_executorch import export_pte, export_pte_int8
    from edgerun.compress.gate import TeacherRef, judge, measure_artifact
    from edgerun.compress.recipe import ExportSpec

    recipe = load_recipe(args.recipe)
    data = load_dataset(recipe.data, REPO)
    source = load_artifact(args.onnx)
    module = onnx_as_torch(source.path)
    import edgerun

    onnx_rt = edgerun.load(source.path, threads=1)
    x = data.model_input(data.test_x[:32])
    with torch.no_grad():
        got = module(torch.from_numpy(x[:, None][0])).numpy()
    ref = onnx_rt.pipeline.session.run([x[:, None][0]])[0]
    if not np.allclose(got, ref, rtol=1e-4, atol=1e-4):
        raise SystemExit(f"build_demo_pte: the torch module differs from onnxruntime by {np.abs(got - ref).max()}")
    base = measure_artifact(source.path, data.test_x, data.test_y, latency_runs=0)
    shipped = source.manifest.provenance if source.manifest else {}
    # The teacher-relative gate, as the recipe applies it: the teacher's FP32 ONNX top-1 that the recipe run
    # measured and recorded in the source ONNX's manifest (the teacher itself is not bundled).
    recorded = shipped.get("gate", {})
    teacher = TeacherRef(recorded["teacher"], recorded["teacher_accuracy"]) if "teacher_accuracy" in recorded else None
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        ex.write_samples(stage / SAMPLES, data.test_x, data.test_y)
        for precision in ("fp32", "int8"):
            path = stage / f"digits-{precision}.pte"
            if precision == "fp32":
                export_pte(module, data.input_shape, path)
            else:
                export_pte_int8(module, data.input_shape, path, data.calibration(recipe.data.calibration_samples))
            ex.save_manifest(ex.build_manifest(path, path.stem, data, {}, SAMPLES), path)
            measured = measure_artifact(path, data.test_x, data.test_y, latency_runs=0)
            spec = ExportSpec(source="pruned", format="pte", precision=precision)  # type: ignore[arg-type]
            verdict = judge(spec, recipe.gate, measured.accuracy, base.accuracy, teacher)
            print(f"{path.name}: top-1 {measured.accuracy:.2%} ({measured.n} images), gate: {verdict.reason}")
            if not verdict.passed:
                failed.append(path.name)
                continue
            info = edgerun.artifact.inspect_model(path)
            prov = {
                "source_model": shipped.get("source_model", "?"),
                "recipe": f"{shipped.get('recipe', recipe.name + ': ?').split(' -> onnx')[0]} -> pte {precision}"
                + (" static" if precision == "int8" else ""),
                "recipe_file": "recipes/digits-demo.toml",
                "converted_from": f"{source.path.name} (sha256 {source.sha256}): its weights, its graph as torch ops",
                "tool": "tools/build_demo_pte.py (export: edgerun.compress.export_executorch)",
                "created_utc": ex.created_utc(),
                "accuracy": {
                    "reference_set": data.description,
                    "metric": "top1",
                    "value": round(measured.accuracy, 4),
                    "n": measured.n,
                    "top1_ties": measured.ties,
                    "measured_with": f"edgerun runtime ({measured.engine})",
                },
                "metrics": {
                    "size_bytes": path.stat().st_size,
                    "parameters": info.parameter_count,
                    "parameter_dtypes": info.parameter_dtypes,
                },
                "gate": verdict.to_dict(),
                "parent_sha256": source.sha256,
            }
            name = f"digits-cnn-{precision}-pte"
            manifest = ex.build_manifest(path, name, data, prov, SAMPLES, precision=precision)
            # the ONNX file's tensor names (a .pte has none): the same network, read the same way by callers
            manifest = manifest.replace(
                inputs=tuple(t._replace(name=o.name) for t, o in zip(manifest.inputs, source.inputs)),
                outputs=tuple(t._replace(name=o.name) for t, o in zip(manifest.outputs, source.outputs)),
            )
            ex.save_manifest(manifest, path)
            for f in (path, path.with_name(path.name + ".edgerun.json")):
                shutil.copy2(f, args.out / f.name)
        if not (args.out / SAMPLES).exists():
            shutil.copy2(stage / SAMPLES, args.out / SAMPLES)
    if failed:
        print(f"build_demo_pte: missed the accuracy gate, not written: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"ExecuTorch demo files in {args.out} (sha256 of the source ONNX: {sha256_file(source.path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
