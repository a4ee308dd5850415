"""`import edgerun` stays light, and the public surface is complete (click / httpx style)."""

from __future__ import annotations
import __future__

import importlib
import subprocess
import sys
import types
import typing

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
    # edgerun.__dir__ returns __all__, so dir(edgerun) cannot reveal an unlisted name: compare with
    # the real namespace instead, the names bound in the module plus the lazily resolved ones.
    # Not API: submodules (the import system binds them as attributes) and the helpers imported from
    # typing / __future__ (a name bound to the very object those modules export under that name).
    bound = {
        n
        for n, v in vars(edgerun).items()
        if not n.startswith("_")
        and not isinstance(v, types.ModuleType)
        and not any(vars(helper).get(n, helper) is v for helper in (typing, __future__))
    }
    public = bound | set(edgerun._LAZY) | {"__version__"}
    assert set(edgerun.__all__) == public, (
        f"unlisted: {sorted(public - set(edgerun.__all__))}, listed but absent: {sorted(set(edgerun.__all__) - public)}"
    )
    assert len(edgerun.__all__) == len(set(edgerun.__all__)), "a name is listed twice"
    for name, module in edgerun._LAZY.items():  # each lazy name is the named module's own object
        assert getattr(edgerun, name) is getattr(importlib.import_module(module), name), name
    for name in edgerun.__all__:
        assert getattr(edgerun, name) is not None


def test_every_error_is_exported_and_in_the_tree():
    for name in edgerun.errors.__all__:
        cls = getattr(edgerun.errors, name)
        assert issubclass(cls, edgerun.errors.EdgerunError)
        assert getattr(edgerun, name) is cls
        assert name in edgerun.errors.__doc__, f"{name} missing from the tree drawn in errors.py"
