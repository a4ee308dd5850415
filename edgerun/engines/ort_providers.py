"""onnxruntime execution providers: options in the provider name, and where each node ran.

Options ride on the provider's name, so they travel wherever ``--providers`` goes (the bench
worker, a device's ``edgerun bench`` over ssh, a lab plan)::

    --providers tensorrt:fp16:cache=/var/cache/edgerun-trt,cuda,cpu

Only TensorRT takes options; each maps to a TensorRT execution provider option of
onnxruntime (onnxruntime.ai/docs/execution-providers/TensorRT-ExecutionProvider.html,
``OrtTensorRTProviderOptions`` in onnxruntime_c_api.h):

=============== ==========================================================================
``fp16``        ``trt_fp16_enable=True``: TensorRT may pick FP16 kernels
``int8``        ``trt_int8_enable=True``: TensorRT may pick INT8 kernels (Q/DQ models)
``cache=DIR``   ``trt_engine_cache_enable=True``, ``trt_engine_cache_path=DIR``: built engines
                are kept in DIR, so the next session loads instead of building (seconds
                to minutes less cold start)
=============== ==========================================================================

Which provider ran each node comes from onnxruntime's own profiler: a session opened with
``enable_profiling`` writes one ``"cat": "Node"`` event per kernel run with
``args.provider`` and ``args.op_name``; ``node_placement`` reads the events of the first
inference and stops the profiler (``end_profiling``), so the steady state runs unprofiled.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from edgerun.errors import ProviderUnavailable

__all__ = ["TRT_FLAGS", "cache_files", "node_placement", "split_provider"]

TENSORRT = "TensorrtExecutionProvider"
TRT_FLAGS = {"fp16": "trt_fp16_enable", "int8": "trt_int8_enable"}
_KERNEL = "_kernel_time"  # the profiler's suffix on a node's kernel event (fence events have others)
MAX_NODES = 500  # nodes listed by name in a result (all are counted in by_provider)


def split_provider(spec: str, full_name: str) -> tuple[str, dict[str, str]]:
    """``"tensorrt:fp16:cache=DIR"`` -> (the name part, onnxruntime provider options)."""
    name, *opts = spec.split(":")
    if opts and full_name != TENSORRT:
        raise ProviderUnavailable(
            f"execution provider {name!r} takes no options (got {':'.join(opts)!r}); only tensorrt does: "
            f"{', '.join(TRT_FLAGS)}, cache=DIR"
        )
    options: dict[str, str] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if key in TRT_FLAGS and not eq:
            options[TRT_FLAGS[key]] = "True"
        elif key == "cache" and eq and value:
            options["trt_engine_cache_enable"] = "True"
            options["trt_engine_cache_path"] = str(Path(value).expanduser().resolve())
        else:
            raise ProviderUnavailable(
                f"tensorrt option {opt!r} unknown; expected {', '.join(TRT_FLAGS)} or cache=DIR, "
                "e.g. --providers tensorrt:fp16:cache=/var/cache/trt,cuda,cpu"
            )
    return name, options


def cache_files(options: dict[str, dict[str, str]]) -> set[str] | None:
    """The files in TensorRT's engine cache folder (None: no cache asked for)."""
    path = options.get(TENSORRT, {}).get("trt_engine_cache_path")
    if path is None:
        return None
    folder = Path(path)
    return {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()


def cache_report(options: dict[str, dict[str, str]], before: set[str] | None) -> dict[str, Any] | None:
    """Where the engine cache is and whether this session built (new files) or loaded an engine."""
    after = cache_files(options)
    if after is None or before is None:
        return None
    new = sorted(after - before)
    return {
        "path": options[TENSORRT]["trt_engine_cache_path"],
        "files_before": len(before),
        "new_files": new,
        "cold_start_built_engine": bool(new),
        "note": "session_create_ns includes the TensorRT engine build when new_files is not empty, "
        "else an engine loaded from the cache",
    }


def node_placement(profile_file: str) -> dict[str, Any]:
    """Per-node provider assignment from an onnxruntime profile JSON (Chrome trace events)."""
    path = Path(profile_file)
    try:
        events = json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)
    nodes: dict[str, dict[str, str]] = {}
    for e in events if isinstance(events, list) else []:
        name = str(e.get("name", "")) if isinstance(e, dict) else ""
        if not name.endswith(_KERNEL) or e.get("cat") != "Node":
            continue
        args = e.get("args") if isinstance(e.get("args"), dict) else {}
        op, provider = str(args.get("op_name", "?")), str(args.get("provider") or "unknown")
        nodes.setdefault(name[: -len(_KERNEL)], {"op": op, "provider": provider})
    counts = Counter(n["provider"] for n in nodes.values())
    return {
        "source": "onnxruntime profiler, kernel events' args.provider (a provider's fused subgraph, e.g. "
        "TensorRT's, is one node); the first inference ran profiled, so its cold_start time includes "
        "the profiler's overhead; the steady state ran unprofiled",
        "by_provider": dict(sorted(counts.items())),
        "node_count": len(nodes),
        "nodes": [{"name": k, **v} for k, v in list(nodes.items())[:MAX_NODES]],
    }
