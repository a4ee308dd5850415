"""Mixed precision for ONNX: INT8 (static QDQ) everywhere except the layers the accuracy cannot afford.

1. **Sensitivity**: for each quantizable layer (Conv / MatMul / Gemm of the pre-processed
   graph), quantize that layer alone (every other one in ``nodes_to_exclude``) with the
   same calibration as the INT8 path, and measure the accuracy with ``evaluate`` (the
   runner passes edgerun's runtime on the whole reference set, like the gate). The drop
   against the FP32 baseline is the layer's sensitivity.
2. **Greedy exclusion**: quantize all layers; while ``accept`` (the export's gate) says no,
   keep the next most sensitive layer in FP32 (ties: graph order) and quantize again.
   The first accepted model is the artifact; when even all-FP32 is not accepted, the last
   trial is kept and the gate then fails it loudly.

The sensitivity table, every trial and the layers kept in FP32 go into the manifest
(``provenance.mixed_precision``) and the report.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.compress import quantize as q


@dataclass(frozen=True)
class LayerSensitivity:
    node: str
    op: str
    accuracy: float  # top-1 with only this layer in INT8
    drop_points: float  # (baseline - accuracy) * 100


@dataclass(frozen=True)
class Trial:
    excluded: tuple[str, ...]  # layers kept FP32 in this trial
    accuracy: float
    accepted: bool


@dataclass(frozen=True)
class MixedResult:
    baseline_accuracy: float
    sensitivity: tuple[LayerSensitivity, ...]  # graph order
    trials: tuple[Trial, ...]  # 0, 1, 2, ... layers kept FP32
    target: str  # what ``accept`` checked, in words

    @property
    def chosen(self) -> Trial:
        return next((t for t in self.trials if t.accepted), self.trials[-1])

    @property
    def excluded(self) -> tuple[str, ...]:
        return self.chosen.excluded

    @property
    def quantized(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.sensitivity if s.node not in self.excluded)

    @property
    def target_met(self) -> bool:
        return self.chosen.accepted

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "per-layer sensitivity (one layer INT8 at a time), then greedy FP32 exclusion by sensitivity",
            "target": self.target,
            "target_met": self.target_met,
            "baseline_accuracy": round(self.baseline_accuracy, 4),
            "sensitivity": [
                {"node": s.node, "op": s.op, "accuracy": round(s.accuracy, 4), "drop_points": round(s.drop_points, 2)}
                for s in self.sensitivity
            ],
            "fp32_layers": list(self.excluded),
            "int8_layers": list(self.quantized),
            "trials": [
                {"fp32_layers": len(t.excluded), "accuracy": round(t.accuracy, 4), "accepted": t.accepted}
                for t in self.trials
            ],
        }


def onnx_mixed(
    fp32: Path,
    out: Path,
    calib: np.ndarray,
    evaluate: Callable[[Path], float],
    accept: Callable[[float], bool],
    baseline_accuracy: float,
    *,
    target: str = "",
    log: Callable[[str], None] = lambda msg: None,
) -> MixedResult:
    """Write the mixed INT8/FP32 model to ``out``; return the analysis (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix=".mixed-", dir=out.parent) as tmp_s:
        tmp = Path(tmp_s)
        pre = q.onnx_preprocess(fp32, tmp / "pre.onnx")
        layers = q.onnx_quantizable_nodes(pre)
        names = [n for n, _ in layers]

        def trial(path: Path, exclude: tuple[str, ...]) -> float:
            q.onnx_int8_static(pre, path, calib, exclude, preprocessed=True)
            return evaluate(path)

        sens = []
        for i, (node, op) in enumerate(layers):
            acc = trial(tmp / f"only-{i}.onnx", tuple(n for n in names if n != node))
            sens.append(LayerSensitivity(node, op, acc, (baseline_accuracy - acc) * 100.0))
            drop = sens[-1].drop_points
            log(f"    sensitivity {i + 1}/{len(layers)} {node} ({op}): top-1 {acc:.2%}, drop {drop:+.2f}")
        order = sorted(range(len(sens)), key=lambda i: (-sens[i].drop_points, i))
        trials: list[Trial] = []
        for k in range(len(order) + 1):
            exclude = tuple(sens[i].node for i in order[:k])
            path = tmp / f"mixed-{k}.onnx"
            acc = trial(path, exclude)
            trials.append(Trial(exclude, acc, accept(acc)))
            log(f"    {k} layer(s) FP32: top-1 {acc:.2%} -> {'accepted' if trials[-1].accepted else 'not enough'}")
            if trials[-1].accepted:
                break
        shutil.copyfile(path, out)
    return MixedResult(baseline_accuracy, tuple(sens), tuple(trials), target)
