"""Artifacts: a model file (.onnx / .tflite) plus an optional JSON manifest.

The manifest schema is documented in docs/manifest.md (``edgerun.manifest``,
version ``MANIFEST_SCHEMA_VERSION``). Loading an artifact:

1. resolves the path (model file, manifest file, or a folder with one manifest) and
   refuses a manifest whose ``model_file`` or ``samples`` leads out of its folder
   (``allow_outside=True`` opts in);
2. checks the file is what its extension says (TFLite magic, ONNX protobuf);
3. verifies the model file's sha256 against the manifest: a mismatch is an
   ``IntegrityError``, never a warning;
4. takes IO specs and precision from the manifest, or, for a bare model file,
   reads them from the model itself.

``inspect_model`` gathers what ``edgerun info`` prints (op histogram, parameter
count, opsets). It reads ONNX with edgerun's own small protobuf reader and
TFLite through the LiteRT interpreter (imported lazily).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun import _onnxproto
from edgerun._jsonio import MANIFEST_MAX_BYTES, read_json
from edgerun.errors import ArtifactError, IntegrityError
from edgerun.schema.files import check_samples, regular_file
from edgerun.schema.limits import MAX_ONNX_INSPECT_BYTES, MiB

MANIFEST_SCHEMA = "edgerun.manifest"
MANIFEST_SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".edgerun.json"
FORMATS = ("onnx", "tflite", "pte")  # pte: ExecuTorch program (edgerun/engines/pte.py)
PRECISIONS = ("fp32", "fp16", "int8", "int4", "mixed")

# ONNX ops that only appear in quantized graphs.
_ONNX_INT4_OPS = {"MatMulNBits", "GatherBlockQuantized"}
_ONNX_INT8_OPS = {
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "ConvInteger",
    "MatMulInteger",
    "DynamicQuantizeMatMul",
}


@dataclass(frozen=True)
class Quant:
    """Per-tensor affine quantization: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]
    dtype: str
    quant: Quant | None = None

    def to_dict(self) -> dict[str, Any]:
        quant = None if self.quant is None else {"scale": self.quant.scale, "zero_point": self.quant.zero_point}
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "quant": quant}

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape) or "scalar"
        q = "" if self.quant is None else f" (scale={self.quant.scale:.6g}, zero_point={self.quant.zero_point})"
        return f"{self.name}: {self.dtype}[{dims}]{q}"


