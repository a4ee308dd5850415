"""Seeded fuzzing of what a user hands edgerun (issue 11, section 2): only edgerun's own errors may
come out, and the CLI answers a bad artifact with one line and exit 1, never a traceback.

(a) byte mutations (bit flips, truncation, insertion, overwrite) of the demo .onnx and .tflite files,
    loaded bare (no manifest: a manifest's sha256 would stop every mutation before the parser) through
    ``edgerun.load`` and ``edgerun info``. The engines are native code, so the mutations run in a child
    process per batch: a native crash ends the child, not pytest, and is reported with its seed;
(b) structural mutations of a demo manifest (a key dropped, a wrong type, huge numbers, NaN, junk,
    very long strings, deep nesting) -> ArtifactError only;
(c) odd inputs to Runtime.run (wrong shapes and dtypes, NaN, masked and object arrays, scalars,
    lists, dicts) -> InputError only.

Every case is derived from a fixed seed (numpy's default_rng(seed)), so a failure names a case that
fails again on the next run. A few hundred cases, well under 30 s. (numpy's generator rather than
hypothesis: the same determinism without another test dependency.)
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgerun
from edgerun.artifact import manifest_path_for, parse_manifest
from edgerun.demo import DEMO_DIR
from edgerun.errors import ArtifactError, EdgerunError, InputError

# --- (a) model bytes ----------------------------------------------------------------------

CASES_PER_MODEL = 60
MODELS = ("digits-fp32.onnx", "digits-int8.onnx", "digits-fp32.tflite", "digits-int8.tflite")

# Runs in the child: one JSON line before and after each case, so that the parent knows which
# seed a native crash happened on. Only EdgerunError may leave edgerun.load; `edgerun info` must
# exit 0, or exit 1 with exactly one line "edgerun: error: ..." that is not an internal error.
_WORKER = r"""
import contextlib, io, json, sys
from pathlib import Path
import numpy as np
import edgerun
from edgerun.cli import main
from edgerun.errors import EdgerunError

def mutate(data, rng):
    b = bytearray(data)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # flip 1..8 bits
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncate
        b = b[: int(rng.integers(1, len(b)))]
    elif kind == 2:  # insert 1..15 random bytes
        i = int(rng.integers(0, len(b)))
        b[i:i] = rng.bytes(int(rng.integers(1, 16)))
    else:  # overwrite 1..7 bytes
        i, n = int(rng.integers(0, len(b))), int(rng.integers(1, 8))
        b[i : i + n] = rng.bytes(n)
    return bytes(b)

