"""On-device acceptance of a model update, and ``install``: stage, accept, then switch.

Acceptance benchmarks the new artifact on this device, in a worker process (a native crash in
the engine refuses the update instead of taking the updater down), with the profile's budgets:

- every verdict the benchmark judges (edgerun.bench.result.verdicts_for: end-to-end hard and
  soft, each stage's, model size and peak memory against the profile) must be ``pass``; a
  ``not-valid`` one (too few samples for the percentile) refuses too, since it is no pass;
- where the manifest names labelled reference samples and a ``top1`` accuracy, the samples are
  run and checked against it (edgerun.update.reference: a 99.9% bound, ``tolerance_points``
  below the manifest's value, default 1 point, the demo recipe's ``max_drop_points``).

Only when everything passes is ``acceptance.json`` written into the version folder and the
store's ``current`` switched (edgerun.update.store, which says why each step is power-cut safe).

The worker is ``python -m edgerun.update.accept --result-fd N``, driven through the bench's
``run_in_worker`` (edgerun.bench.worker): same request on stdin, same JSON lines back.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgerun.bench.worker import WorkerRequest
from edgerun.errors import EdgerunError, UpdateRefused
from edgerun.update import store as st

DEFAULT_TOLERANCE_POINTS = 1.0


@dataclass(frozen=True)
class AcceptRequest(WorkerRequest):
    tolerance_points: float = DEFAULT_TOLERANCE_POINTS


@dataclass(frozen=True)
class Acceptance:
    """What acceptance found: ``passed`` only if every verdict passed. ``verdicts`` are Verdict dicts."""

    passed: bool
    verdicts: dict[str, dict[str, Any]]
    failed: tuple[str, ...]
    summary: dict[str, Any] = field(default_factory=dict)  # p50/p99 ms, n, engine, profile

    def reasons(self) -> str:
        """One line: each failed headline verdict with its reason, then the failed stage verdicts' names."""
        head = [k for k in self.failed if "." not in k] or list(self.failed)
        text = "; ".join(f"{k}: {self.verdicts[k]['status']} ({self.verdicts[k]['reason']})" for k in head)
        stages = [k for k in self.failed if k not in head]
        return text + (f"; also {', '.join(stages)}" if stages else "")


@dataclass(frozen=True)
class Installed:
    """The outcome of an install: ``status`` is "accepted" or "already-current"."""

    name: str
    version: str
    status: str
    previous: str | None
    folder: Path
    acceptance: Acceptance | None


def acceptance_bench(percentile: float = 99.0) -> Any:
    """The benchmark acceptance runs: enough steady-state samples for a valid soft verdict
    (LoadGen's count for the percentile), no energy windows (energy is not judged)."""
    from edgerun.bench.config import BenchConfig
    from edgerun.measure.stats import min_samples

    return BenchConfig(min_runs=max(1000, min_samples(percentile)), min_seconds=1.0, max_seconds=120.0, energy=False)


def accept(
    path: Path,
    profile: Any,
    *,
    bench: Any = None,
    tolerance_points: float = DEFAULT_TOLERANCE_POINTS,
    timeout_s: float | None = None,
) -> Acceptance:
    """Benchmark (and check the reference samples of) the artifact at ``path`` in a worker process."""
    from edgerun.bench.worker import run_in_worker

    budget = profile.budget
    config = bench if bench is not None else acceptance_bench(budget.percentile)
    request = AcceptRequest(
        path=str(path),
        config=config.to_dict(),
        budget={"soft_ms": budget.soft_ms, "hard_ms": budget.hard_ms, "percentile": budget.percentile},
        profile=str(profile.source) if getattr(profile, "source", None) else profile.name,
        profile_reason=f"acceptance with profile {profile.name}",
        tolerance_points=tolerance_points,
    )
    result = run_in_worker(request, config.worker_timeout_s(timeout_s), argv=_worker_argv)
    if result.get("status") != "ok":
        err = result.get("error", {})
        verdict = {"kind": "benchmark", "status": "fail", "reason": f"{err.get('type')}: {err.get('message')}"}
        return Acceptance(False, {"benchmark": verdict}, ("benchmark",))
    verdicts = dict(result["verdicts"])
    if result.get("reference") is not None:
        verdicts["reference_accuracy"] = result["reference"]
    failed = tuple(k for k, v in verdicts.items() if v["status"] not in ("pass", "skipped"))
    total = result["stats"]["total"]
    summary = {
        "profile": profile.name,
        "budget": result["budget"],
        "engine": f"{result['engine']['name']} {result['engine']['version']}",
        "input_source": result["input_source"],
        "runs": result["steady"]["runs"],
        "total_p50_ms": total["percentiles"]["p50"]["value_ns"] / 1e6,
        "total_max_ms": total["max_ns"] / 1e6,
        "provenance": "measured on this device",
    }
    return Acceptance(not failed, verdicts, failed, summary)


