"""The staged pipeline: pre-process -> infer -> post-process, each stage timed.

Pre- and post-processing are declarative: the manifest lists ops
(docs/manifest.md), ``compile_pre`` / ``compile_post`` (edgerun.pipeline_ops)
turn them into small frozen op objects once, and edgerun.pipeline_fused
compiles each chain into few array passes that the pipeline runs on every
call. Every call is timed per stage with ``time.perf_counter_ns``; the
inference stage wraps nothing but the engine's run call (LiteRT: ``invoke``
alone, its tensor copies are pre and post), so its time is the engine's time
plus a method call (tools/bench_overhead.py measures that overhead and the
end-to-end one).

Input validation (shape, dtype, finite values) is part of the pre stage: it is
work a deployed application has to do too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from time import perf_counter_ns
from typing import Any

import numpy as np

from edgerun.artifact import Artifact, TensorSpec
from edgerun.engines import Session
from edgerun.errors import ArtifactError, InputError
from edgerun.formats.frozen import Record
from edgerun.pipeline_fused import FusedPre, fuse_post
from edgerun.pipeline_ops import (  # re-exported: the ops' home before they had their own module
    Cast,
    Dequantize,
    ExpandDims,
    Layout,
    Normalize,
    PostOps,
    Prediction,
    Quantize,
    Resize,
    Scale,
    Softmax,
    TopK,
    compile_post,
    compile_pre,
)

__all__ = [
    "Cast", "Dequantize", "ExpandDims", "InputCheck", "Layout", "Normalize", "Pipeline", "PostOps", "Prediction",
    "Quantize", "Resize", "Result", "Scale", "Softmax", "StageTimes", "TopK", "check_input", "compile_post",
    "compile_pre",
]  # fmt: skip


class StageTimes(Record):
    """Wall-clock nanoseconds spent in each stage of one inference.

    StageTimes and Result are made on every call: as tuples (immutable, fields by name as before)
    they cost about half what a frozen dataclass's ``__init__`` does (``object.__setattr__`` per
    field), and as ``Record`` classes (edgerun/formats/frozen.py) they are created at import
    ~10x faster than ``typing.NamedTuple`` ones (issue 13's start-up).
    """

    __slots__ = ()
    _fields = ("pre_ns", "infer_ns", "post_ns")
    pre_ns: int
    infer_ns: int
    post_ns: int

    def __new__(cls, pre_ns: int, infer_ns: int, post_ns: int) -> StageTimes:
        return tuple.__new__(cls, (pre_ns, infer_ns, post_ns))

    @property
    def total_ns(self) -> int:
        return self.pre_ns + self.infer_ns + self.post_ns


ROUTE_LOCAL = "local"


class Result(Record):
    """One inference: post-processed outputs, top classes (if the manifest asks), stage times, route.

    ``Runtime.run`` returns it (edgerun.runtime re-exports it), and so does the fallback router:
    here, below both. With a fallback policy, ``route`` is "local", "remote" or "local-variant"
    and ``reason`` is "<code>: <why>"; on the remote route ``times.infer_ns`` is the whole remote call.
    """

    __slots__ = ()
    _fields = ("outputs", "top", "times", "route", "reason")
    outputs: dict[str, np.ndarray]
    top: tuple[Prediction, ...]
    times: StageTimes
    route: str
    reason: str

    def __new__(
        cls,
        outputs: dict[str, np.ndarray],
        top: tuple[Prediction, ...],
        times: StageTimes,
        route: str = ROUTE_LOCAL,
        reason: str = "",
    ) -> Result:
        return tuple.__new__(cls, (outputs, top, times, route, reason))


# --- the pipeline ---------------------------------------------------------------------


def _shape_ok(shape: tuple[int, ...], spec: tuple[int | None, ...]) -> bool:
    return len(shape) == len(spec) and all(s is None or s == d for d, s in zip(shape, spec))


def _check_int_range(x: np.ndarray, spec: TensorSpec) -> None:
    """An integer cast must not change a value (int64 300 -> int8 would be 44, uint8 200 -> -56).

    One reduction per side that can overflow (uint8 -> int8 needs only the max), on the raw input."""
    src, dst = np.iinfo(x.dtype), np.iinfo(spec.dtype)
    if x.size == 0:
        return
    too_low = src.min < dst.min and x.min() < dst.min
    if not too_low and not (src.max > dst.max and x.max() > dst.max):
        return
    raise InputError(
        f"input {spec.name!r}: values [{x.min()}, {x.max()}] do not fit {spec.dtype}; expected {x.dtype} "
        f"values within the {spec.dtype} range [{dst.min}, {dst.max}]"
    )


# A sum of every value times a small power of two is finite exactly when every value is: a NaN or
# an Inf makes it non-finite, and scaled down so far no sum of finite float32 (float64) values of
# an input up to _SMALL values can overflow. One BLAS dot product against a vector of these,
# built once per input spec, costs what x . x does and raises no overflow warning where x . x
# would (values past ~1e19 square past float32's range). Larger inputs use x . x (one read of x,
# not two arrays) under an errstate that silences that warning, ~1 us at 1 MiB.
_SCALES = {"f": 2.0**-64, "d": 2.0**-600}
_SMALL = 16384


def _dot_finite(flat: np.ndarray) -> bool:
    """True when no value of a contiguous 1-D float32/float64 array is NaN or +-Inf, for almost
    every input (a sum of squares past the dtype's range says False: _all_finite looks again)."""
    with np.errstate(over="ignore"):
        return math.isfinite(flat.dot(flat))


def _all_finite(x: np.ndarray) -> bool:
    """True when no value is NaN or +-Inf. One BLAS dot product (a read of the array, no temporary)
    answers for almost every input; only a sum that overflows (values beyond ~1e19) needs the
    element-wise check."""
    if x.dtype.char in "fd" and x.flags.c_contiguous and _dot_finite(x.ravel()):
        return True
    return bool(np.isfinite(x).all())


def check_input(x: Any, spec: TensorSpec) -> np.ndarray:
    """Validate one raw input against its spec; cast within the same kind (float64 -> float32),
    never to a value the target dtype cannot hold."""
    if type(x) is not np.ndarray:  # the common case costs one type check; subclasses are looked at below
        if not isinstance(x, np.ndarray):
            raise InputError(f"input {spec.name!r}: expected a numpy array {spec.describe()}, got {type(x).__name__}")
        if isinstance(x, np.ma.MaskedArray):
            # The engine would see the values under the mask, which the caller marked as not data.
            raise InputError(
                f"input {spec.name!r}: a masked array; expected a plain numpy array {spec.describe()} "
                "(fill the masked values first, e.g. x.filled(0), if the model should see them)"
            )
    if x.shape != spec.shape and not _shape_ok(x.shape, spec.shape):  # equal tuples: a static shape that fits
        raise InputError(f"input {spec.name!r}: expected shape {list(spec.shape)} (null = any), got {list(x.shape)}")
    if x.size == 0:  # a dynamic dim given as 0: a resize would index nothing, and no prediction is of nothing
        raise InputError(f"input {spec.name!r}: shape {list(x.shape)} holds no values; expected at least one")
    if spec.dtype == "str":  # text: onnxruntime takes a numpy str array or an object array of str
        if x.dtype.kind == "U" or (x.dtype.kind == "O" and all(type(v) is str for v in x.flat)):
            return x
        what = "an object array with values that are not str" if x.dtype.kind == "O" else f"dtype {x.dtype}"
        raise InputError(f"input {spec.name!r}: {what}; expected text (a numpy str array or an object array of str)")
    if x.dtype != spec.dtype:
        if not np.can_cast(x.dtype, spec.dtype, casting="same_kind"):
            raise InputError(
                f"input {spec.name!r}: expected dtype {spec.dtype} (or one castable to it within its kind), "
                f"got {x.dtype}"
            )
        if x.dtype.kind in "iu" and np.dtype(spec.dtype).kind in "iu" and not np.can_cast(x.dtype, spec.dtype):
            _check_int_range(x, spec)  # narrowing integer casts only: the float path pays nothing
        with np.errstate(over="ignore"):  # float64 1e300 -> float32 inf: reported as non-finite below
            x = x.astype(spec.dtype)
    if x.dtype.kind == "f" and not _all_finite(x):
        bad = int(np.size(x) - np.isfinite(x).sum())
        raise InputError(
            f"input {spec.name!r}: {bad} NaN/Inf value(s) (as {spec.dtype}: values past its range become inf); "
            f"expected finite {spec.dtype} values"
        )
    return x


class InputCheck:
    """``check_input`` for one spec, with what the common case compares against computed once.

    A plain array of exactly the declared dtype and static shape is checked with three attribute
    reads and, for float32/float64, one dot product; anything else (and any value that fails) goes
    through ``check_input``, which names what was wrong. Right after an engine call the common case
    costs ~5 us against ~13 us through ``check_input`` (cold caches: tools/bench_overhead.py, issue 13).
    """

    __slots__ = ("spec", "dtype", "shape", "dot", "exact", "weights")

    def __init__(self, spec: TensorSpec) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        static = None not in spec.shape and 0 not in spec.shape
        self.shape = spec.shape if static else None  # a dynamic or empty shape: check_input decides
        self.dot = self.dtype.char in "fd"  # a finiteness check by dot product (_SCALES, _dot_finite)
        self.exact = self.dtype.kind in "iub"  # no value of an exactly matching integer/bool array is bad
        size = math.prod(d or 0 for d in self.shape) if self.shape is not None else 0  # static: no None left
        small = self.dot and 0 < size <= _SMALL
        self.weights = np.full(size, _SCALES[self.dtype.char], self.dtype) if small else None

    def __call__(self, x: Any) -> np.ndarray:
        # `is`: numpy's built-in dtypes are singletons; a byte-swapped one is not and takes the long way
        if type(x) is np.ndarray and x.dtype is self.dtype and x.shape == self.shape:
            if self.exact:
                return x
            if self.dot:
                flat = x.ravel()  # a view when contiguous (a copy otherwise, as the engine would make)
                weights = self.weights
                if math.isfinite(flat.dot(weights)) if weights is not None else _dot_finite(flat):
                    return x
        return check_input(x, self.spec)


class Pipeline:
    """Binds an artifact's declarative pre/post ops to an engine session.

    Stages, as ``__call__`` times them (docs/bench-result.md):
    pre = input validation + the pre ops + handing the feeds to the engine where that is a
    separate call (LiteRT ``set_tensor``); infer = the engine's run (onnxruntime's binding run, as
    ``InferenceSession.run`` calls it; LiteRT ``invoke``); post = reading the outputs where that is
    a separate call (LiteRT ``get_tensor``) + the post ops + top-k.
    """

    def __init__(self, artifact: Artifact, session: Session) -> None:
        _check_io(artifact, session)
        self.artifact = artifact
        self.session = session
        m = artifact.manifest
        where = str(artifact.manifest_path or artifact.path)
        raw = artifact.raw_inputs
        self._raw = raw
        self.pre_ops = compile_pre(m.preprocess if m else (), session.inputs[0], where)
        if self.pre_ops and len(raw) != 1:
            raise ArtifactError(f"{where}: pre-processing needs exactly one raw input, manifest has {len(raw)}")
        self.post_ops = compile_post(m.postprocess if m else (), session.outputs[0], m.labels if m else (), where)
        self._pre = FusedPre(self.pre_ops) if self.pre_ops else None
        self._post = fuse_post(self.post_ops.transforms)
        self._topk = self.post_ops.topk
        self._check = InputCheck(raw[0]) if len(raw) == 1 else None
        self._run = session.run
        # LiteRT's set_tensor / invoke / get_tensor as separate calls: only invoke is inference
        self._feed: Callable[[list[np.ndarray]], None] | None = getattr(session, "feed", None)
        self._invoke: Callable[[], None] | None = getattr(session, "invoke", None)
        self._fetch: Callable[[], list[np.ndarray]] | None = getattr(session, "fetch", None)
        self._staged = self._feed is not None and self._invoke is not None and self._fetch is not None
        self._lock: AbstractContextManager[Any] = getattr(session, "lock", None) or nullcontext()
        self._names = [t.name for t in session.outputs]

    def preprocess(self, x: Any) -> list[np.ndarray]:
        """Raw input(s) -> model feeds. ``x`` is one array, or a list/dict of arrays for multi-input models."""
        if self._check is not None and type(x) is np.ndarray:  # the common case: one plain array
            y = self._check(x)
            return [self._pre(y) if self._pre is not None else y]
        if isinstance(x, dict):
            missing = [t.name for t in self._raw if t.name not in x]
            if missing:
                raise InputError(f"missing input(s) {missing}; expected {[t.name for t in self._raw]}")
            arrays = [x[t.name] for t in self._raw]
        elif isinstance(x, (list, tuple)):
            arrays = list(x)
        else:
            arrays = [x]
        if len(arrays) != len(self._raw):
            raise InputError(
                f"expected {len(self._raw)} input(s) {[t.describe() for t in self._raw]}, got {len(arrays)}"
            )
        feeds = [check_input(a, spec) for a, spec in zip(arrays, self._raw)]
        if self._pre is not None:
            feeds = [self._pre(feeds[0])]
        return feeds

    def postprocess(self, outs: list[np.ndarray]) -> tuple[dict[str, np.ndarray], tuple[Prediction, ...]]:
        y = self._post(outs[0])
        top = self._topk.select(y) if self._topk is not None else ()
        if len(outs) == 1:
            return {self._names[0]: y}, top
        outputs = dict(zip(self._names, outs))
        outputs[self._names[0]] = y
        return outputs, top

    def __call__(self, x: Any) -> tuple[dict[str, np.ndarray], tuple[Prediction, ...], StageTimes]:
        t0 = perf_counter_ns()
        feeds = self.preprocess(x)
        if self._staged:
            with self._lock:  # the interpreter is one inference at a time (engines/litert.py)
                self._feed(feeds)  # type: ignore[misc]
                t1 = perf_counter_ns()
                self._invoke()  # type: ignore[misc]
                t2 = perf_counter_ns()
                outs = self._fetch()  # type: ignore[misc]
        else:
            t1 = perf_counter_ns()
            outs = self._run(feeds)
            t2 = perf_counter_ns()
        outputs, top = self.postprocess(outs)
        t3 = perf_counter_ns()
        return outputs, top, StageTimes(t1 - t0, t2 - t1, t3 - t2)

    def timed_infer(self, feeds: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
        """The inference stage alone, as __call__ times it (for overhead measurement): for a staged
        engine (LiteRT) the feeds are set before and the outputs read after the timed call."""
        if self._staged:
            with self._lock:
                self._feed(feeds)  # type: ignore[misc]
                t1 = perf_counter_ns()
                self._invoke()  # type: ignore[misc]
                ns = perf_counter_ns() - t1
                return self._fetch(), ns  # type: ignore[misc]
        t1 = perf_counter_ns()
        outs = self._run(feeds)
        return outs, perf_counter_ns() - t1


def _check_io(artifact: Artifact, session: Session) -> None:
    """The manifest must describe the model the engine actually loaded."""
    where = str(artifact.manifest_path or artifact.path)
    for kind, declared, actual in (
        ("input", artifact.inputs, session.inputs),
        ("output", artifact.outputs, session.outputs),
    ):
        if len(declared) != len(actual):
            raise ArtifactError(f"{where}: manifest lists {len(declared)} {kind}s, the model has {len(actual)}")
        for d, a in zip(declared, actual):
            if d.name != a.name or d.dtype != a.dtype:
                raise ArtifactError(
                    f"{where}: manifest {kind} {d.describe()} does not match the model's {a.describe()}"
                )
    if not session.inputs or not session.outputs:
        raise ArtifactError(f"{where}: the model has no inputs or no outputs")
