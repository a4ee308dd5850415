"""The Open Inference Protocol tensor codec, and every datatype through the reference server and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_fallback_helpers import LONG_MS, deadline_in, identity_feeds, identity_model

from edgerun.artifact import TensorSpec, load_artifact
from edgerun.errors import InputError, ProtocolError
from edgerun.fallback import FallbackPolicy, MemoryAudit, oip
from edgerun.fallback.client import RemoteClient
from edgerun.fallback.server import ReferenceServer, serve_in_thread


def roundtrip(tensors, binary):
    body, header_length = oip.encode_body({"id": "1"}, tensors, "inputs", binary)
    head, rest = oip.parse_body(body, header_length)
    return {t.name: t for t in oip.decode_tensors(head["inputs"], rest, "inputs")}


@pytest.mark.parametrize("binary", [False, True])
def test_codec_round_trips_every_datatype(binary):
    feeds = identity_feeds()
    got = roundtrip(feeds, binary)
    for name, array in feeds.items():
        t = got[name]
        assert t.shape == array.shape and t.datatype == oip.datatype_of(array.dtype)
        if array.dtype == object:
            assert [b.decode() for b in t.array.reshape(-1)] == list(array.reshape(-1))
        else:
            assert t.array.dtype == array.dtype and np.array_equal(t.array, array)


def test_the_spec_example_with_its_defects_fixed_decodes():
    body = b'{"id":"42","inputs":[{"name":"input0","shape":[2,2],"datatype":"UINT32","data":[1,2,3,4]},' \
        b'{"name":"input1","shape":[3],"datatype":"BOOL","data":[true,false,true]}]}'  # fmt: skip
    head, rest = oip.parse_body(body, None)
    t0, t1 = oip.decode_tensors(head["inputs"], rest, "inputs")
    assert t0.array.dtype == np.uint32 and t0.array.tolist() == [[1, 2], [3, 4]]
    assert t1.array.tolist() == [True, False, True]


@pytest.mark.parametrize(
    ("entry", "binary", "message"),
    [
        ({"name": "a", "shape": [3], "datatype": "BOOL", "data": [True]}, b"", "needs 3 elements"),
        ({"name": "a", "shape": [2], "datatype": "INT32", "data": [1.5, 2]}, b"", "must be integers"),
        ({"name": "a", "shape": [1], "datatype": "INT8", "data": [300]}, b"", "does not fit"),
        ({"name": "a", "shape": [1], "datatype": "FP8", "data": [1]}, b"", "unknown datatype"),
        ({"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}, b"\0" * 4, "fit"),
        ({"name": "a", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 4}}, b"\0" * 4, "8 bytes"),
        ({"name": "a", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}, b"\0" * 7, "after"),
        ({"name": "a", "shape": [-1], "datatype": "FP32", "data": []}, b"", "negative"),
        ({"name": "a", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 3}}, b"\5\0\0", "trunc"),
    ],
)
def test_malformed_tensors_are_protocol_errors(entry, binary, message):
    with pytest.raises(ProtocolError, match=message):
        oip.decode_tensors([entry], binary, "outputs")


def test_bad_json_and_bad_header_length_are_protocol_errors():
    with pytest.raises(ProtocolError, match="not valid JSON"):
        oip.parse_body(b'{"outputs": [', None)
    with pytest.raises(ProtocolError, match="Inference-Header-Content-Length"):
        oip.parse_body(b"{}", 10)


def test_outputs_are_checked_against_the_local_signature():
    spec = (TensorSpec("logits", (None, 10), "float32"),)
    ok = roundtrip({"logits": np.zeros((3, 10), np.float32)}, True)
    assert oip.check_outputs(list(ok.values()), spec)["logits"].shape == (3, 10)
    for bad, message in (
        ({"logits": np.zeros((3, 9), np.float32)}, "shape"),
        ({"logits": np.zeros((3, 10), np.float64)}, "datatype FP64"),
        ({"scores": np.zeros((3, 10), np.float32)}, "outputs are"),
    ):
        with pytest.raises(ProtocolError, match=message):
            oip.check_outputs(list(roundtrip(bad, False).values()), spec)


def test_what_json_cannot_carry_is_refused_before_sending():
    with pytest.raises(InputError, match="NaN"):
        oip.encode_body({}, {"a": np.array([np.nan], np.float32)}, "inputs", False)
    with pytest.raises(InputError, match="not UTF-8"):
        oip.encode_body({}, {"a": np.array([b"\xff"], dtype=object)}, "inputs", False)
    body, _ = oip.encode_body({}, {"a": np.array([np.nan], np.float32)}, "inputs", True)  # binary carries it
    assert json.loads(body[: body.index(b"}]}") + 3])["inputs"][0]["parameters"]["binary_data_size"] == 4


@pytest.mark.parametrize("binary", ["never", "always"])
def test_every_datatype_through_the_server_and_back(tmp_path, binary):
    path = identity_model(tmp_path / "ids.onnx")
    art = load_artifact(path)
    srv = ReferenceServer([path], threads=1)
    with serve_in_thread(srv) as url:
        policy = FallbackPolicy(
            mode="remote-only", endpoint=url, audit_sink=MemoryAudit(), binary_data=binary, connect_timeout_ms=LONG_MS
        )
        with RemoteClient(policy, art.inputs, art.outputs) as c:
            assert c.probe().model == "ids"
            out = c.infer(identity_feeds(), deadline_in(LONG_MS), "test")
    for name, array in identity_feeds().items():
        got = out["y_" + name[2:]]
        assert got.shape == array.shape
        if array.dtype == object:
            assert list(got.reshape(-1)) == list(array.reshape(-1))  # str in, str out, like the local engine
        else:
            assert got.dtype == array.dtype and np.array_equal(got, array)
