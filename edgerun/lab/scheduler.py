"""Run a plan: one thread per target (devices in parallel), that target's jobs one at a time.

Per target (edgerun/lab/target_runner.py): connect and identify the device once, check it can
run the jobs, then for each job not already in the database: stage the artifact (once per
target), benchmark, store the result in its own transaction, rest (cooldown) before the next
job. A labgrid target is a pool of place workers instead (edgerun/lab/labgrid_run.py).

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
from dataclasses import dataclass, field
from typing import Any

from edgerun.lab.plan import Plan
from edgerun.lab.store import LabStore
from edgerun.lab.target_runner import Progress, TargetRunner, TargetSummary

__all__ = ["LabSummary", "TargetSummary", "run_plan"]


@dataclass
class LabSummary:
    run_id: int
    total: int
    skipped: int
    targets: dict[str, TargetSummary] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(t.done == t.todo for t in self.targets.values())


def run_plan(plan: Plan, store: LabStore, progress: Progress, stop: threading.Event | None = None) -> LabSummary:
    """Run every job of ``plan`` that ``store`` does not hold yet; returns what happened per target."""
    jobs = plan.jobs()
    labgrid_targets = [t for t in plan.targets if t.labgrid is not None]
    if labgrid_targets:  # before anything runs: a plan with labgrid targets and no coordinator is a usage error
        from edgerun.targets.labgrid_client import coordinator_address

        coordinator_address(plan.coordinator)
    done = store.done_keys(plan.name)
    todo = [j for j in jobs if j.key not in done]
    run_id = store.begin_run(plan.name, str(plan.path), len(jobs), len(jobs) - len(todo))
    summary = LabSummary(run_id, len(jobs), len(jobs) - len(todo))
    stop = stop or threading.Event()
    runners: list[TargetRunner] = []
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
                runner = TargetRunner(plan_target, mine, store, run_id, progress)
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
