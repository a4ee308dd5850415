"""The Open Inference Protocol tensor codec, and every datatype through the reference server and back."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from test_fallback_helpers import LONG_MS, deadline_in, identity_feeds, identity_model

from edgerun.artifact import TensorSpec, load_artifact
from edgerun.errors import InputError, ProtocolError
from edgerun.fallback import FallbackPolicy, MemoryAudit, oip
from edgerun.fallback.client import RemoteClient
from edgerun.serve.server import ReferenceServer, serve_in_thread


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


# --- the JSON fast paths (orjson, C-level flatten and type checks): same values, same refusals ---

EXTREMES = {
    "float16": [0.0, -0.0, 6.1e-05, 5.96e-08, 65504.0, -65504.0, 1 / 3, 0.1],
    "float32": [0.0, -0.0, 1.4e-45, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 1 / 3, 0.1, 16777217.0],
    "float64": [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1 / 3, 0.1, 2**53 + 1.0],
}


def json_data(body: bytes) -> list:
    return json.loads(body)["inputs"][0]["data"]


@pytest.mark.parametrize("dtype", sorted(EXTREMES))
def test_json_floats_are_written_as_the_exact_double_and_come_back_bit_for_bit(dtype):
    array = np.array(EXTREMES[dtype], dtype=dtype)
    body, _ = oip.encode_body({}, {"a": array}, "inputs", False)
    # float64's shortest repr of each value (what tolist() gave): exact through any double-parsing reader,
    # where FP32/FP16's own shorter repr (0.1 for float32(0.1)) would not be.
    assert json_data(body) == array.astype(np.float64).tolist()
    got = roundtrip({"a": array}, False)["a"].array
    assert got.dtype == array.dtype and got.tobytes() == array.tobytes()  # -0.0 and subnormals included


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"])
def test_json_integers_keep_their_extremes(dtype):
    info = np.iinfo(dtype)
    array = np.array([info.min, info.max, 0, info.max - 1], dtype=dtype)
    body, _ = oip.encode_body({}, {"a": array}, "inputs", False)
    assert json_data(body) == [int(v) for v in array]
    got = roundtrip({"a": array}, False)["a"].array
    assert got.dtype == array.dtype and np.array_equal(got, array)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_in_json_and_carried_bit_exact_in_binary(dtype, value):
    array = np.array([1.0, value], dtype=dtype)
    with pytest.raises(InputError, match="NaN/Inf"):  # orjson would write null: never silently
        oip.encode_body({}, {"a": array}, "inputs", False)
    got = roundtrip({"a": array}, True)["a"].array
    assert got.tobytes() == array.tobytes()


def test_lenient_json_numbers_still_parse():
    """NaN / Infinity (Python's json.dumps writes them) and huge integers: accepted as the stdlib did."""
    body = b'{"inputs":[{"name":"a","shape":[4],"datatype":"FP64","data":[NaN,Infinity,-Infinity,1e999]}]}'
    head, rest = oip.parse_body(body, None)
    (t,) = oip.decode_tensors(head["inputs"], rest, "inputs")
    assert np.isnan(t.array[0]) and t.array[1:].tolist() == [np.inf, -np.inf, np.inf]
    head, _ = oip.parse_body(b'{"id":"\\ud800","n":' + b"9" * 30 + b"}", None)  # a lone surrogate, a 100-bit int
    assert head["id"] == "\ud800" and head["n"] == int("9" * 30)


def test_json_past_any_parsers_depth_is_a_protocol_error_not_a_crash():
    with pytest.raises(ProtocolError, match="not valid JSON"):
        oip.parse_body(b"[" * 5000 + b"]" * 5000, None)


@pytest.mark.parametrize(
    "deep", [b"[NaN," + b"[" * 5000 + b"]" * 5001, b'{"a":NaN,"b":' + b"[" * 5000 + b"]" * 5000 + b"}"]
)
def test_the_stdlib_fallback_never_parses_deeper_than_orjson(deep):
    # NaN sends the body to the stdlib parser, whose depth is bounded only by the recursion limit, which
    # libraries raise (a C stack overflow past a few ten thousand levels): refused before it is parsed.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)  # as a library may have set it: the stdlib alone would parse 5000 levels
    try:
        with pytest.raises(ProtocolError, match="deeper than 1024 levels"):
            oip.parse_body(deep, None)
    finally:
        sys.setrecursionlimit(limit)
    shallow = b'{"a":[NaN],"s":"' + b"[" * 3000 + b'"}'  # brackets inside a string are not nesting
    assert oip.parse_body(shallow, None)[0]["s"] == "[" * 3000


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int16", "int32", "int64", "uint16", "uint64"])
def test_big_endian_arrays_encode_as_their_native_twins(dtype, binary):
    native = np.arange(-3, 9).astype(dtype).reshape(3, 4) if dtype[0] != "u" else np.arange(12, dtype=dtype)
    swapped = native.astype(native.dtype.newbyteorder(">"))
    assert oip.encode_body({}, {"a": swapped}, "inputs", binary) == oip.encode_body({}, {"a": native}, "inputs", binary)
    got = roundtrip({"a": swapped}, binary)["a"].array
    assert got.dtype.isnative and np.array_equal(got, native)


def test_binary_tensors_are_little_endian_on_the_wire():
    body, length = oip.encode_body({}, {"a": np.array([1, 256], np.uint16)}, "inputs", True)
    assert body[length:] == b"\x01\x00\x00\x01"


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.float32(2.5),  # 0-d
        np.zeros((0, 3), np.float32),
        np.zeros((2, 0), np.bool_),
        np.arange(24, dtype=np.int32).reshape(2, 3, 4).transpose(2, 0, 1),  # not C-contiguous
        np.arange(20, dtype=np.float64).reshape(4, 5)[::2, 1::2],  # strided
        np.array([[True, False, True]]),
    ],
    ids=["scalar", "empty", "empty-bool", "transposed", "strided", "bool"],
)
def test_shapes_and_memory_layouts_round_trip_in_row_major_order(array, binary):
    array = np.asarray(array)
    body, _ = oip.encode_body({}, {"a": array}, "inputs", binary)
    if not binary:
        assert json_data(body) == array.reshape(-1).tolist()
    got = roundtrip({"a": array}, binary)["a"]
    assert got.shape == array.shape and got.array.dtype == array.dtype and np.array_equal(got.array, array)