@dataclass(frozen=True)
class Manifest:
    """The parsed JSON manifest (docs/manifest.md)."""

    name: str
    format: str
    model_file: str
    sha256: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    raw_inputs: tuple[TensorSpec, ...] | None = None
    preprocess: tuple[dict[str, Any], ...] = ()
    postprocess: tuple[dict[str, Any], ...] = ()
    labels: tuple[str, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    samples: str | None = None
    schema_version: int = MANIFEST_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "schema_version": self.schema_version,
            "name": self.name,
            "format": self.format,
            "model_file": self.model_file,
            "sha256": self.sha256,
            "precision": self.precision,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "raw_inputs": None if self.raw_inputs is None else [t.to_dict() for t in self.raw_inputs],
            "preprocess": list(self.preprocess),
            "postprocess": list(self.postprocess),
            "labels": list(self.labels),
            "provenance": self.provenance,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class Artifact:
    """A loaded, verified model artifact. ``path`` is the model file."""

    path: Path
    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str
    size_bytes: int
    manifest: Manifest | None = None
    manifest_path: Path | None = None

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else self.path.stem

    @property
    def raw_inputs(self) -> tuple[TensorSpec, ...]:
        """What Runtime.run accepts before pre-processing."""
        if self.manifest and self.manifest.raw_inputs is not None:
            return self.manifest.raw_inputs
        return self.inputs


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_path_for(model_path: Path) -> Path:
    """``digits-int8.onnx`` -> ``digits-int8.onnx.edgerun.json`` (the full name, so that an
    ONNX and a TFLite variant with the same stem can share a folder)."""
    return model_path.with_name(model_path.name + MANIFEST_SUFFIX)


def _resolve(path: Path) -> tuple[Path, Path | None]:
    """(model file, or the manifest itself when the manifest names the model; manifest file or None)."""
    if not path.exists():
        raise ArtifactError(f"{path}: no such file or directory")
    if path.is_dir():
        manifests = sorted(path.glob("*" + MANIFEST_SUFFIX))
        if len(manifests) != 1:
            raise ArtifactError(
                f"{path}: a folder artifact must hold exactly one *{MANIFEST_SUFFIX} manifest, found {len(manifests)}"
            )
        path = manifests[0]
    if path.name.endswith(MANIFEST_SUFFIX):
        return path, path
    side = manifest_path_for(path)
    return path, side if side.exists() else None


def _inside(manifest_file: Path, key: str, value: str, allow_outside: bool) -> Path:
    """``value`` relative to the manifest's folder, refused if it resolves (symlinks included)
    outside that folder: a manifest from elsewhere must not make edgerun read, hash, stage
    or send arbitrary files of this machine."""
    folder = manifest_file.parent
    path = folder / value
    if allow_outside:
        return path
    try:
        root, real = folder.resolve(), path.resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
        raise ArtifactError(f"{manifest_file}: {key!r} is {value!r}, not a usable path ({exc})") from exc
    if not real.is_relative_to(root):
        raise ArtifactError(
            f"{manifest_file}: {key!r} is {value!r}, which resolves to {real}, outside the manifest's folder "
            f"{root}; expected a path inside that folder (or load with allow_outside=True)"
        )
    return path


def _read_manifest(path: Path) -> dict[str, Any]:
    regular_file(path, "manifest")  # a FIFO would block the read forever
    data = read_json(path, what="manifest", error=ArtifactError, max_bytes=MANIFEST_MAX_BYTES)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: manifest must be a JSON object, got {type(data).__name__}")
    return data


def parse_manifest(data: dict[str, Any], where: str) -> Manifest:
    """Validate a manifest dict (docs/manifest.md) and build a Manifest; ArtifactError otherwise.

    The schema and its version are checked here first (a newer version may mean other fields,
    so its fields are not judged by this version's rules); every field then by the schema in
    ``edgerun.schema.manifest``, imported here so that ``import edgerun`` does not load pydantic.
    """
    if not isinstance(data, dict):
        raise ArtifactError(f"{where}: manifest must be a JSON object, got {type(data).__name__}")
    if data.get("schema") != MANIFEST_SCHEMA:
        raise ArtifactError(f"{where}: 'schema' must be {MANIFEST_SCHEMA!r}, got {_short(data.get('schema'))}")
    version = data.get("schema_version")
    if type(version) is not int or not 1 <= version <= MANIFEST_SCHEMA_VERSION:
        raise ArtifactError(
            f"{where}: manifest schema_version {_short(version)} is not supported "
            f"(this edgerun reads 1..{MANIFEST_SCHEMA_VERSION}; upgrade edgerun for newer ones)"
        )
    from edgerun.schema.manifest import validate_manifest

    manifest: Manifest = validate_manifest(data, where)
    return manifest


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:60] + f"... ({len(text)} characters)"


def sniff_format(path: Path) -> str:
    """Tell ONNX from TFLite by content, and refuse anything else."""
    size = regular_file(path, "model file")  # never open a FIFO: it blocks until someone writes
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read model file ({exc.strerror or type(exc).__name__})") from exc
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head[:1] == b"\x08":  # ModelProto field 1 (ir_version), varint: how every ONNX file starts
        return "onnx"
    if len(head) >= 8 and head[4:8] == b"ET12":  # ExecuTorch's flatbuffer identifier (schema/program.fbs)
        return "pte"
    # Name the file and its size, never its bytes: it may be anything (a swapped-in record, a key).
    raise ArtifactError(
        f"{path}: not an ONNX or TFLite model, nor an ExecuTorch program ({size} bytes; expected an ONNX "
        "protobuf ModelProto, "
        "whose first byte is 0x08, or a TFLite or ExecuTorch flatbuffer with 'TFL3' or 'ET12' at byte 4)"
    )