# --- install ---------------------------------------------------------------------------------


def install(
    release: Any,
    store: str | os.PathLike[str] | None = None,
    profile: Any = None,
    *,
    bench: Any = None,
    tolerance_points: float = DEFAULT_TOLERANCE_POINTS,
    timeout_s: float | None = None,
) -> Installed:
    """Copy a verified ``release`` (edgerun.update.fetch.Release) into the store, accept it, switch.

    ``profile``: a DeviceProfile, a profile name or TOML path, or None (the detected one).
    Raises UpdateRefused (nothing switched; the message names the failed verdicts) when the
    files do not match the release or acceptance fails.
    """
    from edgerun.profiles import DeviceProfile, load_profile

    name = st.check_part(release.name, "model name")
    version = st.check_part(release.version, "model version")
    if version in st.POINTERS:
        raise UpdateRefused(f"{name} version {version!r} is a store pointer's name; a version cannot be called so")
    if profile is None:
        from edgerun.detection import detect

        profile = detect().profile
    elif not isinstance(profile, DeviceProfile):
        profile = load_profile(profile)
    root = st.store_root(store)
    with st.locked(root, name):
        st.remove_stale(st.model_dir(root, name))
        old = st.pointer(root, name, "current")
        target = st.version_folder(root, name, version)
        if old == version:
            _same_bytes(target, release)
            return Installed(name, version, "already-current", st.pointer(root, name, "previous"), target, None)
        _stage(root, release, target)
        st.crash_point("staged")
        # A fresh copy has no acceptance.json yet. The one case of a folder kept (it is ``previous``)
        # keeps its old one until the new acceptance replaces it: refused now, it stays a rollback target.
        acceptance = accept(
            st.manifest_in(target), profile, bench=bench, tolerance_points=tolerance_points, timeout_s=timeout_s
        )
        if not acceptance.passed:
            _refuse(root, name, version, target, acceptance)
        event = st.check_event(  # before the switch: an event that cannot be logged must not fail it after
            "update-accepted",
            name=name,
            version=version,
            previous=old,
            sha256=release.sha256,
            verdicts=st.verdict_summary(acceptance.verdicts),
        )
        _write_acceptance(target, release, acceptance)
        st.crash_point("accepted")
        st.switch(root, name, version)
        st.append_history(
            root,
            name,
            {
                "event": "accepted",
                "version": version,
                "previous": old,
                "sha256": release.sha256,
                "summary": acceptance.summary,
            },
        )
    st.log_event("update-accepted", **event)
    return Installed(name, version, "accepted", old, target, acceptance)


def _same_bytes(folder: Path, release: Any) -> None:
    from edgerun.artifact import load_artifact

    if load_artifact(st.manifest_in(folder)).sha256 != release.sha256:
        raise UpdateRefused(
            f"{release.name} version {release.version} is already in the store with other bytes "
            f"({folder}); a version's files never change, so publish the new model under a new version"
        )