@pytest.mark.parametrize(
    "data",
    [
        [[[1, 2], [3, 4]], [[5, 6], [7, 8]]],  # nesting as regular as the shape
        [[1, 2, 3, 4], [5, 6, 7, 8]],  # regular, but not the shape's
        [1, [2, [3, [4]]], [[5, 6]], 7, [[[8]]]],  # ragged: lists and numbers mixed at one level
        [[], [1, 2, 3, 4, 5, 6, 7, 8], [[]]],
    ],
)
def test_nested_json_data_flattens_in_row_major_order(data):
    entry = {"name": "a", "shape": [2, 2, 2], "datatype": "INT32", "data": data}
    (t,) = oip.decode_tensors([entry], b"", "inputs")
    assert t.array.tolist() == [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]


@pytest.mark.parametrize(
    ("datatype", "data", "words"),
    [
        ("FP32", [1.0, True], "numbers"),  # numpy would take true as 1.0
        ("FP32", [[1.0], ["2"]], "numbers"),  # and "2" as 2.0
        ("FP64", [1.0, None], "numbers"),  # and null as NaN
        ("FP16", [[0.5], [{"a": 1}]], "numbers"),
        ("INT32", [1, 2.0], "integers"),
        ("INT64", [[1], [False]], "integers"),
        ("UINT8", [1, "1"], "integers"),
        ("BOOL", [True, 1], "true/false"),
        ("BOOL", [True, 0.0], "true/false"),
        ("BYTES", ["a", 1], "strings"),
        ("BYTES", [["a"], [None]], "strings"),
    ],
)
def test_json_element_types_are_checked_exactly(datatype, data, words):
    entry = {"name": "a", "shape": [2], "datatype": datatype, "data": data}
    with pytest.raises(ProtocolError, match=f"{datatype} data must be {words}"):
        oip.decode_tensors([entry], b"", "inputs")


def test_json_integers_are_accepted_as_floats():
    (t,) = oip.decode_tensors([{"name": "a", "shape": [3], "datatype": "FP32", "data": [1, 2.5, -3]}], b"", "x")
    assert t.array.dtype == np.float32 and t.array.tolist() == [1.0, 2.5, -3.0]


def test_a_header_orjson_cannot_write_falls_back_to_the_stdlib():
    body, _ = oip.encode_body({"n": 2**70}, {"a": np.array([1.5], np.float32)}, "inputs", False)
    assert json.loads(body) == {"n": 2**70, "inputs": [{"name": "a", "shape": [1], "datatype": "FP32", "data": [1.5]}]}
