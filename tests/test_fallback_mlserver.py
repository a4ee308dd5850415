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

import json
import os
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
from test_fallback_helpers import FP32, INT8, LONG_MS, deadline_in
from tool_modules import tool

import edgerun
from edgerun.artifact import load_artifact
from edgerun.fallback import FallbackPolicy, MemoryAudit
from edgerun.fallback.client import RemoteClient

MODEL = "digits"
X = {"input": np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)}
launch = tool("mlserver_launch")  # tools/mlserver_launch.py: the launcher tools/bench_fallback.py uses too


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    try:
        command = launch.mlserver_command()
    except launch.MLServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))  # CI installs the interop extra: a missing mlserver there is a broken install
        pytest.skip(str(exc))
    try:
        with launch.mlserver(FP32, tmp_path_factory.mktemp("mlserver"), name=MODEL, command=command) as (base, _):
            yield base
    except launch.MLServerFailed as exc:
        pytest.fail(str(exc))


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
