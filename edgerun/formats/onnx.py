"""ONNX: a minimal, read-only protobuf reader, and what a model file says about itself (``model_info``).

``edgerun info`` and precision detection need the graph (op types, initializers,
opsets, IO types) but not the ``onnx`` package, which is not a runtime
dependency (it is large, and not always installable on a device). The wire
format is small: this module decodes only the fields listed below, following
onnx/onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto,
ValueInfoProto, TypeProto, TensorShapeProto) and the protobuf encoding spec
(https://protobuf.dev/programming-guides/encoding/). Unknown fields are skipped.
Subgraphs (If/Loop bodies) are not descended into.

Any malformed input raises ``FormatError`` (an ArtifactError, and a ValueError);
``edgerun.artifact`` re-raises it as an ``ArtifactError`` that names the file.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from edgerun.errors import FormatError

# MAX_DIM: a graph input/output dimension past it (or negative) is reported as unknown (None);
# protobuf stores int64 -1 as a 10-byte varint that reads as 18446744073709551615 unsigned.
# MAX_INITIALIZER_ELEMENTS: past it an initializer's dims are corrupt (or no edge model).
from edgerun.formats.limits import MAX_DIM, MAX_INITIALIZER_ELEMENTS
from edgerun.formats.spec import ModelInfo, TensorSpec

# TensorProto.DataType -> numpy dtype name (None where numpy has no native type).
ONNX_DTYPES: dict[int, str] = {
    1: "float32",
    2: "uint8",
    3: "int8",
    4: "uint16",
    5: "int16",
    6: "int32",
    7: "int64",
    8: "str",
    9: "bool",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
    14: "complex64",
    15: "complex128",
    16: "bfloat16",
    17: "float8e4m3fn",
    18: "float8e4m3fnuz",
    19: "float8e5m2",
    20: "float8e5m2fnuz",
    21: "uint4",
    22: "int4",
    23: "float4e2m1",
}


@dataclass
class OnnxValue:
    name: str
    dtype: str = "unknown"
    shape: tuple[int | None, ...] = ()


@dataclass
class OnnxInitializer:
    name: str
    dtype: str
    dims: tuple[int, ...]
    location: str = ""  # the external data file holding its values (TensorProto.external_data), if any


@dataclass
class OnnxNode:
    op_type: str
    domain: str
    inputs: list[str]
    int_attrs: dict[str, int] = field(default_factory=dict)  # the node's scalar int attributes (e.g. K, N)


@dataclass
class OnnxModel:
    ir_version: int = 0
    producer: str = ""
    opsets: dict[str, int] = field(default_factory=dict)
    nodes: list[OnnxNode] = field(default_factory=list)
    initializers: list[OnnxInitializer] = field(default_factory=list)
    inputs: list[OnnxValue] = field(default_factory=list)
    outputs: list[OnnxValue] = field(default_factory=list)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise FormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise FormatError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field_number, wire_type, value) for one message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise FormatError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise FormatError("length-delimited field runs past the end")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > end:
                raise FormatError("fixed-width field runs past the end")
            pos += size
        else:
            raise FormatError(f"unsupported wire type {wire}")


def _text(value: int | bytes, *, strict: bool = True) -> str:
    """A protobuf string. Names (ops, tensors, domains) must be UTF-8, as protobuf requires: onnxruntime
    fails on other bytes in a way it cannot report (a UnicodeDecodeError of its own message)."""
    if not isinstance(value, bytes):
        raise FormatError("expected a string field")
    try:
        return value.decode("utf-8", errors="strict" if strict else "replace")
    except UnicodeDecodeError as exc:
        raise FormatError(f"a name is not UTF-8 text (byte {exc.start} of {len(value)})") from None


def _int64(v: int) -> int:
    """A varint read as protobuf's int64: two's complement in 64 bits (longer varints are cut to 64)."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def _ints(wire: int, value: int | bytes) -> list[int]:
    """A repeated int64 field, packed or not."""
    if isinstance(value, int):
        return [_int64(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_int64(v))
    return out


def _value_info(buf: bytes) -> OnnxValue:
    info = OnnxValue(name="")
    for num, _, val in _fields(buf):
        if num == 1:
            info.name = _text(val)
        elif num == 2 and isinstance(val, bytes):
            for tnum, _, tval in _fields(val):
                if tnum == 1 and isinstance(tval, bytes):  # tensor_type
                    _tensor_type(tval, info)
    return info


def _tensor_type(buf: bytes, info: OnnxValue) -> None:
    for num, _, val in _fields(buf):
        if num == 1 and isinstance(val, int):
            info.dtype = ONNX_DTYPES.get(val, f"onnx-type-{val}")
        elif num == 2 and isinstance(val, bytes):
            dims: list[int | None] = []
            for dnum, _, dval in _fields(val):
                if dnum == 1 and isinstance(dval, bytes):
                    dim: int | None = None
                    for knum, _, kval in _fields(dval):
                        if knum == 1 and isinstance(kval, int):
                            value = _int64(kval)
                            # -1 (and any negative) is how exporters write "dynamic"; huge is corrupt:
                            # neither is a size edgerun can check an input against.
                            dim = value if 0 <= value <= MAX_DIM else None
                    dims.append(dim)
            info.shape = tuple(dims)


def _initializer(buf: bytes) -> OnnxInitializer:
    name, dtype, dims, location = "", 0, [], ""
    for num, wire, val in _fields(buf):
        if num == 1:
            dims.extend(_ints(wire, val))
        elif num == 2 and isinstance(val, int):
            dtype = val
        elif num == 8:
            name = _text(val)
        elif num == 13 and isinstance(val, bytes):  # external_data: StringStringEntryProto {key = 1, value = 2}
            entry = {k: _text(v) for k, _, v in _fields(val) if k in (1, 2)}
            if entry.get(1) == "location":
                location = entry.get(2, "")
    count = 1
    for d in dims:  # stepwise: a corrupt file may hold thousands of huge dims
        count *= d
        if d < 0 or count > MAX_INITIALIZER_ELEMENTS:
            raise FormatError(
                f"initializer {name[:80]!r} has dims {dims[:8]}; expected non-negative dims of at most "
                f"{MAX_INITIALIZER_ELEMENTS} elements in all"
            )
    return OnnxInitializer(name, ONNX_DTYPES.get(dtype, f"onnx-type-{dtype}"), tuple(dims), location)


def _node(buf: bytes) -> OnnxNode:
    node = OnnxNode(op_type="", domain="", inputs=[])
    for num, _, val in _fields(buf):
        if num == 1:
            node.inputs.append(_text(val))
        elif num == 4:
            node.op_type = _text(val)
        elif num == 7:
            node.domain = _text(val)
        elif num == 5 and isinstance(val, bytes):
            _int_attribute(val, node.int_attrs)
    return node


def _int_attribute(buf: bytes, into: dict[str, int]) -> None:
    """An AttributeProto (name = 1, i = 3): kept when it holds a scalar int; other kinds are skipped."""
    name, value = "", None
    for num, _, val in _fields(buf):
        if num == 1:
            name = _text(val, strict=False)
        elif num == 3 and isinstance(val, int):
            value = _int64(val)
    if name and value is not None:
        into[name] = value


def _graph(buf: bytes, model: OnnxModel) -> None:
    declared_inputs: list[OnnxValue] = []
    for num, _, val in _fields(buf):
        if not isinstance(val, bytes):
            continue
        if num == 1:
            model.nodes.append(_node(val))
        elif num == 5:
            model.initializers.append(_initializer(val))
        elif num == 11:
            declared_inputs.append(_value_info(val))
        elif num == 12:
            model.outputs.append(_value_info(val))
    # Before IR v4, initializers were also listed as graph inputs.
    constant = {init.name for init in model.initializers}
    model.inputs = [v for v in declared_inputs if v.name not in constant]


def parse_model(buf: bytes) -> OnnxModel:
    """Decode the parts of an ONNX ModelProto that edgerun reports."""
    model = OnnxModel()
    saw_graph = False
    for num, _, val in _fields(buf):
        if num == 1 and isinstance(val, int):
            model.ir_version = val
        elif num == 2:
            model.producer = _text(val, strict=False)  # free text, shown only
        elif num == 7 and isinstance(val, bytes):
            _graph(val, model)
            saw_graph = True
        elif num == 8 and isinstance(val, bytes):
            domain, version = "", 0
            for onum, _, oval in _fields(val):
                if onum == 1:
                    domain = _text(oval)
                elif onum == 2 and isinstance(oval, int):
                    version = oval
            model.opsets[domain or "ai.onnx"] = version
    if not saw_graph or model.ir_version == 0:
        raise FormatError("no graph or IR version: not an ONNX ModelProto")
    return model


def external_data_locations(data: bytes) -> tuple[str, ...]:
    """The external data files a serialized ModelProto's initializers name, in first-use order
    (onnx/onnx.proto TensorProto.external_data; onnx/external_data_helper.py writes them). Paths are
    as written, relative to the model's folder. Subgraphs are not searched (module docstring)."""
    model = parse_model(data)
    return tuple(dict.fromkeys(i.location for i in model.initializers if i.location))


# ONNX ops that only appear in quantized graphs.
INT4_OPS = {"MatMulNBits", "GatherBlockQuantized"}
INT8_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
}


