"""The lab report in a real browser: Debian's chromium, headless, started by the test.

A copy of the page gets a script that, once the page has loaded, writes layout facts into a
``<pre id="facts">`` (every section present, every image decoded with a width, no element
wider than the window, no table running out of its section); ``--dump-dom`` reads them back.
It also records, per section, whether it has content or says "none", every table against the window's
width, and each figure's outer 3-pixel frame (ink there is a label running off the figure: clipped).
A screenshot at 1280x2000 is kept as the test's artefact: in $EDGERUN_ARTEFACTS when set (.ci/run sets it
to a folder CI keeps), else in the test's tmp folder; its path is printed.
Without chromium the test skips, except under CI (``CI`` set), where it fails: .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgerun.cli import main

pytest.importorskip("matplotlib", reason="the report draws with matplotlib (the lab extra; the test extra has it)")

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"
SECTIONS = ("verdicts", "latency-per-device", "size-accuracy-p99-pareto-frontier", "energy-per-inference", "devices",
            "lab-hosts-and-places", "environment-of-every-run", "warnings", "failed-jobs")  # fmt: skip
PLAN = f"""
[lab]
name = "browser"
[bench]
runs = 60
min_seconds = 0
warmup = 2
warmup_seconds = 0
no_energy = true
in_process = true
[[artifact]]
path = "{DEMO / "digits-int8.onnx"}"
[[artifact]]
path = "{DEMO / "digits-fp32.tflite"}"
[targets.here]
url = "local"
"""

FACTS = """<script>
addEventListener("load", () => {
  const width = document.documentElement.clientWidth;
  const facts = {width, sections: [...document.querySelectorAll("section")].map(s => s.id), wide: [], images: [],
                 overflowing_tables: []};
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && !el.closest(".wide")) facts.wide.push(el.tagName + " " + Math.round(box.right));
  }
  for (const img of document.images) {
    // ink on the image's outer 3-pixel frame: a label running off the figure's edge (clipped) leaves some
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let ink = 0;
    for (let y = 0; y < canvas.height; y++) for (let x = 0; x < canvas.width; x++) {
      if (x > 2 && y > 2 && x < canvas.width - 3 && y < canvas.height - 3) continue;
      const i = 4 * (y * canvas.width + x);
      if (px[i] < 235 || px[i + 1] < 235 || px[i + 2] < 235) ink++;
    }
    const box = img.getBoundingClientRect();
    facts.images.push({alt: img.alt, natural: img.naturalWidth, shown: Math.round(box.width), edge_ink: ink,
                       inside: box.left >= 0 && box.right <= width + 1,
                       aspect_kept: Math.abs(box.height / box.width - img.naturalHeight / img.naturalWidth) < 0.02});
  }
  facts.content = {};  // section id -> what follows its heading: "content", "none" or "empty"
  for (const s of document.querySelectorAll("section")) {
    const text = [...s.children].filter(c => c.tagName !== "H2").map(c => c.textContent.trim()).join(" ").trim();
    const media = s.querySelector("img, li, table tr + tr");
    facts.content[s.id] = text === "none" ? "none" : (media || text) ? "content" : "empty";
  }
  facts.tables_past_window = [...document.querySelectorAll("table")]
    .filter(t => t.getBoundingClientRect().right > width + 1).map(t => t.closest("section").id);
  facts.scrolling = [...document.querySelectorAll(".wide")]
    .filter(h => h.scrollWidth > h.clientWidth + 1).map(h => h.closest("section").id);
  for (const table of document.querySelectorAll("table")) {
    const holder = table.closest(".wide") || table.closest("section");
    if (table.getBoundingClientRect().right > holder.getBoundingClientRect().right + 1)
      facts.overflowing_tables.push(holder.id || holder.className);
  }
  const pre = document.createElement("pre");
  pre.id = "facts";
  pre.textContent = JSON.stringify(facts);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-headless-shell")
    if found is None:
        reason = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it: missing there is a broken install, not a pass
        pytest.skip(reason)
    return found


