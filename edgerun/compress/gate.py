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
    # Reference samples whose top-1 score was shared by another class (decided by the
    # lowest index, as argmax does): quantized outputs tie, and each tie can move accuracy.
    ties: int = 0
    latency_n: int = 0  # runs the median is of


@dataclass(frozen=True)
class TeacherRef:
    """The teacher an export is compared with, and where along the way accuracy went.

    ``losses``: (what, points lost) per stage from the teacher to the export, e.g.
    ``("step 'student' (distill)", 1.1)``, ``("export pruned-int8.onnx", 0.2)``.
    """

    name: str
    accuracy: float  # its FP32 ONNX export's top-1 through the runtime, like every export's
    losses: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    accuracy: float
    baseline_accuracy: float
    drop_points: float  # (baseline - accuracy) * 100
    max_drop_points: float
    min_accuracy: float
    reason: str
    teacher: str = ""  # "" when the verdict did not compare with a teacher (mixed precision's trials)
    teacher_accuracy: float | None = None
    drop_vs_teacher_points: float | None = None
    max_drop_vs_teacher_points: float | None = None
    lost_in: str = ""  # the stage that lost the most points on the way from the teacher (a failing verdict)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "passed": self.passed,
            "baseline_accuracy": round(self.baseline_accuracy, 4),
            "drop_points": round(self.drop_points, 2),
            "max_drop_points": self.max_drop_points,
            "min_accuracy": self.min_accuracy,
        }
        if self.teacher:
            d |= {
                "teacher": self.teacher,
                "teacher_accuracy": round(self.teacher_accuracy or 0.0, 4),
                "drop_vs_teacher_points": round(self.drop_vs_teacher_points or 0.0, 2),
                "max_drop_vs_teacher_points": self.max_drop_vs_teacher_points,
            }
        if self.lost_in:
            d["lost_in"] = self.lost_in
        return d | {"reason": self.reason}


def measure_artifact(path: Path, raw_x: np.ndarray, y: np.ndarray, latency_runs: int = 200) -> Measured:
    """Top-1 and median inference latency of the artifact at ``path`` via ``edgerun.load``.

    ``latency_runs = 0``: accuracy only, latency NaN (a run times its artifacts together afterwards,
    interleaved: ``edgerun.compress.latency``)."""
    import edgerun

    rt = edgerun.load(path, threads=1)
    correct, ties = _correct_and_ties(rt, raw_x, y)
    engine = f"{rt.load_info.engine} {rt.load_info.engine_version}"
    if latency_runs <= 0:
        return Measured(correct / len(y), len(y), float("nan"), engine, ties)
    for _ in range(10):  # warm-up: first runs allocate and pick kernels
        rt.run(raw_x[0])
    infer_ns = [rt.run(raw_x[i % len(raw_x)]).times.infer_ns for i in range(latency_runs)]
    return Measured(correct / len(y), len(y), float(np.median(infer_ns)) / 1e6, engine, ties, latency_runs)


def runtime_accuracy(path: Path, raw_x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of the artifact at ``path`` through ``edgerun.load`` (no latency runs)."""
    import edgerun

    return _correct_and_ties(edgerun.load(path, threads=1), raw_x, y)[0] / len(y)


def _correct_and_ties(rt, raw_x: np.ndarray, y: np.ndarray) -> tuple[int, int]:  # rt: edgerun Runtime
    """(top-1 correct, top-1 ties): a tie is a sample whose highest score more than one class shares."""
    correct = ties = 0
    for img, label in zip(raw_x, y):
        res = rt.run(img)
        correct += int(res.top[0].index == label)
        scores = next(iter(res.outputs.values()))  # the first output, as TopK ranks it
        row = scores.reshape(-1) if scores.ndim <= 1 else scores.reshape(scores.shape[0], -1)[0]
        ties += int(np.count_nonzero(row == row.max()) > 1)
    return correct, ties


def judge(
    spec: ExportSpec,
    gate: GateConfig,
    accuracy: float,
    baseline_accuracy: float,
    teacher: TeacherRef | None = None,
) -> GateVerdict:
    """Pass when the drops against the FP32 baseline and against the teacher are within their
    limits and the floor is met. A failing verdict names the stage that lost the most."""
    limit = gate.max_drop_points if spec.max_drop_points is None else spec.max_drop_points
    drop = (baseline_accuracy - accuracy) * 100.0
    reasons = []
    if drop > limit + 1e-9:
        reasons.append(
            f"top-1 {accuracy:.2%} is {drop:.2f} points below the FP32 baseline {baseline_accuracy:.2%}; "
            f"the gate allows {limit:g}"
        )
    t_limit = t_drop = None
    if teacher is not None:
        t_limit = spec.max_drop_vs_teacher_points
        t_limit = gate.max_drop_vs_teacher_points if t_limit is None else t_limit
        t_drop = (teacher.accuracy - accuracy) * 100.0
        if t_drop > t_limit + 1e-9:
            reasons.append(
                f"top-1 {accuracy:.2%} is {t_drop:.2f} points below the teacher {teacher.name!r} "
                f"{teacher.accuracy:.2%}; the gate allows {t_limit:g}"
            )
    if accuracy < gate.min_accuracy:
        reasons.append(f"top-1 {accuracy:.2%} is under the gate's min_accuracy {gate.min_accuracy:.2%}")
    lost_in = _lost_in(teacher) if reasons and teacher is not None else ""
    if lost_in:
        reasons.append(f"most was lost in {lost_in} ({_losses(teacher)})")  # type: ignore[arg-type]
    passed_reason = f"drop {drop:.2f} points <= {limit:g}"
    if t_drop is not None:
        passed_reason += f"; vs teacher {t_drop:.2f} <= {t_limit:g}"
    return GateVerdict(
        not reasons, accuracy, baseline_accuracy, drop, limit, gate.min_accuracy,
        "; ".join(reasons) or passed_reason,
        teacher.name if teacher else "", teacher.accuracy if teacher else None, t_drop, t_limit, lost_in,
    )  # fmt: skip


def _lost_in(teacher: TeacherRef) -> str:
    worst = max(teacher.losses, key=lambda kv: kv[1], default=None)
    return worst[0] if worst is not None and worst[1] > 0 else ""


def _losses(teacher: TeacherRef) -> str:
    return ", ".join(f"{what} {-points:+.2f}" for what, points in teacher.losses)
