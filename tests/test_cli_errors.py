"""The command line's answers to mistakes: one line naming what was wrong and what was expected, exit 1
for a bad input, exit 2 with the command's own usage for a bad option, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgerun.demo import DEMO_DIR

MODEL = str(DEMO_DIR / "digits-fp32.onnx")


def edgerun(*argv: str, prelude: str = "") -> subprocess.CompletedProcess:
    code = f"{prelude}\nimport sys\nfrom edgerun.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("argv", "usage"), [(["bench"], "edgerun bench"), (["lab", "report"], "edgerun lab report")])
def test_an_unknown_option_shows_the_commands_usage(argv: list[str], usage: str) -> None:
    proc = edgerun(*argv, "--frobnicate")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"usage: {usage} ") and "unrecognized arguments: --frobnicate" in proc.stderr


def _garbage(tmp: Path) -> Path:
    (tmp / "g.npy").write_bytes(np.random.default_rng(0).bytes(300))
    return tmp / "g.npy"


def _pickled(tmp: Path) -> Path:
    np.save(tmp / "o.npy", np.array([{"a": 1}], dtype=object))  # loading it would run a pickle
    return tmp / "o.npy"


def _archive(tmp: Path) -> Path:
    np.savez(tmp / "a.npz", x=np.zeros((8, 8), np.float32))
    return tmp / "a.npz"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / "nope.npy", "does not exist"),
        (lambda tmp: tmp, "is a folder"),
        (_garbage, "not a readable .npy array"),
        (_pickled, "pickles are refused"),
        (_archive, "an .npz archive"),
    ],
    ids=["missing", "folder", "garbage", "object-array", "npz"],
)
def test_run_with_a_bad_input_file_is_one_line(tmp_path: Path, make, says: str) -> None:  # noqa: ANN001
    path = make(tmp_path)
    proc = edgerun("run", MODEL, "--input", str(path))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"edgerun: error: --input {path}: ") and says in proc.stderr
    assert proc.stderr.count("\n") == 1 and "allow_pickle" not in proc.stderr


def test_run_with_a_good_input_file(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((8, 8), np.float32))
    proc = edgerun("run", MODEL, "--input", str(tmp_path / "x.npy"))
    assert proc.returncode == 0 and f"input={tmp_path / 'x.npy'}" in proc.stdout


def test_serve_without_the_serve_extra_names_the_extra() -> None:
    # The extra is installed here; None in sys.modules makes the import system report it missing.
    proc = edgerun("serve", MODEL, prelude="import sys; sys.modules['starlette'] = None")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr == "edgerun: error: edgerun serve needs the serve extra (missing: starlette): "
        "pip install 'edgerun[serve]'\n"
    )
