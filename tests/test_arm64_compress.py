"""The compression toolkit on the emulated arm64 board (tools/arm64_compress.py).

The slow test is opt-in, skipped unless EDGERUN_ARM64_TORCH=1 (also under CI): it needs the
~3 GB aarch64 torch wheelhouse (PyPI's torch 2.13.0 for aarch64 is the CUDA 13 build and cannot
be imported without its CUDA libraries) and runs pip and the recipe under emulation; docs/lab.md
("The compression toolkit on the board") gives the times measured here. It installs the
compress extra on the board (all but litert-torch, which has no aarch64 wheels), runs a copy of
recipes/examples/breast-cancer.toml without its TFLite export both here and there, and checks
that every gate passes on both machines and every report row's accuracy agrees within the
tool's stated tolerance.

The fast tests check what the tool derives from this edgerun: the requirements it installs
and the recipe copy it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tool_modules import tool

compress_tool = tool("arm64_compress")


def test_the_board_gets_the_compress_extra_but_litert_torch() -> None:
    reqs = compress_tool.compress_requirements()
    names = {r.split("=")[0].split(">")[0].split("<")[0] for r in reqs}
    assert "torch==2.13.0" in reqs  # the pin, as declared
    assert {"onnx", "scikit-learn", "torch-pruning"} <= names
    assert "litert-torch" not in names and "executorch" not in names  # no aarch64 wheels; x86-64-only marker
    assert all(";" not in r for r in reqs)  # markers evaluated for aarch64, not passed on


def test_the_small_recipe_is_the_example_without_its_tflite_export(tmp_path: Path) -> None:
    recipe = compress_tool.small_recipe(tmp_path)
    text, original = recipe.read_text(), compress_tool.RECIPE.read_text()
    assert 'format = "tflite"' in original and 'format = "tflite"' not in text
    assert text.count("[[step]]") == original.count("[[step]]") and text.count("[[export]]") >= 1
    assert (tmp_path / "byo.py").read_text() == (compress_tool.RECIPE.parent / "byo.py").read_text()
    done = subprocess.run([sys.executable, "-m", "edgerun.cli", "compress", "--check", str(recipe)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "valid recipe 'breast-cancer'" in done.stdout


@pytest.mark.slow
def test_small_recipe_on_the_emulated_arm64_board(tmp_path: Path) -> None:
    if os.environ.get("EDGERUN_ARM64_TORCH") != "1":
        pytest.skip("opt-in: EDGERUN_ARM64_TORCH=1 (a ~3 GB wheelhouse, tens of minutes under emulation)")
    board_tool = compress_tool.arm64_board
    reason = board_tool.missing_reason(build=True)
    if reason:
        pytest.fail(reason)  # asked for explicitly: a missing tool is an error, not a skip
    from edgerun.cli import main
    from edgerun.targets import open_target, parse_target

    root = board_tool.build(say=print)
    house = board_tool.wheelhouse(say=print)
    wheels = compress_tool.torch_wheelhouse(say=print)
    board = board_tool.start(root, tmp_path / "board", say=print, wheels=wheels)
    try:
        assert main(["target", "setup", board.url(), "--wheelhouse", str(house), "-q"]) == 0
        device = open_target(parse_target(board.url()))
        compress_tool.install_compress(device, print)
        recipe = compress_tool.small_recipe(tmp_path / "recipe")
        code_here, here, _ = compress_tool.run_here(recipe, print)
        code_there, there, _, tail = compress_tool.run_there(device, recipe, print)
    finally:
        board.stop()
    assert code_here == 0, "the recipe failed on this machine"
    assert code_there == 0, tail
    rows = compress_tool.compare(here, there)
    assert [r[0] for r in rows] == [row["name"] for row in here["rows"]]  # every row on both machines
    for name, acc_here, acc_there, gate_here, gate_there in rows:
        assert gate_here == gate_there and gate_here in ("pass", "-"), (name, gate_here, gate_there)
        assert abs(acc_here - acc_there) <= compress_tool.TOLERANCE_POINTS, (name, acc_here, acc_there)
