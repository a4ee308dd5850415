"""onnxruntime providers: TensorRT options in the provider name, and which provider ran each node.

The node placement is read from onnxruntime's real profiler on the CPU provider (no GPU here) and
checked against an independent source: the optimized graph onnxruntime itself saves
(``optimized_model_filepath``), read with the onnx package. The TensorRT options' mapping to
onnxruntime's option names is checked as data; the TensorRT run itself needs a GPU
(tools/gpu_check.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerun.cli import main
from edgerun.engines.ort_providers import cache_files, cache_report, node_placement, split_provider
from edgerun.errors import ProviderUnavailable
from edgerun.runtime import load

DEMO = Path(__file__).resolve().parents[1] / "edgerun" / "demo" / "digits-int8.onnx"
TRT = "TensorrtExecutionProvider"


def test_tensorrt_options_map_to_onnxruntime_names(tmp_path: Path) -> None:
    name, opts = split_provider(f"tensorrt:fp16:int8:cache={tmp_path}", TRT)
    assert name == "tensorrt"
    assert opts == {"trt_fp16_enable": "True", "trt_int8_enable": "True", "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(tmp_path.resolve())}  # fmt: skip
    assert split_provider("cuda", "CUDAExecutionProvider") == ("cuda", {})


@pytest.mark.parametrize(
    ("spec", "full", "match"),
    [("tensorrt:fp8", TRT, "'fp8' unknown"), ("tensorrt:cache=", TRT, "cache=DIR"),
     ("cpu:fp16", "CPUExecutionProvider", "takes no options")],
)  # fmt: skip
def test_bad_provider_options_are_refused(spec: str, full: str, match: str) -> None:
    with pytest.raises(ProviderUnavailable, match=match):
        split_provider(spec, full)


def test_options_on_the_cpu_provider_are_refused_before_a_session_opens() -> None:
    with pytest.raises(ProviderUnavailable, match="takes no options"):
        load(DEMO, providers=("cpu:fp16",))


def test_engine_cache_report_says_whether_the_session_built_an_engine(tmp_path: Path) -> None:
    _, opts = split_provider(f"tensorrt:cache={tmp_path / 'cache'}", TRT)
    asked = {TRT: opts}
    before = cache_files(asked)
    assert before == set()  # the folder does not exist yet: TensorRT creates it
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "TensorrtExecutionProvider_TRTKernel_graph_0.engine").write_bytes(b"x")
    built = cache_report(asked, before)
    assert built is not None and built["cold_start_built_engine"] and built["files_before"] == 0
    again = cache_report(asked, cache_files(asked))  # a second session finds the engine: nothing new
    assert again is not None and not again["cold_start_built_engine"] and again["new_files"] == []
    assert cache_report({}, None) is None


def test_node_placement_matches_the_graph_onnxruntime_optimized(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    rt = load(DEMO, providers=("cpu",), threads=1, record_placement=True)
    x = rt.artifact.inputs[0]
    import numpy as np

    rt.pipeline.session.run([np.zeros(tuple(d or 1 for d in x.shape), dtype=x.dtype)])
    placement = rt.pipeline.session.node_placement()
    assert placement is not None and rt.pipeline.session.node_placement() is None
    rt.pipeline.session.run([np.zeros(tuple(d or 1 for d in x.shape), dtype=x.dtype)])
    assert rt.pipeline.session.native.end_profiling() == ""  # onnxruntime's profiler stopped: later runs unprofiled
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(DEMO), so, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    assert {n["name"] for n in placement["nodes"]} == {n.name for n in graph.node}
    assert placement["by_provider"] == {"CPUExecutionProvider": len(graph.node)} == {"CPUExecutionProvider": 45}
    ops = {n["name"]: n["op"] for n in placement["nodes"]}
    assert all(ops[n.name] == n.op_type for n in graph.node)
    assert rt.pipeline.session.details["provider_options"] == {"CPUExecutionProvider": {}}


def test_without_record_placement_nothing_is_profiled() -> None:
    rt = load(DEMO, providers=("cpu",), threads=1)  # edgerun run / serve: no profiler on any inference
    x = rt.artifact.inputs[0]
    import numpy as np

    rt.pipeline.session.run([np.zeros(tuple(d or 1 for d in x.shape), dtype=x.dtype)])
    assert rt.pipeline.session.node_placement() is None
    assert rt.pipeline.session.native.end_profiling() == ""  # onnxruntime was never profiling
    assert rt.pipeline.session.details["provider_options"] == {"CPUExecutionProvider": {}}


def test_bench_records_placement_only_when_providers_are_asked_for(tmp_path: Path) -> None:
    def engine(*extra: str) -> dict:
        out = tmp_path / f"r{len(extra)}.json"
        argv = ["bench", str(DEMO), "--runs", "20", "--min-seconds", "0", "--warmup", "1", "--warmup-seconds", "0",
                "--no-energy", "--no-memory", "--no-thermal", "--json", str(out), "-q", *extra]  # fmt: skip
        assert main(argv) in (0, 1, 3)  # pass, fail, not-valid: the verdicts are not what is tested
        return json.loads(out.read_text())["results"][0]["engine"]

    asked = engine("--providers", "cpu")
    assert asked["node_placement"]["by_provider"] == {"CPUExecutionProvider": 45}
    assert "provider_options" in asked
    default = engine()
    assert "node_placement" not in default and "provider_options" not in default


def test_a_profile_is_read_once_and_odd_events_are_skipped(tmp_path: Path) -> None:
    events = [
        "not an event",
        {"cat": "Session", "name": "model_run"},
        {"cat": "Node", "name": "conv_fence_before", "args": {"provider": "X"}},
        {"cat": "Node", "name": "conv_kernel_time", "args": {"op_name": "Conv", "provider": TRT}},
        {"cat": "Node", "name": "conv_kernel_time", "args": {"op_name": "Conv", "provider": TRT}},  # a second run
        {"cat": "Node", "name": "relu_kernel_time", "args": None},
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    placed = node_placement(str(path))
    assert placed["by_provider"] == {TRT: 1, "unknown": 1} and placed["node_count"] == 2
    assert placed["nodes"][0] == {"name": "conv", "op": "Conv", "provider": TRT}
    assert not path.exists()  # the profiler's file is removed once read
