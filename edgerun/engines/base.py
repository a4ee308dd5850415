"""The engine protocol: ``EngineOptions``, ``Session`` and ``Engine``, and the engine names.

Below every engine module (``onnx.py``, ``litert.py``, ...) and ``edgerun.engines`` itself, which
re-exports these names: ``from edgerun.engines import EngineOptions`` keeps working, and an engine
module needs only this one, not the package that picks engines.
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
