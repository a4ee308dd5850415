"""Open Inference Protocol (KServe V2) tensors: JSON and Triton's binary extension.

Pure functions over bytes and numpy arrays; no HTTP here, so the client and the
reference server share one codec (and one set of checks).

JSON: ``data`` is the row-major flat list; BOOL is true/false, BYTES elements are
UTF-8 strings, FP16 travels as decimal numbers (every FP16 value is exact as a
double, so the round trip is exact). Binary (``binary_tensor_data``): a JSON
header, then the raw tensors in header order, little-endian, no padding; each
BYTES element is a 4-byte little-endian length and its bytes; the header's length
is in the ``Inference-Header-Content-Length`` HTTP header.

Every decode error is a ``ProtocolError`` naming the tensor and what was expected.

Speed (a JSON body of 4096 FP32 values, the demo model's input, is ~79 KB): JSON goes
through orjson, which writes numpy arrays without a Python float per element and parses
~10x faster than the stdlib on such data; element type checks and flattening are C-level passes
(``set(map(type, ...))``, ``itertools.chain``), never a Python loop per element.
Floating-point data is written from float64 (shortest repr of the double), so every FP16
and FP32 value survives the trip exactly, as ``tolist()`` did; writing float32's own
shortest repr would be ~40% shorter but a reader that parses to double and rounds to
float32 is not guaranteed the same value.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from edgerun.artifact import TensorSpec
from edgerun.errors import InputError, ProtocolError

__all__ = [
    "HEADER_LENGTH",
    "Tensor",
    "check_outputs",
    "datatype_of",
    "decode_tensors",
    "encode_body",
    "numpy_dtype",
    "parse_body",
]

HEADER_LENGTH = "Inference-Header-Content-Length"

# numpy dtype name -> OIP datatype. ONNX string tensors are "str" in TensorSpec.
_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
    "object": "BYTES",
    "bytes": "BYTES",
}
_NUMPY = {v: k for k, v in _DATATYPES.items() if k not in ("str", "object", "bytes")}


@dataclass(frozen=True)
class Tensor:
    """One decoded tensor as the wire described it."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: np.ndarray


def datatype_of(dtype: Any) -> str:
    """OIP datatype for a numpy dtype or TensorSpec dtype name; InputError for types OIP cannot carry."""
    if isinstance(dtype, str):
        name = dtype
    else:
        d = np.dtype(dtype)
        # .name ignores byte order ('>f4' is float32 too: encoding writes little-endian whatever it gets);
        # str(d) would be '>f4'. Also cheaper than str(d), which matters once per tensor per request.
        name = "str" if d.kind in "OSU" else d.name
    if name not in _DATATYPES:
        raise InputError(f"dtype {name} has no Open Inference Protocol datatype; expected one of {sorted(_NUMPY)}")
    return _DATATYPES[name]


def numpy_dtype(datatype: str) -> np.dtype:
    """numpy dtype for an OIP datatype (BYTES -> object: an array of ``bytes``)."""
    if datatype == "BYTES":
        return np.dtype(object)
    if datatype not in _NUMPY:
        raise ProtocolError(f"unknown datatype {datatype!r}; expected one of {sorted(_NUMPY) + ['BYTES']}")
    return np.dtype(_NUMPY[datatype]).newbyteorder("<")


# --- encoding -----------------------------------------------------------------------------


def _bytes_elements(array: np.ndarray, name: str) -> list[bytes]:
    out = []
    for item in array.reshape(-1):
        if isinstance(item, (bytes, np.bytes_)):
            out.append(bytes(item))
        elif isinstance(item, (str, np.str_)):
            out.append(str(item).encode("utf-8"))
        else:
            raise InputError(f"tensor {name!r}: BYTES elements must be bytes or str, got {type(item).__name__}")
    return out


def _raw(array: np.ndarray, datatype: str, name: str) -> bytes:
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in _bytes_elements(array, name))
    return np.ascontiguousarray(array, dtype=numpy_dtype(datatype)).tobytes()


def _json_data(array: np.ndarray, datatype: str, name: str) -> Any:
    """What goes in an entry's ``data``: a flat list of str for BYTES, else a flat C-contiguous native array
    that orjson writes itself (OPT_SERIALIZE_NUMPY): no Python object per element."""
    if datatype == "BYTES":
        try:
            return [b.decode("utf-8") for b in _bytes_elements(array, name)]
        except UnicodeDecodeError as exc:
            raise InputError(
                f"tensor {name!r}: a BYTES element is not UTF-8, so it cannot go in JSON; use binary tensors"
            ) from exc
    if datatype in ("FP16", "FP32", "FP64"):
        # float64 for every float type: its shortest repr gives the exact value back through a double
        # (orjson would write FP32/FP16 in their own shorter repr; see the module docstring).
        flat = np.ascontiguousarray(array, dtype=np.float64).reshape(-1)
        if not np.isfinite(flat).all():  # orjson would write null: a different value, silently
            raise InputError(f"tensor {name!r}: NaN/Inf cannot be written as JSON numbers; use binary tensors")
        return flat
    # Native byte order and C order: orjson refuses anything else.
    return np.ascontiguousarray(array, dtype=numpy_dtype(datatype).newbyteorder("=")).reshape(-1)


