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
count, opsets) from the readers in ``edgerun.formats`` (ONNX: edgerun's own protobuf reader;
TFLite: the LiteRT interpreter, imported lazily). ``TensorSpec``, ``Quant`` and ``ModelInfo`` live
there and are re-exported here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgerun._jsonio import MANIFEST_MAX_BYTES, parse_json, read_capped
from edgerun._sha import sha256
from edgerun.errors import ArtifactError, FormatError, IntegrityError
from edgerun.formats.frozen import Frozen
from edgerun.formats.limits import MAX_ONNX_INSPECT_BYTES, MiB
from edgerun.formats.manifest import (  # noqa: F401 (re-exported: their first home)
    FORMATS,
    MANIFEST_SCHEMA,
    MANIFEST_SCHEMA_VERSION,
    PRECISIONS,
    Manifest,
)
from edgerun.formats.spec import ModelInfo, Quant, TensorSpec  # noqa: F401 (re-exported: their first home)
from edgerun.schema.files import check_samples, regular_file

MANIFEST_SUFFIX = ".edgerun.json"


class Artifact(Frozen):
    """A loaded, verified model artifact. ``path`` is the model file. Immutable (edgerun.formats.frozen)."""

    __slots__ = (
        "path",
        "format",
        "precision",
        "inputs",
        "outputs",
        "sha256",
        "size_bytes",
        "manifest",
        "manifest_path",
        "external_data",
    )
    path: Path
    format: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sha256: str
    size_bytes: int
    manifest: Manifest | None
    manifest_path: Path | None
    external_data: tuple[Path, ...]  # an ONNX model's weight files beside it, in sha256 and size_bytes

    def __init__(
        self,
        path: Path,
        format: str,
        precision: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        sha256: str,
        size_bytes: int,
        manifest: Manifest | None = None,
        manifest_path: Path | None = None,
        external_data: tuple[Path, ...] = (),
    ) -> None:
        self._set_fields(
            path, format, precision, inputs, outputs, sha256, size_bytes, manifest, manifest_path, external_data
        )

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
    with open(path, "rb") as fh:
        digest = sha256(os.fstat(fh.fileno()).st_size)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# An ONNX external data entry's key as it is encoded (StringStringEntryProto field 1, "location"): a
# model file without these bytes has no external data; one with them is parsed to be sure.
_EXTERNAL_DATA_KEY = b"\x0a\x08location"


