"""Core ML packages (``.mlpackage``): read anywhere, run only on macOS.

A ``.mlpackage`` is a folder: ``Manifest.json`` (``fileFormatVersion``, ``itemInfoEntries``,
``rootModelIdentifier``) names the model spec (``Data/com.apple.CoreML/model.mlmodel``, a
protobuf of coremltools' ``Model.proto``) and the weights. ``edgerun info`` reads both without
running anything: Manifest.json as JSON, the spec with coremltools' protobuf classes
(``coremltools.models.MLModel(path, skip_model_load=True)``, the ``coreml`` extra), which work
on Linux. Running a Core ML model needs Apple's Core ML framework: ``coremltools`` predicts on
macOS only, so edgerun benchmarks Core ML only there (``edgerun.engines.coreml``); elsewhere
loading one for inference is a one-line ``EngineUnavailable``.

The edgerun manifest of a package sits beside it, ``NAME.mlpackage.edgerun.json``, with
``format = "coreml"`` and ``sha256`` = ``package_sha256`` (every file's path and sha256, sorted).
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from edgerun.errors import ArtifactError, EngineUnavailable, IntegrityError

__all__ = ["MACOS_ONLY", "coreml_info", "is_mlpackage", "load_coreml_artifact", "package_sha256", "require_macos"]

SUFFIX = ".mlpackage"
MAX_FILES = 10_000  # a package holds a handful; a folder with more is not one
MACOS_ONLY = (
    "edgerun benchmarks Core ML only on macOS: running a .mlpackage needs Apple's Core ML framework "
    "(coremltools predict), which is not on {platform}; `edgerun info` still reads it here"
)
# MIL ops that dequantize weights at load time (coremltools.optimize): the package holds int weights
_QUANT_OPS = {"constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense"}
_MIL_DTYPES = {"FLOAT32": "float32", "FLOAT16": "float16", "INT8": "int8", "UINT8": "uint8", "INT4": "int4",
               "UINT4": "uint4", "INT32": "int32", "FLOAT64": "float64"}  # fmt: skip
_WEIGHT_DTYPES = {"float32", "float16", "int8", "uint8", "int4", "uint4"}
_ARRAY_DTYPES = {65568: "float32", 65552: "float16", 65600: "float64", 131104: "int32", 131080: "int8"}


def is_mlpackage(path: str | Path) -> bool:
    return Path(path).suffix == SUFFIX


def require_macos() -> None:
    if sys.platform != "darwin":
        raise EngineUnavailable(MACOS_ONLY.format(platform=sys.platform))


def _files(pkg: Path) -> list[Path]:
    if not pkg.is_dir():
        raise ArtifactError(f"{pkg}: a Core ML package is a folder with a Manifest.json; this is not a folder")
    files = []
    for path in sorted(pkg.rglob("*")):
        if path.is_symlink():
            raise ArtifactError(f"{pkg}: {path.relative_to(pkg)} is a symbolic link; a package holds plain files")
        if path.is_file():
            files.append(path)
        if len(files) > MAX_FILES:
            raise ArtifactError(f"{pkg}: more than {MAX_FILES} files; expected a Core ML package")
    return files


def package_sha256(pkg: Path) -> str:
    """One sha256 over the package: each file's relative path and sha256, in sorted order."""
    from edgerun.artifact import sha256_file

    digest = hashlib.sha256()
    for path in _files(pkg):
        digest.update(f"{path.relative_to(pkg).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def read_package_manifest(pkg: Path) -> dict[str, Any]:
    """Manifest.json, checked: the root item exists and its file is inside the package."""
    from edgerun._jsonio import MANIFEST_MAX_BYTES, read_json

    data = read_json(pkg / "Manifest.json", what="Core ML Manifest.json", error=ArtifactError,
                     max_bytes=MANIFEST_MAX_BYTES)  # fmt: skip
    entries = data.get("itemInfoEntries") if isinstance(data, dict) else None
    root = entries.get(data.get("rootModelIdentifier")) if isinstance(entries, dict) else None
    if not isinstance(root, dict) or not isinstance(root.get("path"), str):
        raise ArtifactError(
            f"{pkg}/Manifest.json: expected itemInfoEntries with the rootModelIdentifier's entry and its path"
        )
    spec = (pkg / "Data" / root["path"]).resolve()
    if not spec.is_relative_to(pkg.resolve()) or not spec.is_file():
        raise ArtifactError(f"{pkg}/Manifest.json: the root model {root['path']!r} is not a file in the package")
    return data


def _coremltools() -> Any:
    """coremltools, imported without its start-up chatter (unsupported scikit-learn, untested torch,
    no Core ML framework off macOS: warnings and log lines that are not about the user's model)."""
    import contextlib
    import io
    import logging
    import warnings

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            import coremltools
    except ImportError as exc:
        raise EngineUnavailable(
            "reading a Core ML model spec needs coremltools: pip install 'edgerun[coreml]'"
        ) from exc
    finally:
        logging.disable(logging.NOTSET)
    return coremltools


def _spec(pkg: Path) -> Any:
    ct = _coremltools()
    try:
        return ct.models.MLModel(str(pkg), skip_model_load=True).get_spec()
    except Exception as exc:  # coremltools raises its own and protobuf's classes
        raise ArtifactError(f"{pkg}: coremltools cannot read this package ({type(exc).__name__}: {exc})") from exc


def _feature(f: Any) -> Any:
    from edgerun.artifact import TensorSpec

    kind = f.type.WhichOneof("Type")
    if kind == "multiArrayType":
        arr = f.type.multiArrayType
        return TensorSpec(f.name, tuple(int(d) for d in arr.shape), _ARRAY_DTYPES.get(arr.dataType, str(arr.dataType)))
    return TensorSpec(f.name, (), kind or "?")


def _program_stats(spec: Any) -> tuple[Counter[str], Counter[str], str, str]:
    """(op histogram, weight parameters by dtype, detected precision, MIL opset) of an ML program."""
    from coremltools.proto import MIL_pb2

    fn = spec.mlProgram.functions["main"]
    ops: Counter[str] = Counter()
    params: Counter[str] = Counter()
    for op in fn.block_specializations[fn.opset].operations:
        ops[op.type] += 1
        tensors = [
            (a, op.attributes[a].type.tensorType) for a in op.attributes if op.attributes[a].type.tensorType.rank
        ]
        for name, tensor in tensors:
            if op.type == "const" or name in ("quantized_data", "data", "indices"):
                count = 1
                for d in tensor.dimensions:
                    count *= d.constant.size
                dtype = _MIL_DTYPES.get(MIL_pb2.DataType.Name(tensor.dataType))
                if dtype in _WEIGHT_DTYPES:  # not the int32 shapes, strides and pads
                    params[dtype] += count
    quant = [params[k] for k in ("int8", "uint8", "int4", "uint4")]
    if any(ops[q] for q in _QUANT_OPS):
        precision = "int8" if quant[0] + quant[1] >= quant[2] + quant[3] else "int4"
    else:
        precision = "fp16" if params["float16"] > params["float32"] else "fp32"
    return ops, params, precision, fn.opset


def coreml_info(pkg: Path) -> dict[str, Any]:
    """What ``edgerun info`` says of a package: IO, precision, ops, weights, versions. Nothing runs."""
    pkg = Path(pkg)
    read_package_manifest(pkg)
    spec = _spec(pkg)
    kind = spec.WhichOneof("Type")
    meta = dict(spec.description.metadata.userDefined)
    versions = {"specificationVersion": str(spec.specificationVersion), "model_type": str(kind)}
    if kind == "mlProgram":
        ops, params, precision, opset = _program_stats(spec)
        versions["mil_opset"] = opset
    else:
        ops, params, precision = Counter({str(kind): 1}), Counter(), "unknown"
    for key, label in (("version", "coremltools"), ("source", "converted_from")):
        if f"com.github.apple.coremltools.{key}" in meta:
            versions[label] = meta[f"com.github.apple.coremltools.{key}"]
    return {
        "format": "coreml",
        "precision_detected": precision,
        "inputs": tuple(_feature(f) for f in spec.description.input),
        "outputs": tuple(_feature(f) for f in spec.description.output),
        "op_histogram": dict(ops.most_common()),
        "parameter_dtypes": dict(params),
        "parameter_count": sum(params.values()),
        "versions": versions,
        "size_bytes": sum(p.stat().st_size for p in _files(pkg)),
    }


def load_coreml_artifact(path: str | Path) -> Any:
    """The package (or its ``.edgerun.json``) as an ``Artifact``, sha256-verified against its manifest."""
    from edgerun.artifact import MANIFEST_SUFFIX, Artifact, _read_manifest, manifest_path_for, parse_manifest

    path = Path(path)
    pkg = path.with_name(path.name.removesuffix(MANIFEST_SUFFIX)) if path.name.endswith(MANIFEST_SUFFIX) else path
    if not pkg.exists():
        raise ArtifactError(f"{pkg}: no such Core ML package")
    info = coreml_info(pkg)
    digest = package_sha256(pkg)
    side = manifest_path_for(pkg)
    manifest = parse_manifest(_read_manifest(side), str(side)) if side.exists() else None
    if manifest is not None and manifest.sha256 != digest:
        raise IntegrityError(f"{pkg}: package sha256 {digest} does not match its manifest's {manifest.sha256}")
    return Artifact(
        path=pkg,
        format="coreml",
        precision=manifest.precision if manifest else info["precision_detected"],
        inputs=manifest.inputs if manifest else info["inputs"],
        outputs=manifest.outputs if manifest else info["outputs"],
        sha256=digest,
        size_bytes=info["size_bytes"],
        manifest=manifest,
        manifest_path=side if manifest else None,
    )
