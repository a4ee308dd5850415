"""The reference server's request boundary: body reading, decompression, JSON depth and the OIP request schema.

Everything a client can send is checked here before the server acts on it, so a
malformed request is a 400 (or 413 / 415) with the documented ``{"error": ...}``
body, never an exception deep in the handler (a 500 with a traceback in the log).

The schema is the Open Inference Protocol (KServe V2) inference request::

    {"id": str?, "parameters": {str: str|number|bool}?,
     "inputs": [{"name": str, "shape": [int >= 0], "datatype": DATATYPE,
                 "data": list (nested lists allowed) | absent with parameters.binary_data_size,
                 "parameters": {...}?}],
     "outputs": [{"name": str, "parameters": {...}?}]?}
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from edgerun.errors import ProtocolError, RemoteError
from edgerun.fallback import oip

__all__ = ["MAX_JSON_DEPTH", "HTTPError", "check_depth", "json_depth", "parse_infer", "read_body", "validate_request"]

# Deep enough for any tensor: the request object, "inputs", the entry, "data" and one level per
# dimension. Python's json module recurses once per level and stops with RecursionError near
# 1000, so deeper bodies are refused before it runs.
MAX_JSON_DEPTH = 64

DATATYPES = frozenset(
    ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"]
)

# Content-Encoding -> zlib wbits. HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2), which
# is what tritonclient sends for request_compression_algorithm="deflate".
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

# Every byte but the four brackets and the double quote: what remains of a JSON text once its
# escapes are gone is its bracket structure and its string delimiters.
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_STRING = re.compile(rb'"[^"]*"')


class HTTPError(RemoteError):
    """An answer other than 200: the server turns it into ``{"error": message}`` with this status
    (a RemoteError: what a client of the server gets; ``status`` is never None here)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, status)
        self.status: int = status
        self.headers = headers or {}


# --- body ----------------------------------------------------------------------------------


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, decompressed per Content-Encoding; 413 past ``limit`` bytes before or after inflating."""
    encoding = (request.headers.get("content-encoding") or "identity").strip().lower()
    wbits = _WBITS.get(encoding)
    if wbits is None and encoding != "identity":
        raise HTTPError(
            415, f"unsupported Content-Encoding {encoding!r}; accepted: gzip, deflate, identity",
            {"Accept-Encoding": "gzip, deflate"},
        )  # fmt: skip
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPError(413, f"request of {declared} bytes is over the {limit}-byte limit")
    inflater = None if wbits is None else zlib.decompressobj(wbits)
    chunks: list[bytes] = []
    wire = size = 0
    async for chunk in request.stream():
        wire += len(chunk)
        if wire > limit:
            raise HTTPError(413, f"request is over the {limit}-byte limit")
        if inflater is None:
            size = wire
            chunks.append(chunk)
            continue
        data = chunk
        while data:
            # At most one byte past the limit comes out per call: enough to know the body is too
            # big, so a gzip bomb costs the limit in memory, never what it would inflate to.
            try:
                out = inflater.decompress(data, limit - size + 1)
            except zlib.error as exc:
                raise HTTPError(400, f"request body is not valid {encoding} data: {exc}") from exc
            size += len(out)
            if size > limit:
                raise HTTPError(413, f"request is over the {limit}-byte limit after {encoding} decompression")
            chunks.append(out)
            data = inflater.unconsumed_tail
            if inflater.eof and inflater.unused_data:
                raise HTTPError(400, f"request body has data after the end of the {encoding} stream")
    if inflater is not None and not inflater.eof:
        raise HTTPError(400, f"request body is a truncated {encoding} stream")
    return b"".join(chunks)


def json_depth(text: bytes) -> int:
    """How deeply a JSON text nests arrays and objects, without parsing it (no recursion, C-speed passes).

    Exact for valid JSON, and for the valid prefix of invalid JSON, which is all a parser
    reads before it stops. Escaped backslashes go first, then escaped quotes, so every
    quote left delimits a string; strings go next (brackets in them are text), and the
    running count of what is left is the depth.
    """
    structure = text.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    brackets = _STRING.sub(b"", structure)
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, np.uint8)
    steps = ((codes == ord("[")) | (codes == ord("{"))).astype(np.int32) * 2 - 1
    return int(np.cumsum(steps, dtype=np.int32).max())


def check_depth(text: bytes) -> None:
    """ProtocolError if ``text`` nests deeper than MAX_JSON_DEPTH.

    Nesting can be no deeper than the number of opening brackets: a body with flat tensor
    data has a handful, and only a body with more than the limit pays for the exact
    ``json_depth``. They are counted in one numpy pass ('[' is 0x5B, '{' 0x7B, and no
    other byte becomes 0x7B when bit 0x20 is set): ~8 us on the demo's 79 KB JSON body,
    where two ``bytes.count`` calls take ~43 us.
    """
    opening = np.count_nonzero((np.frombuffer(text, np.uint8) | 0x20) == 0x7B)
    if opening <= MAX_JSON_DEPTH:
        return
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ProtocolError(f"JSON nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}")


# --- schema --------------------------------------------------------------------------------


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}parameters must be an object, got {type(value).__name__}")
    for key, v in value.items():
        if not isinstance(v, (str, int, float, bool)):
            raise ProtocolError(f"{where}parameter {key!r} must be a string, number or boolean, got {type(v).__name__}")
    return value


def _flag(params: Mapping[str, Any], key: str, where: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"{where}parameter {key!r} must be true or false, got {value!r}")
    return value


def _named(entries: list[Any], kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each entry of a request's ``inputs`` or ``outputs`` list, with its name: an object with a string
    ``name`` no other entry of the list has."""
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProtocolError(f"{kind}s[{i}] must be an object with a string 'name'")
        name = entry["name"]
        if name in seen:
            raise ProtocolError(f"duplicate {kind} name {name!r}")
        seen.add(name)
        yield name, entry


