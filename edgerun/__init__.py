"""edgerun: on-device inference runtime and benchmark harness for edge medical AI.

    import edgerun
    rt = edgerun.load("model.onnx", profile="raspberry-pi-5")
    res = rt.run(x)
    res.top, res.times.infer_ns, res.route

``import edgerun`` is light: the engines (onnxruntime, LiteRT) are imported
only when a model is opened, and torch never is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgerun.errors import (
    AccuracyGateError,
    ArtifactError,
    BenchConfigError,
    BenchError,
    CompressError,
    DeadlineExceeded,
    DutError,
    DutTimeout,
    EdgerunError,
    EngineError,
    EngineUnavailable,
    FormatError,
    FrameError,
    HandshakeError,
    InferenceError,
    InputError,
    IntegrityError,
    LabError,
    MeasurementError,
    OutputError,
    PolicyError,
    PortUnavailable,
    ProbeError,
    ProbeUnavailable,
    ProfileError,
    ProtocolError,
    ProviderUnavailable,
    RecipeError,
    RemoteAuthError,
    RemoteError,
    RemoteUnavailable,
    SerialError,
    TargetAuthError,
    TargetError,
    TargetSetupError,
    TargetTimeout,
    TargetUnreachable,
    UpdateRefused,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AccuracyGateError",
    "Artifact",
    "ArtifactError",
    "BenchConfigError",
    "BenchError",
    "Budget",
    "CompressError",
    "DeadlineExceeded",
    "DeviceProfile",
    "DutError",
    "DutTimeout",
    "EdgerunError",
    "EngineError",
    "EngineUnavailable",
    "FallbackPolicy",
    "FormatError",
    "FrameError",
    "HandshakeError",
    "InferenceError",
    "InputError",
    "IntegrityError",
    "LabError",
    "MeasurementError",
    "OutputError",
    "PolicyError",
    "PortUnavailable",
    "ProbeError",
    "ProbeUnavailable",
    "ProfileError",
    "ProtocolError",
    "ProviderUnavailable",
    "RecipeError",
    "RemoteAuthError",
    "RemoteError",
    "RemoteUnavailable",
    "Result",
    "Runtime",
    "SerialError",
    "StageTimes",
    "TargetAuthError",
    "TargetError",
    "TargetSetupError",
    "TargetTimeout",
    "TargetUnreachable",
    "TensorSpec",
    "UpdateRefused",
    "UsageError",
    "Verdict",
    "__version__",
    "detect",
    "load",
    "load_artifact",
    "load_profile",
]

# Public names that live in submodules; resolved on first use so that
# ``import edgerun`` does not pull in numpy-heavy modules before they are needed.
_LAZY = {
    "Artifact": "edgerun.artifact",
    "Budget": "edgerun.budget",
    "DeviceProfile": "edgerun.profiles",
    "FallbackPolicy": "edgerun.fallback.policy",
    "Verdict": "edgerun.budget",
    "Result": "edgerun.runtime",
    "Runtime": "edgerun.runtime",
    "load": "edgerun.runtime",
    "StageTimes": "edgerun.pipeline",
    "TensorSpec": "edgerun.artifact",
    "load_artifact": "edgerun.artifact",
    "detect": "edgerun.detection",
    "load_profile": "edgerun.profiles",
}

if TYPE_CHECKING:
    from edgerun.artifact import Artifact, TensorSpec, load_artifact
    from edgerun.budget import Budget, Verdict
    from edgerun.detection import detect
    from edgerun.fallback.policy import FallbackPolicy
    from edgerun.pipeline import StageTimes
    from edgerun.profiles import DeviceProfile, load_profile
    from edgerun.runtime import Result, Runtime, load


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgerun' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
