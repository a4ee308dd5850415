"""Crash isolation: real child processes that segfault, abort, hang or babble; a model that hangs ORT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgerun.bench.worker import WorkerRequest, run_in_worker
from edgerun.cli import EXIT_FAIL, main
from edgerun.demo import DEMO_DIR

REQUEST = WorkerRequest(
    path="model.onnx",
    config={"min_runs": 10, "min_seconds": 0, "warmup_runs": 0, "warmup_seconds": 0, "energy": False},
    budget={"soft_ms": 100, "hard_ms": 10, "percentile": 99},
    profile="generic-x86_64-linux",
    profile_reason="test",
)


def _child(code: str):
    """A child command that runs `code` with the result pipe's fd in `fd`."""
    return lambda fd: [sys.executable, "-c", f"fd = {fd}\n{code}"]


def _phase(name: str) -> str:
    """Child code that reports a phase on the result pipe, as the real worker does before each step."""
    return f"import json, os\nos.write(fd, (json.dumps({{'type': 'phase', 'phase': {name!r}}}) + '\\n').encode())\n"


def test_segfaulting_worker_becomes_a_failed_result_with_its_signal_and_stderr():
    res = run_in_worker(
        REQUEST,
        30,
        argv=_child(
            _phase("creating the session")
            + "import os, signal, sys\nsys.stderr.write('engine: bad tensor offset\\n'); sys.stderr.flush()\n"
            "os.kill(os.getpid(), signal.SIGSEGV)"
        ),
    )
    assert res["status"] == "error" and res["overall"] == "error"
    assert res["error"]["type"] == "WorkerCrashed"
    assert res["worker"]["signal"] == "SIGSEGV" and res["worker"]["exit_status"] == -11
    assert res["worker"]["phase"] == "creating the session"
    assert "crashed with SIGSEGV while the engine read the model" in res["error"]["message"]
    assert "a malformed model can do this" in res["error"]["message"]
    assert "engine: bad tensor offset" in res["worker"]["stderr_tail"]


@pytest.mark.parametrize(
    "phase, says",
    [
        (None, "crashed with SIGSEGV while starting, before it reported a phase"),
        ("importing the engine", "crashed with SIGSEGV while importing the engine"),
        ("first inference", "crashed with SIGSEGV while running the first inference"),
        ("steady state", "crashed with SIGSEGV while running the steady state"),
    ],
)
def test_a_crash_outside_model_reading_names_its_phase_and_does_not_blame_the_model(phase, says):
    code = (_phase(phase) if phase else "") + "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)"
    res = run_in_worker(REQUEST, 30, argv=_child(code))
    assert res["worker"]["phase"] == phase
    assert says in res["error"]["message"] and "malformed" not in res["error"]["message"]


def test_the_last_phase_counts_and_a_timeout_names_it():
    res = run_in_worker(
        REQUEST, 1.0, argv=_child(_phase("creating the session") + _phase("warm-up") + "import time\ntime.sleep(120)")
    )
    assert res["error"]["type"] == "WorkerTimeout" and res["worker"]["phase"] == "warm-up"
    assert "(it was in: warm-up)" in res["error"]["message"]


# Shadows onnxruntime: the real one, which dies by a real SIGSEGV where FAKE_ORT_CRASH says
# (on import, creating a session, or running it), as an engine broken for this machine would.
FAKE_ORT = """import importlib, os, signal, sys
def _crash(where):
    if os.environ.get("FAKE_ORT_CRASH") == where:
        os.kill(os.getpid(), signal.SIGSEGV)
_crash("import")
_here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules[__name__]
_real = importlib.import_module(__name__)
class _Binding:  # the C++ session the Python wrapper holds as _sess: edgerun calls its run directly
    def __init__(self, sess):
        self._s = sess
    def run(self, *args, **kwargs):
        _crash("run")
        return self._s.run(*args, **kwargs)
    def __getattr__(self, name):
        return getattr(self._s, name)
class InferenceSession(_real.InferenceSession):
    def __init__(self, *args, **kwargs):
        _crash("session")
        super().__init__(*args, **kwargs)
        self._sess = _Binding(self._sess)
    def run(self, *args, **kwargs):
        _crash("run")
        return super().run(*args, **kwargs)
_real.InferenceSession = InferenceSession
sys.modules[__name__] = _real
"""


