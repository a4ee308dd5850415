#!/usr/bin/env python3
"""What does starting edgerun cost, against bare Python and a minimal raw-engine script?

Runs each command N times as a fresh process, round-robin (so that drift on a busy
machine hits every case alike), and reports the median CPU time (user + system, from
``os.wait4``'s rusage of that child alone) with the interquartile range and n:

- ``python -c pass``                       bare interpreter start
- ``edgerun --help``                       the command table, nothing else
- ``edgerun run DEMO.onnx`` / ``.tflite``  one inference through edgerun, the manifest's pass
                                           remembered (edgerun/schema/manifest_cache.py): every
                                           start after a manifest's first
- ``... no cache``                         the same with EDGERUN_NO_CACHE=1: the manifest goes
                                           through the full pydantic schema (a manifest's first start)
- ``raw onnx`` / ``raw tflite``            the same inference written against onnxruntime /
  LiteRT directly (scripts written to a temporary folder, printed with ``--show-scripts``)

and the ratios edgerun / raw. The children's cache folder (EDGERUN_CACHE_DIR) is in the temporary
folder, filled by the warm-up runs: the user's own cache is neither read nor written.
Goals (issue 13): ``edgerun run`` <= 1.15x the raw script, ``edgerun --help`` <= 60 ms CPU.
CPU time, not wall time: it does not count waiting for a busy machine's scheduler, so it is
steadier on a shared box (still report the machine).
``--threads N`` passes the same thread count to edgerun and to the raw scripts; without it each
uses its own default (edgerun: its thread rule; ORT: one per physical core; LiteRT: 1). With it
`edgerun run` also parses its options with argparse (~3.5 ms more CPU): only ``run ARTIFACT
[--json]`` is read without argparse (edgerun/cli/run_plain.py).

Bytecode: an installed package starts from cached .pyc files; an editable checkout run with
PYTHONDONTWRITEBYTECODE=1 (as CI and some containers set) compiles every edgerun module on every
start, tens of ms that no user pays. So the children get a bytecode cache in the temporary folder
(PYTHONPYCACHEPREFIX, filled by the warm-up runs); ``--no-pyc-cache`` keeps the environment as is.

    python tools/bench_startup.py [--runs 20] [--threads 2] [--onnx M.onnx] [--tflite M.tflite] [--json]
    python tools/bench_startup.py --imports [--runs 15]   # where edgerun's own start-up goes, per module

Before/after on a busy machine: ``--baseline DIR`` adds ``baseline run M`` cases, the same commands
run with DIR first on PYTHONPATH (DIR holds another revision's ``edgerun`` package, e.g.
``git archive REV edgerun | tar -x -C DIR``), in the same round-robin, and prints this checkout / baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "edgerun" / "demo"

# What a user who skips edgerun writes: open the model, feed one input, print the top classes.
# With an .npz (the samples `edgerun run` reads, named by the manifest) the input is its first
# sample, pre-processed as the demo's manifest says (bilinear resize to the model's image size,
# x / 16, normalize with mean 0.3052 and std 0.3247; for another model the constants are wrong but
# cost the same); without one, zeros. Softmax and the top 3 as `edgerun run` prints them.
_RAW_INPUT = """\
def first_sample(npz, shape, dtype):
    if not npz:
        return np.zeros(shape, dtype)
    with np.load(npz) as data:
        s = data["x"][0].astype(np.float32)
    for axis, n in enumerate([int(d) for d in shape if d > 1][-2:]):  # the image's sides, NCHW or NHWC
        m = s.shape[axis]
        c = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0, m - 1)
        i = np.floor(c).astype(int)
        f = (c - i).astype(np.float32)
        f = f[:, None] if axis == 0 else f
        s = np.take(s, i, axis) * (1 - f) + np.take(s, np.minimum(i + 1, m - 1), axis) * f
    return ((s / 16 - 0.3052) / 0.3247).reshape(shape).astype(dtype)


