"""Measure exported artifacts through edgerun's own runtime and apply the accuracy gate.

The gate never trusts the PyTorch model: accuracy is top-1 of ``edgerun.load(path).run``
on the raw reference images, so the manifest's pre-processing, the engine and the
quantized kernels are all part of what is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgerun.compress.recipe import ExportSpec, GateConfig


@dataclass(frozen=True)
class Measured:
    accuracy: float  # top-1, 0..1
    n: int
    latency_p50_ms: float  # median inference-stage time, batch 1, 1 thread, this machine
    engine: str


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    accuracy: float
    baseline_accuracy: float
    drop_points: float  # (baseline - accuracy) * 100
    max_drop_points: float
    min_accuracy: float
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "baseline_accuracy": round(self.baseline_accuracy, 4),
            "drop_points": round(self.drop_points, 2),
            "max_drop_points": self.max_drop_points,
            "min_accuracy": self.min_accuracy,
            "reason": self.reason,
        }


def measure_artifact(path: Path, raw_x: np.ndarray, y: np.ndarray, latency_runs: int = 200) -> Measured:
    """Top-1 and median inference latency of the artifact at ``path`` via ``edgerun.load``."""
    import edgerun

    rt = edgerun.load(path, threads=1)
    correct = _correct(rt, raw_x, y)
    for _ in range(10):  # warm-up: first runs allocate and pick kernels
        rt.run(raw_x[0])
    infer_ns = [rt.run(raw_x[i % len(raw_x)]).times.infer_ns for i in range(latency_runs)]
    engine = f"{rt.load_info.engine} {rt.load_info.engine_version}"
    return Measured(correct / len(y), len(y), float(np.median(infer_ns)) / 1e6, engine)


def runtime_accuracy(path: Path, raw_x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of the artifact at ``path`` through ``edgerun.load`` (no latency runs)."""
    import edgerun

    return _correct(edgerun.load(path, threads=1), raw_x, y) / len(y)


def _correct(rt, raw_x: np.ndarray, y: np.ndarray) -> int:  # rt: edgerun Runtime
    return sum(int(rt.run(img).top[0].index == label) for img, label in zip(raw_x, y))


def judge(spec: ExportSpec, gate: GateConfig, accuracy: float, baseline_accuracy: float) -> GateVerdict:
    """Pass when the drop against the FP32 baseline is within the limit and the floor is met."""
    limit = gate.max_drop_points if spec.max_drop_points is None else spec.max_drop_points
    drop = (baseline_accuracy - accuracy) * 100.0
    reasons = []
    if drop > limit + 1e-9:
        reasons.append(
            f"top-1 {accuracy:.2%} is {drop:.2f} points below the FP32 baseline {baseline_accuracy:.2%}; "
            f"the gate allows {limit:g}"
        )
    if accuracy < gate.min_accuracy:
        reasons.append(f"top-1 {accuracy:.2%} is under the gate's min_accuracy {gate.min_accuracy:.2%}")
    reason = "; ".join(reasons) or f"drop {drop:.2f} points <= {limit:g}"
    return GateVerdict(not reasons, accuracy, baseline_accuracy, drop, limit, gate.min_accuracy, reason)
