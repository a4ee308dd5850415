"""What a lab report shows, computed from the stored results (no rendering here).

A *group* is one artifact on one target with one option set; its repetitions are
pooled (samples) or summarised by their median (p50, p99, energy). Verdicts combine
by the worst status: error > fail > not-valid > pass.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgerun.lab.store import StoredResult

__all__ = ["Group", "LabSummaryData", "pareto_frontier", "summarize_results", "worst"]

_RANK = {"pass": 0, "not-valid": 1, "fail": 2, "error": 3}


def worst(statuses: list[str | None]) -> str:
    known = [s for s in statuses if s is not None]
    return max(known, key=lambda s: _RANK.get(s, 3)) if known else "-"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Group:
    artifact: str
    target: str
    options: str
    rows: list[StoredResult] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.artifact} [{self.options}]" if self.options else self.artifact

    def samples_ms(self) -> np.ndarray | None:
        parts = []
        for row in self.rows:
            s = row.result.get("samples_ns")
            if s and "infer" in s:  # a `serial tiny` result has its DUT's latencies only: in the columns
                parts.append((np.asarray(s["pre"]) + np.asarray(s["infer"]) + np.asarray(s["post"])) / 1e6)
        return np.concatenate(parts) if parts else None

    def column(self, name: str) -> float | None:
        return _median([row.columns.get(name) for row in self.rows])

    @property
    def size_mb(self) -> float | None:
        size = self.column("size_bytes")
        return size / 1e6 if size is not None else None

    @property
    def energy_measured(self) -> bool:
        return any(row.columns.get("energy_source") == "measured" for row in self.rows)


@dataclass
class LabSummaryData:
    artifacts: list[str]
    targets: list[str]
    groups: list[Group]
    matrix: dict[tuple[str, str], dict[str, Any]]
    rows: list[StoredResult]

    def groups_on(self, target: str) -> list[Group]:
        return [g for g in self.groups if g.target == target]


def _matrix_cell(rows: list[StoredResult]) -> dict[str, Any]:
    return {
        "overall": worst([r.columns["overall"] for r in rows]),
        "hard": worst([r.columns["hard"] for r in rows]),
        "soft": worst([r.columns["soft"] for r in rows]),
        "jobs": len(rows),
        "errors": sum(1 for r in rows if r.columns["status"] != "ok"),
    }


def summarize_results(rows: list[StoredResult]) -> LabSummaryData:
    groups: dict[tuple[str, str, str], Group] = {}
    for row in rows:
        key = (row.columns["artifact"], row.target, row.options)
        groups.setdefault(key, Group(*key)).rows.append(row)
    artifacts = sorted({r.columns["artifact"] for r in rows})
    targets = list(dict.fromkeys(r.target for r in rows))
    matrix = {}
    for artifact in artifacts:
        for target in targets:
            cell = [r for r in rows if r.columns["artifact"] == artifact and r.target == target]
            if cell:
                matrix[(artifact, target)] = _matrix_cell(cell)
    ordered = sorted(groups.values(), key=lambda g: (targets.index(g.target), g.artifact, g.options))
    return LabSummaryData(artifacts, targets, ordered, matrix, rows)


def pareto_frontier(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mark each point ``frontier``: no other point is at least as small, fast and accurate, and better in one.

    Minimise ``size_mb`` and ``p99_ms``, maximise ``accuracy`` (unknown accuracy counts as the worst).
    """

    def key(p: dict[str, Any]) -> tuple[float, float, float]:
        acc = p["accuracy"] if p["accuracy"] is not None else -np.inf
        return p["size_mb"], p["p99_ms"], -acc

    for p in points:
        kp = key(p)
        p["frontier"] = not any(all(a <= b for a, b in zip(key(q), kp)) and key(q) != kp for q in points if q is not p)
    return points


def pareto_points(groups: list[Group]) -> list[dict[str, Any]]:
    """One point per group with a size and a p99 (the p99's median over repetitions)."""
    points = []
    for g in groups:
        p99, size = g.column("p99_ns"), g.size_mb
        if p99 is None or size is None:
            continue
        points.append({"label": g.label, "size_mb": size, "p99_ms": p99 / 1e6, "accuracy": g.column("accuracy")})
    return pareto_frontier(points)
