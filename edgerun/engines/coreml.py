"""Core ML engine: ``coremltools`` predict, on macOS only.

**Not tested by edgerun's test suite**: Core ML needs Apple's framework, and edgerun's CI runs
on Linux. On any other platform ``open`` raises a one-line ``EngineUnavailable`` (before
touching the model); ``edgerun info`` reads a ``.mlpackage`` everywhere (``edgerun.coreml``).

Providers choose Core ML's compute units (``coremltools.ComputeUnit``): ``cpu`` (CPU_ONLY),
``gpu`` (CPU_AND_GPU), ``ane`` / ``neuralengine`` (CPU_AND_NE), ``all`` (ALL, the default).
Core ML decides per layer where it runs within those units; it does not say which it chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgerun.engines.base import EngineOptions
from edgerun.errors import EngineUnavailable, InferenceError, ProviderUnavailable

if TYPE_CHECKING:
    import numpy as np

    from edgerun.artifact import Artifact, TensorSpec

COMPUTE_UNITS = {
    "all": "ALL",
    "cpu": "CPU_ONLY",
    "gpu": "CPU_AND_GPU",
    "ane": "CPU_AND_NE",
    "neuralengine": "CPU_AND_NE",
}


def _coremltools() -> Any:
    from edgerun.coreml import require_macos

    require_macos()
    try:
        import coremltools
    except ImportError as exc:
        raise EngineUnavailable("coremltools is not installed: pip install 'edgerun[coreml]'") from exc
    return coremltools


def compute_units(providers: tuple[str, ...]) -> str:
    """The one Core ML compute-unit setting the providers name (default ALL)."""
    if not providers:
        return "ALL"
    if len(providers) > 1 or providers[0].lower() not in COMPUTE_UNITS:
        raise ProviderUnavailable(f"Core ML takes one of {', '.join(COMPUTE_UNITS)} as provider, got {list(providers)}")
    return COMPUTE_UNITS[providers[0].lower()]


class CoreMLSession:
    engine = "coreml"

    def __init__(self, model: Any, artifact: Artifact, units: str) -> None:
        self.native = model  # the coremltools.models.MLModel
        self.providers: tuple[str, ...] = (units,)
        self.inputs: tuple[TensorSpec, ...] = artifact.inputs
        self.outputs: tuple[TensorSpec, ...] = artifact.outputs
        self._in = [t.name for t in artifact.inputs]
        self._out = [t.name for t in artifact.outputs]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        try:
            result = self.native.predict(dict(zip(self._in, feeds)))
        except Exception as exc:  # Core ML's errors come through coremltools as RuntimeError and others
            raise InferenceError(f"Core ML failed to run the model: {' '.join(str(exc).split())}") from exc
        return [result[name] for name in self._out]


class CoreMLEngine:
    name = "coreml"

    def version(self) -> str:
        return str(_coremltools().__version__)

    def usable(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(p for p in wanted if p.lower() in COMPUTE_UNITS)[:1]

    def open(self, artifact: Artifact, options: EngineOptions) -> CoreMLSession:
        ct = _coremltools()
        units = compute_units(options.providers)
        model = ct.models.MLModel(str(artifact.path), compute_units=getattr(ct.ComputeUnit, units))
        return CoreMLSession(model, artifact, units)