def load_artifact(path: str | Path, *, allow_outside: bool = False) -> Artifact:
    """Load and verify an artifact. Raises ArtifactError / IntegrityError.

    A manifest's ``model_file`` and ``samples`` must resolve inside the manifest's folder;
    ``allow_outside=True`` lifts that, for a caller that trusts the manifest's author.
    """
    model_path, manifest_file = _resolve(Path(path))
    manifest = None
    if manifest_file is not None:  # checked before any byte of the model is read
        manifest = parse_manifest(_read_manifest(manifest_file), str(manifest_file))
        named = _inside(manifest_file, "model_file", manifest.model_file, allow_outside)
        model_path = named if model_path == manifest_file else model_path
        if manifest.samples is not None:
            samples = _inside(manifest_file, "samples", manifest.samples, allow_outside)
            if samples.exists():  # optional for a deployed model; refused when present and wrong
                check_samples(samples)
    if not model_path.exists():
        raise ArtifactError(f"{model_path}: model file not found")
    fmt = sniff_format(model_path)
    digest = sha256_file(model_path)
    if manifest is not None and manifest_file is not None:
        if manifest.sha256 != digest:
            # The manifest's hash is the user's own metadata; the file's hash is a fingerprint of
            # whatever the file now holds (maybe not a model at all), which would let anyone who
            # reads the log confirm a guess of its content. Restoring or rebuilding needs only the
            # expected one.
            raise IntegrityError(
                f"{model_path}: sha256 does not match the manifest {manifest_file.name} (expected "
                f"{manifest.sha256}; the file is {model_path.stat().st_size} bytes); the model file was "
                "modified or replaced. Rebuild the artifact or restore the original file."
            )
        if manifest.format != fmt:
            raise ArtifactError(f"{model_path}: manifest says format {manifest.format!r}, file is {fmt}")
        inputs, outputs, precision = manifest.inputs, manifest.outputs, manifest.precision
    else:
        info = inspect_model(model_path, fmt)
        inputs, outputs, precision = info.inputs, info.outputs, info.precision
    return Artifact(
        path=model_path,
        format=fmt,
        precision=precision,
        inputs=inputs,
        outputs=outputs,
        sha256=digest,
        size_bytes=model_path.stat().st_size,
        manifest=manifest,
        manifest_path=manifest_file,
    )


@dataclass(frozen=True)
class ModelInfo:
    """What the model file itself says (independent of any manifest)."""

    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameter_count: int
    parameter_dtypes: dict[str, int]  # dtype -> number of parameters stored in it
    op_histogram: dict[str, int]
    versions: dict[str, int]  # ONNX: ir_version + opsets; TFLite: schema version


def inspect_model(path: Path, fmt: str | None = None) -> ModelInfo:
    fmt = fmt or sniff_format(path)
    if fmt == "onnx":
        return _inspect_onnx(path)
    if fmt == "pte":
        from edgerun.engines.pte import pte_model_info  # edgerun's own reader: no ExecuTorch, no torch

        return pte_model_info(path)
    return _inspect_tflite(path)


def _inspect_onnx(path: Path) -> ModelInfo:
    size = regular_file(path, "model file")
    if size > MAX_ONNX_INSPECT_BYTES:  # read whole below; protobuf itself stops at 2 GiB
        raise ArtifactError(
            f"{path}: ONNX model is {size} bytes; expected at most {MAX_ONNX_INSPECT_BYTES // MiB} MiB "
            "(weights past that live in external data files, which edgerun does not load)"
        )
    try:
        model = _onnxproto.parse_model(path.read_bytes())
    except ValueError as exc:
        raise ArtifactError(f"{path}: corrupt or truncated ONNX model ({exc})") from exc
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in model.nodes)
    dtypes: Counter[str] = Counter()
    for init in model.initializers:
        dtypes[init.dtype] += math.prod(init.dims)
    # MatMulNBits stores a K x N weight as int4 packed two per uint8, in blocks of block_size along K:
    # B is (N, ceil(K / block_size), block_size / 2) bytes, the last block zero-padded. The weight's
    # parameters are K * N (its attributes; com.microsoft MatMulNBits, onnxruntime docs/ContribOperators.md),
    # not the padded bytes x 2.
    packed = {
        n.inputs[1]: n.int_attrs for n in model.nodes if n.op_type == "MatMulNBits" and len(n.inputs) > 1
    }
    for init in model.initializers:
        if init.name in packed:
            count = math.prod(init.dims)
            attrs = packed[init.name]
            dtypes[init.dtype] -= count
            dtypes["int4"] += attrs["K"] * attrs["N"] if "K" in attrs and "N" in attrs else 2 * count
    plain_ops = {n.op_type for n in model.nodes}
    return ModelInfo(
        format="onnx",
        precision=_onnx_precision(plain_ops, dtypes),
        inputs=tuple(TensorSpec(v.name, v.shape, v.dtype) for v in model.inputs),
        outputs=tuple(TensorSpec(v.name, v.shape, v.dtype) for v in model.outputs),
        parameter_count=sum(dtypes.values()),
        parameter_dtypes={k: v for k, v in dtypes.items() if v},
        op_histogram=dict(ops.most_common()),
        versions={"ir_version": model.ir_version, **{f"opset:{k}": v for k, v in model.opsets.items()}},
    )