def _stage(root: Path, release: Any, target: Path) -> None:
    """Copy the release into versions/<version>/ through a .staging-* folder renamed in whole.

    A version already there is reused when it is ``previous`` (same bytes only) and otherwise
    moved aside and re-copied: a folder that is no pointer's target may be a cut-off copy.
    """
    folder = st.model_dir(root, release.name)
    if target.exists():
        if st.pointer(root, release.name, "previous") == release.version:
            _same_bytes(target, release)
            return
        aside = folder / f".staging-old-{release.version}-{os.getpid()}"
        os.rename(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    staging = folder / f".staging-{release.version}-{os.getpid()}"
    staging.mkdir()
    try:
        _copy_and_check(release, staging)
    except OSError as exc:  # a full disk, a read-only store: nothing was switched
        shutil.rmtree(staging, ignore_errors=True)
        raise UpdateRefused(
            f"{release.name} {release.version}: cannot copy the release into {folder} ({exc.strerror or exc}); "
            f"{release.name}@current is unchanged"
        ) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    os.rename(staging, target)
    st.fsync_folder(target.parent)


def _copy_and_check(release: Any, staging: Path) -> None:
    """Copy the release's files into ``staging`` (each fsync'd) and check they load as the release."""
    from edgerun.artifact import load_artifact, manifest_path_for

    model = Path(release.model_path)
    st.copy_durable(model, staging / model.name)
    st.crash_point("copying")
    st.copy_durable(Path(release.manifest_path), manifest_path_for(staging / model.name))
    for data in release.data_paths:  # an ONNX model's external weights, beside it
        st.copy_durable(Path(data), staging / Path(data).name)
    if release.samples_path is not None:
        st.copy_durable(Path(release.samples_path), staging / Path(release.samples_path).name)
    try:
        artifact = load_artifact(manifest_path_for(staging / model.name))
    except EdgerunError as exc:
        raise UpdateRefused(f"{release.name} {release.version}: the release's files do not load: {exc}") from exc
    if artifact.path.name != model.name or artifact.sha256 != release.sha256:
        raise UpdateRefused(
            f"{release.name} {release.version}: the manifest names {artifact.path.name} (sha256 {artifact.sha256}), "
            f"not the release's model {model.name} (sha256 {release.sha256})"
        )
    st.fsync_folder(staging)


def _write_acceptance(target: Path, release: Any, acceptance: Acceptance) -> None:
    from edgerun.outputs import write_atomic

    doc = {
        "schema": "edgerun.acceptance",
        "schema_version": 1,
        "name": release.name,
        "version": release.version,
        "sha256": release.sha256,
        "passed": True,
        "summary": acceptance.summary,
        "verdicts": acceptance.verdicts,
    }
    write_atomic(target / st.ACCEPTANCE_FILE, json.dumps(doc, indent=1) + "\n", force=True)


def _refuse(root: Path, name: str, version: str, target: Path, acceptance: Acceptance) -> None:
    """Record the refusal, remove the refused copy (unless a pointer names it) and raise UpdateRefused."""
    statuses = {k: acceptance.verdicts[k]["status"] for k in acceptance.failed}
    st.append_history(
        root, name, {"event": "refused", "version": version, "failed": statuses, "reasons": acceptance.reasons()}
    )
    if version not in (st.pointer(root, name, "current"), st.pointer(root, name, "previous")):
        aside = target.parent.parent / f".staging-refused-{version}-{os.getpid()}"
        os.rename(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    failed = {k: acceptance.verdicts[k] for k in acceptance.failed}
    st.log_event(
        "update-refused", name=name, version=version, verdicts=st.verdict_summary(failed), reason=acceptance.reasons()
    )
    current = st.pointer(root, name, "current")
    raise UpdateRefused(
        f"{name} {version} failed its on-device acceptance, so {name}@current stays "
        f"{current or '(none)'}: {acceptance.reasons()}"
    )


# --- the worker process ------------------------------------------------------------------------


def _worker_argv(result_fd: int) -> list[str]:
    return [sys.executable, "-X", "faulthandler", "-m", "edgerun.update.accept", "--result-fd", str(result_fd)]


def _child(request: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> None:
    from edgerun.bench.config import BenchConfig
    from edgerun.bench.result import bench_one
    from edgerun.budget import Budget
    from edgerun.profiles import load_profile

    phases = {
        "load": "loading the artifact",
        "first": "first inference",
        "warmup": "warm-up",
        "measure": "steady state",
        "done": "building the result",
    }
    seen: list[str] = []

    def progress(phase: str, fraction: float) -> None:
        if phase in phases and phases[phase] not in seen:
            seen.append(phases[phase])
            send({"type": "phase", "phase": phases[phase]})

    profile = load_profile(request["profile"]) if request.get("profile") else None
    config = BenchConfig(**{**request["config"], "providers": tuple(request["config"].get("providers", ()))})
    result = bench_one(
        request["path"], config, profile, Budget(**request["budget"]), request["profile_reason"], progress
    )
    if result.get("status") == "ok":
        send({"type": "phase", "phase": "checking the reference samples"})
        from edgerun.update.reference import reference_check

        result["reference"] = reference_check(request["path"], float(request["tolerance_points"]))
        result.pop("samples_ns", None)  # the parent needs the verdicts, not every sample
    send({"type": "result", "result": result})


def main(argv: list[str] | None = None) -> int:
    from edgerun.bench.worker import serve_one_request

    return serve_one_request(argv, _child, "edgerun acceptance worker (started by `edgerun update`)", "acceptance")


if __name__ == "__main__":
    sys.exit(main())
