"""The compression toolkit on the EMULATED arm64 board (tools/arm64_board.py): torch there, a small recipe.

    python tools/arm64_board.py wheelhouse --torch     # opt-in: aarch64 torch and the compress extra (~3 GB)
    python tools/arm64_compress.py [--keep DIR]       # start a board, install, run the small recipe, compare

What runs: a board with the torch wheelhouse mounted read-only at ``/mnt/edgerun-torch-wheels``
(no copy through the emulated sshd), ``edgerun target setup`` from the default wheelhouse, then
``pip install --no-index`` of the compress extra there (under emulation, like a user on a Pi),
then a reduced copy of recipes/examples/breast-cancer.toml (fewer epochs, INT8 ONNX only) both
on this x86-64 machine and on the board. It prints how long each part took (wall seconds,
one run each, measured on this machine under whatever load it has) and both sides' accuracies.
The test tests/test_arm64_compress.py runs the same steps (skipped unless EDGERUN_ARM64_TORCH=1).

Two facts about aarch64 Linux decide what is installed (checked with ``pip download --platform``):

* torch 2.13.0's manylinux_2_28_aarch64 wheel on PyPI is the CUDA 13 build (407 MiB): it
  requires cuda-toolkit, nvidia-cudnn-cu13, nvidia-nccl-cu13, ... (~3 GB of wheels) and its
  libtorch_python.so links libcudart.so.13 and libcudnn.so.9, so it cannot be imported without
  them. PyTorch's CPU-only aarch64 wheels are on download.pytorch.org, not PyPI.
* litert-torch (the TFLite export) requires litert-converter, which publishes no aarch64 Linux
  wheels: the compress extra as declared does not install there. The board gets the rest of
  the extra (``EXCLUDED`` says why each is left out), so the recipe exports ONNX only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import arm64_board  # noqa: E402

Say = Callable[[str], None]
# Left out of the compress extra on the board, and why.
EXCLUDED = {"litert-torch": "requires litert-converter, which has no aarch64 Linux wheels (TFLite export)"}
AARCH64 = {"platform_system": "Linux", "platform_machine": "aarch64", "sys_platform": "linux",
           "python_version": arm64_board.PYTHON, "platform_python_implementation": "CPython",
           "implementation_name": "cpython", "os_name": "posix", "extra": "compress"}  # fmt: skip


def torch_wheelhouse_dir() -> Path:
    return arm64_board._cache("EDGERUN_ARM64_TORCH_WHEELHOUSE", "arm64-torch-wheelhouse")


def compress_requirements() -> list[str]:
    """The compress extra of the installed edgerun, as it applies to aarch64 Linux, less ``EXCLUDED``."""
    out = []
    for line in metadata.distribution("edgerun").requires or []:
        req = Requirement(line)
        if req.marker is None or "extra" not in str(req.marker) or not req.marker.evaluate(AARCH64):
            continue
        if req.name not in EXCLUDED:
            req.marker = None
            out.append(str(req))
    return sorted(out)


def torch_wheelhouse(dest: Path | None = None, say: Say = print) -> Path:
    """aarch64 / CPython 3.11 wheels of ``compress_requirements()`` and everything they need
    (opt-in: ~3 GB, most of it the CUDA libraries torch's aarch64 wheel links)."""
    dest = (dest or torch_wheelhouse_dir()).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in arm64_board.manylinux_platforms() for arg in ("--platform", p)]
    want = {"requires": compress_requirements(), "platforms": platforms, "python": arm64_board.PYTHON}
    done = dest / ".edgerun-wheelhouse.json"
    if done.is_file() and json.loads(done.read_text()) == want:
        say(f"reusing the torch wheelhouse {dest}")
        return dest
    done.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--dest", str(dest),
            "--only-binary=:all:", *platforms, "--python-version", arm64_board.PYTHON, "--implementation", "cp",
            *want["requires"]]  # fmt: skip
    arm64_board._run(argv, say, "pip download (aarch64 torch and the compress extra)")
    done.write_text(json.dumps(want, indent=1) + "\n")
    size = sum(f.stat().st_size for f in dest.glob("*.whl"))
    say(f"torch wheelhouse {dest}: {len(list(dest.glob('*.whl')))} wheels, {size / 2**30:.1f} GiB")
    return dest


RECIPE = HERE.parent / "recipes" / "examples" / "breast-cancer.toml"
# Accuracy may differ between the two machines by this much per report row (torch and ONNX rows):
# the kernels differ (AVX2 here, NEON there), so training takes other rounding paths from the same
# seed. 143 test rows: one row is 0.70 points; three rows are allowed.
TOLERANCE_POINTS = 2.1


def small_recipe(dest: Path) -> Path:
    """A copy of recipes/examples/breast-cancer.toml and its byo.py in ``dest`` without its TFLite
    export (no litert-torch on aarch64), writing to ``dest/out``; the recipe's path."""
    dest.mkdir(parents=True, exist_ok=True)
    head, *exports = RECIPE.read_text().split("\n[[export]]")
    kept = [block for block in exports if 'format = "tflite"' not in block]
    assert kept, f"{RECIPE} has no export but TFLite"
    text = "\n[[export]]".join([head, *kept]).replace('out_dir = "build/compress/breast-cancer"', 'out_dir = "out"')
    assert 'out_dir = "out"' in text, f"{RECIPE}: out_dir changed, update tools/arm64_compress.py"
    (dest / "small.toml").write_text(text)
    (dest / "byo.py").write_text((RECIPE.parent / "byo.py").read_text())
    return dest / "small.toml"


