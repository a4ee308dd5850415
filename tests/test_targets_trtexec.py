"""TensorRT's trtexec as the native runner of SSH targets (a Jetson).

The parser is tested on output in the format of NVIDIA's trtexec source for three TensorRT
generations (tests/fixtures/targets/make_trtexec_outputs.py writes them from
samples/common/sampleReporting.cpp and friends: no Jetson here, so no captures). The ssh path
runs through a real OpenSSH server on 127.0.0.1 with ``tests/fixtures/targets/bin/trtexec``,
a named stand-in that records its arguments and prints one of those outputs: it tests edgerun's
command line, transport, parsing and result, not TensorRT.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tool_modules import load_file, target_devices

from edgerun.cli import main
from edgerun.errors import MeasurementError, TargetSetupError
from edgerun.targets import open_target, parse_target
from edgerun.targets.trtexec_parse import parse_trtexec

FIX = Path(__file__).resolve().parent / "fixtures" / "targets"
OUT = FIX / "outputs"
SCHEMA = Path(__file__).resolve().parents[1] / "edgerun" / "bench" / "result.schema.json"
DEMO = Path(__file__).resolve().parents[1] / "edgerun" / "demo" / "digits-int8.onnx"


def _text(version: str) -> str:
    return (OUT / f"trtexec-{version}.txt").read_text()


def test_the_fixtures_are_what_the_generator_writes() -> None:
    gen = load_file(FIX / "make_trtexec_outputs.py", "make_trtexec_outputs")
    assert gen.modern("10.3.0", "100300", "FP32+FP16", 10, 1000, 2.9, [90, 95, 99], False) == _text("10.3")
    assert gen.modern("8.2.1", "8201", "FP32+INT8", 82, 430, 6.7, [99], True) == _text("8.2")
    assert gen.old7(70, 300, 9.8) == _text("7.0")


def test_tensorrt_10_summary() -> None:
    run = parse_trtexec(_text("10.3"))
    assert (run.tool, run.count, run.warmup_count) == ("trtexec", 1000, 69)
    assert (run.min_ns, run.max_ns, run.mean_ns) == (2919550, 3229080, pytest.approx(2987920))
    assert run.percentiles_ns == {"p90": 3057450, "p95": 3088380, "p99": 3136600}
    assert run.session_create_ns == 41273400000  # "Engine built in 41.2734 sec.": the cold start
    d = run.details
    assert (d["tensorrt_version"], d["precision"], d["engine_build_s"]) == ("10.3.0", "FP32+FP16", 41.2734)
    assert (d["throughput_qps"], d["total_host_walltime_s"], d["total_gpu_compute_s"]) == (331.565, 3.016, 2.96753)
    gpu = d["timings_ms"]["gpu_compute"]
    assert (gpu["mean_ms"], gpu["median_ms"], gpu["percentiles_ms"]["p99"]) == (2.96753, 2.9584, 3.11582)
    assert d["timings_ms"]["enqueue"]["mean_ms"] == 1.02305
    assert set(d["timings_ms"]) == {"latency", "enqueue", "h2d", "gpu_compute", "d2h"}


def test_tensorrt_8_summary_has_one_percentile_and_end_to_end() -> None:
    run = parse_trtexec(_text("8.2"))
    assert (run.count, run.min_ns, run.max_ns, run.percentiles_ns) == (430, 6721120, 7430810, {"p99": 7225540})
    assert run.session_create_ns is None  # 8.x prints no "Engine built in" line
    assert run.details["precision"] == "FP32+INT8" and run.details["tensorrt_version"] == "8.2.1"
    assert "end_to_end" in run.details["timings_ms"]


def test_a_captured_tensorrt_8_4_summary() -> None:
    # Verbatim from a real run (NVIDIA-AI-IOT/tensorrt_plugin_generator samples/yolov4/README.md): an
    # independent check of the format the fixtures above were written from. No "Timing trace" line in it.
    run = parse_trtexec((OUT / "trtexec-8.4-captured.txt").read_text())
    assert (run.count, run.min_ns, run.max_ns, run.percentiles_ns) == (None, 7940550, 8096500, {"p99": 8086120})
    assert run.mean_ns == pytest.approx(7963620) and run.details["tensorrt_version"] == "8.4.1"  # from v8401
    assert run.details["timings_ms"]["gpu_compute"]["median_ms"] == 7.76099
    assert run.details["timings_ms"]["d2h"]["min_ms"] == 0.0078125 and "end_to_end" not in run.details["timings_ms"]
    assert (run.details["throughput_qps"], run.details["total_gpu_compute_s"]) == (128.422, 3.01301)


def test_tensorrt_7_blocks() -> None:
    run = parse_trtexec(_text("7.0"))
    assert (run.count, run.min_ns, run.max_ns, run.mean_ns) == (300, 9819850, 10677500, pytest.approx(10061400))
    assert run.percentiles_ns == {"p99": 10529200}
    assert run.details["timings_ms"]["gpu_compute"]["mean_ms"] == 10.0411
    assert run.details["throughput_qps"] == 97.1817 and run.details["total_host_walltime_s"] == 3.087


@pytest.mark.parametrize(
    "text",
    [
        "",
        "&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --onnx=m.onnx\nCould not open file m.onnx\n",
        "\x00\xff garbage \n" * 10,
    ],
)
def test_output_without_a_summary_is_an_error(text: str) -> None:
    with pytest.raises(MeasurementError, match="no latency summary"):
        parse_trtexec(text)


def test_truncated_output_is_an_error_not_a_partial_result() -> None:
    text = _text("10.3")
    cut = text[: text.index("=== Performance summary ===")]  # the link dropped before the summary
    with pytest.raises(MeasurementError, match="no latency summary"):
        parse_trtexec(cut)


def test_output_cut_inside_the_summary_is_an_error() -> None:
    text = _text("8.2")
    with pytest.raises(MeasurementError, match="ends before its '&&&& PASSED'"):
        parse_trtexec(text[: text.index("D2H Latency:")])


def test_failed_run_is_an_error_even_with_a_summary() -> None:
    with pytest.raises(MeasurementError, match="FAILED"):
        parse_trtexec(_text("10.3").replace("&&&& PASSED", "&&&& FAILED"))


def test_trtexec_needs_its_path_and_an_onnx_model() -> None:
    from edgerun.targets.bench import StagedArtifact
    from edgerun.targets.options import BenchOptions
    from edgerun.targets.trtexec import trtexec_argv

    staged = StagedArtifact(DEMO, "/d/m.onnx", "m", "onnx", "int8", "0" * 64, 1, None)
    target = open_target(parse_target("ssh://jetson?runner=native"))
    with pytest.raises(TargetSetupError, match="trtexec=PATH"):
        trtexec_argv(target, staged, BenchOptions())
    target = open_target(parse_target("ssh://jetson?runner=native&trtexec=/t/trtexec&trtexec_precision=fp16,int8"))
    argv = trtexec_argv(target, staged, BenchOptions(runs=200, min_seconds=1.5, warmup_seconds=0.25))
    assert argv == ["/t/trtexec", "--onnx=/d/m.onnx", "--iterations=200", "--duration=2", "--warmUp=250",
                    "--fp16", "--int8"]  # fmt: skip
    tflite = StagedArtifact(DEMO, "/d/m.tflite", "m", "tflite", "int8", "0" * 64, 1, None)
    with pytest.raises(TargetSetupError, match="ONNX"):
        trtexec_argv(target, tflite, BenchOptions())
    with pytest.raises(ValueError, match="trtexec_precision"):
        parse_target("ssh://jetson?trtexec_precision=int4")
    with pytest.raises(ValueError, match="ssh targets"):
        parse_target("adb://x?trtexec=/t/trtexec")


devices = target_devices()


@pytest.mark.skipif(devices.sshd_missing_reason() is not None, reason=str(devices.sshd_missing_reason()))
def test_bench_over_ssh_runs_trtexec_and_reads_its_summary(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    server = devices.loopback_sshd.start(tmp_path / "sshd")
    try:
        bin_dir = tmp_path / "jetson-bin"
        bin_dir.mkdir()
        shutil.copy(FIX / "bin" / "trtexec", bin_dir / "trtexec")
        shutil.copy(OUT / "trtexec-10.3.txt", bin_dir / "trtexec-output.txt")
        url = server.url(runner="native", trtexec=str(bin_dir / "trtexec"), trtexec_precision="fp16")
        out = tmp_path / "r.json"
        code = main(["bench", "--target", url, str(DEMO), "--runs", "300", "--min-seconds", "2", "--warmup-seconds",
                     "0.2", "--profile", "jetson-orin-nano", "--no-energy", "--json", str(out), "-q"])  # fmt: skip
        args = (bin_dir / "trtexec.args").read_text().splitlines()
        text = _text("10.3")  # the link dropped mid-summary: an error result that says so, not a partial one
        (bin_dir / "trtexec-output.txt").write_text(text[: text.index("GPU Compute Time:") - 40])
        cut = tmp_path / "cut.json"
        main(["bench", "--target", url, str(DEMO), "--profile", "jetson-orin-nano", "--no-energy", "--json", str(cut),
              "-q"])  # fmt: skip
    finally:
        server.stop()
    (error,) = json.loads(cut.read_text())["results"]
    assert error["status"] == "error" and "ends before its '&&&& PASSED'" in error["error"]["message"]
    assert code in (0, 1, 3)
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    (result,) = doc["results"]
    remote = result["artifact"]["path"]
    assert remote.startswith(str(server.workdir / "artifacts")) and Path(remote).read_bytes() == DEMO.read_bytes()
    assert args == [f"--onnx={remote}", "--iterations=300", "--duration=2", "--warmUp=200", "--fp16"]
    assert result["runner"]["tool"] == "trtexec" and result["target"]["kind"] == "ssh"
    assert result["engine"]["name"] == "tensorrt" and result["engine"]["precision_flags"] == "FP32+FP16"
    assert result["stats"]["total"]["n"] == 1000 and result["stats"]["total"]["max_ns"] == 3229080
    assert result["cold_start"]["session_create_ns"] == 41273400000
    assert result["runner"]["details"]["timings_ms"]["gpu_compute"]["mean_ms"] == 2.96753
    assert result["charging"]["charging"] is None and not result["warnings"]
