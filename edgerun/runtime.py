"""Runtime: the object an application holds.

    rt = edgerun.load("model.onnx", profile="raspberry-pi-5")
    res = rt.run(x)          # Result(outputs, top, times, route)

``Runtime.run`` validates the raw input, runs pre -> infer -> post through the
Pipeline (each stage timed) and returns the route the inference took. Without a
fallback policy the route is always ``"local"`` and nothing leaves the device.
With one (``load(..., fallback=FallbackPolicy(...))``), a ``Router``
(edgerun.fallback.router) decides per call between the local pipeline and a
remote Open Inference Protocol endpoint, as far as the policy allows, and the
Result says the route and why (``reason``).

``Runtime.observers`` (empty by default) are told each call's Result or error:
``edgerun.telemetry.instrument(rt, ...)`` attaches its recorder there (docs/telemetry.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from edgerun.artifact import Artifact, TensorSpec, load_artifact
from edgerun.engines import EngineOptions, engine_for
from edgerun.formats.frozen import Frozen
from edgerun.pipeline import ROUTE_LOCAL, Pipeline, Result
from edgerun.threads import resolve_threads

if TYPE_CHECKING:
    from edgerun.fallback.policy import FallbackPolicy
    from edgerun.fallback.router import Router
    from edgerun.profiles import DeviceProfile


# Called after every Runtime.run with (result, None), or (None, error) when run raised (the error is then
# re-raised). edgerun.telemetry attaches one; an observer must be quick and must not raise.
RunObserver = Callable[["Result | None", "Exception | None"], None]


class LoadInfo(Frozen):
    """Cold-start facts: how long verifying the artifact and creating the session took.
    Immutable (edgerun.formats.frozen); ``replace(**changes)`` makes a changed copy.

    ``threads_source``/``threads_detail``: where ``threads`` came from (edgerun.threads: "explicit",
    "profile <name>", "usable CPUs"), and that with any cap and the CPU limit in words.
    ``model_version``: the store version loaded ("name@current" through edgerun.modelstore), "" for a
    plain path.
    """

    __slots__ = (
        "artifact_ns",
        "session_ns",
        "engine",
        "engine_version",
        "providers",
        "threads",
        "threads_source",
        "threads_detail",
        "model_version",
    )
    artifact_ns: int
    session_ns: int
    engine: str
    engine_version: str
    providers: tuple[str, ...]
    threads: int | None
    threads_source: str
    threads_detail: str
    model_version: str

    def __init__(
        self,
        artifact_ns: int,
        session_ns: int,
        engine: str,
        engine_version: str,
        providers: tuple[str, ...],
        threads: int | None,
        threads_source: str = "",
        threads_detail: str = "",
        model_version: str = "",
    ) -> None:
        self._set_fields(
            artifact_ns,
            session_ns,
            engine,
            engine_version,
            providers,
            threads,
            threads_source,
            threads_detail,
            model_version,
        )


class Runtime:
    def __init__(self, artifact: Artifact, pipeline: Pipeline, profile: DeviceProfile | None, load_info: LoadInfo):
        self.artifact = artifact
        self.pipeline = pipeline
        self.profile = profile
        self.load_info = load_info
        self.fallback: Router | None = None  # set by load(..., fallback=policy)
        self.observers: list[RunObserver] = []  # empty: run() pays one truth test (edgerun.telemetry)

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
        the engine fails. With a fallback policy also DeadlineExceeded (a hard-budget miss, or
        no route answered in time) and RemoteError (the remote route failed, none left to try).
        """
        if self.observers:
            return self._run_observed(x)
        if self.fallback is not None:
            return self.fallback.run(x)
        outputs, top, times = self.pipeline(x)
        return Result(outputs, top, times, ROUTE_LOCAL)

    def _run_observed(self, x: Any) -> Result:
        """run() with each observer told the result or the error (apart, so run() without one stays as fast)."""
        try:
            res = self.fallback.run(x) if self.fallback is not None else Result(*self.pipeline(x))
        except Exception as exc:
            for observe in self.observers:
                observe(None, exc)
            raise
        for observe in self.observers:
            observe(res, None)
        return res

    def close(self) -> None:
        """Stop the fallback client's connections and thread, if there is one."""
        if self.fallback is not None:
            self.fallback.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        li = self.load_info
        return f"<Runtime {self.artifact.name} {li.engine} {li.engine_version} providers={list(li.providers)}>"