src, out, seeds = Path(sys.argv[1]), Path(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")]
data = src.read_bytes()
def say(**kw):
    sys.__stdout__.write(json.dumps(kw) + "\n")
    sys.__stdout__.flush()
for seed in seeds:
    path = out / f"m{seed}{src.suffix}"
    path.write_bytes(mutate(data, np.random.default_rng(seed)))
    say(seed=seed, phase="start")
    problems = []
    try:
        edgerun.load(path).close()
    except EdgerunError:
        pass
    except BaseException as exc:
        problems.append(f"edgerun.load raised {type(exc).__name__}: {exc}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["info", str(path)])
    text = err.getvalue()
    if rc not in (0, 1) or (rc == 1 and (not text.startswith("edgerun: error: ") or text.count("\n") != 1
                                         or "internal error" in text)):
        problems.append(f"edgerun info exited {rc} with {text[:400]!r}")
    say(seed=seed, phase="done", problems=problems)
    path.unlink()
"""


def _run_batch(model: Path, out: Path, seeds: list[int]) -> tuple[dict[int, list[str]], int | None, str]:
    """Problems per finished seed, the seed a native crash happened on (or None), the child's stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", _WORKER, str(model), str(out), ",".join(map(str, seeds))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    done: dict[int, list[str]] = {}
    started = None
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue  # an engine's own chatter on stdout
        event = json.loads(line)
        if event["phase"] == "start":
            started = event["seed"]
        else:
            done[event["seed"]] = event["problems"]
            started = None
    crashed = started if proc.returncode != 0 else None
    if proc.returncode != 0 and crashed is None:
        raise AssertionError(f"fuzz worker failed outside a case: rc={proc.returncode}\n{proc.stderr[-3000:]}")
    return done, crashed, proc.stderr


@pytest.mark.parametrize("name", MODELS)
def test_mutated_model_files_raise_only_edgerun_errors(name: str, tmp_path: Path):
    model = DEMO_DIR / name
    seeds = list(range(CASES_PER_MODEL))
    problems: dict[int, list[str]] = {}
    crashes: list[int] = []
    finished = 0
    while seeds:  # after a native crash, go on with the seeds after it in a fresh child
        done, crashed, _ = _run_batch(model, tmp_path, seeds)
        problems.update({s: p for s, p in done.items() if p})
        finished += len(done)
        if crashed is None:
            break
        crashes.append(crashed)
        seeds = seeds[seeds.index(crashed) + 1 :]
    assert finished + len(crashes) == CASES_PER_MODEL, "the worker skipped cases"
    assert not problems, f"{name}: mutations that escaped edgerun's errors (seed: problems): {problems}"
    assert not crashes, (
        f"{name}: mutations with these seeds crashed the process natively: {crashes} (the bench worker "
        "isolates that; in-process callers of edgerun.load would die)"
    )


# --- (b) manifest structure ---------------------------------------------------------------

MANIFEST_MODEL = "digits-fp32.tflite"
BASE = json.loads(manifest_path_for(DEMO_DIR / MANIFEST_MODEL).read_text())


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into the manifest, e.g. ('preprocess', 1, 'size', 0)."""
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(BASE)


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels):
        value = [value]
    return value


FIXED_JUNK = [
    None, True, False, 0, -1, 1.5, 10**9, 2**63, 2**64 + 1, 10**30, -(2**70),
    float("nan"), float("inf"), -float("inf"), 1e308,
    "", "nan", "inf", "-Infinity", "\ud800", "x" * 100_000, "../../etc/passwd", "a\0b", "HWC", "float32",
    [], [1], [0, 0], [-1, 2**40], [None], [[1]], {}, {"op": "resize"}, {"": 1}, {"op": None},
]  # fmt: skip


def _junk(rng: np.random.Generator) -> Any:
    pick = int(rng.integers(0, 5))
    if pick == 0:
        return _deep(int(rng.integers(10, 400)))
    if pick == 1:
        return int(rng.integers(-(2**62), 2**62))
    if pick == 2:
        return rng.bytes(int(rng.integers(0, 12))).decode("latin-1")
    return FIXED_JUNK[int(rng.integers(0, len(FIXED_JUNK)))]


def mutated_manifest(seed: int) -> dict[str, Any]:
    """The demo manifest with 1..3 of: a key dropped, a value replaced by junk, a junk key added."""
    rng = np.random.default_rng(seed)
    data = copy.deepcopy(BASE)
    for _ in range(int(rng.integers(1, 4))):
        path = PATHS[int(rng.integers(0, len(PATHS)))]
        parent = data
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = ("drop", "replace", "replace", "add")[int(rng.integers(0, 4))]
            if action == "drop" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif action == "add" and isinstance(parent, dict):
                parent[rng.bytes(4).hex()] = _junk(rng)
            else:
                parent[path[-1]] = _junk(rng)
        except (KeyError, IndexError, TypeError):  # an earlier mutation removed or retyped the path
            continue
    return data


def test_mutated_manifests_raise_only_artifact_errors():
    refused = 0
    for seed in range(200):
        data = mutated_manifest(seed)
        try:
            parse_manifest(data, "m.json")
        except ArtifactError as exc:
            refused += 1
            assert "\n" not in str(exc) and str(exc).startswith("m.json: "), (seed, str(exc)[:300])
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may come out
            raise AssertionError(f"seed {seed}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    assert refused > 150  # the mutations do reach the schema (most break something it checks)


def test_mutated_manifest_files_load_or_raise_edgerun_errors(tmp_path: Path):
    """Through the file: the JSON reader, the schema, the path checks, the engine and the pipeline."""
    model = tmp_path / MANIFEST_MODEL
    model.write_bytes((DEMO_DIR / MANIFEST_MODEL).read_bytes())
    (tmp_path / "digits-test.npz").write_bytes((DEMO_DIR / "digits-test.npz").read_bytes())
    for seed in range(1000, 1040):
        manifest_path_for(model).write_text(json.dumps(mutated_manifest(seed)))  # NaN stays NaN: refused
        try:
            edgerun.load(model).close()
        except EdgerunError as exc:
            assert "\n" not in str(exc), (seed, str(exc)[:300])
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"seed {seed}: {type(exc).__name__}: {str(exc)[:300]}") from exc


# --- (c) inputs to Runtime.run ------------------------------------------------------------


@pytest.fixture(scope="module")
def runtime():
    with edgerun.load(DEMO_DIR / "digits-fp32.tflite") as rt:
        yield rt


def _masked(shape: tuple[int, ...]) -> np.ndarray:
    return np.ma.masked_array(np.zeros(shape, np.float32), mask=np.zeros(shape, bool))


DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int64", "uint64", "bool", "complex64", "object", "U3"]
SHAPES = [(8, 8), (8, 9), (1, 8, 8), (64,), (), (0, 8), (8, 0), (8, 8, 1)]
CONSTANTS = [None, 0, 1.5, "x", b"x", np.float32(1), [0.0] * 8, [[0.0] * 8] * 8, {"image": 1}, {}, []]


def odd_input(seed: int) -> Any:
    rng = np.random.default_rng(seed)
    shape = SHAPES[int(rng.integers(0, len(SHAPES)))]
    pick = int(rng.integers(0, 9))
    if pick == 0:
        return np.zeros(shape, dtype=DTYPES[int(rng.integers(0, len(DTYPES)))])
    if pick == 1:
        return np.full((8, 8), (np.nan, np.inf, -np.inf, 1e38)[int(rng.integers(0, 4))], np.float32)
    if pick == 2:
        return np.full((8, 8), (1e300, -1e300, np.nan)[int(rng.integers(0, 3))], np.float64)
    if pick == 3:
        return _masked(shape)
    if pick == 4:
        return np.zeros((8, 8), np.float32).view(np.recarray)
    if pick == 5:
        return np.zeros((8, 8), [("a", "f4")])
    if pick == 6:
        return [np.zeros((8, 8), np.float32)] * int(rng.integers(0, 3))
    if pick == 7:
        return {"other": np.zeros((8, 8), np.float32)}
    return CONSTANTS[int(rng.integers(0, len(CONSTANTS)))]


def test_odd_inputs_raise_only_input_errors(runtime):
    for seed in range(150):
        x = odd_input(seed)
        try:
            res = runtime.run(x)
        except InputError as exc:
            assert "\n" not in str(exc), (seed, str(exc))
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"seed {seed} ({type(x).__name__}): {type(exc).__name__}: {exc}") from exc
        else:  # accepted: an (8, 8) array (or a list of one) castable to float32, finite values
            assert len(res.top) == 3, seed
