"""The Pareto report of a compression run: one row per model (torch steps and exported files).

A row is on the frontier when no other exported row is at least as good on size,
accuracy and latency and strictly better on one: the lecture's large / medium / small /
tiny picture, measured on this machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "torch" (a step's model, PyTorch accuracy) or "onnx" / "tflite" (an exported file)
    precision: str
    parent: str
    params: int
    nonzero_params: int
    size_bytes: int | None  # file size; None for torch rows
    accuracy: float  # top-1, 0..1
    drop_points: float | None  # vs the FP32 baseline (exports) or vs the first model (torch rows)
    latency_p50_ms: float | None
    gate: str  # "pass" / "FAIL" / "-"
    kept: bool = True
    drop_vs_teacher_points: float | None = (
        None  # vs the recipe's teacher (its FP32 ONNX; torch rows: its PyTorch top-1)
    )

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0


def pareto(rows: list[Row]) -> set[str]:
    """Names of the exported rows no other exported row dominates (smaller, more accurate, faster)."""
    pts = [r for r in rows if r.kept and r.size_bytes is not None and r.latency_p50_ms is not None]

    def dominates(a: Row, b: Row) -> bool:
        ka = (a.size_bytes, -a.accuracy, a.latency_p50_ms)
        kb = (b.size_bytes, -b.accuracy, b.latency_p50_ms)
        return all(x <= y for x, y in zip(ka, kb)) and ka != kb  # type: ignore[operator]

    return {b.name for b in pts if not any(dominates(a, b) for a in pts if a is not b)}


def format_table(rows: list[Row]) -> str:
    front = pareto(rows)
    head = (
        "model",
        "kind",
        "prec",
        "params",
        "sparsity",
        "size KB",
        "top-1",
        "drop pt",
        "vs teacher",
        "p50 ms",
        "gate",
        "pareto",
    )
    lines = []
    for r in rows:
        lines.append(
            (
                r.name + ("" if r.kept else " (not kept)"),
                r.kind,
                r.precision,
                str(r.params),
                f"{r.sparsity:.1%}",
                "-" if r.size_bytes is None else f"{r.size_bytes / 1024:.1f}",
                f"{r.accuracy:.2%}",
                "-" if r.drop_points is None else f"{r.drop_points:+.2f}",
                "-" if r.drop_vs_teacher_points is None else f"{r.drop_vs_teacher_points:+.2f}",
                "-" if r.latency_p50_ms is None else f"{r.latency_p50_ms:.3f}",
                r.gate,
                "*" if r.name in front else "",
            )
        )
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*x) for x in lines]
    out.append(
        "drop pt: accuracy points lost vs the source's FP32 ONNX (exports) or vs the teacher (torch rows); "
        "vs teacher: points lost vs the teacher's FP32 ONNX (exports) or its PyTorch top-1 (torch rows); "
        "p50 ms: inference stage via edgerun's runtime, batch 1, 1 thread; * = on the Pareto frontier"
    )
    return "\n".join(out)


def format_details(details: dict[str, dict[str, Any]]) -> list[str]:
    """One block per mixed-precision artifact: the per-layer sensitivity table and the layers kept FP32."""
    blocks = []
    for name, d in details.items():
        fp32 = set(d["fp32_layers"])
        width = max([len("layer"), *(len(s["node"]) for s in d["sensitivity"])])
        lines = [
            f"{name}: mixed precision, target {d['target']} ({'met' if d['target_met'] else 'NOT met'})",
            f"  {'layer':<{width}}  {'op':<6}  {'top-1 if only it is INT8':>24}  {'drop pt':>7}  kept",
        ]
        for s in d["sensitivity"]:
            kept = "FP32" if s["node"] in fp32 else "INT8"
            lines.append(
                f"  {s['node']:<{width}}  {s['op']:<6}  {s['accuracy']:>24.2%}  {s['drop_points']:>+7.2f}  {kept}"
            )
        tried = ", ".join(f"{t['fp32_layers']} FP32 -> {t['accuracy']:.2%}" for t in d["trials"])
        lines.append(f"  greedy exclusion (most sensitive first): {tried}")
        blocks.append("\n".join(lines))
    return blocks


def write_json(rows: list[Row], path: Path, details: dict[str, dict[str, Any]] | None = None) -> None:
    """``edgerun.compress.report`` v1: ``rows``, and ``mixed_precision`` (per file name) when a run built any."""
    front = pareto(rows)
    data = [asdict(r) | {"sparsity": round(r.sparsity, 4), "pareto": r.name in front} for r in rows]
    doc: dict[str, Any] = {"schema": "edgerun.compress.report", "schema_version": 1, "rows": data}
    if details:
        doc["mixed_precision"] = details
    path.write_text(json.dumps(doc, indent=2))


def plot(rows: list[Row], path: Path, title: str) -> Path | None:
    """Size vs accuracy scatter (marker area ~ latency), frontier drawn; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: CI and SSH sessions have no display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    pts = [r for r in rows if r.size_bytes is not None and r.latency_p50_ms is not None]
    front = sorted((r for r in pts if r.name in pareto(rows)), key=lambda r: r.size_bytes or 0)
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in pts:
        ax.scatter((r.size_bytes or 0) / 1024, r.accuracy * 100, s=40 + 60 * (r.latency_p50_ms or 0), alpha=0.6)
    # One label per spot (variants often coincide); neighbours alternate above and below their points.
    for i, ((size_kb, acc), names) in enumerate(_label_groups(pts).items()):
        above = i % 2 == 0
        ax.annotate("\n".join(names), (size_kb, acc), xytext=(6, 5 if above else -5), textcoords="offset points",
                    va="bottom" if above else "top", fontsize=7)  # fmt: skip
    ax.plot([(r.size_bytes or 0) / 1024 for r in front], [r.accuracy * 100 for r in front], "k--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("file size (KB, log)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{title}: Pareto frontier (marker area ~ latency)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _label_groups(pts: list[Row]) -> dict[tuple[float, float], list[str]]:
    """Labels ("name  0.26 ms") grouped by spot: same accuracy and file size within 5%."""
    groups: dict[tuple[float, float], list[str]] = {}
    for r in sorted(pts, key=lambda r: r.size_bytes or 0):
        size_kb, acc = (r.size_bytes or 0) / 1024, r.accuracy * 100
        spot = next((k for k in groups if abs(k[1] - acc) < 0.01 and abs(k[0] / size_kb - 1) < 0.05), (size_kb, acc))
        groups.setdefault(spot, []).append(f"{r.name}  {r.latency_p50_ms:.2f} ms")
    return groups
