"""Read an ExecuTorch program file (``.pte``) without ExecuTorch or torch.

A ``.pte`` is a flatbuffer (schema ``executorch_flatbuffer.Program``, file identifier
``ET12``: schema/program.fbs and schema/scalar_type.fbs in pytorch/executorch) with an
extended header at byte 8 (``eh00``, then the header length, the flatbuffer's size and the
offset of the data segments that follow it: exir/_serialize/_program.py ``_ExtendedHeader``).
A delegate's compiled blob lives inline or in one of those segments. The XNNPACK delegate's
blob starts with its own header (``XH00`` at byte 4, then the offset and size of a flatbuffer
``fb_xnnpack.XNNGraph``, identifier ``XN00`` or ``XN01``: backends/xnnpack/serialization/runtime_schema.fbs
and xnnpack_graph_serialize.py ``XNNHeader``).

What the file says, and so what ``inspect_pte`` reports:
- IO: the ``forward`` plan's input and output values: dtype and shape of each tensor. The file
  holds no tensor names; they are reported as ``input_0``, ``output_0``, ...
- operators run outside any delegate (portable/optimized kernels), and how many delegate calls
  go to which backend (``XnnpackBackend``);
- parameters: constant tensors outside delegates (by ScalarType) and, inside XNNPACK blobs,
  every constant XNNPACK value by its XNNDatatype (``qcint8``/``qint8`` weights are INT8,
  ``qcint4``/``qbint4`` INT4, ``fp16`` FP16). Precision is judged from those weights: "int8" when most
  are INT8, "mixed" when only some are (a quantizer that left layers in float).

What it does not say: how a blob of another backend (Core ML, QNN, Vulkan, ...) stores its
weights (its format is the vendor's): such a program reads as the precision of what edgerun can
see, and ``opaque_delegates`` names the backends it could not look into. Nor whether the file
will load: only the ExecuTorch runtime checks that (edgerun.engines.executorch).
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgerun.errors import ArtifactError, FormatError
from edgerun.formats.spec import ModelInfo, TensorSpec

PTE_IDENTIFIER = b"ET12"
XNNPACK_BACKEND = "XnnpackBackend"

# schema/scalar_type.fbs -> numpy dtype names (quantized and bit-packed types keep ExecuTorch's names)
SCALAR_TYPES = {
    0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
    11: "bool", 12: "qint8", 13: "quint8", 14: "qint32", 15: "bfloat16", 16: "quint4x2", 17: "quint2x4",
    22: "bits16", 23: "float8_e5m2", 24: "float8_e4m3fn", 25: "float8_e5m2fnuz", 26: "float8_e4m3fnuz",
    27: "uint16", 28: "uint32", 29: "uint64",
}  # fmt: skip
# runtime_schema.fbs XNNDatatype -> the dtype edgerun counts a constant of it as
XNN_DATATYPES = {
    1: "float32", 2: "float16", 3: "int8", 4: "uint8", 5: "int32", 6: "int8", 7: "int32", 8: "int4",
    9: "int8", 10: "int4", 11: "int8", 12: "int32", 13: "float32", 14: "bfloat16",
}  # fmt: skip

_TENSOR = 5  # KernelTypes union member Tensor
_KERNEL_CALL, _DELEGATE_CALL = 1, 2  # InstructionArguments union members
_XNN_TENSOR, _XNN_QUANTIZED = 1, 2  # XValueUnion members


@dataclass(frozen=True)
class PteTensor:
    dtype: str
    shape: tuple[int, ...]


@dataclass
class PteInfo:
    method: str
    inputs: list[PteTensor]
    outputs: list[PteTensor]
    operators: Counter[str] = field(default_factory=Counter)  # kernel calls outside delegates, by op
    delegates: Counter[str] = field(default_factory=Counter)  # delegate calls, by backend id
    parameter_dtypes: Counter[str] = field(default_factory=Counter)
    opaque_delegates: set[str] = field(default_factory=set)
    version: int = 0

    @property
    def precision(self) -> str:
        """By the weights' element counts: INT8 where most are INT8, "mixed" where some are (layers the
        quantizer left in float), INT4 where any are; int32 (quantized biases) and int64 do not count."""
        d = self.parameter_dtypes
        if d.get("int4"):
            return "int4"
        q8 = sum(d.get(k, 0) for k in ("int8", "uint8", "qint8", "quint8"))
        floats = sum(d.get(k, 0) for k in ("float32", "float16", "bfloat16", "float64"))
        if q8:
            return "int8" if q8 >= floats else "mixed"
        if d.get("float16", 0) > d.get("float32", 0):
            return "fp16"
        return "fp32"


class _Buf:
    """Bounds-checked flatbuffer reads over a byte buffer (the format: flatbuffers' internals doc)."""

    def __init__(self, data: bytes | memoryview | mmap.mmap, where: str) -> None:
        self.data, self.where = data, where

    def _u(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise FormatError(f"offset {pos} outside the {len(self.data)}-byte {self.where}")
        return int(struct.unpack_from(fmt, self.data, pos)[0])

    def root(self) -> int:
        return self._u("<I", 0)

    def _field(self, table: int, index: int) -> int:
        vtable = table - self._u("<i", table)
        vsize = self._u("<H", vtable)
        slot = 4 + 2 * index
        return 0 if slot + 2 > vsize else self._u("<H", vtable + slot)

    def scalar(self, table: int, index: int, fmt: str, default: int = 0) -> int:
        off = self._field(table, index)
        return self._u(fmt, table + off) if off else default

    def ref(self, table: int, index: int) -> int | None:
        """The table, vector or string a field points to (None when absent)."""
        off = self._field(table, index)
        return None if not off else table + off + self._u("<I", table + off)

    def vector(self, table: int, index: int, elem: int = 4) -> tuple[int, int]:
        """(start, length) of a vector field; length 0 when absent."""
        at = self.ref(table, index)
        if at is None:
            return 0, 0
        n = self._u("<I", at)
        if n * elem > len(self.data) - at - 4:
            raise FormatError(f"a vector of {n} elements runs past the end of the {self.where}")
        return at + 4, n

    def tables(self, table: int, index: int) -> list[int]:
        start, n = self.vector(table, index)
        return [start + 4 * i + self._u("<I", start + 4 * i) for i in range(n)]

    def ints(self, table: int, index: int, fmt: str = "<i") -> list[int]:
        size = struct.calcsize(fmt)
        start, n = self.vector(table, index, size)
        return [self._u(fmt, start + size * i) for i in range(n)]

    def string(self, table: int, index: int) -> str:
        at = self.ref(table, index)
        if at is None:
            return ""
        n = self._u("<I", at)
        if n > len(self.data) - at - 4:
            raise FormatError(f"a string runs past the end of the {self.where}")
        return bytes(self.data[at + 4 : at + 4 + n]).decode("utf-8", "replace")


def is_pte(head: bytes) -> bool:
    """The first 8 bytes of a file: the flatbuffer's identifier ``ET12`` at byte 4."""
    return len(head) >= 8 and head[4:8] == PTE_IDENTIFIER


def inspect_pte(path: Path, method: str = "forward") -> PteInfo:
    """What the file says about ``method`` (see the module doc); ArtifactError when it cannot be read."""
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _read(data, path, method)
    except (ValueError, struct.error, UnicodeDecodeError, OverflowError) as exc:  # FormatError; mmap of 0 bytes
        raise ArtifactError(
            f"{path}: corrupt or truncated ExecuTorch program ({exc}); expected a .pte flatbuffer as "
            "ExecuTorch's to_executorch() writes it"
        ) from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ExecuTorch program ({exc.strerror or type(exc).__name__})") from exc


def _read(data: mmap.mmap, path: Path, method: str) -> PteInfo:
    if not is_pte(bytes(data[:8])):
        raise FormatError("no 'ET12' identifier at byte 4")
    segment_base = 0
    if bytes(data[8:12]) == b"eh00":
        size = struct.unpack_from("<Q", data, 16)[0]
        if size > len(data):
            raise FormatError(f"the header says the program is {size} bytes, the file has {len(data)}")
        segment_base = struct.unpack_from("<Q", data, 24)[0]
        header_length = struct.unpack_from("<I", data, 12)[0]
        if header_length >= 32 and len(data) >= 40:  # the segment data size (newer headers): the file's end
            end = segment_base + struct.unpack_from("<Q", data, 32)[0]
            if end > len(data):
                raise FormatError(f"the header says the file is {end} bytes, it has {len(data)}")
    buf = _Buf(data, "program")
    program = buf.root()
    plans = {buf.string(p, 0): p for p in buf.tables(program, 1)}
    if method not in plans:
        raise FormatError(f"no method {method!r} (methods: {', '.join(sorted(plans)) or 'none'})")
    plan = plans[method]
    values = buf.tables(plan, 2)

    def tensor(index: int) -> PteTensor:
        if not 0 <= index < len(values) or buf.scalar(values[index], 0, "<B") != _TENSOR:
            raise FormatError(f"value {index} of {method!r} is an IO of a kind other than a tensor")
        t = buf.ref(values[index], 1)
        assert t is not None
        stype = buf.scalar(t, 0, "<b")
        return PteTensor(SCALAR_TYPES.get(stype, f"scalar_type_{stype}"), tuple(buf.ints(t, 2)))

    info = PteInfo(
        method,
        [tensor(i) for i in buf.ints(plan, 3)],
        [tensor(i) for i in buf.ints(plan, 4)],
        version=buf.scalar(program, 0, "<I"),
    )
    for v in values:  # constants outside delegates: tensors with data in a constant buffer
        if buf.scalar(v, 0, "<B") == _TENSOR:
            t = buf.ref(v, 1)
            if t is not None and buf.scalar(t, 5, "<I") > 0 and buf.ref(t, 6) is None:
                stype = buf.scalar(t, 0, "<b")
                info.parameter_dtypes[SCALAR_TYPES.get(stype, "other")] += math.prod(buf.ints(t, 2))
    ops = [_op_name(buf, o) for o in buf.tables(plan, 6)]
    backends = [buf.string(d, 0) for d in buf.tables(plan, 7)]
    for chain in buf.tables(plan, 5):
        for instr in buf.tables(chain, 2):
            kind, args = buf.scalar(instr, 0, "<B"), buf.ref(instr, 1)
            if args is None:
                continue
            idx = buf.scalar(args, 0, "<i")
            if kind == _KERNEL_CALL and 0 <= idx < len(ops):
                info.operators[ops[idx]] += 1
            elif kind == _DELEGATE_CALL and 0 <= idx < len(backends):
                info.delegates[backends[idx]] += 1
    inline = buf.tables(program, 3)
    segments = [(buf.scalar(s, 0, "<Q"), buf.scalar(s, 1, "<Q")) for s in buf.tables(program, 4)]
    for i, (offset, size) in enumerate(segments):  # weights (named data) live here too, not only delegates
        if segment_base + offset + size > len(data):
            raise FormatError(f"data segment {i} ends at byte {segment_base + offset + size}, past the end of the file")
    for delegate, backend in zip(buf.tables(plan, 7), backends):
        if backend != XNNPACK_BACKEND:
            info.opaque_delegates.add(backend)
            continue
        blob = _delegate_blob(buf, data, delegate, inline, segments, segment_base)
        for dtype, count in _xnnpack_constants(blob).items():
            info.parameter_dtypes[dtype] += count
    return info


def _op_name(buf: _Buf, op: int) -> str:
    name, overload = buf.string(op, 0), buf.string(op, 1)
    return f"{name}.{overload}" if overload else name


def _delegate_blob(
    buf: _Buf, data: mmap.mmap, delegate: int, inline: list[int], segments: list[tuple[int, int]], base: int
) -> bytes:
    ref = buf.ref(delegate, 1)
    if ref is None:
        raise FormatError("a delegate without its processed data")
    location, index = buf.scalar(ref, 0, "<b"), buf.scalar(ref, 1, "<I")
    if location == 0:  # INLINE
        if index >= len(inline):
            raise FormatError(f"inline delegate data {index} of {len(inline)}")
        start, n = buf.vector(inline[index], 0, 1)
        return bytes(data[start : start + n])
    if index >= len(segments):
        raise FormatError(f"delegate segment {index} of {len(segments)}")
    offset, size = segments[index]
    start = base + offset
    if start + size > len(data):
        raise FormatError(f"delegate segment {index} ends at byte {start + size}, past the end of the file")
    return bytes(data[start : start + size])


def _xnnpack_constants(blob: bytes) -> Counter[str]:
    """Element counts of the XNNPACK graph's constant values (weights, biases), by dtype."""
    if len(blob) >= 30 and bytes(blob[4:8]) == b"XH00":
        fb_offset, fb_size = struct.unpack_from("<II", blob, 10)
        if fb_offset + fb_size > len(blob):
            raise FormatError("the XNNPACK header points past the end of its delegate data")
        blob = blob[fb_offset : fb_offset + fb_size]
    buf = _Buf(blob, "XNNPACK graph")
    if bytes(blob[4:7]) != b"XN0":  # XN00, and XN01 as executorch 1.5 writes it
        raise FormatError("XNNPACK delegate data without an 'XN0x' identifier")
    counts: Counter[str] = Counter()
    for xvalue in buf.tables(buf.root(), 2):
        kind, value = buf.scalar(xvalue, 0, "<B"), buf.ref(xvalue, 1)
        if value is None:
            continue
        if kind == _XNN_QUANTIZED:
            value = buf.ref(value, 0)
            if value is None:
                continue
        elif kind != _XNN_TENSOR:
            continue
        if buf.scalar(value, 3, "<I") == 0:  # constant_buffer_idx 0: not a constant
            continue
        datatype = buf.scalar(value, 0, "<h")
        counts[XNN_DATATYPES.get(datatype, "other")] += math.prod(buf.ints(value, 2, "<I"))
    return counts


def pte_model_info(path: Path) -> ModelInfo:
    """``edgerun info`` / a bare ``.pte``'s artifact: IO specs, precision, parameters, ops, from the file alone."""
    info = inspect_pte(path)
    ops = Counter({f"delegate:{k}": v for k, v in info.delegates.items()}) + info.operators
    return ModelInfo(
        format="pte",
        precision=info.precision,
        inputs=tuple(TensorSpec(f"input_{i}", t.shape, t.dtype) for i, t in enumerate(info.inputs)),
        outputs=tuple(TensorSpec(f"output_{i}", t.shape, t.dtype) for i, t in enumerate(info.outputs)),
        parameter_count=sum(info.parameter_dtypes.values()),
        parameter_dtypes=dict(info.parameter_dtypes),
        op_histogram=dict(ops.most_common()),
        versions={"pte_program": info.version},
    )
