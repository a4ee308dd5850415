"""Run a plan: one thread per target (devices in parallel), that target's jobs one at a time.

Per target: connect and identify the device once, check it can run the jobs, then for
each job not already in the database: stage the artifact (once per target), benchmark,
store the result in its own transaction, rest (cooldown) before the next job.

A failure is the failure of that job, never a hang and never the end of the lab:
- the device is unreachable, refuses us, or is not set up: its remaining jobs are left
  for the next ``lab run`` (they stay undone) and the other devices go on;
- a job times out: recorded as a failure, the device's next job runs;
- the artifact cannot be benchmarked (the device's edgerun says so): that is a result.

A job's processes die with the lab (edgerun.targets.local, .ssh; the bench worker
watches its parent): on a normal exit, an exception or SIGTERM ``run_plan`` kills every
process group it started; after a SIGKILL the guards do it. And the device's load is
read before each job (``load_at_start`` in the result, a warning when other processes
keep it busy), so a job timed beside someone else's work says so.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgerun.errors import EdgerunError, TargetAuthError, TargetSetupError, TargetTimeout, TargetUnreachable
from edgerun.lab.plan import Job, Plan, PlanTarget
from edgerun.lab.store import LabStore

__all__ = ["LabSummary", "TargetSummary", "run_plan"]

Progress = Callable[[str, str], None]  # (target name, one line)
_DEVICE_GONE = (TargetUnreachable, TargetAuthError, TargetSetupError)
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


@dataclass
class LabSummary:
    run_id: int
    total: int
    skipped: int
    targets: dict[str, TargetSummary] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(t.done == t.todo for t in self.targets.values())


def _headline(result: dict[str, Any]) -> str:
    if result.get("status") != "ok":
        return (
            f"ERROR {result.get('error', {}).get('type', '?')}: {str(result.get('error', {}).get('message', ''))[:80]}"
        )
    pct = (result["stats"]["total"] or {}).get("percentiles", {})
    p99 = pct.get("p99", {}).get("value_ns")
    tail = f" p99 {p99 / 1e6:.3f} ms" if p99 else ""
    return f"{result['overall'].upper()}{tail}"


class _TargetRunner:
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
        except _DEVICE_GONE as exc:
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
        except _DEVICE_GONE as exc:
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


def run_plan(plan: Plan, store: LabStore, progress: Progress, stop: threading.Event | None = None) -> LabSummary:
    """Run every job of ``plan`` that ``store`` does not hold yet; returns what happened per target."""
    jobs = plan.jobs()
    labgrid_targets = [t for t in plan.targets if t.labgrid is not None]
    if labgrid_targets:  # before anything runs: a plan with labgrid targets and no coordinator is a usage error
        from edgerun.lab.labgrid_client import coordinator_address

        coordinator_address(plan.coordinator)
    done = store.done_keys(plan.name)
    todo = [j for j in jobs if j.key not in done]
    run_id = store.begin_run(plan.name, str(plan.path), len(jobs), len(jobs) - len(todo))
    summary = LabSummary(run_id, len(jobs), len(jobs) - len(todo))
    stop = stop or threading.Event()
    runners: list[_TargetRunner] = []
    labgrid = None
    with _sigterm_as_exit():
        try:
            if labgrid_targets:
                from edgerun.lab.labgrid_run import LabgridRun

                labgrid = LabgridRun(plan, store, run_id, progress)
            for plan_target in plan.targets:
                mine = [j for j in todo if j.target == plan_target.name]
                if plan_target.labgrid is not None:
                    summary.targets[plan_target.name] = TargetSummary(plan_target.name, len(mine))
                    if mine and labgrid is not None:
                        runners += labgrid.workers(plan_target, mine, summary.targets[plan_target.name])
                    continue
                runner = _TargetRunner(plan_target, mine, store, run_id, progress)
                summary.targets[plan_target.name] = runner.summary
                if mine:
                    runners.append(runner)
            # Daemon threads: an interrupted lab exits at once; every stored job was already committed.
            threads = [
                threading.Thread(target=r.run, args=(stop,), name=f"lab-{r.summary.name}", daemon=True) for r in runners
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)  # short waits keep Ctrl-C (and SIGTERM) responsive
            if labgrid is not None:
                labgrid.settle(stop)  # jobs of a shared plan that another lab is running: until they are stored
        finally:
            from edgerun.targets.local import kill_running

            stop.set()
            kill_running()  # the jobs in flight (their bench, worker, ssh client) go with the lab
            if labgrid is not None:
                labgrid.close()  # every place released, every reservation cancelled
    store.finish_run(run_id)
    return summary


@contextlib.contextmanager
def _sigterm_as_exit() -> Any:
    """SIGTERM raises SystemExit in the main thread, so the ``finally`` above kills the jobs in flight
    (the default action would end the process with no Python code run). Only where it can be set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
