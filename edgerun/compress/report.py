"""The Pareto report of a compression run: one row per model (torch steps and exported files).

The table's ``pareto`` column: no other exported row that passed its gate is at least as good
on size, accuracy and latency and strictly better on one. The plot's frontier is the same
rule on the two axes it draws (file size, accuracy); latency is the marker area there. Rows
that failed their gate are drawn (as crosses) but are never on a frontier. The lecture's
large / medium / small / tiny picture, measured on this machine.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "torch" (a step's model, PyTorch accuracy) or the exported file's format
    precision: str
    parent: str
    params: int
    nonzero_params: int
    size_bytes: int | None  # file size; None for torch rows
    accuracy: float | None  # top-1, 0..1; None: not measured (Core ML off Apple hardware)
    drop_points: float | None  # vs the FP32 baseline (exports) or vs the first model (torch rows)
    latency_p50_ms: float | None
    gate: str  # "pass" / "FAIL" / "-" / "not measured"
    kept: bool = True
    drop_vs_teacher_points: float | None = (
        None  # vs the recipe's teacher (its FP32 ONNX; torch rows: its PyTorch top-1)
    )
    latency_n: int = 0  # runs the latency median is of (interleaved rounds, edgerun/compress/latency.py)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nonzero_params / self.params if self.params else 0.0


AXES = ("size", "accuracy", "latency")


def _key(r: Row, axis: str) -> float:
    """Smaller is better on every axis."""
    return {"size": float(r.size_bytes or 0), "accuracy": -(r.accuracy or 0.0), "latency": r.latency_p50_ms or 0.0}[
        axis
    ]


def pareto(rows: list[Row], axes: tuple[str, ...] = AXES) -> set[str]:
    """Names of the exported rows that passed their gate and that no other such row dominates on ``axes``
    (at least as good on each, strictly better on one): smaller, more accurate, faster by default."""
    pts = [r for r in rows if r.kept and r.gate == "pass" and r.size_bytes is not None and r.latency_p50_ms is not None]

    def dominates(a: Row, b: Row) -> bool:
        ka, kb = [_key(a, x) for x in axes], [_key(b, x) for x in axes]
        return all(x <= y for x, y in zip(ka, kb)) and ka != kb

    return {b.name for b in pts if not any(dominates(a, b) for a in pts if a is not b)}


def plot_frontier(rows: list[Row]) -> list[Row]:
    """The plot's frontier: rows on the Pareto frontier of file size and accuracy, by size."""
    front = pareto(rows, ("size", "accuracy"))
    return sorted((r for r in rows if r.name in front), key=lambda r: (r.size_bytes or 0, -(r.accuracy or 0.0)))


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
                "not measured" if r.accuracy is None else f"{r.accuracy:.2%}",
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
        "p50 ms: median inference stage via edgerun's runtime, batch 1, 1 thread, "
        f"{_latency_n(rows)} runs per file interleaved with the other files; "
        "* = on the Pareto frontier (size, top-1, latency; passed gates only)"
    )
    if any(r.gate == "not measured" for r in rows):
        out.append("not measured: Core ML runs only on Apple hardware; no accuracy, latency or gate here")
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


def format_folds(folds: dict[str, dict[str, Any]]) -> list[str]:
    """One line per file with folded pre-processing: what folded, where, and the check against the unfolded file."""
    lines = []
    for name, f in folds.items():
        c = f["check"]
        lines.append(
            f"{name}: folded {[op['op'] for op in f['ops']]} {f['how']}; against {c['against']} on "
            f"{c['reference_set_n']} test samples: top-1 {c['top1']:.2%} vs {c['top1_unfolded']:.2%}, "
            f"{c['top1_moved_samples']} moved, max |diff| {c['max_abs_diff']:.3g}"
        )
    return ["\n".join(lines)] if lines else []


def write_json(
    rows: list[Row],
    path: Path,
    details: dict[str, dict[str, Any]] | None = None,
    folds: dict[str, dict[str, Any]] | None = None,
) -> None:
    """``edgerun.compress.report`` v1: ``rows``, and ``mixed_precision`` / ``folded_preprocessing`` (per file
    name) when a run built any."""
    front = pareto(rows)
    data = [asdict(r) | {"sparsity": round(r.sparsity, 4), "pareto": r.name in front} for r in rows]
    doc: dict[str, Any] = {"schema": "edgerun.compress.report", "schema_version": 1, "rows": data}
    if details:
        doc["mixed_precision"] = details
    if folds:
        doc["folded_preprocessing"] = folds
    path.write_text(json.dumps(doc, indent=2))


def _latency_n(rows: list[Row]) -> str:
    ns = sorted({r.latency_n for r in rows if r.latency_p50_ms is not None})
    return "/".join(str(n) for n in ns) or "0"


