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
