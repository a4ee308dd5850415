"""`edgerun lab report`: a self-contained HTML page (parsed here) and a Markdown summary from a real lab database.

The database holds real results: two local `edgerun bench` runs (raw samples, one with a
measured-energy block computed by the real integration code from a constant-power
trace) and one native result parsed from the recorded benchmark_model output.
"""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from edgerun.cli import main
from edgerun.lab.plan import load_plan
from edgerun.lab.store import LabStore

pytest.importorskip("matplotlib", reason="the report draws with matplotlib (the lab extra; the test extra has it)")

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "edgerun" / "demo"
FIX = REPO / "tests" / "fixtures" / "targets"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.links: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src") or "")
        for key in ("href", "src"):
            if a.get(key) and tag != "img":
                self.links.append(a[key] or "")
        self._in_cell = tag == "td" or self._in_cell

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def _native_result() -> dict:
    from edgerun.power.base import Trace
    from edgerun.profiles import load_profile
    from edgerun.targets.android import _energy_dict
    from edgerun.targets.bench import StagedArtifact
    from edgerun.targets.identity import TargetIdentity
    from edgerun.targets.native_parse import parse_benchmark_model
    from edgerun.targets.native_result import build_native_result
    from edgerun.targets.options import BenchOptions

    run = parse_benchmark_model((FIX / "outputs" / "benchmark_model.txt").read_text())
    staged = StagedArtifact(DEMO / "digits-int8.tflite", "/data/local/tmp/x.tflite", "digits-cnn-int8-tflite", "tflite",
                            "int8", "0" * 64, 347_000, {"value": 0.991})  # fmt: skip
    ident = TargetIdentity("phone", "adb://emu", "adb", "Google Pixel 8", "Tensor G3", "Linux 6.1", "Android 14",
                           "arm64-v8a", "shiba", "", "")  # fmt: skip
    t = np.arange(0, 3_000_000_001, 250_000_000, dtype=np.int64)  # 4 Hz for 3 s, 2 W throughout
    trace = Trace("android-battery", "battery", "power", t, np.full(t.size, 2.0), sample_rate_hz=4.0)
    energy = _energy_dict(trace, 1_000_000_000, 3_000_000_000, 50)
    charging = {"sources": [], "charging": False, "warning": None}
    profile = load_profile("android-arm64-phone")
    result = build_native_result(run, staged, BenchOptions(runs=50), (profile, "test"), ident, ["bm"], charging,
                                 (None, None), energy)  # fmt: skip
    result["target"] = {**ident.to_dict(), "runner": "native"}  # as bench_on_target adds it
    return result


@pytest.fixture(scope="module")
def lab_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    results = tmp / "local.json"
    args = ["bench", str(DEMO / "digits-int8.onnx"), str(DEMO / "digits-fp32.tflite"), "--in-process", "--runs", "80"]
    args += ["--min-seconds", "0.05", "--warmup", "2", "--warmup-seconds", "0", "--no-energy", "--json", str(results)]
    args.append("-q")
    assert main(args) in (0, 1, 3)
    local = json.loads(results.read_text())["results"]
    plan_text = (
        f'[lab]\nname = "report-test"\n[[artifact]]\npath = "{DEMO / "digits-int8.onnx"}"\n'
        f'[[artifact]]\npath = "{DEMO / "digits-fp32.tflite"}"\n'
        f'[[artifact]]\npath = "{DEMO / "digits-int8.tflite"}"\n'
        '[targets.here]\nurl = "local"\n[targets.phone]\nurl = "adb://emu"\n'
    )
    (tmp / "plan.toml").write_text(plan_text)
    jobs = {(j.target, j.artifact.name): j for j in load_plan(tmp / "plan.toml").jobs()}
    store = LabStore(tmp / "lab.sqlite")
    run_id = store.begin_run("report-test", str(tmp / "plan.toml"), len(jobs), 0)
    store.record(run_id, jobs[("here", "digits-int8.onnx")], local[0])
    store.record(run_id, jobs[("here", "digits-fp32.tflite")], local[1])
    store.record(run_id, jobs[("phone", "digits-int8.tflite")], _native_result())
    store.record_failure(run_id, jobs[("phone", "digits-int8.onnx")], TimeoutError("took too long"))
    store.finish_run(run_id)
    store.close()
    return tmp / "lab.sqlite"


