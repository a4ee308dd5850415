"""LiteRT (formerly TensorFlow Lite) engine.

Imports ``ai_edge_litert`` (the maintained package, works with numpy 2) and
falls back to the old ``tflite_runtime`` where only it is installed (e.g. an
older Raspberry Pi OS image; its 2.14 wheel crashes under numpy 2): the import, the
tensor specs and the name check live in ``edgerun.formats.tflite``, which reads models
for ``edgerun.artifact`` without this engine.

Providers: "XNNPACK" (LiteRT's default CPU delegate), "CPU" (the built-in
kernels without any default delegate), and "delegate:/path/lib.so" for an
external delegate (GPU, Hexagon, NPU vendors). Empty = XNNPACK.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgerun.engines.base import EngineOptions
from edgerun.errors import (
    ArtifactError,
    EngineError,
    InferenceError,
    ProviderUnavailable,
)
from edgerun.formats.tflite import interpreter_module, readable_names, tensor_spec
from edgerun.formats.tflite import one_line as _one_line

if TYPE_CHECKING:
    from edgerun.artifact import Artifact


def engine_version() -> str:
    # The package's own __version__ first: importing importlib.metadata (email, zipfile, csv ...)
    # cost ~20-35 ms of CPU on every TFLite load, a sixth of a `edgerun run`.
    try:
        import ai_edge_litert

        if getattr(ai_edge_litert, "__version__", None):
            return str(ai_edge_litert.__version__)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:
        try:
            from importlib.metadata import version

            return "tflite-runtime " + version("tflite-runtime")
        except Exception:
            return "unknown"


def _delegates_and_resolver(mod: Any, providers: tuple[str, ...]) -> tuple[list[Any], Any, tuple[str, ...]]:
    delegates, used = [], []
    resolver = mod.OpResolverType.AUTO  # AUTO applies XNNPACK by default
    for name in providers:
        low = name.lower()
        if low == "xnnpack":
            used.append("XNNPACK")
        elif low == "cpu":
            resolver = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            used.append("CPU")
        elif low.startswith("delegate:"):
            lib = name.split(":", 1)[1]
            try:
                delegates.append(mod.load_delegate(lib))
            except (ValueError, OSError, RuntimeError) as exc:
                raise ProviderUnavailable(f"cannot load LiteRT delegate {lib}: {_one_line(exc)}") from exc
            used.append(name)
        else:
            raise ProviderUnavailable(
                f"LiteRT provider {name!r} is not known; use 'XNNPACK', 'CPU' or "
                "'delegate:/path/to/libdelegate.so' (GPU, NNAPI and NPU delegates load that way)"
            )
    if "CPU" in used and "XNNPACK" in used:
        raise ProviderUnavailable("LiteRT providers 'CPU' (no default delegate) and 'XNNPACK' exclude each other")
    return delegates, resolver, tuple(used) or ("XNNPACK",)


def open_interpreter(path: Path, threads: int | None = None, providers: tuple[str, ...] = ("CPU",)) -> Any:
    """An allocated interpreter. ``providers`` defaults to plain kernels (for inspection)."""
    interp, _ = _open(path, threads, providers)
    return interp


def _open(path: Path, threads: int | None, providers: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    mod = interpreter_module()
    delegates, resolver, used = _delegates_and_resolver(mod, providers)
    try:
        interp = mod.Interpreter(
            model_path=str(path),
            num_threads=threads,
            experimental_delegates=delegates or None,
            experimental_op_resolver_type=resolver,
        )
        interp.allocate_tensors()
    except ValueError as exc:  # LiteRT reports unreadable flatbuffers as ValueError
        raise ArtifactError(f"{path}: LiteRT cannot load this model ({_one_line(exc)})") from exc
    except RuntimeError as exc:
        raise EngineError(f"{path}: LiteRT failed to prepare the model ({_one_line(exc)})") from exc
    return interp, used


class LiteRTSession:
    engine = "litert"

    def __init__(self, interp: Any, providers: tuple[str, ...]) -> None:
        self.native = interp  # the LiteRT Interpreter, for tools that bypass edgerun
        self.providers = providers
        ins, outs = interp.get_input_details(), interp.get_output_details()
        self.inputs = tuple(tensor_spec(d) for d in ins)
        self.outputs = tuple(tensor_spec(d) for d in outs)
        self._in_idx = [d["index"] for d in ins]
        self._out_idx = [d["index"] for d in outs]
        self._set, self._invoke, self._get = interp.set_tensor, interp.invoke, interp.get_tensor
        # One interpreter runs one inference at a time: a second thread's set_tensor would overwrite
        # the input mid-invoke, and LiteRT refuses an invoke while another thread's call holds the
        # interpreter ("at least 1 reference to internal data"). feed -> invoke -> fetch hold it.
        self.lock = threading.Lock()

    # The three calls apart, so that the pipeline times only ``invoke`` as inference (what LiteRT's
    # benchmark_model times); the copies in and out belong to the pre and post stages.
    def feed(self, feeds: list[np.ndarray]) -> None:
        """Copy the feeds into the interpreter's input tensors (``set_tensor``)."""
        try:
            for idx, x in zip(self._in_idx, feeds):
                self._set(idx, x)
        except (ValueError, RuntimeError) as exc:
            raise InferenceError(f"LiteRT refused an input: {_one_line(exc)}") from exc

    def invoke(self) -> None:
        try:
            self._invoke()
        except (ValueError, RuntimeError) as exc:
            raise InferenceError(f"LiteRT failed to run the model: {_one_line(exc)}") from exc

    def fetch(self) -> list[np.ndarray]:
        """Copies of the output tensors (``get_tensor``): the next invoke overwrites the interpreter's."""
        return [self._get(idx) for idx in self._out_idx]

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        with self.lock:
            self.feed(feeds)
            self.invoke()
            return self.fetch()


class LiteRTEngine:
    name = "litert"

    def version(self) -> str:
        return engine_version()

    def usable(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        """A profile's preferred providers that exist here: delegates whose library is present,
        then the first of XNNPACK / CPU (they exclude each other)."""
        delegates = tuple(p for p in wanted if p.lower().startswith("delegate:") and Path(p.split(":", 1)[1]).exists())
        cpu = next((p for p in wanted if p.lower() in ("xnnpack", "cpu")), None)
        return delegates + ((cpu,) if cpu else ())

    def open(self, artifact: Artifact, options: EngineOptions) -> LiteRTSession:
        interp, used = _open(artifact.path, options.threads, options.providers)
        with readable_names(artifact.path):
            return LiteRTSession(interp, used)