def _timed(device: Any, argv: list[str], what: str, say: Say, timeout_s: float) -> tuple[Any, float]:
    start = time.monotonic()
    done = device.run(argv, timeout_s)
    took = time.monotonic() - start
    say(f"{what}: exit {done.returncode} in {took:.0f} s (wall, on the EMULATED board)")
    return done, took


def install_compress(device: Any, say: Say = print, timeout_s: float = 3600) -> float:
    """``pip install --no-index`` of ``compress_requirements()`` into the board's edgerun venv from the
    wheelhouse mounted at ``arm64_board.WHEELS_MOUNT``; the wall seconds it took."""
    argv = [device.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-index",
            "--find-links", arm64_board.WHEELS_MOUNT, "--no-compile", "--progress-bar", "off",
            *compress_requirements()]  # fmt: skip
    done, took = _timed(device, argv, "pip install (compress extra, emulated)", say, timeout_s)
    done.check("the board", "installing the compress extra")
    return took


def run_here(recipe: Path, say: Say = print) -> tuple[int, dict[str, Any], float]:
    """``edgerun compress`` on this machine: exit code, report.json, wall seconds."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgerun.cli", "compress", str(recipe)], capture_output=True,
                          text=True, cwd=recipe.parent, timeout=1800)  # fmt: skip
    took = time.monotonic() - start
    say(f"edgerun compress here: exit {done.returncode} in {took:.0f} s")
    report = recipe.parent / "out" / "report.json"
    return done.returncode, json.loads(report.read_text()) if report.is_file() else {}, took


def run_there(
    device: Any, recipe: Path, say: Say = print, timeout_s: float = 3600
) -> tuple[int, dict[str, Any], float, str]:
    """The same recipe on the board (pushed to ``<workdir>/recipe``): exit code, report.json, wall
    seconds, the end of its output."""
    for name in (recipe.name, "byo.py"):
        device.push(recipe.parent / name, f"recipe/{name}", 120)
    remote = device.path(f"recipe/{recipe.name}")
    # paths relative to the login folder, as the target gives them: the python made absolute before the cd
    script = (
        'py="$1"; case "$py" in /*) ;; *) py="$PWD/$py";; esac; '
        'cd "$(dirname "$2")" && exec "$py" -m edgerun.cli compress "$(basename "$2")"'
    )
    argv = ["sh", "-c", script, "compress", device.python, remote]
    done, took = _timed(device, argv, "edgerun compress", say, timeout_s)
    tail = (done.text + done.stderr.decode(errors="replace"))[-3000:]
    got = device.run(["sh", "-c", 'test ! -e "$1" || cat "$1"', "cat", device.path("recipe/out/report.json")], 120)
    return done.returncode, json.loads(got.text) if got.text.strip() else {}, took, tail


def compare(here: dict[str, Any], there: dict[str, Any]) -> list[tuple[str, float, float, str, str]]:
    """Per report row: name, accuracy here and there (%), gate here and there."""
    theirs = {row["name"]: row for row in there.get("rows", [])}
    return [(row["name"], 100 * row["accuracy"], 100 * theirs[row["name"]]["accuracy"], row["gate"],
             theirs[row["name"]]["gate"]) for row in here.get("rows", []) if row["name"] in theirs]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--keep", type=Path, help="keep the board's state and the recipe here (default: a temporary folder)"
    )
    args = ap.parse_args(argv)
    say = lambda line: print(f"arm64-compress: {line}", flush=True)  # noqa: E731
    from edgerun.cli import main as edgerun_main
    from edgerun.targets import open_target, parse_target

    with tempfile.TemporaryDirectory(prefix="edgerun-arm64-compress-") as tmp:
        work = (args.keep or Path(tmp)).resolve()
        try:
            root = arm64_board.build(say=say)
            house = arm64_board.wheelhouse(say=say)
            wheels = torch_wheelhouse(say=say)
            board = arm64_board.start(root, work / "board", say=say, wheels=wheels)
        except arm64_board.BoardUnavailable as exc:
            print(f"arm64-compress: error: {exc}", file=sys.stderr)
            return 1
        try:
            if edgerun_main(["target", "setup", board.url(), "--wheelhouse", str(house), "-q"]) != 0:
                return 1
            device = open_target(parse_target(board.url()))
            install_s = install_compress(device, say)
            _, import_s = _timed(device, [str(device.python), "-c", "import torch"], "import torch", say, 900)
            recipe = small_recipe(work / "recipe")
            code_here, here, here_s = run_here(recipe, say)
            code_there, there, there_s, tail = run_there(device, recipe, say)
        finally:
            board.stop()
    print(f"{'row':18} {'x86-64 %':>9} {'aarch64 %':>10} {'diff pt':>8}  gates (x86-64 / aarch64)")
    worst = 0.0
    for name, a, b, gate_a, gate_b in compare(here, there):
        worst = max(worst, abs(a - b))
        print(f"{name:18} {a:>9.2f} {b:>10.2f} {b - a:>+8.2f}  {gate_a} / {gate_b}")
    print(f"exit codes: here {code_here}, board {code_there}; largest difference {worst:.2f} points "
          f"(tolerance {TOLERANCE_POINTS}); wall s (one run each, this machine's load): pip install {install_s:.0f}, "
          f"import torch {import_s:.0f}, recipe here {here_s:.0f}, recipe on the board {there_s:.0f}")  # fmt: skip
    print("the board is EMULATED (qemu-user on this CPU): its seconds are the cost of emulation, not a real board's")
    if code_there != 0:
        print(tail, file=sys.stderr)
    return 0 if code_here == code_there == 0 and worst <= TOLERANCE_POINTS else 1


if __name__ == "__main__":
    sys.exit(main())