def test_the_html_report_is_self_contained_and_has_every_section(lab_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["lab", "report", str(lab_db), "-o", str(out)]) == 0
    page = _Page()
    page.feed(out.read_text())
    assert page.tags[0] == "html" and "table" in page.tags
    assert not page.links, f"the report must not load anything: {page.links}"
    # latency and Pareto for "here"; the phone's native result has no samples and no p99 (said so); energy
    assert len(page.images) == 3 and "phone: no raw samples to draw" in out.read_text()
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = out.read_text()
    for heading in (
        "Verdicts",
        "Latency per device",
        "Pareto frontier",
        "Energy per inference",
        "Environment of every run",
    ):
        assert heading in text
    assert "digits-cnn-int8-tflite" in page.cells and "Google Pixel 8" in page.cells  # matrix and environment
    assert "TimeoutError" in page.cells  # the failed attempt is listed
    assert "measured" in page.cells  # the energy table says where figures come from


def test_the_markdown_summary_has_the_matrix_and_latencies(lab_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    main(["lab", "report", str(lab_db), "-o", str(out), "--markdown", str(tmp_path / "summary.md")])
    md = (tmp_path / "summary.md").read_text()
    assert "| artifact | here | phone |" in md
    assert "| digits-cnn-int8-tflite |  | FAIL (hard fail, soft not-valid) |" in md
    assert "| phone | digits-cnn-int8-tflite | 1 | 50 | - | - | 266.473 |" in md
    assert "TimeoutError: took too long" in md


def _store_with(tmp: Path, results: list[tuple[str, str, dict]]) -> Path:
    """A real lab database holding ``results`` as (target, artifact file name, result) jobs; no failures."""
    plan_text = '[lab]\nname = "r2"\n' + "".join(
        f'[[artifact]]\npath = "{DEMO / name}"\n' for name in dict.fromkeys(a for _, a, _ in results)
    )
    plan_text += "".join(f'[targets.{t}]\nurl = "local"\n' for t in dict.fromkeys(t for t, _, _ in results))
    (tmp / "plan.toml").write_text(plan_text)
    jobs = {(j.target, j.artifact.name): j for j in load_plan(tmp / "plan.toml").jobs()}
    store = LabStore(tmp / "lab.sqlite")
    run_id = store.begin_run("r2", str(tmp / "plan.toml"), len(jobs), 0)
    for target, artifact, result in results:
        store.record(run_id, jobs[(target, artifact)], result)
    store.finish_run(run_id)
    store.close()
    return tmp / "lab.sqlite"


@pytest.fixture(scope="module")
def small_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """Two real local results with 80 samples each: their p99s are not valid (662 needed)."""
    out = tmp_path_factory.mktemp("small") / "r.json"
    args = ["bench", str(DEMO / "digits-int8.onnx"), str(DEMO / "digits-fp32.tflite"), "--in-process", "--runs", "80"]
    args += ["--min-seconds", "0", "--warmup", "2", "--warmup-seconds", "0", "--no-energy", "--json", str(out), "-q"]
    assert main(args) in (0, 1, 3)
    return json.loads(out.read_text())["results"]


def test_empty_sections_say_none_and_warnings_show_their_text(small_results, tmp_path: Path) -> None:
    a, b = (json.loads(json.dumps(r)) for r in small_results)
    a["warnings"] = ["the device was 80% busy with other processes before this job", "cpu governor is powersave"]
    b["warnings"] = ["cpu governor is powersave"]
    a["load_at_start"] = {"loadavg": [3.5, 2.0, 1.0], "cpus": 4, "cpu_busy_pct": 80.0, "window_s": 0.5}
    db = _store_with(tmp_path, [("here", "digits-int8.onnx", a), ("here", "digits-fp32.tflite", b)])
    out = tmp_path / "r.html"
    assert main(["lab", "report", str(db), "-o", str(out)]) == 0
    text = out.read_text()
    for section in ("energy-per-inference", "failed-jobs"):  # no energy measured, no failure: "none", no bare table
        body = text.split(f'<section id="{section}">', 1)[1].split("</section>", 1)[0]
        assert "<p>none</p>" in body and "<table" not in body, body
    warnings = text.split('<section id="warnings">', 1)[1].split("</section>", 1)[0]
    assert "cpu governor is powersave" in warnings and "(2 job(s)" in warnings  # deduplicated, counted
    assert "80% busy with other processes" in warnings
    assert "80% busy (1-min load 3.5 on 4 CPUs)" in text  # load_at_start in the job table
    md = (tmp_path / "r.md").read_text()
    assert "## Failed attempts (0)\n\nnone" in md


def test_not_valid_p99s_are_starred_in_the_pareto_table(small_results, tmp_path: Path) -> None:
    db = _store_with(tmp_path, [("here", "digits-int8.onnx", small_results[0]),
                                ("here", "digits-fp32.tflite", small_results[1])])  # fmt: skip
    out = tmp_path / "r.html"
    assert main(["lab", "report", str(db), "-o", str(out)]) == 0
    pareto = out.read_text().split('<section id="size-accuracy-p99-pareto-frontier">', 1)[1].split("</section>")[0]
    page = _Page()
    page.feed(pareto)
    p99s = page.cells[3::4]  # on the frontier | size | accuracy | p99
    assert p99s and all(c.endswith("*") for c in p99s), page.cells


def test_pareto_plot_marks_not_valid_points_and_equal_accuracies_get_no_colour_bar() -> None:
    import io

    from PIL import Image  # matplotlib depends on pillow

    from edgerun.lab.plots import pareto_scatter

    points = [
        {"label": "a", "size_mb": 1.0, "p99_ms": 2.0, "accuracy": 0.986, "frontier": True, "valid": False},
        {"label": "b", "size_mb": 2.0, "p99_ms": 1.0, "accuracy": 0.986, "frontier": True, "valid": True},
    ]
    equal = Image.open(io.BytesIO(pareto_scatter("dev", points)))
    points[1]["accuracy"] = 0.9
    varied = Image.open(io.BytesIO(pareto_scatter("dev", points)))
    # a colour bar is a column of viridis colours at the right: only where the accuracies differ
    assert _has_viridis_column(varied) and not _has_viridis_column(equal)


def _has_viridis_column(image) -> bool:  # noqa: ANN001
    """A column (right quarter) that runs through dark purple to yellow: the colour bar."""
    rgb = np.asarray(image.convert("RGB")).astype(int)
    right = rgb[:, rgb.shape[1] * 3 // 4 :]
    purple = (np.abs(right - [68, 1, 84]).sum(axis=2) < 40).any(axis=0)
    yellow = (np.abs(right - [253, 231, 37]).sum(axis=2) < 40).any(axis=0)
    return bool((purple & yellow).any())


@pytest.mark.skipif(__import__("shutil").which("adb") is None, reason="the adb client is not installed (.ci/run does)")
def test_results_from_the_adb_emulator_are_marked_emulated(small_results, tmp_path: Path) -> None:
    from tool_modules import target_devices

    from edgerun.bench.report import side_by_side
    from edgerun.targets import open_target, parse_target

    devices = target_devices()
    port = devices.free_port()
    device = devices.start_adb_device(tmp_path / "sandbox", port)
    try:
        target = open_target(parse_target(device.url()))
        assert target.emulated() and target.facts() == {"emulated": True}  # ro.boot.qemu=1, as the emulator's
    finally:
        device.kill()
        devices.stop_adb_server(port)
    result = _native_result()
    result["target"].update(target.facts())
    db = _store_with(tmp_path, [("phone", "digits-int8.tflite", result)])
    out = tmp_path / "r.html"
    assert main(["lab", "report", str(db), "-o", str(out)]) == 0
    page = _Page()
    page.feed(out.read_text())
    assert "phone (emulated)" in page.cells  # the devices table
    assert out.read_text().count('<span class="emulated">(emulated)</span>') >= 1
    assert "| artifact | phone (emulated) |" in (tmp_path / "r.md").read_text()
    ok = small_results[0]
    assert "digits-cnn-int8-onnx (emulated)" in side_by_side([{**ok, "target": target.facts()}]).splitlines()[0]
    assert "(emulated)" not in side_by_side([{**ok, "target": {}}])
