"""The compress report's numbers and picture: frontiers, the plot, interleaved latency, INT4 parameter
counts, and the digits' batched resize. No training; a few seconds."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgerun.compress.data import _bilinear_matrix, to_scaled
from edgerun.compress.latency import interleaved
from edgerun.compress.report import Row, figure, format_table, pareto, plot_frontier

REPO = Path(__file__).resolve().parent.parent


def _row(name: str, size_kb: float, acc: float, ms: float, gate: str = "pass", kept: bool = True) -> Row:
    return Row(name, "onnx", "fp32", "-", 1000, 1000, int(size_kb * 1024), acc, 0.0, ms, gate, kept, 0.0, 200)


ROWS = [
    _row("small", 10, 0.95, 0.30),
    _row("big-fast", 40, 0.95, 0.10),  # on the 3-axis frontier only by latency: no better on size or top-1
    _row("big-best", 40, 0.98, 0.40),
    _row("tiny-failed", 5, 0.99, 0.05, gate="FAIL"),  # would dominate everything, but failed its gate
]


def test_plot_frontier_is_computed_on_the_two_plotted_axes():
    assert pareto(ROWS) == {"small", "big-fast", "big-best"}  # size, top-1 and latency
    assert [r.name for r in plot_frontier(ROWS)] == ["small", "big-best"]  # size and top-1: what is drawn
    fig = figure(ROWS, "t")
    dashed = next(line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--")
    assert list(dashed.get_xdata()) == [10, 40] and list(dashed.get_ydata()) == [95, 98]


def test_failed_artifacts_are_drawn_apart_and_never_on_a_frontier():
    assert "tiny-failed" not in pareto(ROWS) | {r.name for r in plot_frontier(ROWS)}
    ax = figure(ROWS, "t").axes[0]
    passed, failed = ax.collections
    assert passed.get_label() == "passed" and failed.get_label() == "failed its gate"
    assert failed.get_offsets().tolist() == [[5.0, 99.0]] and len(passed.get_offsets()) == 3
    assert "tiny-failed  0.05 ms FAIL" in [t.get_text() for t in ax.texts]
    assert "passed gates only" in format_table(ROWS)  # the footnote says so


# The demo recipe's spread of files: several at one accuracy a few KB apart, two at one spot.
CROWDED = [
    _row(name, kb, acc, ms, gate)
    for name, kb, acc, ms, gate in [
        ("teacher-fp32.onnx", 1072, 0.9867, 0.97, "pass"),
        ("student-fp32.onnx", 292, 0.9844, 0.34, "pass"),
        ("pruned-fp32.onnx", 149, 0.9867, 0.26, "pass"),
        ("pruned-fp32.tflite", 152, 0.9867, 0.16, "pass"),
        ("pruned-int8.onnx", 94, 0.9844, 0.30, "pass"),
        ("pruned-mixed.onnx", 91, 0.9889, 0.27, "pass"),
        ("pruned-qat4-int4.onnx", 52, 0.9867, 0.26, "pass"),
        ("pruned-int8.tflite", 72, 0.9867, 0.11, "pass"),
        ("pruned-int4.onnx", 52, 0.9756, 0.26, "pass"),
        ("pruned-int4.tflite", 52, 0.9756, 0.38, "FAIL"),
    ]
]


@pytest.mark.parametrize("rows", [ROWS, CROWDED], ids=["sparse", "crowded"])
def test_labels_sit_beside_their_markers_without_overlapping(rows):
    """Each label's box starts just past its marker's edge (radius + 2..3 points: right, left, above, below or
    diagonal), and no two labels overlap."""
    fig = figure(rows, "t")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72
    boxes = []
    for text in ax.texts:
        first = text.get_text().split("\n")[0].split("  ")[0]
        row = next(r for r in rows if r.name == first)
        cx, cy = ax.transData.transform(((row.size_bytes or 0) / 1024, row.accuracy * 100))
        box = text.get_window_extent(renderer)
        radius = max(math.sqrt((40 + 60 * r.latency_p50_ms) / math.pi) for r in rows if r.name in text.get_text())
        nearest_x = min(max(cx, box.x0), box.x1)
        nearest_y = min(max(cy, box.y0), box.y1)
        distance = math.hypot(nearest_x - cx, nearest_y - cy) / px_per_pt  # points
        assert radius <= distance <= radius + 4, (first, distance, radius)
        boxes.append(box)
    names = [line.split("  ")[0] for t in ax.texts for line in t.get_text().split("\n")]
    assert sorted(names) == sorted(r.name for r in rows)  # every file labelled once (a spot's files share a label)
    for i, a in enumerate(boxes):
        assert not any(a.overlaps(b) for b in boxes[i + 1 :]), ax.texts[i].get_text()


def test_table_states_the_latency_sample_count():
    assert "200 runs per file interleaved" in format_table(ROWS)


def test_latency_runs_are_interleaved_and_counted(tmp_path):
    """Two byte-identical files are timed in alternating rounds, the order rotating, n runs each."""
    import edgerun

    paths = []
    for name in ("a", "b"):
        for suffix in ("", ".edgerun.json"):
            shutil.copy(REPO / "edgerun" / "demo" / f"digits-int8.onnx{suffix}", tmp_path / f"{name}.onnx{suffix}")
        paths.append(tmp_path / f"{name}.onnx")
    calls: list[str] = []

    class Recorded:  # the real runtime, with each call's file noted
        def __init__(self, path: Path):
            self.rt, self.name = edgerun.load(path, threads=1), path.stem

        def run(self, x):
            calls.append(self.name)
            return self.rt.run(x)

    raw = np.load(REPO / "edgerun" / "demo" / "digits-test.npz")["x"][:5]
    timed = interleaved(paths, raw, rounds=3, per_round=2, load=Recorded)
    measured = calls[2 * 10 :]  # after the warm-up runs
    assert measured == ["a"] * 2 + ["b"] * 2 + ["b"] * 2 + ["a"] * 2 + ["a"] * 2 + ["b"] * 2
    assert {p.stem: (t.n, t.rounds) for p, t in timed.items()} == {"a": (6, 3), "b": (6, 3)}
    assert all(t.p25_ms <= t.p50_ms <= t.p75_ms for t in timed.values())


# --- the digits' resize: two matmuls with precomputed matrices ----------------------------------


def test_batched_resize_equals_the_einsum_it_replaced_and_torch():
    """Tolerance: 1e-6 absolute on values in 0..1 (float32 sums of at most four products, reordered)."""
    from sklearn.datasets import load_digits

    raw = load_digits().images[:100].astype(np.float32)
    fast = to_scaled(raw, 64)
    rh = _bilinear_matrix(8, 64)
    einsum = np.einsum("ih,...hw,jw->...ij", rh, raw, rh).astype(np.float32) / np.float32(16)
    np.testing.assert_allclose(fast, einsum, rtol=0, atol=1e-6)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(raw)[:, None], size=(64, 64), mode="bilinear", align_corners=False
    )[:, 0].numpy() / np.float32(16)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-6)


# --- INT4 parameter counts ----------------------------------------------------------------


def test_int4_parameter_count_is_the_weights_without_block_padding(tmp_path):
    """MatMulNBits pads K up to whole blocks of 32; a 20-input layer is 20 x N int4 weights, not 32 x N."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime.quantization")
    from edgerun.artifact import inspect_model
    from edgerun.compress.export import export_onnx
    from edgerun.compress.quantize import onnx_int4

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 40), torch.nn.ReLU(), torch.nn.Linear(40, 7))
    fp32 = export_onnx(model, (20,), tmp_path / "m.onnx")
    int4 = inspect_model(onnx_int4(fp32, tmp_path / "m4.onnx"))
    assert int4.parameter_dtypes["int4"] == 20 * 40 + 40 * 7  # the model's true weight count
    assert inspect_model(fp32).parameter_count == sum(p.numel() for p in model.parameters())