_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _dumps(value: Any) -> bytes:
    """Compact JSON; the stdlib only for what orjson refuses in a header (integers past 64 bits)."""
    try:
        return orjson.dumps(value, option=_DUMPS_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, default=_jsonable).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_body(
    head: dict[str, Any], tensors: Mapping[str, np.ndarray], key: str, binary: bool
) -> tuple[bytes, int | None]:
    """Build a request or response body: ``head`` plus ``tensors`` under ``key`` ("inputs"/"outputs").

    Returns (body, JSON header length or None when the body is plain JSON).
    """
    entries, chunks = [], []
    for name, array in tensors.items():
        array = np.asarray(array)
        datatype = datatype_of(array.dtype)
        entry: dict[str, Any] = {"name": name, "shape": list(array.shape), "datatype": datatype}
        if binary:
            raw = _raw(array, datatype, name)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = _json_data(array, datatype, name)
        entries.append(entry)
    header = _dumps({**head, key: entries})
    if not binary:
        return header, None
    return header + b"".join(chunks), len(header)


# --- decoding -----------------------------------------------------------------------------


# orjson's own nesting limit (its README, "loads"). The stdlib parser recurses once per level, bounded
# only by sys.getrecursionlimit(), which some libraries raise: past a few ten thousand levels that is a
# C stack overflow (a crash), so the fallback parses nothing deeper than orjson would.
_MAX_DEPTH = 1024
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def _nesting(text: bytes) -> int:
    """How deep ``text``'s arrays and objects nest (brackets inside strings do not count)."""
    if text.count(b"[") + text.count(b"{") <= _MAX_DEPTH:
        return 0  # cannot nest deeper than the limit: skip the scan
    codes = np.frombuffer(_JSON_STRING.sub(b'""', text), np.uint8)
    step = (codes == ord("[")).astype(np.int32) + (codes == ord("{")) - (codes == ord("]")) - (codes == ord("}"))
    return int(np.cumsum(step).max(initial=0))


def loads(text: bytes) -> Any:
    """Parse JSON: orjson, then the stdlib for what only it accepts (NaN/Infinity, lone surrogates),
    so the accepted set is the stdlib's as before, never deeper than orjson's 1024 levels; ProtocolError
    if neither parses."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    if _nesting(text) > _MAX_DEPTH:
        raise ProtocolError(f"body is not valid JSON here: it nests deeper than {_MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"body is not valid JSON ({exc}); first bytes: {text[:60]!r}") from exc


def parse_body(body: bytes, header_length: int | None) -> tuple[dict[str, Any], bytes]:
    """Split a body into its JSON header (a dict) and the binary section that follows it."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes")
    cut = len(body) if header_length is None else header_length
    head = loads(body[:cut])
    if not isinstance(head, dict):
        raise ProtocolError(f"body must be a JSON object, got {type(head).__name__}")
    return head, body[cut:]


