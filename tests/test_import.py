"""`import edgerun` stays light, and the public surface is complete (click / httpx style)."""

from __future__ import annotations

import subprocess
import sys

import edgerun
import edgerun.errors

HEAVY = ("onnxruntime", "ai_edge_litert", "tflite_runtime", "torch", "onnx")


def test_import_edgerun_pulls_in_no_engine_and_no_torch():
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import edgerun"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if "|" in line}
    assert not imported & set(HEAVY), f"import edgerun pulled in {sorted(imported & set(HEAVY))}"


def test_all_is_complete_and_resolvable():
    public = {n for n in dir(edgerun) if not n.startswith("_")} | {"__version__"}
    assert set(edgerun.__all__) == public
    for name in edgerun.__all__:
        assert getattr(edgerun, name) is not None


def test_every_error_is_exported_and_in_the_tree():
    for name in edgerun.errors.__all__:
        cls = getattr(edgerun.errors, name)
        assert issubclass(cls, edgerun.errors.EdgerunError)
        assert getattr(edgerun, name) is cls
        assert name in edgerun.errors.__doc__, f"{name} missing from the tree drawn in errors.py"
