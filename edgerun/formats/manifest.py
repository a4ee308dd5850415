"""The edgerun manifest's fields (docs/manifest.md): what a model's ``.edgerun.json`` declares.

A plain frozen value class (``edgerun.formats.frozen``) and the vocabularies it uses, with no
validation: ``edgerun.schema.manifest`` checks a manifest document (pydantic) and builds a
``Manifest``; ``edgerun.artifact`` loads one beside its model file and re-exports everything here.
It sits in this layer so that the schema layer and artifact both import it without importing each
other.
"""

from __future__ import annotations

from typing import Any

from edgerun.formats.frozen import Frozen
from edgerun.formats.spec import TensorSpec

__all__ = ["FORMATS", "MANIFEST_SCHEMA", "MANIFEST_SCHEMA_VERSION", "PRECISIONS", "Manifest"]

MANIFEST_SCHEMA = "edgerun.manifest"
MANIFEST_SCHEMA_VERSION = 1
# pte: ExecuTorch program (edgerun/formats/pte.py); coreml: a .mlpackage folder, read and
# verified by edgerun/coreml.py (load_artifact takes model files only)
FORMATS = ("onnx", "tflite", "pte", "coreml")
PRECISIONS = ("fp32", "fp16", "int8", "int4", "mixed")


class Manifest(Frozen):
    """The parsed JSON manifest (docs/manifest.md). Immutable; ``replace(**changes)`` makes a changed copy."""

    __slots__ = (
        "name",
        "format",
        "model_file",
        "sha256",
        "precision",
        "inputs",
        "outputs",
        "raw_inputs",
        "preprocess",
        "postprocess",
        "labels",
        "provenance",
        "samples",
        "schema_version",
    )
    name: str
    format: str
    model_file: str
    sha256: str
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    raw_inputs: tuple[TensorSpec, ...] | None
    preprocess: tuple[dict[str, Any], ...]
    postprocess: tuple[dict[str, Any], ...]
    labels: tuple[str, ...]
    provenance: dict[str, Any]
    samples: str | None
    schema_version: int

    def __init__(
        self,
        name: str,
        format: str,
        model_file: str,
        sha256: str,
        precision: str,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        raw_inputs: tuple[TensorSpec, ...] | None = None,
        preprocess: tuple[dict[str, Any], ...] = (),
        postprocess: tuple[dict[str, Any], ...] = (),
        labels: tuple[str, ...] = (),
        provenance: dict[str, Any] | None = None,
        samples: str | None = None,
        schema_version: int = MANIFEST_SCHEMA_VERSION,
    ) -> None:
        self._set_fields(
            name,
            format,
            model_file,
            sha256,
            precision,
            inputs,
            outputs,
            raw_inputs,
            preprocess,
            postprocess,
            labels,
            {} if provenance is None else provenance,  # a fresh dict each, as default_factory=dict gave
            samples,
            schema_version,
        )

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