def _usable_cpus() -> int:
    """The affinity mask limited by any cgroup CPU quota (edgerun.threads; the bench caps with it too)."""
    from edgerun.threads import usable_cpus

    return usable_cpus()


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
    fallback: FallbackPolicy | None = None,
    allow_outside: bool = False,
    record_placement: bool = False,
    store: str | Path | None = None,
) -> Runtime:
    """Load, verify and open an artifact.

    ``path`` may also be a model-store reference, ``"name@current"``, ``"name@previous"`` or
    ``"name@<version>"`` (edgerun.modelstore; ``store`` is its root, else $EDGERUN_MODELS, else
    ~/.local/share/edgerun/models): the accepted version it names is loaded, and
    ``load_info.model_version`` says which. A file of that name, if one exists, wins.

    ``profile``: a DeviceProfile, a profile name, a path to a profile TOML, or None.
    Threads (edgerun.threads, one rule for every command): ``threads`` if given, else the
    profile's, else this machine's usable CPUs (affinity mask and cgroup quota), always capped at
    the usable CPUs; ``load_info.threads_source`` says which. Providers:
    explicitly requested ones must exist (``ProviderUnavailable`` otherwise); None takes
    the profile's preferred providers that this build offers, else the engine's default.
    ``fallback``: a FallbackPolicy (edgerun.fallback); None keeps every inference on the device.
    ``allow_outside``: let the manifest's ``model_file`` / ``samples`` lead out of its folder
    (refused by default, docs/manifest.md).
    ``record_placement``: onnxruntime profiles the first inference (EngineOptions.record_placement).
    """
    prof = _resolve_profile(profile)
    t0 = perf_counter_ns()
    model_version = ""
    if isinstance(path, str) and "@" in path and not os.path.exists(path):
        from edgerun.modelstore import resolve_ref

        ref = resolve_ref(path, store)
        path, model_version = ref.manifest_path, ref.version
    if str(path).rstrip("/").endswith((".mlpackage", ".mlpackage.edgerun.json")):  # a folder: edgerun/coreml.py
        from edgerun.coreml import load_coreml_artifact, require_macos

        require_macos()  # one line, before reading anything: Core ML runs on macOS only
        artifact = load_coreml_artifact(path)
    else:
        artifact = load_artifact(path, allow_outside=allow_outside)
    t1 = perf_counter_ns()
    eng = engine_for(artifact.format, engine)
    choice = resolve_threads(threads, prof.engine.threads if prof else None, prof.name if prof else None)
    threads = choice.threads
    if providers is None and prof is not None and prof.engine.preferred == eng.name:
        # A profile's providers are a preference: take those this build has. Explicitly
        # requested providers (the argument) must all exist.
        providers = eng.usable(prof.engine.providers)
    options = EngineOptions(
        threads=threads,
        graph_optimization=graph_optimization,
        providers=tuple(providers or ()),
        record_placement=record_placement,
    )
    session = eng.open(artifact, options)
    pipeline = Pipeline(artifact, session)
    t2 = perf_counter_ns()
    info = LoadInfo(
        t1 - t0,
        t2 - t1,
        eng.name,
        eng.version(),
        session.providers,
        threads,
        choice.source,
        choice.detail,
        model_version,
    )
    runtime = Runtime(artifact, pipeline, prof, info)
    if fallback is not None:
        from edgerun.fallback.router import Router

        # the router loads its local variants with these settings (passed in: it does not import runtime)
        load_variant = partial(
            load, profile=prof, engine=engine, threads=threads, graph_optimization=graph_optimization
        )
        runtime.fallback = Router(runtime, fallback, load_variant)
    return runtime
