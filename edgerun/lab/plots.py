"""The report's figures as PNG bytes (matplotlib, the ``lab`` extra; imported here only).

The Agg backend renders without a display; every figure is returned as bytes and
embedded in the HTML as a data: URI, so the report opens from a file with no network.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["energy_bars", "latency_boxes", "pareto_scatter", "require_matplotlib"]


def require_matplotlib() -> Any:
    """matplotlib.pyplot with the Agg backend, or LabError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from edgerun.errors import LabError

        raise LabError("`edgerun lab report` draws with matplotlib: pip install 'edgerun[lab]'") from exc
    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # constrained layout makes room inside the figure; "tight" also takes in labels beside points
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight", pad_inches=0.1)
    require_matplotlib().close(fig)
    return buf.getvalue()


def latency_boxes(device: str, labels: Sequence[str], samples_ms: Sequence[np.ndarray]) -> bytes:
    """Box plots (whiskers 1st..99th percentile, no outlier dots) of end-to-end latency per artifact."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(labels)), layout="constrained")
    ax.boxplot(list(samples_ms), orientation="horizontal", whis=(1, 99), showfliers=False)  # matplotlib >= 3.10
    ax.set_yticks(range(1, len(labels) + 1), labels=list(labels), fontsize=8)
    ax.set_xlabel("end-to-end latency (ms); box p25-p75, whiskers p1-p99")
    ax.set_title(f"latency on {device}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def pareto_scatter(device: str, points: Sequence[dict[str, Any]]) -> bytes:
    """Size (MB) against p99 (ms), coloured by accuracy; the Pareto frontier ringed and joined.

    A point whose ``valid`` is False (a p99 from too few samples) is drawn hollow, with a legend
    entry saying so. Accuracies that are all equal get one colour and a legend entry instead of a
    colour bar (a bar from 0.982 to 0.990 for one value suggests a spread that is not there).
    """
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")  # room for every label, nothing clipped
    acc = np.array([p["accuracy"] if p["accuracy"] is not None else np.nan for p in points], dtype=float)
    known = acc[~np.isnan(acc)]
    varies = known.size > 1 and float(known.max()) > float(known.min())
    cmap = plt.get_cmap("viridis")
    low, high = (float(known.min()), float(known.max())) if varies else (0.0, 1.0)
    norm = plt.Normalize(low, high)

    def colour(a: float) -> Any:
        if np.isnan(a):
            return "#999999"
        return cmap(norm(a)) if varies else cmap(0.35)

    xs, ys = [p["size_mb"] for p in points], [p["p99_ms"] for p in points]
    colours = [colour(a) for a in acc]
    valid = [p.get("valid", True) for p in points]
    for want, hollow in ((True, False), (False, True)):
        idx = [i for i, v in enumerate(valid) if v is want]
        if not idx:
            continue
        label = "p99 not valid (too few samples), hollow" if hollow else None
        ax.scatter([xs[i] for i in idx], [ys[i] for i in idx], s=40, label=label, linewidths=1.5,
                   facecolors="none" if hollow else [colours[i] for i in idx],
                   edgecolors=[colours[i] for i in idx])  # fmt: skip
    ax.margins(x=0.3, y=0.15)  # room for the labels beside the points
    front = sorted((p for p in points if p["frontier"]), key=lambda p: p["size_mb"])
    ax.plot([p["size_mb"] for p in front], [p["p99_ms"] for p in front], "r--", lw=1)
    ax.scatter([p["size_mb"] for p in front], [p["p99_ms"] for p in front], s=140, facecolors="none", edgecolors="r",
               label="Pareto frontier")  # fmt: skip
    for p in points:
        ax.annotate(p["label"], (p["size_mb"], p["p99_ms"]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                    annotation_clip=False)  # fmt: skip
    if varies:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="accuracy")
    elif known.size:
        ax.scatter([], [], s=40, color=cmap(0.35), label=f"accuracy {known[0]:.4g} (all points)")
    ax.legend(fontsize=7, loc="best")
    ax.set_xlabel("model size (MB)")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_title(f"size / accuracy / p99 on {device} (ringed: Pareto frontier)", fontsize=10)
    ax.grid(alpha=0.3)
    return _png(fig)


def energy_bars(labels: Sequence[str], net_mj: Sequence[float], gross_mj: Sequence[float]) -> bytes:
    """Measured energy per inference (mJ): net (idle subtracted) and gross bars per job group."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * len(labels)), layout="constrained")
    y = np.arange(len(labels))
    ax.barh(y - 0.2, gross_mj, height=0.4, label="gross", color="#bbb")
    ax.barh(y + 0.2, [v if v is not None else 0 for v in net_mj], height=0.4, label="net (idle subtracted)")
    ax.set_yticks(y, labels=list(labels), fontsize=8)
    ax.set_xlabel("energy per inference (mJ), measured")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
