"""The native runner: LiteRT ``benchmark_model`` / ``onnxruntime_perf_test`` on an Android device,
TensorRT's ``trtexec`` on an SSH target (``edgerun.targets.trtexec``, a Jetson).

For phones without Python, and for TensorRT's own timing on a Jetson. The binary the user
pushed (its path is a target option) benchmarks the staged model; its console output
(``native_parse``, ``trtexec_parse``) becomes a result in the shape of ``edgerun.bench.result``
with a ``runner`` block that lists what the binary cannot give (stage breakdown, raw samples,
most percentiles). Around the run: thermal state before and after, the charging state (adb),
CPU pinning with ``taskset``, and energy when the device has a power source
(``edgerun.targets.android``).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from edgerun.errors import TargetError, TargetSetupError, UsageError
from edgerun.targets.base import Completed, Target, command_runner
from edgerun.targets.identity import TargetIdentity
from edgerun.targets.native_parse import NativeRun, parse_benchmark_model, parse_perf_test
from edgerun.targets.native_result import build_native_result
from edgerun.targets.options import BenchOptions
from edgerun.targets.staging import StagedArtifact

__all__ = ["native_argv", "native_result_on"]

_TFLITE_DELEGATES = {"xnnpack": "--use_xnnpack=true", "gpu": "--use_gpu=true", "nnapi": "--use_nnapi=true"}
_ORT_PROVIDERS = {"cpu": "cpu", "xnnpack": "xnnpack", "nnapi": "nnapi", "qnn": "qnn", "snpe": "snpe"}


def _providers(options: BenchOptions) -> list[str]:
    return [p.strip().lower() for p in (options.providers or "").split(",") if p.strip()]


def _tflite_argv(binary: str, model: str, options: BenchOptions) -> list[str]:
    argv = [binary, f"--graph={model}", f"--num_runs={options.runs}", f"--min_secs={options.min_seconds:g}"]
    argv += [f"--max_secs={options.max_seconds:g}", f"--warmup_runs={options.warmup}"]
    argv += [f"--warmup_min_secs={options.warmup_seconds:g}"]
    if options.threads is not None:
        argv.append(f"--num_threads={options.threads}")
    for provider in _providers(options):
        if provider == "cpu":
            continue
        if provider not in _TFLITE_DELEGATES:
            raise UsageError(f"benchmark_model: provider {provider!r} unknown; expected {sorted(_TFLITE_DELEGATES)}")
        argv.append(_TFLITE_DELEGATES[provider])
    return argv


def _ort_argv(binary: str, model: str, options: BenchOptions) -> list[str]:
    providers = _providers(options) or ["cpu"]
    if len(providers) > 1 or providers[0] not in _ORT_PROVIDERS:
        raise UsageError(f"onnxruntime_perf_test takes one provider of {sorted(_ORT_PROVIDERS)}, got {providers}")
    # -r forces "times" mode: exactly N runs after its one fixed warm-up; -I: random inputs.
    argv = [binary, "-e", _ORT_PROVIDERS[providers[0]], "-m", "times", "-r", str(options.runs), "-I"]
    if options.threads is not None:
        argv += ["-x", str(options.threads)]
    return [*argv, model]


def native_argv(target: Target, staged: StagedArtifact, options: BenchOptions) -> list[str]:
    """The command line for the artifact's binary (by format; ssh: trtexec), pinned with taskset when asked."""
    if target.spec.kind == "ssh":
        from edgerun.targets.trtexec import trtexec_argv

        return trtexec_argv(target, staged, options)
    o = target.spec.options
    binary = o.benchmark_model if staged.format == "tflite" else o.onnxruntime_perf_test
    if not binary:
        key = "benchmark_model" if staged.format == "tflite" else "onnxruntime_perf_test"
        raise TargetSetupError(
            f"{target.spec.label}: no {key} configured for {staged.format} artifacts: push the binary "
            f"(adb push {key} /data/local/tmp/) and pass {key}=/data/local/tmp/{key} in the target options"
        )
    build = _tflite_argv if staged.format == "tflite" else _ort_argv
    argv = build(binary, staged.remote_model, options)
    return ["taskset", o.taskset, *argv] if o.taskset else argv


def _run_binary(target: Target, argv: list[str], options: BenchOptions) -> Completed:
    done = target.run(argv, options.job_timeout_s())
    if done.returncode in (126, 127):
        raise TargetSetupError(f"{target.spec.label}: cannot run {shlex.join(argv[:3])} on the device: {done.tail()}")
    if done.returncode != 0:
        raise TargetError(f"{target.spec.label}: {Path(argv[-1]).name}: exit status {done.returncode}: {done.tail()}")
    return done


def _parse(done: Completed, fmt: str, options: BenchOptions, label: str, tool: str = "") -> NativeRun:
    text = done.text + "\n" + done.stderr.decode("utf-8", errors="replace")  # LiteRT logs to stderr too
    try:
        if tool == "trtexec":
            from edgerun.targets.trtexec_parse import parse_trtexec

            return parse_trtexec(done.text)  # stdout only: its [W]/[E] lines go to stderr
        return parse_benchmark_model(text) if fmt == "tflite" else parse_perf_test(text, options.runs)
    except ValueError as exc:
        raise TargetError(f"{label}: unexpected benchmark output ({exc}): {done.tail()}") from exc


def _profile(target: Target, options: BenchOptions) -> tuple[Any, str]:
    from edgerun.detection import detect
    from edgerun.profiles import load_profile

    if options.profile:
        return load_profile(options.profile), f"chosen with --profile {options.profile}"
    found = detect(root=Path("/nonexistent-edgerun-device-root"), run=command_runner(target))
    return found.profile, found.reason


def native_result_on(
    target: Target, staged: StagedArtifact, options: BenchOptions, identity: TargetIdentity
) -> dict[str, Any]:
    """Benchmark a staged artifact with its native binary on ``target``; a result dict."""
    from edgerun.targets.android import charging_state, measure_native_energy
    from edgerun.targets.thermal import read_target_thermal

    argv = native_argv(target, staged, options)
    profile, reason = _profile(target, options)
    # a Jetson or Pi over ssh has no `dumpsys battery`: charging applies to phones
    no_battery: dict[str, Any] = {"sources": [], "charging": None, "warning": None}
    charging = charging_state(target) if target.spec.kind == "adb" else no_battery
    before = None if options.no_thermal else read_target_thermal(target)

    def work() -> NativeRun:
        tool = "trtexec" if target.spec.kind == "ssh" else ""
        return _parse(_run_binary(target, argv, options), staged.format, options, target.spec.label, tool)

    if options.no_energy:
        run, energy = work(), None
    else:
        run, energy = measure_native_energy(target, work, lambda r: (r.warmup_count or 0) + (r.count or 0))
    after = None if options.no_thermal else read_target_thermal(target)
    return build_native_result(
        run, staged, options, (profile, reason), identity, argv, charging, (before, after), energy
    )