def _onnx_precision(ops: set[str], dtypes: Counter[str]) -> str:
    if ops & _ONNX_INT4_OPS or dtypes.get("int4") or dtypes.get("uint4"):
        return "int4"
    if ops & _ONNX_INT8_OPS or any(op.startswith("QLinear") for op in ops):
        return "int8"
    if dtypes.get("float16", 0) > dtypes.get("float32", 0):
        return "fp16"
    return "fp32"


def _inspect_tflite(path: Path) -> ModelInfo:
    from edgerun.engines.litert import open_interpreter, readable_names

    interp = open_interpreter(path, threads=1)
    with readable_names(path):  # names are decoded as they are asked for
        return _tflite_info(path, interp)


def _tflite_info(path: Path, interp: Any) -> ModelInfo:
    from edgerun.engines.litert import tensor_spec

    details = {d["index"]: d for d in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # the only public-ish way to list ops in LiteRT
    produced = {t for op in ops for t in op["outputs"]}
    graph_inputs = {d["index"] for d in interp.get_input_details()}
    consumed = {t for op in ops for t in op["inputs"] if t >= 0}
    constants = consumed - produced - graph_inputs
    # LiteRT reports INT4 tensors as int8, so only a model with int8 constants can hold any: only
    # then is the flatbuffer schema read (importing it costs ~25 ms of CPU, every fp32 load paid it).
    maybe_int4 = any(index in details and _np_name(details[index]["dtype"]) == "int8" for index in constants)
    int4 = _tflite_int4_tensors(path) if maybe_int4 else set()
    dtypes: Counter[str] = Counter()
    for index in constants:
        d = details.get(index)
        if d is not None:
            dtype = "int4" if index in int4 else _np_name(d["dtype"])
            dtypes[dtype] += int(math.prod(int(x) for x in d["shape"]))
    precision = "fp32"
    if dtypes.get("int4"):
        precision = "int4"
    elif dtypes.get("int8") or dtypes.get("uint8"):
        precision = "int8"
    elif dtypes.get("float16", 0) > dtypes.get("float32", 0):
        precision = "fp16"
    return ModelInfo(
        format="tflite",
        precision=precision,
        inputs=tuple(tensor_spec(d) for d in interp.get_input_details()),
        outputs=tuple(tensor_spec(d) for d in interp.get_output_details()),
        parameter_count=sum(dtypes.values()),
        parameter_dtypes=dict(dtypes),
        op_histogram=dict(Counter(op["op_name"] for op in ops).most_common()),
        versions={"tflite_schema": 3},
    )


def _tflite_int4_tensors(path: Path) -> set[int]:
    """Indices of the INT4 tensors of the main subgraph, read from the flatbuffer.

    The LiteRT interpreter reports INT4 tensors (ai-edge-quantizer's weight-only int4) as int8;
    the schema's TensorType tells them apart. Empty where the schema module is missing
    (the old tflite_runtime package).
    """
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        return set()
    import struct

    try:  # the interpreter has read this file already; a flatbuffer it accepted may still mislead this reader
        model = schema.Model.GetRootAsModel(path.read_bytes(), 0)
        if model.SubgraphsLength() == 0:
            return set()
        graph = model.Subgraphs(0)
        return {i for i in range(graph.TensorsLength()) if graph.Tensors(i).Type() == schema.TensorType.INT4}
    except (IndexError, struct.error, ValueError, TypeError, OverflowError) as exc:
        raise ArtifactError(
            f"{path}: corrupt TFLite flatbuffer ({type(exc).__name__} reading its tensor types)"
        ) from None


def _np_name(dtype: Any) -> str:
    import numpy as np

    return np.dtype(dtype).name


def write_manifest(manifest: Manifest, model_path: Path) -> Path:
    """Write ``manifest`` beside ``model_path`` (used by tools/ and the compress toolkit)."""
    out = manifest_path_for(model_path)
    out.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out