@pytest.mark.parametrize(
    "where, phase, blames_model",
    [
        ("import", "importing the engine", False),
        ("session", "creating the session", True),
        ("run", "first inference", False),
    ],
)
def test_bench_of_the_demo_model_under_a_crashing_engine_names_the_phase(
    tmp_path: Path, where: str, phase: str, blames_model: bool
):
    """A real `edgerun bench` of the demo models whose onnxruntime dies by a real SIGSEGV: the ONNX
    result says in which phase (only the session phase blames the model); the TFLite one still runs."""
    (tmp_path / "fake" / "onnxruntime").mkdir(parents=True)
    (tmp_path / "fake" / "onnxruntime" / "__init__.py").write_text(FAKE_ORT)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "FAKE_ORT_CRASH": where,
    }
    out = tmp_path / "r.json"
    paths = [str(DEMO_DIR / "digits-int8.onnx"), str(DEMO_DIR / "digits-int8.tflite")]
    fast = ["--runs", "100", "--min-seconds", "0", "--warmup-seconds", "0", "--percentile", "90", "--hard-ms", "1000"]
    code = "import sys\nfrom edgerun.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, "bench", *paths, *fast, "--no-energy", "-q", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == EXIT_FAIL, proc.stderr
    onnx, tflite = json.loads(out.read_text())["results"]
    assert onnx["error"]["type"] == "WorkerCrashed" and onnx["worker"]["signal"] == "SIGSEGV"
    assert onnx["worker"]["phase"] == phase
    message = onnx["error"]["message"]
    if where == "import":
        assert "crashed with SIGSEGV while importing the engine (onnxruntime)" in message
        assert "not this artifact" in message
    if where == "run":
        assert "crashed with SIGSEGV while running the first inference" in message
    assert ("malformed model" in message) == blames_model
    assert tflite["status"] == "ok" and tflite["overall"] == "pass"


def test_aborting_worker():
    res = run_in_worker(REQUEST, 30, argv=_child("import os\nos.abort()"))
    assert res["worker"]["signal"] == "SIGABRT" and res["error"]["type"] == "WorkerCrashed"


def test_sigkill_mentions_the_oom_killer():
    res = run_in_worker(REQUEST, 30, argv=_child("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))
    assert res["worker"]["signal"] == "SIGKILL" and "out-of-memory" in res["error"]["message"]


def test_hanging_worker_is_killed_at_the_timeout():
    t0 = time.monotonic()
    res = run_in_worker(REQUEST, 1.0, argv=_child("import time\ntime.sleep(120)"))
    assert time.monotonic() - t0 < 10
    assert res["error"]["type"] == "WorkerTimeout" and res["worker"]["timed_out"] is True


def test_garbage_on_the_result_pipe_and_no_result():
    res = run_in_worker(
        REQUEST, 30, argv=_child("import os\nos.write(fd, b'\\x00\\xffnot json\\n')\nraise SystemExit(3)")
    )
    assert res["error"]["type"] == "WorkerCrashed"
    assert res["worker"]["exit_status"] == 3 and "unreadable output" in res["error"]["message"]


def test_progress_is_relayed_and_a_real_worker_returns_a_result():
    seen = []
    req = WorkerRequest(str(DEMO_DIR / "digits-int8.tflite"), REQUEST.config, REQUEST.budget, REQUEST.profile, "test")
    res = run_in_worker(req, 120, progress=lambda phase, f: seen.append(phase))
    assert res["status"] == "ok", res.get("error")
    assert res["stats"]["total"]["n"] == 10 and "measure" in seen


def _hanging_onnx(path: Path) -> Path:
    """A real model that hangs onnxruntime: a Loop with 10**15 iterations."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["v_in", "one"], ["v_out"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 4]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 4]),
        ],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "hang",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor("trips", TensorProto.INT64, [], [10**15]),
            helper.make_tensor("cond", TensorProto.BOOL, [], [True]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_model_that_hangs_the_engine_fails_alone_among_five(tmp_path: Path):
    """Five artifacts, one of which never returns from the engine: four results and one clear failure."""
    hang = _hanging_onnx(tmp_path / "hang.onnx")
    names = ["digits-fp32.onnx", "digits-int8.onnx", None, "digits-fp32.tflite", "digits-int8.tflite"]
    paths = [str(hang) if n is None else str(DEMO_DIR / n) for n in names]
    out = tmp_path / "r.json"
    fast = ["--runs", "100", "--min-seconds", "0", "--warmup-seconds", "0", "--percentile", "90", "--hard-ms", "1000"]
    code = main(["bench", *paths, *fast, "--timeout", "8", "--no-energy", "-q", "--json", str(out)])
    results = json.loads(out.read_text())["results"]
    assert [r["status"] for r in results] == ["ok", "ok", "error", "ok", "ok"]
    assert results[2]["error"]["type"] == "WorkerTimeout" and "8 s" in results[2]["error"]["message"]
    assert all(r["overall"] == "pass" for i, r in enumerate(results) if i != 2)
    assert code == EXIT_FAIL


def test_in_process_mode_still_works(tiny_onnx: Path, tmp_path: Path):
    out = tmp_path / "r.json"
    main(
        [
            "bench",
            str(tiny_onnx),
            "--in-process",
            "--runs",
            "700",
            "--min-seconds",
            "0",
            "--warmup-seconds",
            "0",
            "--hard-ms",
            "1000",
            "--no-energy",
            "-q",
            "--json",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["results"][0]["status"] == "ok"
    assert np.isfinite(json.loads(out.read_text())["results"][0]["stats"]["total"]["mean_ns"])
