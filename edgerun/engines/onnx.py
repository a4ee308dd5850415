"""onnxruntime engine.

Execution providers are asked for by short name ("CPU", "XNNPACK", "CUDA",
"TensorRT", "NNAPI", "CoreML", ...) or by onnxruntime's full name. A provider
that this onnxruntime build does not offer is a ``ProviderUnavailable`` listing
what ``onnxruntime.get_available_providers()`` does offer: onnxruntime itself
would silently fall back to the CPU, and a benchmark must not do that.

TensorRT takes options in its name (``tensorrt:fp16:int8:cache=DIR``, ``ort_providers``). A
session opened with providers asked for records the options onnxruntime applied; with
``record_placement`` also which provider ran each node (onnxruntime's profiler, stopped by
``node_placement()`` after the first inference).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun.artifact import TensorSpec
from edgerun.engines.base import EngineOptions
from edgerun.errors import (
    ArtifactError,
    EngineError,
    EngineUnavailable,
    InferenceError,
    ProviderUnavailable,
)

if TYPE_CHECKING:
    import numpy as np

    from edgerun.artifact import Artifact

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "xnnpack": "XnnpackExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dnnl": "DnnlExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "dml": "DmlExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}

# onnxruntime's "tensor(float)" type strings -> numpy dtype names.
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int16)": "int16",
    "tensor(uint16)": "uint16",
    "tensor(int32)": "int32",
    "tensor(uint32)": "uint32",
    "tensor(int64)": "int64",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
    "tensor(bfloat16)": "bfloat16",  # ONNX names numpy has no dtype for: refused at load (_tensors_only)
    "tensor(float8e4m3fn)": "float8e4m3fn",
    "tensor(float8e4m3fnuz)": "float8e4m3fnuz",
    "tensor(float8e5m2)": "float8e5m2",
    "tensor(float8e5m2fnuz)": "float8e5m2fnuz",
    "tensor(uint4)": "uint4",
    "tensor(int4)": "int4",
}


_NUMPY_TYPES = {k for k, v in _ORT_TYPES.items() if v in (
    "float32", "float16", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "bool", "str",
)}  # fmt: skip


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineUnavailable("onnxruntime is not installed: pip install onnxruntime") from exc
    return onnxruntime


def resolve_providers(requested: tuple[str, ...], available: list[str]) -> list[str]:
    """Map short names to onnxruntime provider names; refuse missing ones. Options (``:fp16``) are dropped."""
    return [name for name, _ in provider_list(requested, available)]


def provider_list(requested: tuple[str, ...], available: list[str]) -> list[tuple[str, dict[str, str]]]:
    """(onnxruntime provider name, its options) for each requested provider, CPU last; refuse missing ones."""
    from edgerun.engines.ort_providers import split_provider

    resolved: list[tuple[str, dict[str, str]]] = []
    for spec in requested:
        name = spec.split(":")[0]
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            raise ProviderUnavailable(
                f"execution provider {name!r} ({full}) is not available in this onnxruntime build; "
                f"available: {', '.join(available)}. Install the onnxruntime package built for it "
                "(e.g. onnxruntime-gpu, onnxruntime-qnn) or ask for one of the available providers."
            )
        resolved.append((full, split_provider(spec, full)[1]))
    if resolved and "CPUExecutionProvider" not in [name for name, _ in resolved]:
        resolved.append(("CPUExecutionProvider", {}))  # nodes a provider cannot take still need a home
    return resolved


def _one_line(exc: BaseException) -> str:
    """onnxruntime's messages may span lines; edgerun's errors are one line."""
    return " ".join(str(exc).split())


def _spec(arg: Any) -> TensorSpec:
    # A symbolic dim is a str, an unknown one None; a negative int is how some exporters say "dynamic".
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in (arg.shape or ()))
    return TensorSpec(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


def _started_as_asked(path: Path, sess: Any, asked: list[str], printed: str) -> None:
    """Every provider asked for runs in the session: onnxruntime's own fallback (a provider that
    failed to start, the session opened on the next one) is a ProviderUnavailable, not a benchmark
    of a provider nobody asked for."""
    running = sess.get_providers()
    missing = [name for name in asked if name not in running]
    if missing:
        said = " ".join(printed.replace("*", " ").split())
        raise ProviderUnavailable(
            f"{path}: onnxruntime could not start {', '.join(missing)} and fell back to {', '.join(running)}"
            f"{f' ({said[:400]})' if said else ''}; edgerun times only the providers asked for: check that "
            "provider's libraries (CUDA, cuDNN, TensorRT versions) or ask for the ones that run here"
        )


def _tensors_only(path: Path, sess: Any) -> None:
    """edgerun feeds, times, checks and serves tensors: a sequence, map or optional input or output
    (scikit-learn's ZipMap, onnx.proto TypeProto) is refused at load, with what to do about it."""
    for kind, args in (("input", sess.get_inputs()), ("output", sess.get_outputs())):
        for arg in args:
            if not arg.type.startswith("tensor("):
                hint = (
                    "; a scikit-learn model's ZipMap output: convert it with skl2onnx's "
                    "options={'zipmap': False} for a probability tensor"
                    if arg.type.startswith("seq(map(")
                    else ""
                )
                raise ArtifactError(
                    f"{path}: {kind} {arg.name!r} is a {arg.type}, not a tensor; edgerun runs models whose "
                    f"inputs and outputs are tensors{hint}"
                )
            if arg.type not in _NUMPY_TYPES:  # onnxruntime's Python API passes tensors as numpy arrays
                raise ArtifactError(
                    f"{path}: {kind} {arg.name!r} is a {arg.type}, which numpy, and so onnxruntime's Python "
                    f"API, has no type for; export the model with a float32 or float16 {kind} (the graph "
                    f"casting to and from {arg.type[7:-1]} inside)"
                )


def _direct_run(sess: Any) -> Any:
    """The session's run, as ``run(output_names, feed, run_options)``: the C++ binding's when it can be.

    ``InferenceSession.run`` (onnxruntime/python/onnxruntime_inference_collection.py) is a Python
    wrapper around its ``_sess.run`` that, on every call, checks the feed's names against the
    model's, looks for OrtValues of another session and for WebGPU graph capture, and on an
    ``EPFail`` prints to stdout and retries on the CPU provider. edgerun feeds numpy arrays under
    names it checked at load, never enables graph capture, and must not fall back silently (a
    benchmark would time the wrong provider): calling the binding directly saves those checks,
    ~3 us per call (tools/bench_overhead.py, issue 13), and makes an EP failure an
    ``InferenceError``. Where the binding is not there as expected (another onnxruntime layout),
    the public ``run``.
    """
    core = getattr(sess, "_sess", None)
    run = getattr(core, "run", None)
    capture = getattr(core, "is_webgpu_graph_capture_enabled", None)
    if run is None or (capture is not None and capture()):
        return sess.run
    return run


class OnnxSession:
    engine = "onnx"

    def __init__(self, sess: Any, profiling: bool = False, details: dict[str, Any] | None = None) -> None:
        self.native = sess  # the onnxruntime.InferenceSession, for tools that bypass edgerun
        self.providers = tuple(sess.get_providers())
        self.details = details or {}  # provider options applied, TensorRT engine cache (bench result: engine)
        self._profiling = profiling
        self.inputs = tuple(_spec(a) for a in sess.get_inputs())
        self.outputs = tuple(_spec(a) for a in sess.get_outputs())
        self._names = [t.name for t in self.inputs]
        self._one = self._names[0] if len(self._names) == 1 else None
        self._out_names = [t.name for t in self.outputs]
        self._run = _direct_run(sess)
        # A failing kernel is logged on stderr (a coloured multi-line "[E:onnxruntime:...]") and
        # raised; edgerun reports the raised error as one line, so a run logs fatal messages only.
        self._run_options = _ort().RunOptions()
        self._run_options.log_severity_level = 4

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        try:
            if self._one is not None and len(feeds) == 1:  # the common case: a dict literal, no zip
                return self._run(self._out_names, {self._one: feeds[0]}, self._run_options)
            return self._run(self._out_names, dict(zip(self._names, feeds)), self._run_options)
        except Exception as exc:  # onnxruntime raises its own pybind classes
            raise InferenceError(f"onnxruntime failed to run the model: {_one_line(exc)}") from exc

    def node_placement(self) -> dict[str, Any] | None:
        """Stop the profiler (run after the first inference) and say which provider ran each node.

        None when the session was not profiled (``EngineOptions.record_placement`` off)."""
        if not self._profiling:
            return None
        from edgerun.engines.ort_providers import node_placement

        self._profiling = False
        path = self.native.end_profiling()
        return node_placement(path) if path else None


class OnnxEngine:
    name = "onnx"

    def version(self) -> str:
        return str(_ort().__version__)

    def usable(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """The subset of a profile's preferred providers this build offers, in order."""
        available = _ort().get_available_providers()
        return tuple(p for p in wanted if PROVIDER_ALIASES.get(p.lower(), p) in available)

    def open(self, artifact: Artifact, options: EngineOptions) -> OnnxSession:
        return open_session(artifact.path, options)


def open_session(path: Path, options: EngineOptions) -> OnnxSession:
    ort = _ort()
    so = ort.SessionOptions()
    if options.threads is not None:
        so.intra_op_num_threads = options.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # fatal only: warnings would interleave with benchmark output, and an error that stops a session
    # is raised as well as logged (a coloured multi-line log): edgerun reports the raised one, in one line
    so.log_severity_level = 4
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.graph_optimization]
    from edgerun.engines.ort_providers import cache_files, cache_report

    providers = provider_list(options.providers, ort.get_available_providers())
    asked = {name: opts for name, opts in providers}
    profiling = options.record_placement  # the bench, when providers are asked for: the first inference only
    if profiling:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"edgerun-ort-{os.getpid()}")
    before = cache_files(asked)
    printed = io.StringIO()
    try:
        # A provider that is offered but fails to start (CUDA/TensorRT libraries of another version)
        # makes InferenceSession print "EP Error ... Falling back to [...]" on stdout and open the
        # session on the CPU (onnxruntime_inference_collection.py): caught here, refused below.
        with contextlib.redirect_stdout(printed):
            sess = ort.InferenceSession(
                str(path), sess_options=so, providers=[(n, o) if o else n for n, o in providers] or None
            )
    except Exception as exc:
        kind = type(exc).__name__
        if kind in ("InvalidProtobuf", "InvalidGraph", "NoSuchFile", "Fail"):
            raise ArtifactError(f"{path}: onnxruntime cannot load this model ({kind}: {_one_line(exc)})") from exc
        raise EngineError(f"{path}: onnxruntime failed to create a session ({kind}: {_one_line(exc)})") from exc
    _tensors_only(path, sess)
    _started_as_asked(path, sess, list(asked), printed.getvalue())
    applied = sess.get_provider_options()
    details = {"provider_options": {k: applied.get(k, {}) for k in asked}} if asked else {}
    cache = cache_report(asked, before)
    if cache is not None:
        details["tensorrt_engine_cache"] = cache
    return OnnxSession(sess, profiling, details)