def model_info(data: bytes) -> ModelInfo:
    """IO specs, op histogram, parameters by dtype, precision and versions of a serialized ModelProto."""
    model = parse_model(data)
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in model.nodes)
    dtypes: Counter[str] = Counter()
    for init in model.initializers:
        dtypes[init.dtype] += math.prod(init.dims)
    # MatMulNBits stores a K x N weight as int4 packed two per uint8, in blocks of block_size along K:
    # B is (N, ceil(K / block_size), block_size / 2) bytes, the last block zero-padded. The weight's
    # parameters are K * N (its attributes; com.microsoft MatMulNBits, onnxruntime docs/ContribOperators.md),
    # not the padded bytes x 2.
    packed = {n.inputs[1]: n.int_attrs for n in model.nodes if n.op_type == "MatMulNBits" and len(n.inputs) > 1}
    for init in model.initializers:
        if init.name in packed:
            count = math.prod(init.dims)
            attrs = packed[init.name]
            dtypes[init.dtype] -= count
            dtypes["int4"] += attrs["K"] * attrs["N"] if "K" in attrs and "N" in attrs else 2 * count
    plain_ops = {n.op_type for n in model.nodes}
    return ModelInfo(
        format="onnx",
        precision=precision(plain_ops, dtypes),
        inputs=tuple(TensorSpec(v.name, v.shape, v.dtype) for v in model.inputs),
        outputs=tuple(TensorSpec(v.name, v.shape, v.dtype) for v in model.outputs),
        parameter_count=sum(dtypes.values()),
        parameter_dtypes={k: v for k, v in dtypes.items() if v},
        op_histogram=dict(ops.most_common()),
        versions={"ir_version": model.ir_version, **{f"opset:{k}": v for k, v in model.opsets.items()}},
    )


def precision(ops: set[str], dtypes: Counter[str]) -> str:
    """int4 / int8 from quantized ops or weight dtypes; fp16 where most parameters are float16; else fp32."""
    if ops & INT4_OPS or dtypes.get("int4") or dtypes.get("uint4"):
        return "int4"
    if ops & INT8_OPS or any(op.startswith("QLinear") for op in ops):
        return "int8"
    if dtypes.get("float16", 0) > dtypes.get("float32", 0):
        return "fp16"
    return "fp32"
