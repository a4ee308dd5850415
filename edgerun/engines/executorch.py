"""ExecuTorch engine (``.pte`` programs), through the ``executorch`` package's ``executorch.runtime``.

That runtime's Python bindings load libtorch: importing it imports torch (seconds, hundreds of MB),
so this module imports it only when a session is opened, and the package is an optional extra
(``pip install 'edgerun[executorch]'``, pinned to the verified ``executorch==1.5.1`` with
torch 2.13.0). Nothing else in edgerun imports this module at start-up; ``.pte`` files are read
for ``edgerun info`` and bare-file artifacts by edgerun.formats.pte without ExecuTorch or torch.

Backends are compiled into the program: a ``.pte`` lowered to XNNPACK runs its delegated part in
XNNPACK whatever is asked, and the rest on ExecuTorch's CPU kernels. So ``providers`` here is a
check, not a choice: each one asked for ("XNNPACK", or a backend id such as "XnnpackBackend")
must be a backend this runtime has and this program uses, else ``ProviderUnavailable``.
``Session.providers`` lists the program's delegates (e.g. ``XnnpackBackend``), then ``CPU`` for
the kernels outside them.

Threads: ExecuTorch's CPU thread pool (the one XNNPACK and the optimized kernels use) is one per
process; ``threads`` resizes it when a session is opened (``_unsafe_reset_threadpool``, the call
ExecuTorch's own pybindings expose for it), so the last session opened sets it for all of them.
Inputs and outputs cross as numpy arrays: the runtime takes torch tensors, made with
``torch.from_numpy`` (no copy); its outputs are copies (``clone_outputs``), returned as numpy.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun.artifact import TensorSpec
from edgerun.engines.base import EngineOptions
from edgerun.errors import ArtifactError, EngineError, EngineUnavailable, InferenceError, ProviderUnavailable
from edgerun.formats.pte import SCALAR_TYPES, inspect_pte

if TYPE_CHECKING:
    import numpy as np

    from edgerun.artifact import Artifact

METHOD = "forward"
# short names -> ExecuTorch backend ids (runtime.backend_registry.registered_backend_names)
BACKEND_ALIASES = {"xnnpack": "XnnpackBackend", "qnn": "QnnBackend", "openvino": "OpenvinoBackend"}


def _runtime() -> Any:
    """``executorch.runtime`` (imports torch), with its import-time warnings kept off the user's screen."""
    logging.disable(logging.WARNING)  # torchao and torch log warnings while executorch.exir imports
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning from the pybindings
            import executorch.runtime as runtime
    except ImportError as exc:
        raise EngineUnavailable(
            "ExecuTorch is not installed: pip install 'edgerun[executorch]' (executorch==1.5.1, torch 2.13.0)"
        ) from exc
    finally:
        logging.disable(logging.NOTSET)
    return runtime


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _spec(name: str, info: Any) -> TensorSpec:
    dtype = info.dtype()
    return TensorSpec(name, tuple(int(d) for d in info.sizes()), SCALAR_TYPES.get(dtype, f"scalar_type_{dtype}"))


class ExecuTorchSession:
    engine = "executorch"

    def __init__(
        self, program: Any, method: Any, providers: tuple[str, ...], names: tuple[list[str], list[str]]
    ) -> None:
        import torch

        self._program = program  # the method's program stays alive as long as the session
        self.native = method  # the executorch.runtime.Method, for tools that bypass edgerun
        self.providers = providers
        meta = method.metadata
        self.inputs = tuple(_spec(n, meta.input_tensor_meta(i)) for i, n in enumerate(names[0]))
        self.outputs = tuple(_spec(n, meta.output_tensor_meta(i)) for i, n in enumerate(names[1]))
        self._execute = method.execute
        self._from_numpy = torch.from_numpy

    def run(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        try:
            outs = self._execute([self._from_numpy(x) for x in feeds])
        except (RuntimeError, TypeError, ValueError) as exc:
            raise InferenceError(f"ExecuTorch failed to run the program: {_one_line(exc)}") from exc
        return [o.numpy() for o in outs]


class ExecuTorchEngine:
    name = "executorch"

    def version(self) -> str:
        try:
            from executorch.version import __version__  # executorch/__init__ only: no torch

            return str(__version__)
        except ImportError:
            return "unknown"

    def usable(self, wanted: tuple[str, ...]) -> tuple[str, ...]:
        registered = set(_runtime().Runtime.get().backend_registry.registered_backend_names)
        return tuple(p for p in wanted if BACKEND_ALIASES.get(p.lower(), p) in registered | {"CPU"})

    def open(self, artifact: Artifact, options: EngineOptions) -> ExecuTorchSession:
        return open_session(artifact.path, options, artifact)


def _names(artifact: Artifact | None, n_in: int, n_out: int) -> tuple[list[str], list[str]]:
    """The manifest's tensor names where it has one per tensor (the .pte holds none)."""
    ins = [t.name for t in artifact.inputs] if artifact is not None else []
    outs = [t.name for t in artifact.outputs] if artifact is not None else []
    return (
        ins if len(ins) == n_in else [f"input_{i}" for i in range(n_in)],
        outs if len(outs) == n_out else [f"output_{i}" for i in range(n_out)],
    )


def open_session(path: Path, options: EngineOptions, artifact: Artifact | None = None) -> ExecuTorchSession:
    info = inspect_pte(path, METHOD)  # edgerun's own reader first: a clear error for a corrupt file
    runtime = _runtime()
    rt = runtime.Runtime.get()
    registered = rt.backend_registry.registered_backend_names
    missing = sorted(b for b in info.delegates if b not in registered)
    if missing:
        raise EngineError(
            f"{path}: the program is lowered to {', '.join(missing)}, which this ExecuTorch build lacks "
            f"(it has: {', '.join(registered) or 'no backends'})"
        )
    used = (*sorted(info.delegates), "CPU")
    for name in options.providers:
        wanted = BACKEND_ALIASES.get(name.lower(), name)
        if wanted not in used:
            raise ProviderUnavailable(
                f"ExecuTorch provider {name!r}: this program runs on {', '.join(used)} (backends are chosen when "
                "the .pte is exported, not at load time); export it for that backend or ask for one of those"
            )
    if options.threads is not None:
        from executorch.extension.pybindings import portable_lib

        if portable_lib._threadpool_get_thread_count() != options.threads:  # a reset logs a line on stderr
            portable_lib._unsafe_reset_threadpool(options.threads)
    try:
        program = rt.load_program(path, verification=runtime.Verification.InternalConsistency)
        method = program.load_method(METHOD)
    except RuntimeError as exc:  # the bindings raise RuntimeError("... error: 0x..") for any failed load
        raise ArtifactError(f"{path}: ExecuTorch cannot load this program ({_one_line(exc)})") from exc
    meta = method.metadata
    return ExecuTorchSession(program, method, used, _names(artifact, meta.num_inputs(), meta.num_outputs()))
