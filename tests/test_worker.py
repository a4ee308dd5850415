"""Crash isolation: real child processes that segfault, abort, hang or babble; a model that hangs ORT."""

from __future__ import annotations

import json
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


def test_segfaulting_worker_becomes_a_failed_result_with_its_signal_and_stderr():
    res = run_in_worker(
        REQUEST,
        30,
        argv=_child(
            "import os, signal, sys\nsys.stderr.write('engine: bad tensor offset\\n'); sys.stderr.flush()\n"
            "os.kill(os.getpid(), signal.SIGSEGV)"
        ),
    )
    assert res["status"] == "error" and res["overall"] == "error"
    assert res["error"]["type"] == "WorkerCrashed"
    assert res["worker"]["signal"] == "SIGSEGV" and res["worker"]["exit_status"] == -11
    assert "engine crashed on this artifact" in res["error"]["message"]
    assert "engine: bad tensor offset" in res["worker"]["stderr_tail"]


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
