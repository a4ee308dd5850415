"""The lab report in a real browser: Debian's chromium, headless, started by the test.

A copy of the page gets a script that, once the page has loaded, writes layout facts into a
``<pre id="facts">`` (every section present, every image decoded with a width, no element
wider than the window, no table running out of its section); ``--dump-dom`` reads them back.
A screenshot at 1280x2000 is kept as the test's artefact (its path is printed).
Without chromium the test skips, except under CI (``CI`` set), where it fails: .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgerun.cli import main

pytest.importorskip("matplotlib", reason="the report draws with matplotlib (the lab extra; the test extra has it)")

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"
SECTIONS = ("verdicts", "latency-per-device", "size-accuracy-p99-pareto-frontier", "energy-per-inference", "devices",
            "environment-of-every-run", "warnings", "failed-jobs")  # fmt: skip
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
  for (const img of document.images) facts.images.push({alt: img.alt, natural: img.naturalWidth,
                                                         shown: Math.round(img.getBoundingClientRect().width)});
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


def test_the_report_lays_out_in_a_real_browser(tmp_path: Path) -> None:
    chromium = _chromium()
    (tmp_path / "plan.toml").write_text(PLAN)
    db = tmp_path / "lab.sqlite"
    assert main(["lab", "run", str(tmp_path / "plan.toml"), "--db", str(db), "-q"]) == 0
    report = tmp_path / "report.html"
    assert main(["lab", "report", str(db), "-o", str(report)]) == 0

    shot = tmp_path / "report.png"
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
    assert len(facts["images"]) == 2 and all(i["natural"] > 0 and i["shown"] > 0 for i in facts["images"]), facts
    assert facts["wide"] == [] and facts["overflowing_tables"] == [], facts