def _shape(entry: Mapping[str, Any], name: str) -> tuple[int, ...]:
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ProtocolError(f"tensor {name!r}: shape must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise ProtocolError(f"tensor {name!r}: shape {shape} has a negative dimension")
    return tuple(shape)


def _from_json(data: Any, datatype: str, count: int, name: str) -> np.ndarray:
    flat, types = _flatten(data, name)
    if len(flat) != count:
        raise ProtocolError(f"tensor {name!r}: shape needs {count} elements, data has {len(flat)}")
    # Element types checked exactly (one C-level pass): numpy would quietly turn 1.5 into an
    # integer, true into 1.0, "2" into 2.0, or a UINT64 maximum next to a 0 into a float.
    kinds: frozenset[type]
    if datatype == "BYTES":
        kinds, words = _STR, "strings"
    elif datatype == "BOOL":
        kinds, words = _BOOL, "true/false"
    elif datatype in ("FP16", "FP32", "FP64"):
        kinds, words = _NUMBER, "numbers"
    else:
        kinds, words = _INT, "integers"
    if not kinds.issuperset(types):
        bad = next(v for v in flat if type(v) not in kinds)
        raise ProtocolError(f"tensor {name!r}: {datatype} data must be {words}, got {bad!r:.40}")
    if datatype == "BYTES":
        return _objects([s.encode("utf-8") for s in flat])
    try:
        return np.array(flat, dtype=numpy_dtype(datatype).newbyteorder("="))
    except OverflowError as exc:
        raise ProtocolError(f"tensor {name!r}: a value does not fit {datatype}") from exc


_STR, _BOOL, _NUMBER, _INT = frozenset([str]), frozenset([bool]), frozenset([int, float]), frozenset([int])


def _objects(items: list[Any]) -> np.ndarray:
    """A 1-D object array of exactly these items (np.array would try to nest sequences)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def _flatten(data: Any, name: str) -> tuple[list[Any], set[type]]:
    """The elements of (possibly nested) ``data`` in row-major order, and the set of their types.

    Level by level while every item of a level is a list (the common case: flat data, or
    nesting as regular as the shape), each level one C-level pass; a level that mixes
    lists and scalars falls back to the per-item walk.
    """
    if not isinstance(data, list):
        raise ProtocolError(f"tensor {name!r}: data must be a list, got {type(data).__name__}")
    flat = data
    while True:
        types = set(map(type, flat))
        if list not in types:
            return flat, types
        if len(types) > 1:
            flat = _flatten_ragged(flat)
            return flat, set(map(type, flat))
        flat = list(itertools.chain.from_iterable(flat))


def _flatten_ragged(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [data]
    while stack:  # row-major, without recursion limits on deep nesting
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def _from_binary(raw: bytes, datatype: str, count: int, name: str) -> np.ndarray:
    if datatype != "BYTES":
        dtype = numpy_dtype(datatype)
        if len(raw) != count * dtype.itemsize:
            raise ProtocolError(
                f"tensor {name!r}: {count} x {datatype} needs {count * dtype.itemsize} bytes, "
                f"binary_data_size says {len(raw)}"
            )
        return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise ProtocolError(f"tensor {name!r}: truncated BYTES length prefix")
        (n,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + n > len(raw):
            raise ProtocolError(f"tensor {name!r}: a BYTES element of {n} bytes runs past binary_data_size")
        items.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if len(items) != count:
        raise ProtocolError(f"tensor {name!r}: shape needs {count} BYTES elements, binary data has {len(items)}")
    return _objects(items)


def decode_tensors(entries: Any, binary: bytes, key: str) -> list[Tensor]:
    """Decode a header's ``inputs``/``outputs`` list; binary sizes must add up to the binary section exactly."""
    if not isinstance(entries, list):
        raise ProtocolError(f"{key!r} must be a list of tensors, got {type(entries).__name__}")
    out, pos = [], 0
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError(f"each of {key!r} must be an object with a 'name', got {entry!r:.80}")
        name, datatype = entry["name"], entry.get("datatype")
        if not isinstance(datatype, str):
            raise ProtocolError(f"tensor {name!r}: datatype must be a string, got {datatype!r}")
        numpy_dtype(datatype)  # unknown datatype -> ProtocolError
        shape = _shape(entry, name)
        count = math.prod(shape)
        params = entry.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise ProtocolError(
                    f"tensor {name!r}: binary_data_size {size!r} does not fit the {len(binary) - pos} binary bytes left"
                )
            array = _from_binary(binary[pos : pos + size], datatype, count, name)
            pos += size
        elif "data" in entry:
            array = _from_json(entry["data"], datatype, count, name)
        else:
            raise ProtocolError(f"tensor {name!r}: neither 'data' nor parameters.binary_data_size")
        out.append(Tensor(name, datatype, shape, array.reshape(shape)))
    if pos != len(binary):
        raise ProtocolError(f"{len(binary) - pos} binary bytes after the last tensor: the header length is wrong")
    return out


def _shape_matches(shape: Sequence[int], spec: TensorSpec) -> bool:
    return len(shape) == len(spec.shape) and all(s is None or s < 0 or s == d for d, s in zip(shape, spec.shape))


def check_outputs(tensors: Sequence[Tensor], specs: Sequence[TensorSpec]) -> dict[str, np.ndarray]:
    """Validate decoded outputs against the local model's signature: names, datatypes, shapes."""
    got = {t.name: t for t in tensors}
    want = [s.name for s in specs]
    if len(got) != len(tensors) or sorted(got) != sorted(want):
        raise ProtocolError(f"response outputs are {[t.name for t in tensors]}, the local model's are {want}")
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        t = got[spec.name]
        expected = datatype_of(spec.dtype)
        if t.datatype != expected:
            raise ProtocolError(f"output {spec.name!r}: datatype {t.datatype}, expected {expected} ({spec.describe()})")
        if not _shape_matches(t.shape, spec):
            raise ProtocolError(f"output {spec.name!r}: shape {list(t.shape)}, expected {spec.describe()}")
        array = t.array
        if spec.dtype == "str":  # the local engine gives str objects; match it
            try:
                array = _objects([b.decode("utf-8") for b in array.reshape(-1)])
            except UnicodeDecodeError as exc:
                raise ProtocolError(f"output {spec.name!r}: a BYTES element is not UTF-8") from exc
            array = array.reshape(t.shape)
        out[spec.name] = array
    return out