def plot(rows: list[Row], path: Path, title: str) -> Path | None:
    """Size vs accuracy scatter (marker area ~ latency), frontier drawn; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: CI and SSH sessions have no display
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig = figure(rows, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def marker_area(r: Row) -> float:
    """Scatter marker area (points^2) for a row: grows with its latency."""
    return 40 + 60 * (r.latency_p50_ms or 0.0)


def figure(rows: list[Row], title: str):  # -> matplotlib.figure.Figure
    """The Pareto figure: passed files as dots, failed ones as red crosses, each label beside its marker
    (to the right, past the marker's radius), the frontier of the two plotted axes dashed."""
    import matplotlib.pyplot as plt

    pts = [r for r in rows if r.size_bytes is not None and r.latency_p50_ms is not None and r.accuracy is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    for failed, style in ((False, {"marker": "o", "alpha": 0.6}), (True, {"marker": "X", "color": "tab:red"})):
        group = [r for r in pts if (r.gate == "FAIL") == failed]
        if group:
            ax.scatter(
                [(r.size_bytes or 0) / 1024 for r in group], [(r.accuracy or 0.0) * 100 for r in group],
                s=[marker_area(r) for r in group], label="failed its gate" if failed else "passed", **style,
            )  # fmt: skip
    front = plot_frontier(rows)
    # Frontier files ringed as well: a frontier of one file (smallest and most accurate) has no line.
    ax.plot([(r.size_bytes or 0) / 1024 for r in front], [(r.accuracy or 0.0) * 100 for r in front], "k--", lw=1,
            marker="o", mfc="none", ms=13, mew=0.8, label="Pareto frontier (size, top-1)")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("file size (KB, log)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"{title}: Pareto frontier of size and top-1 (marker area ~ latency)")
    ax.legend(loc="lower right", fontsize=7)
    ax.margins(x=0.25, y=0.1)  # room for the labels beside the outermost markers
    fig.tight_layout()
    _place_labels(fig, ax, pts)
    return fig


def _candidates(r: float) -> list[tuple[float, float, str, str]]:
    """Label offsets (points) around a marker of radius r, nearest first: right, left, above, below, diagonals."""
    d = 0.7 * r + 2
    return [
        (r + 3, 0, "left", "center"), (-(r + 3), 0, "right", "center"), (0, r + 2, "center", "bottom"),
        (0, -(r + 2), "center", "top"), (d, d, "left", "bottom"), (d, -d, "left", "top"),
        (-d, d, "right", "bottom"), (-d, -d, "right", "top"),
    ]  # fmt: skip


def _place_labels(fig: Any, ax: Any, pts: list[Row]) -> None:
    """One label per spot, beside its marker: the first of ``_candidates`` that overlaps no other marker,
    no label placed before it and stays inside the axes (else the first, to the right)."""
    fig.canvas.draw()  # final limits and layout: display coordinates are known from here on
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    groups = list(_label_groups(pts).items())
    radii = [max(math.sqrt(marker_area(r) / math.pi) for r in members) for _, members in groups]
    marks = []
    for ((x, y), _), r in zip(groups, radii):
        cx, cy = ax.transData.transform((x, y))
        marks.append((cx - r * px, cy - r * px, cx + r * px, cy + r * px))
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for i, (((x, y), members), r) in enumerate(zip(groups, radii)):
        text = "\n".join(
            f"{m.name}  {m.latency_p50_ms:.2f} ms" + (" FAIL" if m.gate == "FAIL" else "") for m in members
        )
        for dx, dy, ha, va in _candidates(r):
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7)
            box = label.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            others = [m for j, m in enumerate(marks) if j != i]
            clear = not any(box.overlaps(b) for b in placed) and not any(_hits(box, m) for m in others)
            if inside and clear:
                break
            label.remove()
        else:  # nowhere clear: to the right
            dx, dy, ha, va = _candidates(r)[0]
            label = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7)
            box = label.get_window_extent(renderer)
        placed.append(box)


def _hits(box: Any, mark: tuple[float, float, float, float]) -> bool:
    return box.x0 < mark[2] and mark[0] < box.x1 and box.y0 < mark[3] and mark[1] < box.y1


def _label_groups(pts: list[Row]) -> dict[tuple[float, float], list[Row]]:
    """Rows grouped by spot (same accuracy, file size within 5%): one label block per spot."""
    groups: dict[tuple[float, float], list[Row]] = {}
    for r in sorted(pts, key=lambda r: r.size_bytes or 0):
        size_kb, acc = (r.size_bytes or 0) / 1024, (r.accuracy or 0.0) * 100
        spot = next((k for k in groups if abs(k[1] - acc) < 0.01 and abs(k[0] / size_kb - 1) < 0.05), (size_kb, acc))
        groups.setdefault(spot, []).append(r)
    return groups
