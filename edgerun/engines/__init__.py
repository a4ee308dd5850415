"""Inference engines behind one small protocol.

    Engine.open(artifact, options) -> Session
    Session.inputs / Session.outputs      TensorSpec tuples, as the engine sees them
    Session.run(feeds)                    list of output arrays, in Session.outputs order

One module per engine (``onnx.py`` for onnxruntime, ``litert.py`` for LiteRT /
tflite-runtime, ``executorch.py`` for ExecuTorch ``.pte`` programs). Each imports its
engine lazily and translates the engine's exceptions into edgerun's error tree at this
boundary. Policy (which engine, which providers, how many threads) lives above, in the
runtime and the bench.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from edgerun.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

    from edgerun.artifact import Artifact, TensorSpec

ENGINES = ("onnx", "litert", "executorch", "coreml")  # coreml: macOS only (engines/coreml.py)
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class EngineOptions:
    """How to open a session.

    threads: intra-op threads (None = the engine's default).
    graph_optimization: onnxruntime graph optimisation level (LiteRT ignores it).
    providers: execution providers / delegates in preference order, by short name
        ("CPU", "XNNPACK", "CUDA", "TensorRT", "NNAPI", "CoreML", ...) or the engine's
        full name; LiteRT also takes "delegate:/path/to/libdelegate.so". Empty = default.
        onnxruntime's TensorRT takes options: "tensorrt:fp16:int8:cache=DIR" (engines/ort_providers.py).
    record_placement: onnxruntime profiles the first inference so the session's ``node_placement()``
        can say which provider ran each node (the bench sets it when providers are asked for).
    """

    threads: int | None = None
    graph_optimization: str = "all"
    providers: tuple[str, ...] = ()
    record_placement: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be >= 1, got {self.threads}")
        if self.graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise UsageError(
                f"graph_optimization must be one of {GRAPH_OPTIMIZATION_LEVELS}, got {self.graph_optimization!r}"
            )


class Session(Protocol):
    engine: str
    providers: tuple[str, ...]  # what the session actually runs on
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]: ...


class Engine(Protocol):
    name: str

    def open(self, artifact: Artifact, options: EngineOptions) -> Session: ...

    def version(self) -> str: ...

    def usable(self, wanted: tuple[str, ...]) -> tuple[str, ...]: ...


def engine_for(fmt: str, name: str | None = None) -> Engine:
    """The engine for an artifact format (or the one named)."""
    name = name or {"onnx": "onnx", "tflite": "litert", "pte": "executorch", "coreml": "coreml"}[fmt]
    expected = {"onnx": "onnx", "litert": "tflite", "executorch": "pte", "coreml": "coreml"}
    if name not in ENGINES:
        raise UsageError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    if expected[name] != fmt:
        from edgerun.errors import EngineError

        raise EngineError(f"engine {name!r} cannot run {fmt} models (it runs {expected[name]})")
    if name == "onnx":
        from edgerun.engines.onnx import OnnxEngine

        return OnnxEngine()
    if name == "coreml":
        from edgerun.engines.coreml import CoreMLEngine

        return CoreMLEngine()
    if name == "executorch":  # imports torch only when a session is opened
        from edgerun.engines.executorch import ExecuTorchEngine

        return ExecuTorchEngine()
    from edgerun.engines.litert import LiteRTEngine

    return LiteRTEngine()