def top3(logits):
    e = np.exp(logits - logits.max())
    p = (e / e.sum()).ravel()
    for i in np.argsort(-p, kind="stable")[:3]:
        print(i, round(float(p[i]), 4))
"""

RAW_ONNX = (
    """\
import sys
import numpy as np
import onnxruntime as ort
"""
    + _RAW_INPUT
    + """\
threads = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "0" else 0
so = ort.SessionOptions()
if threads:
    so.intra_op_num_threads = threads
sess = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in inp.shape]
x = first_sample(sys.argv[3] if len(sys.argv) > 3 else "", shape, np.float32)
top3(sess.run(None, {inp.name: x})[0])
"""
)

RAW_TFLITE = (
    """\
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
"""
    + _RAW_INPUT
    + """\
threads = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2] != "0" else None
it = Interpreter(model_path=sys.argv[1], num_threads=threads)
it.allocate_tensors()
d = it.get_input_details()[0]
it.set_tensor(d["index"], first_sample(sys.argv[3] if len(sys.argv) > 3 else "", d["shape"], d["dtype"]))
it.invoke()
top3(it.get_tensor(it.get_output_details()[0]["index"]))
"""
)

# The console script `edgerun` does exactly this (pyproject's [project.scripts]); spelling it out
# keeps the measurement independent of where the venv put the script.
EDGERUN = "import sys; from edgerun.cli import main; sys.exit(main())"


def cpu_seconds(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """User + system CPU seconds of one child process (its own rusage, not the whole tree's total)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.decode(errors='replace')[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def samples_for(model: Path) -> str:
    """The bundled samples `edgerun run` would read for ``model`` (its manifest's), else ""."""
    manifest = model.with_name(model.name + ".edgerun.json")
    if not manifest.is_file():
        return ""
    name = json.loads(manifest.read_text()).get("samples")
    return str(model.parent / name) if name else ""


def cases(
    py: str, onnx: Path, tflite: Path, scripts: Path, threads: int | None, baseline: Path | None = None
) -> dict[str, list[str]]:
    (scripts / "raw_onnx.py").write_text(RAW_ONNX)
    (scripts / "raw_tflite.py").write_text(RAW_TFLITE)
    t_opt = ["--threads", str(threads)] if threads else []
    t_arg = str(threads or 0)
    base = (
        {}
        if baseline is None
        else {
            f"baseline run {onnx.name}": [py, "-c", EDGERUN, "run", str(onnx), *t_opt],
            f"baseline run {tflite.name}": [py, "-c", EDGERUN, "run", str(tflite), *t_opt],
        }
    )
    return {
        "python -c pass": [py, "-c", "pass"],
        "edgerun --help": [py, "-c", EDGERUN, "--help"],
        f"edgerun run {onnx.name}": [py, "-c", EDGERUN, "run", str(onnx), *t_opt],
        f"edgerun run {onnx.name} no cache": [py, "-c", EDGERUN, "run", str(onnx), *t_opt],
        f"raw onnx {onnx.name}": [py, str(scripts / "raw_onnx.py"), str(onnx), t_arg, samples_for(onnx)],
        f"edgerun run {tflite.name}": [py, "-c", EDGERUN, "run", str(tflite), *t_opt],
        f"edgerun run {tflite.name} no cache": [py, "-c", EDGERUN, "run", str(tflite), *t_opt],
        f"raw tflite {tflite.name}": [py, str(scripts / "raw_tflite.py"), str(tflite), t_arg, samples_for(tflite)],
        **base,  # last: main() reads the cases above by position
    }


def measure(
    commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str], baseline: Path | None = None
) -> dict[str, list[float]]:
    no_cache = {**env, "EDGERUN_NO_CACHE": "1"}
    envs = {name: no_cache if name.endswith(" no cache") else env for name in commands}
    cwds: dict[str, Path | None] = dict.fromkeys(commands)
    if baseline is not None:  # `python -c` puts the working directory first on sys.path: run there too
        path = os.pathsep.join(p for p in (str(baseline), env.get("PYTHONPATH", "")) if p)
        for name in commands:
            if name.startswith("baseline "):
                envs[name], cwds[name] = {**env, "PYTHONPATH": path}, baseline
    for name, argv in commands.items():  # compile .pyc files, fill the page cache and the manifest cache
        for _ in range(warmup):
            cpu_seconds(argv, envs[name], cwds[name])
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(cpu_seconds(argv, envs[name], cwds[name]))
    return samples


