"""Read-only readers of model files: what a file declares, with no inference engine needed.

    edgerun.formats.spec    TensorSpec, Quant, ModelInfo: what the readers return
    edgerun.formats.manifest  the Manifest class and the format/precision vocabularies
                            (validated by edgerun.schema.manifest, loaded by edgerun.artifact)
    edgerun.formats.onnx    ONNX: edgerun's own protobuf reader (no ``onnx`` package)
    edgerun.formats.tflite  TFLite: IO specs and ops through LiteRT's interpreter (plain kernels,
                            no delegate), INT4 tensor types from the flatbuffer schema
    edgerun.formats.pte     ExecuTorch programs: edgerun's own flatbuffer reader (no torch)

This layer sits below both ``edgerun.artifact`` (which adds the manifest, sha256 and the file's
path to every error) and ``edgerun.engines`` (which run models): it imports neither, so neither
imports the other to read a model (tests/test_layers.py checks). A reader raises ``FormatError``
(an ArtifactError) for bytes that do not parse. Importing this package imports no reader.
"""

from __future__ import annotations

from edgerun.formats.spec import ModelInfo, Quant, TensorSpec

__all__ = ["ModelInfo", "Quant", "TensorSpec"]
