"""The fallback client against a real Seldon MLServer (the `interop` extra).

A stock custom runtime (an ``MLModel`` whose ``predict`` runs the demo ONNX model with
onnxruntime) declares no signature, so MLServer's model metadata has empty ``inputs``,
``outputs`` and ``versions``, and ``GET v2`` lists no binary tensor extension: the
client must take the local signature, send JSON tensors, and still check every answer.

MLServer runs as a subprocess (``mlserver start FOLDER``) on loopback, on free ports,
metrics off. It comes from this environment (``pip install -e '.[interop]'``) or from
the ``mlserver`` executable named by EDGERUN_MLSERVER: mlserver pins protobuf < 7 and
starlette < 0.47, so a development venv may keep it in a venv of its own (with
onnxruntime). Without either the tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from test_fallback_helpers import FP32, INT8, LONG_MS, deadline_in

import edgerun
from edgerun.artifact import load_artifact
from edgerun.fallback import FallbackPolicy, MemoryAudit
from edgerun.fallback.client import RemoteClient

MODEL = "digits"
X = {"input": np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)}
READY_TIMEOUT_S = 120  # MLServer imports grpc, fastapi and pandas before it listens: seconds, more when loaded

RUNTIME = '''
"""A custom MLServer runtime: the demo ONNX model through onnxruntime, declaring no signature."""
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        self._session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        names = [o.name for o in self._session.get_outputs()]
        outs = self._session.run(names, feeds)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[NumpyCodec.encode_output(n, o) for n, o in zip(names, outs)],
        )
'''


def mlserver_command() -> list[str]:
    exe = os.environ.get("EDGERUN_MLSERVER")
    if exe:
        return [exe]
    if importlib.util.find_spec("mlserver") is not None:
        script = Path(sys.executable).with_name("mlserver")
        return [str(script)] if script.exists() else [shutil.which("mlserver") or "mlserver"]
    reason = (
        "mlserver is not installed: pip install -e '.[interop]' (or set EDGERUN_MLSERVER to an mlserver "
        "executable from a venv of its own: it pins protobuf < 7 and starlette < 0.47)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI installs the interop extra: a missing mlserver there is a broken install
    pytest.skip(reason)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:  # held together, so the n ports differ
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_ready(proc: subprocess.Popen, base: str, log: Path) -> None:
    t_end = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            pytest.fail(f"mlserver exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # a poll interval, not a threshold: readiness is bounded by READY_TIMEOUT_S
    pytest.fail(f"mlserver was not ready within {READY_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    command = mlserver_command()
    folder = tmp_path_factory.mktemp("mlserver")
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_endpoint": None,  # no metrics server at all
        "parallel_workers": 0,  # inference in the server process: no worker pool to start
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "edgerun_onnx_runtime.py").write_text(RUNTIME)
    (folder / MODEL).mkdir()
    model_settings = {
        "name": MODEL,
        "implementation": "edgerun_onnx_runtime.OnnxModel",
        "parameters": {"uri": str(FP32)},
    }
    (folder / MODEL / "model-settings.json").write_text(json.dumps(model_settings))
    log = folder / "mlserver.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}  # the settings files decide
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*command, "start", str(folder)], cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env
        )
    base = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(proc, base, log)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def local_logits() -> np.ndarray:
    session = ort.InferenceSession(str(FP32), providers=["CPUExecutionProvider"])
    return session.run(None, X)[0]


def remote_policy(url: str, **kw) -> FallbackPolicy:
    values = {"mode": "remote-only", "endpoint": url, "audit_sink": MemoryAudit(), "connect_timeout_ms": LONG_MS}
    values.update(kw)
    return FallbackPolicy(**values)


def test_mlserver_describes_no_signature(mlserver):
    """The premise: what a stock MLServer says about a custom runtime's model."""
    meta = get_json(f"{mlserver}/v2/models/{MODEL}")
    assert meta.get("inputs", []) == [] and meta.get("outputs", []) == [] and meta.get("versions", []) == []
    assert "binary_tensor_data" not in get_json(f"{mlserver}/v2").get("extensions", [])


def test_binary_auto_without_a_model_name_talks_json_to_mlserver(mlserver):
    art = load_artifact(INT8)
    policy = remote_policy(mlserver, binary_data="auto", deadline_ms=LONG_MS)
    with RemoteClient(policy, art.inputs, art.outputs) as c:
        info = c.probe(timeout_s=LONG_MS / 1e3)
        assert info.model == MODEL and not info.binary and info.server.startswith("mlserver ")
        out = c.infer(X, deadline_in(LONG_MS), "test")
        assert c.unavailable() is None  # the remote stays on
    np.testing.assert_allclose(out["logits"], local_logits(), rtol=1e-5, atol=1e-6)
    (record,) = policy.audit_sink
    assert record.outcome == "ok" and record.model == MODEL and record.bytes_sent > 0


@pytest.mark.parametrize("mode", ["remote-only", "prefer-local"])
def test_runtime_routes_to_mlserver(mlserver, mode):
    # prefer-local goes remote on a soft-budget miss: a budget no local run can meet
    policy = remote_policy(mlserver, mode=mode, soft_budget_ms=0.001, deadline_ms=LONG_MS)
    with edgerun.load(INT8, fallback=policy) as rt:
        x = np.load(FP32.parent / "digits-test.npz")["x"][0]
        rt.fallback.warm_up(x)
        res = rt.run(x)
    assert res.route == "remote", res.reason
    assert [r.outcome for r in policy.audit_sink] == ["ok"]
