"""One target's jobs, one after another on its own thread: ``TargetRunner``.

Connect and identify the device once, then for each job: read the device's load (``device_load``:
a warning when other processes keep it busy), stage the artifact (once per target), benchmark,
store the result in its own transaction, rest (cooldown) before the next job. A device that is
unreachable, refuses us or is not set up stops the target (its jobs wait for the next run); a job
that times out is a failure and the next job runs; an artifact the device's edgerun cannot
benchmark is a result. ``run_plan`` (edgerun/lab/scheduler.py) runs one per target; a labgrid
place worker (edgerun/lab/place_worker.py) is one too, with its own job source and hooks
(``_bench``, ``_annotate``, ``_stop``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgerun.errors import EdgerunError, TargetAuthError, TargetSetupError, TargetTimeout, TargetUnreachable
from edgerun.lab.plan import Job, PlanTarget
from edgerun.lab.store import LabStore

__all__ = ["BUSY_WARN_PCT", "DEVICE_GONE", "Progress", "TargetRunner", "TargetSummary", "device_load", "load_warning"]

Progress = Callable[[str, str], None]  # (target name, one line)
DEVICE_GONE = (TargetUnreachable, TargetAuthError, TargetSetupError)
LOAD_WINDOW_S = 0.5  # the window over which the device's CPU use by others is read before a job
BUSY_WARN_PCT = 25.0  # share of all CPUs busy with other processes that makes a job's timings suspect
# One read of the device: load averages, the CPU count, and the CPU counters twice, LOAD_WINDOW_S apart.
_LOAD_SCRIPT = (
    f"cat /proc/loadavg; grep -c '^cpu[0-9]' /proc/stat; grep '^cpu ' /proc/stat; "
    f"sleep {LOAD_WINDOW_S}; grep '^cpu ' /proc/stat"
)


def device_load(target: Any) -> dict[str, Any] | None:
    """The device's load just before a job: 1/5/15-min load averages, CPUs, and the share of all
    CPUs that was busy over LOAD_WINDOW_S (nothing of ours runs there then: it is other processes).
    None when the device has no /proc (not Linux) or does not answer."""
    from edgerun.errors import TargetError

    try:
        done = target.run(["sh", "-c", _LOAD_SCRIPT], 15.0)
    except TargetError:
        return None
    lines = done.text.splitlines()
    if done.returncode != 0 or len(lines) != 4:
        return None
    try:
        loadavg = [float(x) for x in lines[0].split()[:3]]
        cpus = int(lines[1])
        before, after = ([int(x) for x in line.split()[1:]] for line in lines[2:])
    except ValueError:
        return None
    # /proc/stat: user nice system idle iowait irq softirq steal ...; idle time is idle + iowait
    total = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])
    busy = 100.0 * (total - idle) / total if total > 0 else 0.0
    return {"loadavg": loadavg, "cpus": cpus, "cpu_busy_pct": round(busy, 1), "window_s": LOAD_WINDOW_S}


def load_warning(load: dict[str, Any] | None) -> str | None:
    """A warning when the device was busy with other processes as the job started."""
    if load is None or load["cpu_busy_pct"] < BUSY_WARN_PCT:
        return None
    return (
        f"the device was {load['cpu_busy_pct']:.0f}% busy with other processes before this job "
        f"(1-min load {load['loadavg'][0]:.2f} on {load['cpus']} CPUs): its timings may be slowed "
        "(a previous run's leftovers, or another user)"
    )


@dataclass
class TargetSummary:
    name: str
    todo: int
    done: int = 0
    failed: int = 0
    stopped: str | None = None  # why the remaining jobs were left for the next run
    power_cycles: int = 0  # boards of a labgrid target power-cycled because they stopped answering


def _headline(result: dict[str, Any]) -> str:
    if result.get("status") != "ok":
        return (
            f"ERROR {result.get('error', {}).get('type', '?')}: {str(result.get('error', {}).get('message', ''))[:80]}"
        )
    pct = (result["stats"]["total"] or {}).get("percentiles", {})
    p99 = pct.get("p99", {}).get("value_ns")
    tail = f" p99 {p99 / 1e6:.3f} ms" if p99 else ""
    return f"{result['overall'].upper()}{tail}"


class TargetRunner:
    """The jobs of one target, run one after another on its own thread."""

    def __init__(self, plan_target: PlanTarget, jobs: list[Job], store: LabStore, run_id: int, progress: Progress):
        self.plan_target, self.jobs, self.store, self.run_id, self.say = plan_target, jobs, store, run_id, progress
        self.summary = TargetSummary(plan_target.name, len(jobs))
        self.staged: dict[str, Any] = {}

    def run(self, stop: threading.Event) -> None:
        try:
            self._run(stop)
        except Exception as exc:  # a bug must not pass silently in a thread: say it, keep the others going
            self._stop(f"internal error {type(exc).__name__}: {exc}")

    def _run(self, stop: threading.Event) -> None:
        from edgerun.targets import open_target

        target = open_target(self.plan_target.spec)
        try:
            identity = self._identify(target)
        except DEVICE_GONE as exc:
            self._stop(f"{type(exc).__name__}: {exc}")
            return
        for i, job in enumerate(self.jobs):
            if stop.is_set():
                self._stop("interrupted")
                return
            if i:
                self._cooldown(target)
            if not self._one(target, identity, job, i):
                return

    def _identify(self, target: Any) -> Any:
        from edgerun.targets.bench import uses_native_runner
        from edgerun.targets.identity import identify, require_edgerun

        identity = identify(target)
        if not uses_native_runner(target):
            require_edgerun(target, identity)
        self.say(
            self.summary.name,
            f"{identity.model or identity.hostname or '?'}, {identity.os}"
            + (" (EMULATED)" if identity.emulation else "")
            + f": {len(self.jobs)} job(s)",
        )
        return identity

    def _one(self, target: Any, identity: Any, job: Job, index: int) -> bool:
        """Run and store one job; False when the device is gone and its other jobs must wait."""
        from edgerun.targets.bench import target_error_result

        label = f"{index + 1}/{len(self.jobs)} {job.describe()}"
        start = time.monotonic()
        load = device_load(target)
        warning = load_warning(load)
        if warning:
            self.say(self.summary.name, f"{label}: WARNING {warning}")
        try:
            result = self._bench(target, job, identity)
        except DEVICE_GONE as exc:
            self.store.record_failure(self.run_id, job, exc)
            self.summary.failed += 1
            self._stop(f"{type(exc).__name__} at {label}: {exc}")
            return False
        except TargetTimeout as exc:
            self.store.record_failure(self.run_id, job, exc)
            self.summary.failed += 1
            self.say(self.summary.name, f"{label}: FAILED (timeout; retried next run): {exc}")
            return True
        except EdgerunError as exc:  # the artifact itself is unusable: a final answer, stored as a result
            result = target_error_result(job.artifact, exc, identity, self.summary.name)
        result["load_at_start"] = load
        if warning:
            result.setdefault("warnings", []).append(warning)
        self._annotate(result)
        self.store.record(self.run_id, job, result)
        self.summary.done += 1
        self.say(self.summary.name, f"{label}: {_headline(result)} ({time.monotonic() - start:.1f} s)")
        return True

    def _bench(self, target: Any, job: Job, identity: Any) -> dict[str, Any]:
        """Stage the job's artifact (once per target) and benchmark it: the job's result (a labgrid
        place worker power-cycles a board that stopped answering and runs this once more)."""
        from edgerun.targets.bench import bench_on_target, stage_artifact

        staged = self.staged.get(job.artifact_sha256) or stage_artifact(target, job.artifact)
        self.staged[job.artifact_sha256] = staged
        return bench_on_target(target, job.artifact, job.options, identity, staged)

    def _annotate(self, result: dict[str, Any]) -> None:
        """Add to a result before it is stored (a labgrid place worker says which place)."""

    def _cooldown(self, target: Any) -> None:
        t = self.plan_target
        if t.cooldown_s is None and t.cooldown_c is None:
            return
        from edgerun.targets.thermal import target_cooldown

        done = target_cooldown(target, t.cooldown_c, t.cooldown_s, t.cooldown_max_s)
        if t.cooldown_c is not None or not done.reached:
            self.say(self.summary.name, f"cooldown: {done.reason}")

    def _stop(self, why: str) -> None:
        self.summary.stopped = why
        left = self.summary.todo - self.summary.done
        self.say(self.summary.name, f"stopped, {left} job(s) left for the next run: {why}")