def model_sha256(path: Path, fmt: str | None = None) -> tuple[str, tuple[Path, ...]]:
    """The sha256 a manifest records for a model, and the external data files it covers.

    For most models, the file's sha256 (``sha256_file``). An ONNX model may keep its weights in
    external data files beside it (``onnx.save_model(..., save_as_external_data=True)``; onnxruntime
    reads them from the model's folder): such a model is more than its file, so its sha256 is over
    one line per file, ``name\\0sha256\\n``, the model file first and then each data file by name, as
    a Core ML package's is (edgerun/coreml.py). A changed weight file then fails verification as a
    changed model file does. A data file must be a regular file inside the model's folder.
    """
    onnx = (fmt or sniff_format(path)) == "onnx"
    n = len(_EXTERNAL_DATA_KEY)
    seen, tail = False, b""
    with open(path, "rb") as fh:
        digest = sha256(os.fstat(fh.fileno()).st_size)
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            if onnx and not seen:  # chunked, as sha256_file: a large model is never held whole
                seen = _EXTERNAL_DATA_KEY in chunk or _EXTERNAL_DATA_KEY in tail + chunk[: n - 1]
                tail = chunk[-(n - 1) :]
    if not seen:
        return digest.hexdigest(), ()
    locations = _external_data(path)
    if not locations:
        return digest.hexdigest(), ()
    lines, files = [f"{path.name}\0{digest.hexdigest()}\n"], []
    for location in sorted(locations):
        target = (path.parent / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(path.parent.resolve()):
            raise ArtifactError(
                f"{path}: external data {location!r} is outside the model's folder; expected a file beside it"
            )
        if not target.is_file():
            raise ArtifactError(
                f"{path}: external data {location!r} (the model's weights) is missing; expected it beside the "
                "model, as the exporter wrote it"
            )
        lines.append(f"{location}\0{sha256_file(target)}\n")
        files.append(target)
    tree = sha256()
    tree.update("".join(lines).encode())
    return tree.hexdigest(), tuple(files)


def _external_data(path: Path) -> tuple[str, ...]:
    from edgerun.formats import onnx  # only for a model that names external data

    if path.stat().st_size > MAX_ONNX_INSPECT_BYTES:  # protobuf's own limit is 2 GiB
        return ()
    try:
        return onnx.external_data_locations(path.read_bytes())
    except FormatError:
        return ()  # a corrupt model: the engine says what is wrong with it


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
    return _read_manifest_bytes(path)[0]


def _read_manifest_bytes(path: Path) -> tuple[dict[str, Any], bytes]:
    """The manifest document and the exact bytes it was parsed from."""
    regular_file(path, "manifest")  # a FIFO would block the read forever
    raw = read_capped(path, what="manifest", error=ArtifactError, max_bytes=MANIFEST_MAX_BYTES)
    data = parse_json(raw, path, what="manifest", error=ArtifactError)
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: manifest must be a JSON object, got {type(data).__name__}")
    return data, raw


def parse_manifest(data: dict[str, Any], where: str, raw: bytes | None = None) -> Manifest:
    """Validate a manifest dict (docs/manifest.md) and build a Manifest; ArtifactError otherwise.

    The schema and its version are checked here first (a newer version may mean other fields,
    so its fields are not judged by this version's rules); every field then by the schema in
    ``edgerun.schema.manifest``, imported here so that ``import edgerun`` does not load pydantic.
    ``raw``, the exact bytes ``data`` was parsed from, lets a pass of those bytes by this schema be
    remembered (``edgerun.schema.manifest_cache``, which says why that is still a check).
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
    if raw is not None:
        from edgerun.schema import manifest_cache

        remembered = manifest_cache.remembered(data, raw)
        if remembered is not None:
            return remembered
    from edgerun.schema.manifest import validate_manifest

    manifest: Manifest = validate_manifest(data, where)
    if raw is not None:
        manifest_cache.remember(raw)
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
        data, raw = _read_manifest_bytes(manifest_file)
        manifest = parse_manifest(data, str(manifest_file), raw)
        named = _inside(manifest_file, "model_file", manifest.model_file, allow_outside)
        model_path = named if model_path == manifest_file else model_path
        if manifest.samples is not None:
            samples = _inside(manifest_file, "samples", manifest.samples, allow_outside)
            if samples.exists():  # optional for a deployed model; refused when present and wrong
                check_samples(samples)
    if not model_path.exists():
        raise ArtifactError(f"{model_path}: model file not found")
    fmt = sniff_format(model_path)
    digest, external = model_sha256(model_path, fmt)
    if manifest is not None and manifest_file is not None:
        if manifest.sha256 != digest:
            # The manifest's hash is the user's own metadata; the file's hash is a fingerprint of
            # whatever the file now holds (maybe not a model at all), which would let anyone who
            # reads the log confirm a guess of its content. Restoring or rebuilding needs only the
            # expected one.
            if external and manifest.sha256 == sha256_file(model_path):  # hashed again only on a mismatch
                raise IntegrityError(
                    f"{model_path}: the manifest {manifest_file.name}'s sha256 covers the model file alone, "
                    f"not its external data ({', '.join(p.name for p in external)}); record the sha256 over "
                    "the model and its data files (edgerun.artifact.model_sha256; `edgerun info` prints it)"
                )
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
        size_bytes=model_path.stat().st_size + sum(f.stat().st_size for f in external),
        manifest=manifest,
        manifest_path=manifest_file,
        external_data=external,
    )


def inspect_model(path: Path, fmt: str | None = None) -> ModelInfo:
    fmt = fmt or sniff_format(path)
    if fmt == "onnx":
        return _inspect_onnx(path)
    if fmt == "pte":
        from edgerun.formats.pte import pte_model_info  # edgerun's own reader: no ExecuTorch, no torch

        return pte_model_info(path)
    from edgerun.formats import tflite

    return tflite.model_info(path)


def _inspect_onnx(path: Path) -> ModelInfo:
    from edgerun.formats import onnx

    size = regular_file(path, "model file")
    if size > MAX_ONNX_INSPECT_BYTES:  # read whole below; protobuf itself stops at 2 GiB
        raise ArtifactError(
            f"{path}: ONNX model is {size} bytes; expected at most {MAX_ONNX_INSPECT_BYTES // MiB} MiB "
            "(save a model this large with its weights in external data files: onnx.save_model(..., "
            "save_as_external_data=True))"
        )
    try:
        return onnx.model_info(path.read_bytes())
    except FormatError as exc:
        raise ArtifactError(f"{path}: corrupt or truncated ONNX model ({exc})") from exc


def write_manifest(manifest: Manifest, model_path: Path) -> Path:
    """Write ``manifest`` beside ``model_path`` (used by tools/ and the compress toolkit)."""
    out = manifest_path_for(model_path)
    out.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out
