"""NVIDIA's own Triton client (``tritonclient[http]``, the `interop` extra) against ``edgerun serve``:
the reference server speaks the Open Inference Protocol as Triton's clients expect it, with JSON
tensors and with Triton's binary tensor extension, both ways.

Without tritonclient the tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import onnxruntime as ort
import pytest
from test_fallback_helpers import FP32, FP32_NAME

from edgerun.serve.server import ReferenceServer, serve_in_thread

if importlib.util.find_spec("tritonclient") is None:  # pragma: no cover - CI installs the interop extra
    reason = "tritonclient is not installed: pip install -e '.[interop]'"
    if os.environ.get("CI"):
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)

import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

X = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def triton():
    with serve_in_thread(ReferenceServer([FP32], threads=1)) as url:
        client = httpclient.InferenceServerClient(
            url=url.removeprefix("http://"), connection_timeout=30, network_timeout=30
        )
        try:
            yield client
        finally:
            client.close()


def local_logits() -> np.ndarray:
    return ort.InferenceSession(str(FP32), providers=["CPUExecutionProvider"]).run(None, {"input": X})[0]


def test_health_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready() and triton.is_model_ready(FP32_NAME)
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    meta = triton.get_model_metadata(FP32_NAME)
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [("input", "FP32", [1, 1, 64, 64])]
    assert [(t["name"], t["datatype"]) for t in meta["outputs"]] == [("logits", "FP32")]


@pytest.mark.parametrize("binary_in", [False, True], ids=["json-in", "binary-in"])
@pytest.mark.parametrize("binary_out", [False, True], ids=["json-out", "binary-out"])
def test_infer(triton, binary_in, binary_out):
    tensor = httpclient.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary_in)
    wanted = httpclient.InferRequestedOutput("logits", binary_data=binary_out)
    result = triton.infer(FP32_NAME, [tensor], outputs=[wanted], request_id="req-1")
    assert result.get_response()["id"] == "req-1"
    np.testing.assert_allclose(result.as_numpy("logits"), local_logits(), rtol=1e-5, atol=1e-6)


def test_a_wrong_input_is_a_400_that_tritonclient_reports(triton):
    tensor = httpclient.InferInput("input", [1, 1, 8, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
    with pytest.raises(InferenceServerException, match="expected"):
        triton.infer(FP32_NAME, [tensor])
