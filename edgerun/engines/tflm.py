"""TensorFlow Lite Micro (TFLM) on the host: the real TFLM kernels through the ``tflite-micro`` package.

Used by ``edgerun mcu check`` to answer a firmware engineer's questions before flashing: which of
a model's ops TFLM's op resolver lacks, the smallest tensor arena that allocates and runs, and
the INT8 outputs TFLM computes. It is not a benchmark engine: host-side TFLM timings say nothing
about a Cortex-M's latency (that comes from ``edgerun serial tiny`` against the board).

Every TFLM interpreter lives in a child process (``python -m edgerun.engines.tflm REQUEST``):
tflite-micro's Python wrapper segfaults when an interpreter is created after one whose arena
was too small (tflite-micro 0.dev20261023182759, seen here), and a segfault must not take the
edgerun process with it. A child costs ~0.3 s.

Its op resolver is TFLM's ``PythonOpsResolver``: every kernel TFLM ships (the reference kernels
on the host). A firmware registers only the ops it names in its ``MicroMutableOpResolver``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun.errors import ArtifactError, EngineError, EngineUnavailable, UsageError

__all__ = [
    "ArenaSearch",
    "Probe",
    "engine_version",
    "find_unsupported",
    "model_ops",
    "probe",
    "require_tflm",
    "run_feeds",
    "smallest_arena",
]

INSTALL_HINT = "pip install 'edgerun[mcu]' (the tflite-micro package; it publishes wheels for Linux x86-64 only)"
RESOLUTION_BYTES = 16  # TFLM aligns arena buffers to 16 bytes (MicroArenaBufferAlignment)
MAX_ARENA_BYTES = 256 * 1024 * 1024  # past any MCU's RAM: a model needing more is not an MCU model
PROBE_TIMEOUT_S = 300
_MARK = "edgerun-tflm-result: "
# TFLM's own messages (tensorflow/lite/micro: micro_allocator.cc, *_arena_buffer_allocator.cc,
# micro_op_resolver.cc), as tflite-micro 0.dev20261023182759 prints them to stderr.
_ARENA_TOO_SMALL = re.compile(r"Failed to (allocate|resize) .*(missing: \d+|bytes required)|Failed to allocate memory")
_NO_BUILTIN = re.compile(r"Didn't find op for builtin opcode '([A-Z0-9_]+)'")
_NO_REGISTRATION = re.compile(r"Failed to get registration from op code (\w+)")
_PREPARE_FAILED = re.compile(r"Node (\w+) \(number \d+\) failed to (prepare|invoke)")
_RECORDED_TOTAL = re.compile(r"\[RecordingMicroAllocator\] Arena allocation total (\d+) bytes")


def require_tflm() -> Any:
    """tflite-micro's runtime module, or EngineUnavailable saying which extra to install."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise EngineUnavailable(f"TFLite Micro is not installed: {INSTALL_HINT}") from exc
    return runtime


def engine_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------- the model's ops


def _schema() -> Any:
    # The flatbuffer reader edgerun.artifact already uses for TFLite files.
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _op_name(schema: Any, names: dict[int, str], code: Any) -> str:
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # codes > 127 live in BuiltinCode
    if builtin == schema.BuiltinOperator.CUSTOM:
        custom = code.CustomCode()
        return f"CUSTOM:{custom.decode('utf-8', 'replace') if custom else '?'}"
    return names.get(builtin, f"BUILTIN_{builtin}")


def model_ops(model: bytes, where: str = "model") -> dict[str, int]:
    """Operator name -> number of uses, over every subgraph, read from the flatbuffer."""
    import struct

    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    try:
        m = schema.Model.GetRootAsModel(model, 0)
        codes = [_op_name(schema, names, m.OperatorCodes(i)) for i in range(m.OperatorCodesLength())]
        uses: Counter[str] = Counter()
        for g in range(m.SubgraphsLength()):
            graph = m.Subgraphs(g)
            for i in range(graph.OperatorsLength()):
                uses[codes[graph.Operators(i).OpcodeIndex()]] += 1
    except (IndexError, struct.error, ValueError, TypeError, OverflowError) as exc:
        raise ArtifactError(
            f"{where}: corrupt TFLite flatbuffer ({type(exc).__name__} reading its operators)"
        ) from None
    return dict(uses)


def _without_ops(model: bytes, ops: set[str]) -> bytes:
    """A copy whose operators named in ``ops`` become RESHAPE (which every TFLM build registers).

    TFLM looks up every operator's kernel before it prepares any, and stops at the first one
    missing: swapping the missing ones for a registered op lets the next lookup name the next.
    """
    import flatbuffers

    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    fb = schema.Model.GetRootAsModel(model, 0)
    swapped = {i for i in range(fb.OperatorCodesLength()) if _op_name(schema, names, fb.OperatorCodes(i)) in ops}
    obj = schema.ModelT.InitFromObj(fb)
    for i in swapped:
        code = obj.operatorCodes[i]
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.RESHAPE
        code.customCode = None
    for graph in obj.subgraphs or []:
        for op in graph.operators or []:
            if op.opcodeIndex in swapped:  # a builtin with custom options is refused before the lookup
                op.customOptions, op.builtinOptionsType, op.builtinOptions = None, 0, None
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --------------------------------------------------------------------------- probes in a child