# --imports: what `edgerun run` imports beyond everything the raw TFLite script does is edgerun's own
# start-up cost, timed module by module in fresh processes after the raw script's main imports.
_PRELUDE = "import numpy, zipfile\nfrom ai_edge_litert.interpreter import Interpreter\n"
# Both children write plain lines, not JSON: importing json there would hide json (~1.2 ms) from the
# list of what `edgerun run` adds, or time it at zero.
_DUMP = "import atexit, sys\natexit.register(lambda: print('modules:', *sys.modules, file=sys.stderr))\n"
_TIME_EACH = (
    "import importlib, sys, time\n" + _PRELUDE + "out = []\n"
    "for m in sys.argv[1:]:\n"
    "    t = time.process_time_ns()\n"
    "    try:\n"
    "        importlib.import_module(m)\n"
    "    except ImportError:\n"
    "        continue\n"
    "    out.append(f'{m}={time.process_time_ns() - t}')\n"
    "print('ns:', *out)\n"
)


def import_costs(py: str, model: Path, runs: int, env: dict[str, str]) -> tuple[list[tuple[str, float]], int]:
    """Median CPU ms of each module `edgerun run MODEL` imports beyond the raw script's imports, in import
    order (a module's figure includes the submodules it pulls in first), over ``runs`` fresh processes."""

    def modules(code: str, *args: str) -> list[str]:
        done = subprocess.run([py, "-c", _DUMP + code, *args], capture_output=True, text=True, env=env, check=True)
        return done.stderr.strip().splitlines()[-1].split()[1:]

    raw = set(modules(RAW_TFLITE, str(model), "0", samples_for(model)))  # everything the raw script imports
    ours = [m for m in modules("from edgerun.cli import main\nmain()", "run", str(model)) if m not in raw]
    samples: dict[str, list[float]] = {m: [] for m in ours}
    for _ in range(runs):
        out = subprocess.run([py, "-c", _TIME_EACH, *ours], capture_output=True, text=True, env=env, check=True)
        for item in out.stdout.strip().splitlines()[-1].split()[1:]:
            m, ns = item.rsplit("=", 1)
            samples[m].append(int(ns) / 1e6)
    return [(m, statistics.median(v)) for m, v in samples.items() if v], runs