def _browser(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,2000", *args]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _add_labgrid_job_and_failure(db: Path) -> None:
    """A second lab host's job on a labgrid place (the ``target.labgrid`` block a labgrid job stores, a power
    cycle among its warnings) and a failed attempt, so the per-host and per-place columns have both kinds."""
    from edgerun.lab.store import LabStore

    store = LabStore(db)
    try:
        first = store.results()[0]
        result = json.loads(json.dumps(first.result))
        result["target"] = {**(result.get("target") or {}), "labgrid": {
            "coordinator": "lab-coordinator:20408", "place": "wearable-shelf-2-usb-hub-4-port-3",
            "exporter": "lab-b-exporter", "identity": "lab-b/ci", "lab_host": "lab-b.example.org"}}  # fmt: skip
        result["power_cycles"] = [{"place": "wearable-shelf-2-usb-hub-4-port-3", "resource": "NetworkPowerPort",
                                   "reason": "DutTimeout: no m-ready", "at_utc": first.created_utc,
                                   "cycle_s": 2.3, "retry_ok": True}]  # fmt: skip
        result["warnings"] = [
            *result.get("warnings", []),
            "the board stopped answering (DutTimeout); place "
            "wearable-shelf-2-usb-hub-4-port-3 was power-cycled through labgrid and the job retried once",
        ]
        run_id = store.begin_run("browser", "plan.toml", 1, 0)
        job = SimpleNamespace(key="labgrid-job", plan="browser", target="wearable", artifact_sha256="0" * 64,
                              threads=None, providers=None, engine=None, repetition=1,
                              artifact=SimpleNamespace(name="digits-int8.onnx"))  # fmt: skip
        store.record(run_id, job, result)
        store.record_failure(
            run_id,
            SimpleNamespace(**{**vars(job), "key": "failed-job"}),
            TimeoutError("the board at rfc2217://lab-b:4001 did not answer name% within 60 s"),
        )
        store.finish_run(run_id)
    finally:
        store.close()


def _artefact_dir(tmp_path: Path) -> Path:
    """Where the screenshot is kept: $EDGERUN_ARTEFACTS (CI sets it to a folder it keeps), else the test's tmp."""
    where = Path(os.environ.get("EDGERUN_ARTEFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def test_the_report_lays_out_in_a_real_browser(tmp_path: Path) -> None:
    chromium = _chromium()
    (tmp_path / "plan.toml").write_text(PLAN)
    db = tmp_path / "lab.sqlite"
    assert main(["lab", "run", str(tmp_path / "plan.toml"), "--db", str(db), "-q"]) == 0
    _add_labgrid_job_and_failure(db)
    report = tmp_path / "report.html"
    assert main(["lab", "report", str(db), "-o", str(report)]) == 0

    shot = _artefact_dir(tmp_path) / "lab-report.png"
    _browser(chromium, tmp_path, f"--screenshot={shot}", report.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"\nscreenshot of the lab report: {shot}")

    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", FACTS + "</body>"))
    dom = _browser(chromium, tmp_path, "--dump-dom", probe.as_uri()).stdout
    match = re.search(r'<pre id="facts">(.*?)</pre>', dom, re.S)
    assert match, dom[-2000:]
    facts = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert facts["width"] >= 1200 and facts["sections"] == list(SECTIONS)
    # latency and Pareto figures for "here" and for the labgrid place's "wearable"
    assert len(facts["images"]) == 4 and all(i["natural"] > 0 and i["shown"] > 0 for i in facts["images"]), facts
    assert facts["wide"] == [] and facts["overflowing_tables"] == [], facts
    # every section has content or says "none" (no energy was measured: that one says so)
    assert set(facts["content"].values()) <= {"content", "none"}, facts["content"]
    assert facts["content"]["energy-per-inference"] == "none" and facts["content"]["failed-jobs"] == "content"
    # tables fit the window: nothing past its right edge, nothing that needs sideways scrolling
    assert facts["tables_past_window"] == [] and facts["scrolling"] == [], facts
    # plot labels are not clipped: no ink on any figure's edge; each figure shown whole and undistorted
    for image in facts["images"]:
        assert image["edge_ink"] == 0 and image["inside"] and image["aspect_kept"], image
    page = report.read_text()
    for text in ("lab-b.example.org", "wearable-shelf-2-usb-hub-4-port-3", "lab-b-exporter", "power-cycled"):
        assert text in page, text