@dataclass(frozen=True)
class Probe:
    """One interpreter in a child process: created with ``arena`` bytes and invoked once (or not)."""

    arena: int
    status: str  # ok | arena (too small) | unregistered (op) | prepare (a kernel refused) | error
    detail: str = ""  # the op name, or TFLM's message
    recorded_total: int | None = None  # RecordingMicroAllocator's "Arena allocation total"


def _child(request: dict[str, Any], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    cmd = [sys.executable, "-m", "edgerun.engines.tflm", json.dumps(request)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, errors="replace")
    except subprocess.TimeoutExpired:
        raise EngineError(f"TFLM did not finish within {timeout_s:g} s (arena {request['arena']} bytes)") from None
    log = proc.stderr + proc.stdout
    found = [line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if not found:
        tail = " | ".join(line for line in log.strip().splitlines()[-3:])
        return None, f"TFLM's child process ended with exit code {proc.returncode} and no result ({tail})"
    return json.loads(found[-1]), log


def probe(model_file: Path, arena: int, feeds_file: Path | None = None, record: bool = False) -> Probe:
    """Create a TFLM interpreter with ``arena`` bytes and invoke it once; what happened."""
    require_tflm()
    request = {"model": str(model_file), "arena": arena, "feeds": str(feeds_file) if feeds_file else None}
    result, log = _child({**request, "record": record, "out": None}, PROBE_TIMEOUT_S)
    if result is None:
        return Probe(arena, "error", log)
    if result["ok"]:
        total = _RECORDED_TOTAL.search(log)
        return Probe(arena, "ok", recorded_total=int(total.group(1)) if total else None)
    if m := _NO_BUILTIN.search(log):
        return Probe(arena, "unregistered", m.group(1))
    if m := _NO_REGISTRATION.search(log):
        return Probe(arena, "unregistered", m.group(1))  # CUSTOM: which one is told apart by the caller
    if _ARENA_TOO_SMALL.search(log):
        return Probe(arena, "arena", _first(log, _ARENA_TOO_SMALL))
    if _PREPARE_FAILED.search(log):
        return Probe(arena, "prepare", _first(log, _PREPARE_FAILED, before=1))
    return Probe(arena, "error", result.get("error", "") or log.strip()[-300:])


def _first(log: str, pattern: re.Pattern[str], before: int = 0) -> str:
    lines = [line.strip() for line in log.splitlines()]
    for i, line in enumerate(lines):
        if pattern.search(line):
            return "; ".join(x for x in lines[max(0, i - before) : i + 1] if x)
    return ""


def run_feeds(model_file: Path, arena: int, feeds_file: Path) -> list[Any]:
    """Every sample in ``feeds_file`` (an .npz of stacked inputs ``in0``, ``in1``...) through TFLM."""
    import numpy as np

    require_tflm()
    with tempfile.TemporaryDirectory(prefix="edgerun-tflm-") as tmp:
        out = Path(tmp) / "out.npz"
        request = {"model": str(model_file), "arena": arena, "feeds": str(feeds_file), "record": False}
        result, log = _child({**request, "out": str(out), "all": True}, PROBE_TIMEOUT_S)
        if result is None or not result["ok"]:
            raise EngineError(f"TFLM failed to run the samples with a {arena}-byte arena: {log.strip()[-300:]}")
        with np.load(out) as data:
            return [data[f"out{i}"] for i in range(len(data.files))]


# --------------------------------------------------------------------------- what the check asks


def find_unsupported(
    model_file: Path, ops: dict[str, int], arena: int, first: Probe | None = None
) -> tuple[list[str], Probe]:
    """The model's ops TFLM's resolver lacks (all of them), and the probe of the model with them swapped out.

    ``first``: a probe of ``model_file`` at ``arena`` already made, saving one child.
    """
    model = model_file.read_bytes()
    missing: list[str] = []
    customs = [op for op in ops if op.startswith("CUSTOM:")]
    with tempfile.TemporaryDirectory(prefix="edgerun-tflm-") as tmp:
        copy = Path(tmp) / "model.tflite"
        current = model_file
        for _ in range(len(ops) + 1):
            result = first if first is not None and current == model_file else probe(current, arena)
            if result.status != "unregistered":
                return missing, result
            name = result.detail
            if name == "CUSTOM":  # TFLM does not say which custom op: each is tried on its own
                name = next(
                    (c for c in customs if c not in missing and _custom_missing(model, c, customs, copy, arena)), ""
                )
                if not name:
                    return missing, result
            if name in missing or name not in ops:  # TFLM named an op we did not swap out: stop, say so
                return missing, Probe(arena, "error", f"TFLM reported op {name} missing again")
            missing.append(name)
            copy.write_bytes(_without_ops(model, set(missing)))
            current = copy
    return missing, Probe(arena, "error", "op lookup did not converge")


def _custom_missing(model: bytes, custom: str, customs: list[str], scratch: Path, arena: int) -> bool:
    scratch.write_bytes(_without_ops(model, set(customs) - {custom}))
    found = probe(scratch, arena)
    return found.status == "unregistered" and found.detail in ("CUSTOM", custom)


@dataclass(frozen=True)
class ArenaSearch:
    """The smallest arena that allocated and ran: ``arena_bytes`` works, ``largest_failing_bytes`` did not."""

    arena_bytes: int
    largest_failing_bytes: int
    resolution_bytes: int
    recorded_total_bytes: int | None  # TFLM's RecordingMicroAllocator at a generous arena
    probes: list[Probe] = field(default_factory=list)


def smallest_arena(
    model_file: Path, start: Probe, feeds_file: Path | None = None, resolution: int = RESOLUTION_BYTES
) -> ArenaSearch:
    """Binary search of the arena size between 0 and a size that worked (``start``), to ``resolution`` bytes.

    The search begins at the recording allocator's total, which is usually the answer, so a
    small model needs a handful of children, not log2(arena / resolution).
    """
    if resolution < 1:
        raise UsageError(f"arena search resolution must be >= 1 byte, got {resolution}")
    probes = [start]
    lo, hi = 0, start.arena  # lo failed (0 always does), hi worked
    guess = start.recorded_total
    for candidate in [guess, guess - resolution] if guess else []:
        if lo < candidate < hi:
            lo, hi = _step(model_file, candidate, feeds_file, probes, lo, hi)
    while hi - lo > resolution:
        mid = (lo + hi) // 2
        lo, hi = _step(model_file, mid, feeds_file, probes, lo, hi)
    return ArenaSearch(hi, lo, resolution, start.recorded_total, probes)


def _step(
    model_file: Path, size: int, feeds_file: Path | None, probes: list[Probe], lo: int, hi: int
) -> tuple[int, int]:
    result = probe(model_file, size, feeds_file)
    probes.append(result)
    if result.status == "ok":
        return lo, size
    if result.status == "arena":
        return size, hi
    raise EngineError(f"TFLM failed with a {size}-byte arena for a reason other than its size: {result.detail}")


# --------------------------------------------------------------------------- the child's side


def _serve(request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    runtime = require_tflm()
    model = Path(request["model"]).read_bytes()
    try:
        interp = runtime.Interpreter.from_bytes(model, arena_size=int(request["arena"]))
    except (RuntimeError, ValueError) as exc:  # TFLM's own reason went to stderr already
        return {"ok": False, "stage": "allocate", "error": str(exc)}
    n_in = len(model_input_details(interp))
    if request["feeds"]:
        with np.load(request["feeds"]) as data:
            feeds = [data[f"in{i}"] for i in range(n_in)]
    else:
        feeds = [np.zeros((1, *d["shape"]), d["dtype"]) for d in model_input_details(interp)]
    count = len(feeds[0]) if request.get("all") else 1
    outs: list[list[Any]] = []
    try:
        for s in range(count):
            for i, x in enumerate(feeds):
                interp.set_input(x[s], i)
            interp.invoke()
            outs.append([interp.get_output(i).copy() for i in range(_count(interp.get_output_details))])
    except (RuntimeError, ValueError) as exc:
        return {"ok": False, "stage": "invoke", "error": str(exc)}
    if request.get("record"):
        interp.print_allocations()  # TFLM's RecordingMicroAllocator, to stderr
    if request.get("out"):
        stacked: dict[str, Any] = {f"out{i}": np.stack([o[i] for o in outs]) for i in range(len(outs[0]))}
        np.savez(request["out"], **stacked)
    return {"ok": True}


def model_input_details(interp: Any) -> list[dict[str, Any]]:
    return [interp.get_input_details(i) for i in range(_count(interp.get_input_details))]


def _count(details: Any) -> int:
    """The wrapper has no tensor count: ask for indices until it refuses."""
    n = 0
    while True:
        try:
            details(n)
        except (RuntimeError, ValueError, IndexError):
            return n
        n += 1


if __name__ == "__main__":
    import os

    reply = _serve(json.loads(sys.argv[1]))
    sys.stderr.flush()
    print(_MARK + json.dumps(reply), flush=True)
    os._exit(0)  # skip the wrapper's destructors: after a failed allocation they may crash