def child_env(tmp: Path, pyc_cache: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGERUN_NO_CACHE"}
    env["EDGERUN_CACHE_DIR"] = str(tmp / "edgerun-cache")
    if pyc_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def summary(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {"median_ms": statistics.median(values) * 1e3, "q1_ms": q[0] * 1e3, "q3_ms": q[2] * 1e3}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=20, help="processes per case (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed processes per case first (default 2)")
    ap.add_argument("--threads", type=int, help="the same intra-op thread count for edgerun and the raw scripts")
    ap.add_argument("--onnx", type=Path, default=DEMO / "digits-fp32.onnx", help="ONNX model (default: the demo's)")
    ap.add_argument("--tflite", type=Path, default=DEMO / "digits-fp32.tflite", help="TFLite model (default: demo)")
    ap.add_argument("--python", default=sys.executable, help="interpreter to run (default: this one)")
    ap.add_argument(
        "--no-pyc-cache", action="store_true", help="no bytecode cache of our own (default: one in a temp folder)"
    )
    ap.add_argument("--show-scripts", action="store_true", help="print the raw-engine scripts and exit")
    ap.add_argument(
        "--imports",
        action="store_true",
        help="instead: the CPU ms of each module `edgerun run` on the TFLite model imports beyond the raw script's",
    )
    ap.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also run `edgerun run` from DIR/edgerun (another revision) in the same round-robin; print the ratio",
    )
    ap.add_argument("--json", action="store_true", help="machine-readable output")
    args = ap.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "edgerun" / "__init__.py").is_file():
        ap.error(f"--baseline {args.baseline}: expected a folder holding an edgerun package (DIR/edgerun/__init__.py)")
    baseline = args.baseline.resolve() if args.baseline is not None else None
    if args.show_scripts:
        print(f"# raw_onnx.py\n{RAW_ONNX}\n# raw_tflite.py\n{RAW_TFLITE}")
        return 0
    if args.runs < 1 or args.warmup < 0:
        ap.error("--runs must be >= 1 and --warmup >= 0")
    if args.imports:
        with tempfile.TemporaryDirectory(prefix="edgerun-startup-") as tmp:
            env = child_env(Path(tmp), not args.no_pyc_cache)
            subprocess.run([args.python, "-c", EDGERUN, "run", str(args.tflite)], env=env, capture_output=True)
            costs, n = import_costs(args.python, args.tflite, args.runs, env)
        print(f"CPU ms per module beyond the raw script's imports (numpy, zipfile, LiteRT), median of n={n}:")
        for m, ms in sorted(costs, key=lambda c: -c[1]):
            if ms >= 0.05:
                print(f"  {ms:6.2f}  {m}")
        print(f"  {sum(ms for _, ms in costs):6.2f}  total (imports only; the interpreter's teardown of them is extra)")
        return 0
    with tempfile.TemporaryDirectory(prefix="edgerun-startup-") as tmp:
        onnx, tflite = args.onnx.resolve(), args.tflite.resolve()  # the baseline's cases run in its folder
        commands = cases(args.python, onnx, tflite, Path(tmp), args.threads, baseline)
        env = child_env(Path(tmp), not args.no_pyc_cache)
        samples = measure(commands, args.runs, args.warmup, env, baseline)
    stats = {name: summary(v) for name, v in samples.items()}
    names = list(commands)
    med = {name: stats[name]["median_ms"] for name in names}
    ratios = {
        "edgerun --help / python -c pass": med[names[1]] / med[names[0]],
        f"{names[2]} / {names[4]}": med[names[2]] / med[names[4]],
        f"{names[3]} / {names[4]}": med[names[3]] / med[names[4]],
        f"{names[5]} / {names[7]}": med[names[5]] / med[names[7]],
        f"{names[6]} / {names[7]}": med[names[6]] / med[names[7]],
    }
    if baseline is not None:
        ratios[f"{names[8]} / {names[4]}"] = med[names[8]] / med[names[4]]
        ratios[f"{names[9]} / {names[7]}"] = med[names[9]] / med[names[7]]
        ratios[f"{names[2]} / {names[8]}"] = med[names[2]] / med[names[8]]
        ratios[f"{names[5]} / {names[9]}"] = med[names[5]] / med[names[9]]
    machine = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "pyc_cache": "environment's" if args.no_pyc_cache else "PYTHONPYCACHEPREFIX in a temp folder",
    }
    if args.json:
        doc = {"runs": args.runs, "threads": args.threads, "machine": machine, "cases": stats, "ratios": ratios}
        print(json.dumps(doc, indent=1))
        return 0
    print(f"CPU time (user+sys) per process, median [q1-q3] of n={args.runs}, round-robin; threads={args.threads}")
    cpus = f"{machine['usable_cpus']}/{machine['logical_cpus']} CPUs"
    print(f"machine: {machine['platform']}, {cpus}, Python {machine['python']}, load {machine['load_avg']}")
    print(f"bytecode cache: {machine['pyc_cache']}")
    for name in names:
        s = stats[name]
        print(f"  {name:<36} {s['median_ms']:8.1f} ms  [{s['q1_ms']:.1f}-{s['q3_ms']:.1f}]")
    for name, r in ratios.items():
        print(f"  {name:<58} {r:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
