"""``edgerun doctor`` survives an engine that crashes on import: real child processes, real signals.

The crash is made real by a directory first on PYTHONPATH that holds a package named like
the engine (``onnxruntime``, ``ai_edge_litert``) whose import kills its own process, as an
engine whose CPU detection trips over an emulator's /proc/cpuinfo does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgerun.doctor import diagnose, render

SEGV_ON_IMPORT = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
ABORT_ON_IMPORT = "import os\nos.abort()\n"


# ExecuTorch's probe imports torch (seconds of CPU): the tests about other engines' crashes make it
# absent, so that each of their doctor runs does not pay for it. The tests below probe it for real.
ABSENT = "raise ImportError('absent in this test')\n"


def crashing_path(root: Path, packages: dict[str, str]) -> str:
    """A PYTHONPATH value whose first directory shadows each named package with `code` (ExecuTorch
    with an ImportError unless named)."""
    for name, code in {"executorch": ABSENT, **packages}.items():
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(code)
    return os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])


def doctor(pythonpath: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`edgerun doctor` in its own process, so that only its children see the crashing engine."""
    code = "import sys\nfrom edgerun.cli import main\nsys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": pythonpath}
    return subprocess.run(
        [sys.executable, "-c", code, "doctor", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_an_engine_that_segfaults_on_import_is_reported_and_the_others_still_are(tmp_path: Path):
    path = crashing_path(tmp_path, {"onnxruntime": SEGV_ON_IMPORT})
    proc = doctor(path, "--json")
    assert proc.returncode == 0, proc.stderr  # a crashing engine is a finding, not a doctor failure
    report = json.loads(proc.stdout)
    engines = {e["engine"]: e for e in report["engines"]}
    onnx = engines["onnx"]
    assert onnx["available"] is False and onnx["version"] is None and onnx["providers"] == []
    assert onnx["reason"].startswith("crashed with SIGSEGV while importing onnxruntime")
    assert onnx["crash"] == {"signal": "SIGSEGV", "exit_status": -11, "phase": "importing onnxruntime"}
    # LiteRT was probed in its own child: its answer is the real one, unharmed by onnxruntime's crash.
    assert engines["litert"]["crash"] is None and engines["litert"]["available"]
    assert report["probes"] and report["memory"] and report["profile"]["name"]  # the rest of the report

    text = doctor(path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    onnx_line = next(line for line in lines if line.split()[1:2] == ["onnx"])
    assert onnx_line.startswith("  NO  onnx") and "crashed with SIGSEGV while importing onnxruntime" in onnx_line
    assert any(line.startswith("  ok  litert") for line in lines)
    assert any(line.startswith("power probes") for line in lines) and any(line.startswith("memory") for line in lines)


def test_each_engine_crashing_its_own_way_is_reported_apart(tmp_path: Path):
    path = crashing_path(tmp_path, {"onnxruntime": SEGV_ON_IMPORT, "ai_edge_litert": ABORT_ON_IMPORT})
    proc = doctor(path, "--json")
    assert proc.returncode == 0, proc.stderr
    engines = {e["engine"]: e for e in json.loads(proc.stdout)["engines"]}
    assert engines["onnx"]["crash"]["signal"] == "SIGSEGV"
    assert engines["litert"]["available"] is False and engines["litert"]["crash"]["signal"] == "SIGABRT"
    assert "crashed with SIGABRT while importing the LiteRT interpreter" in engines["litert"]["reason"]


def test_an_engine_that_exits_on_import_names_its_status_and_last_words(tmp_path: Path):
    path = crashing_path(tmp_path, {"onnxruntime": "import os, sys\nsys.stderr.write('no AVX here\\n')\nos._exit(7)\n"})
    proc = doctor(path, "--json")
    onnx = next(e for e in json.loads(proc.stdout)["engines"] if e["engine"] == "onnx")
    assert onnx["available"] is False and onnx["crash"]["exit_status"] == 7 and onnx["crash"]["signal"] is None
    assert onnx["reason"].startswith("exited with status 7 while importing onnxruntime")
    assert "no AVX here" in onnx["reason"]


def test_doctor_in_this_process_imports_no_engine():
    """The engines are probed in children: the doctor's own process never loads them."""
    code = (
        "import sys\nfrom edgerun.doctor import diagnose\nreport = diagnose()\n"
        "print(sorted(m for m in ('onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'executorch', 'torch')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return diagnose()  # one real probe of every engine for the tests below (ExecuTorch's imports torch)


def test_healthy_engines_are_reported_as_before(report: dict[str, Any]):
    engines = {e["engine"]: e for e in report["engines"]}
    if not engines["onnx"]["available"]:
        pytest.skip(f"onnxruntime is not usable here: {engines['onnx']['reason']}")
    assert "CPUExecutionProvider" in engines["onnx"]["providers"] and engines["onnx"]["crash"] is None
    assert engines["onnx"]["version"] and "ok  onnx" in render(report)


def test_executorch_is_probed_in_a_child_like_the_others(tmp_path: Path):
    # the shadowing package stands in for an ExecuTorch (or the torch it loads) that dies on import
    path = crashing_path(tmp_path, {"executorch": SEGV_ON_IMPORT})
    proc = doctor(path, "--json")
    assert proc.returncode == 0, proc.stderr
    engines = {e["engine"]: e for e in json.loads(proc.stdout)["engines"]}
    assert list(engines) == ["onnx", "litert", "executorch"]
    et = engines["executorch"]
    assert et["available"] is False and et["crash"]["signal"] == "SIGSEGV"
    assert et["reason"].startswith("crashed with SIGSEGV while importing ExecuTorch's runtime")
    assert engines["litert"]["crash"] is None and engines["onnx"]["crash"] is None


def test_an_installed_executorch_lists_its_backends(report: dict[str, Any]):
    et = next(e for e in report["engines"] if e["engine"] == "executorch")
    if not et["available"]:
        reason = f"ExecuTorch is not usable here: {et['reason']}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI installs the compress extra: a missing one is a broken install")
        pytest.skip(reason)
    assert et["version"] and et["crash"] is None
    assert "XnnpackBackend" in et["providers"] and et["providers"][-1] == "CPU"  # the demo .pte's delegate
    assert any(line.startswith("  ok  executorch") for line in render(report).splitlines())
