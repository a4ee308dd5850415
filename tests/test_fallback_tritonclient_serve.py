"""NVIDIA's Triton HTTP client (``tritonclient[http]``) against ``edgerun serve``: a real third-party OIP client.

Health, readiness, metadata, a clean error where Triton has an endpoint we do not
(model config), and inference with JSON and binary tensors and gzip/deflate request
bodies; every answer equals the local model's.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
from test_fallback_helpers import FP32, FP32_NAME, identity_feeds, identity_model

from edgerun.runtime import load
from edgerun.serve.server import ReferenceServer, serve_in_thread

if importlib.util.find_spec("tritonclient") is None:  # pragma: no cover - the test extra installs it
    reason = "tritonclient is not installed: pip install -e '.[test]'"
    if os.environ.get("CI"):  # as in test_fallback_tritonclient.py: CI must not skip these quietly
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)

import tritonclient.http as httpclient  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

X = np.random.default_rng(5).random((1, 1, 64, 64), dtype=np.float32)


@pytest.fixture(scope="module")
def served():
    srv = ReferenceServer([FP32], threads=1)
    with serve_in_thread(srv) as url:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        try:
            yield srv, client
        finally:
            client.close()
    assert srv.stats.internal_errors == 0


@pytest.fixture(scope="module")
def local_logits() -> np.ndarray:
    return load(FP32, threads=1).pipeline.session.run([X])[0]


def test_health_and_readiness(served):
    _, client = served
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(FP32_NAME) and client.is_model_ready(FP32_NAME, "1")
    assert not client.is_model_ready("nope") and not client.is_model_ready(FP32_NAME, "2")


def test_model_metadata(served):
    _, client = served
    meta = client.get_model_metadata(FP32_NAME)
    assert meta["name"] == FP32_NAME and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [1, 1, 64, 64]}]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [1, 10]}]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "model_repository"]


def test_model_config_is_a_clean_404_not_a_decode_error(served):
    _, client = served
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_config(FP32_NAME)
    assert caught.value.status() == "404"
    assert caught.value.message() == f"not found: GET /v2/models/{FP32_NAME}/config is not an endpoint of this server"


@pytest.mark.parametrize("compression", [None, "gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_equals_the_local_model(served, local_logits, binary, compression):
    srv, client = served
    tensor = httpclient.InferInput("input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    result = client.infer(
        FP32_NAME,
        [tensor],
        request_id="r-1",
        outputs=[httpclient.InferRequestedOutput("logits", binary_data=binary)],
        request_compression_algorithm=compression,
    )
    assert result.get_response()["id"] == "r-1"
    np.testing.assert_array_equal(result.as_numpy("logits"), local_logits)
    assert srv.stats.request_ids[-1] == "r-1"


def test_a_bad_request_is_a_clean_exception(served):
    _, client = served
    tensor = httpclient.InferInput("input", [1, 1, 64, 64], "FP32")
    tensor.set_data_from_numpy(X, binary_data=True)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(FP32_NAME, [tensor, tensor])
    assert caught.value.status() == "400" and "duplicate input name 'input'" in caught.value.message()


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_through_tritonclient(tmp_path, binary):
    srv = ReferenceServer([identity_model(tmp_path / "ids.onnx")], threads=1)
    (name,) = srv.models
    feeds = identity_feeds()
    with serve_in_thread(srv) as url:
        client = httpclient.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
        try:
            inputs = []
            for key, array in feeds.items():
                tensor = httpclient.InferInput(key, list(array.shape), _datatype(array))
                tensor.set_data_from_numpy(array, binary_data=binary)
                inputs.append(tensor)
            wanted = [httpclient.InferRequestedOutput(k.replace("x_", "y_"), binary_data=binary) for k in feeds]
            result = client.infer(name, inputs, outputs=wanted)
        finally:
            client.close()
    for key, array in feeds.items():
        got = result.as_numpy(key.replace("x_", "y_"))
        if array.dtype == object:  # BYTES: tritonclient gives bytes from binary tensors, str from JSON ones
            assert [b.decode() if binary else b for b in got.reshape(-1)] == list(array.reshape(-1))
        else:
            assert got.dtype == array.dtype and np.array_equal(got, array)
    assert srv.stats.internal_errors == 0


def _datatype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return "BYTES" if array.dtype == object else np_to_triton_dtype(array.dtype)
