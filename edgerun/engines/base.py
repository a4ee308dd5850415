"""The engine protocol: ``EngineOptions``, ``Session`` and ``Engine``, and the engine names.

Below every engine module (``onnx.py``, ``litert.py``, ...) and ``edgerun.engines`` itself, which
re-exports these names: ``from edgerun.engines import EngineOptions`` keeps working, and an engine
module needs only this one, not the package that picks engines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from edgerun.errors import UsageError
from edgerun.formats.frozen import Frozen

if TYPE_CHECKING:
    import numpy as np

    from edgerun.artifact import Artifact, TensorSpec

ENGINES = ("onnx", "litert", "executorch", "coreml")  # coreml: macOS only (engines/coreml.py)
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


class EngineOptions(Frozen):
    """How to open a session. Immutable (edgerun.formats.frozen); checked when made.

    threads: intra-op threads (None = the engine's default).
    graph_optimization: onnxruntime graph optimisation level (LiteRT ignores it).
    providers: execution providers / delegates in preference order, by short name
        ("CPU", "XNNPACK", "CUDA", "TensorRT", "NNAPI", "CoreML", ...) or the engine's
        full name; LiteRT also takes "delegate:/path/to/libdelegate.so". Empty = default.
        onnxruntime's TensorRT takes options: "tensorrt:fp16:int8:cache=DIR" (engines/ort_providers.py).
    record_placement: onnxruntime profiles the first inference so the session's ``node_placement()``
        can say which provider ran each node (the bench sets it when providers are asked for).
    """

    __slots__ = ("threads", "graph_optimization", "providers", "record_placement")
    threads: int | None
    graph_optimization: str
    providers: tuple[str, ...]
    record_placement: bool

    def __init__(
        self,
        threads: int | None = None,
        graph_optimization: str = "all",
        providers: tuple[str, ...] = (),
        record_placement: bool = False,
    ) -> None:
        if threads is not None and threads < 1:
            raise UsageError(f"threads must be >= 1, got {threads}")
        if graph_optimization not in GRAPH_OPTIMIZATION_LEVELS:
            raise UsageError(
                f"graph_optimization must be one of {GRAPH_OPTIMIZATION_LEVELS}, got {graph_optimization!r}"
            )
        self._set_fields(threads, graph_optimization, providers, record_placement)


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
