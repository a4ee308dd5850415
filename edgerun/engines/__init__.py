"""Inference engines behind one small protocol.

    Engine.open(artifact, options) -> Session
    Session.inputs / Session.outputs      TensorSpec tuples, as the engine sees them
    Session.run(feeds)                    list of output arrays, in Session.outputs order

The protocol and the engine names live in ``base.py`` (re-exported here); ``engine_for`` picks
an engine. One module per engine (``onnx.py`` for onnxruntime, ``litert.py`` for LiteRT /
tflite-runtime, ``executorch.py`` for ExecuTorch ``.pte`` programs, ``coreml.py``). Each imports
its engine lazily and translates the engine's exceptions into edgerun's error tree at this
boundary. Policy (which engine, which providers, how many threads) lives above, in the
runtime and the bench.
"""

from __future__ import annotations

from edgerun.engines.base import ENGINES, GRAPH_OPTIMIZATION_LEVELS, Engine, EngineOptions, Session
from edgerun.errors import UsageError

__all__ = ["ENGINES", "GRAPH_OPTIMIZATION_LEVELS", "Engine", "EngineOptions", "Session", "engine_for"]


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
