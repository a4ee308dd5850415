"""``edgerun bench`` on a target: push the artifact, run the device's edgerun, pull the JSON result.

The device's own ``edgerun bench`` (with its worker isolation, probes and thermal
readings) writes the result, so a remote result reads exactly like a local one; a
``target`` block is added with who the device is (``edgerun.targets.identity``) and
where the artifact was put. Android devices without Python use ``edgerun.targets.native``.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from edgerun.errors import EdgerunError, TargetError, TargetSetupError
from edgerun.targets.base import Target
from edgerun.targets.identity import TargetIdentity
from edgerun.targets.options import BenchOptions
from edgerun.targets.staging import PUSH_TIMEOUT_S, StagedArtifact, stage_artifact  # noqa: F401 (re-exported)

__all__ = ["StagedArtifact", "bench_on_target", "stage_artifact", "target_error_result", "uses_native_runner"]


def uses_native_runner(target: Target) -> bool:
    """Android without a Python that has edgerun, or ``runner=native`` (ssh: trtexec): native binaries do the work."""
    runner = target.spec.options.runner
    if target.spec.kind == "ssh":
        return runner == "native"
    if target.spec.kind != "adb":
        return False
    return runner == "native" or (runner is None and not target.python)


def _bench_argv(target: Target, model: str, result: str, options: BenchOptions) -> list[str]:
    assert target.python is not None
    argv = [target.python, "-m", "edgerun.cli", "bench", model, "--json", result, "-q", *options.argv()]
    mask = target.spec.options.taskset
    return ["taskset", mask, *argv] if mask else argv


def _edgerun_result(target: Target, staged: StagedArtifact, options: BenchOptions) -> dict[str, Any]:
    result_path = f"results/{uuid.uuid4().hex}.json"
    target.run(["mkdir", "-p", target.path("results")], 30.0).check(target.spec.label, "creating results/")
    argv = _bench_argv(target, staged.remote_model, target.path(result_path), options)
    done = target.run(argv, options.job_timeout_s())
    if done.returncode in (126, 127):
        raise TargetSetupError(f"{target.spec.label}: cannot run {argv[0]} on the device: {done.tail()}")
    if done.returncode not in (0, 1, 3):  # 2: usage error; anything else: edgerun itself failed
        raise TargetError(f"{target.spec.label}: edgerun bench exited {done.returncode}: {done.tail()}")
    try:
        doc = json.loads(target.read_file(result_path))
    except (TargetError, ValueError) as exc:
        raise TargetError(
            f"{target.spec.label}: edgerun bench wrote no readable result ({exc}): {done.tail()}"
        ) from exc
    target.run(["rm", "-f", target.path(result_path)], 30.0)  # best effort: a leftover file harms nothing
    from edgerun.bench.result import upgrade

    return upgrade(doc)["results"][0]


def bench_on_target(
    target: Target, path: Path, options: BenchOptions, identity: TargetIdentity, staged: StagedArtifact | None = None
) -> dict[str, Any]:
    """One artifact benchmarked on ``target``; the result dict with a ``target`` block.

    Raises TargetError (and subclasses) when the job cannot produce a result; an
    artifact the device's edgerun cannot benchmark is an ``error`` result, as locally.
    """
    staged = staged or stage_artifact(target, path)
    if uses_native_runner(target):
        from edgerun.targets.native import native_result_on

        result = native_result_on(target, staged, options, identity)
        runner = "native"
    else:
        result = _edgerun_result(target, staged, options)
        runner = "edgerun"
    # e.g. {"emulated": True}: an emulator must never read as a phone
    facts: dict[str, Any] = getattr(target, "facts", dict)()
    result["target"] = {**identity.to_dict(), **facts, "runner": runner, "artifact_remote_path": staged.remote_model}
    return result


def target_error_result(path: Path, exc: EdgerunError, identity: TargetIdentity | None, label: str) -> dict[str, Any]:
    """An ``error`` result for a job the target failed (unreachable, timed out, not set up)."""
    from edgerun.bench.result import error_result

    result = error_result(str(path), exc, None, f"benchmarked on target {label}")
    result["target"] = identity.to_dict() if identity else {"name": label}
    return result
