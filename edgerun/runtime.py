"""Runtime: the object an application holds.

    rt = edgerun.load("model.onnx", profile="raspberry-pi-5")
    res = rt.run(x)          # Result(outputs, top, times, route)

``Runtime.run`` validates the raw input, runs pre -> infer -> post through the
Pipeline (each stage timed) and returns the route the inference took. Today the
route is always ``"local"``. The cloud fallback plugs in here: a ``Router``
decides, per call, between the local pipeline and a remote endpoint, and only
when the integrator opted in (medical data stays on the device by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from edgerun.artifact import Artifact, TensorSpec, load_artifact
from edgerun.engines import EngineOptions, engine_for
from edgerun.pipeline import Pipeline, Prediction, StageTimes

if TYPE_CHECKING:
    import numpy as np

    from edgerun.profiles import DeviceProfile

ROUTE_LOCAL = "local"


@dataclass(frozen=True)
class Result:
    """One inference: post-processed outputs, top classes (if the manifest asks), stage times, route."""

    outputs: dict[str, np.ndarray]
    top: tuple[Prediction, ...]
    times: StageTimes
    route: str = ROUTE_LOCAL


@dataclass(frozen=True)
class LoadInfo:
    """Cold-start facts: how long verifying the artifact and creating the session took."""

    artifact_ns: int
    session_ns: int
    engine: str
    engine_version: str
    providers: tuple[str, ...]
    threads: int | None


class Runtime:
    def __init__(self, artifact: Artifact, pipeline: Pipeline, profile: DeviceProfile | None, load_info: LoadInfo):
        self.artifact = artifact
        self.pipeline = pipeline
        self.profile = profile
        self.load_info = load_info

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """What run() accepts (before pre-processing)."""
        return self.artifact.raw_inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.artifact.outputs

    def run(self, x: Any) -> Result:
        """One inference on one raw input (an array, or a list/dict of arrays for multi-input models).

        Raises InputError for a wrong shape, dtype or non-finite value, InferenceError when
        the engine fails.
        """
        outputs, top, times = self.pipeline(x)
        return Result(outputs, top, times, ROUTE_LOCAL)

    def __repr__(self) -> str:
        li = self.load_info
        return f"<Runtime {self.artifact.name} {li.engine} {li.engine_version} providers={list(li.providers)}>"


def _usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _resolve_profile(profile: DeviceProfile | str | Path | None) -> DeviceProfile | None:
    if profile is None:
        return None
    from edgerun.profiles import load_profile

    return profile if not isinstance(profile, (str, Path)) else load_profile(profile)


def load(
    path: str | Path,
    profile: DeviceProfile | str | Path | None = None,
    *,
    engine: str | None = None,
    threads: int | None = None,
    providers: tuple[str, ...] | list[str] | None = None,
    graph_optimization: str = "all",
) -> Runtime:
    """Load, verify and open an artifact.

    ``profile``: a DeviceProfile, a profile name, a path to a profile TOML, or None.
    Threads default to the profile's (capped at this machine's usable CPUs). Providers:
    explicitly requested ones must exist (``ProviderUnavailable`` otherwise); None takes
    the profile's preferred providers that this build offers, else the engine's default.
    """
    prof = _resolve_profile(profile)
    t0 = perf_counter_ns()
    artifact = load_artifact(path)
    t1 = perf_counter_ns()
    eng = engine_for(artifact.format, engine)
    if threads is None and prof is not None:
        # A profile describes the target device; on a smaller machine (a dev box standing in
        # for it) more threads than usable cores would only measure oversubscription.
        threads = min(prof.engine.threads, _usable_cpus())
    if providers is None and prof is not None and prof.engine.preferred == eng.name:
        # A profile's providers are a preference: take those this build has. Explicitly
        # requested providers (the argument) must all exist.
        providers = eng.usable(prof.engine.providers)
    options = EngineOptions(threads=threads, graph_optimization=graph_optimization, providers=tuple(providers or ()))
    session = eng.open(artifact, options)
    pipeline = Pipeline(artifact, session)
    t2 = perf_counter_ns()
    info = LoadInfo(t1 - t0, t2 - t1, eng.name, eng.version(), session.providers, threads)
    return Runtime(artifact, pipeline, prof, info)