def validate_request(head: dict[str, Any]) -> bool:
    """Check a parsed request against the OIP inference request schema; returns whether binary outputs are asked.

    ProtocolError names the first field that is wrong. Tensor data (element types and
    counts, binary sizes) is checked when it is decoded (``oip.decode_tensors``).
    """
    if "id" in head and not isinstance(head["id"], str):
        raise ProtocolError(f"'id' must be a string, got {type(head['id']).__name__}")
    binary_out = _flag(_parameters(head.get("parameters"), ""), "binary_data_output", "")
    inputs = head.get("inputs")
    if not isinstance(inputs, list):
        raise ProtocolError(f"'inputs' must be a list of tensors, got {type(inputs).__name__}")
    for name, entry in _named(inputs, "input"):
        where = f"input {name!r}: "
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise ProtocolError(f"{where}shape must be a list of non-negative integers, got {shape!r:.80}")
        datatype = entry.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:  # a list would not even hash
            raise ProtocolError(f"{where}datatype must be one of {sorted(DATATYPES)}, got {datatype!r:.40}")
        params = _parameters(entry.get("parameters"), where)
        if "binary_data_size" in params and "data" in entry:
            raise ProtocolError(f"{where}both 'data' and parameters.binary_data_size")
        if "data" in entry and not isinstance(entry["data"], list):
            raise ProtocolError(f"{where}data must be a list, got {type(entry['data']).__name__}")
    outputs = head.get("outputs", [])
    if not isinstance(outputs, list):
        raise ProtocolError(f"'outputs' must be a list, got {type(outputs).__name__}")
    for name, entry in _named(outputs, "output"):
        where = f"output {name!r}: "
        binary_out = _flag(_parameters(entry.get("parameters"), where), "binary_data", where) or binary_out
    return binary_out


# --- infer ---------------------------------------------------------------------------------


def parse_infer(
    model: Any, body: bytes, header_length: str | None, stats: Any
) -> tuple[dict[str, Any], list[Any], bool]:
    """(request header, feeds in the model's input order, whether to answer with binary tensors); 400 if malformed."""
    try:
        length = None if header_length is None else int(header_length)
        if length is None or 0 < length <= len(body):  # a wrong length is oip.parse_body's error to name
            check_depth(body if length is None else body[:length])
        head, binary = oip.parse_body(body, length)
        binary_out = validate_request(head)
        tensors = {t.name: t for t in oip.decode_tensors(head["inputs"], binary, "inputs")}
    except (ValueError, ProtocolError) as exc:
        raise HTTPError(400, f"bad request: {exc}") from exc
    stats.input_names.append(sorted(tensors))
    stats.request_ids.append(head.get("id"))
    specs = model.runtime.artifact.inputs
    if sorted(tensors) != sorted(t.name for t in specs):
        raise HTTPError(400, f"inputs are {sorted(tensors)}, model {model.name!r} takes {[t.name for t in specs]}")
    outputs = [t.name for t in model.runtime.artifact.outputs]
    unknown = sorted({o["name"] for o in head.get("outputs", [])} - set(outputs))
    if unknown:
        raise HTTPError(400, f"requested outputs {unknown} are not outputs of model {model.name!r}: {outputs}")
    feeds = []
    for spec in specs:
        t = tensors[spec.name]
        expected = oip.datatype_of(spec.dtype)
        shape_ok = len(t.shape) == len(spec.shape) and all(s is None or s == d for d, s in zip(t.shape, spec.shape))
        if t.datatype != expected or not shape_ok:
            raise HTTPError(400, f"input {spec.name!r} is {t.datatype}{list(t.shape)}, expected {spec.describe()}")
        array = t.array
        if spec.dtype == "str":  # the engine takes str objects
            array = np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(array)
        feeds.append(array)
    return head, feeds, binary_out
