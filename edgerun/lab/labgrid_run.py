"""A plan's labgrid targets: one coordinator connection, a pool of place workers per target, and
what happens around them (edgerun/lab/place_worker.py is one place: reserve, acquire, run, release).

``LabgridRun`` is the labgrid side of one ``run_plan`` (edgerun/lab/scheduler.py):

- on start, it connects to the coordinator (``[lab] coordinator`` or ``LG_COORDINATOR``) and
  releases the places a lab process on this host acquired and never released: after a SIGKILL
  the lease stays in the ledger, and the next ``lab run`` on this host lets those places go
  before it reserves again (``_recover``);
- ``workers``: per labgrid target, a ``Pool`` of its jobs and one ``PlaceWorker`` per matching
  place (at most one per job); none, with the reason said, when no place matches;
- ``settle``: once its own workers are done, waits (bounded by ``place_wait_s``) for the jobs of
  its targets that another lab is running on the same plan, so every lab ends when the plan does;
- ``close`` (from ``run_plan``'s ``finally``: Ctrl-C, SIGTERM, an exception): every place
  released and reservation cancelled, each target's counts folded from its workers; when no
  worker of a target got a place within ``place_wait_s``, its jobs that nobody ran are skipped
  with that reason (a ``PlaceBusy`` failure row each).
"""

from __future__ import annotations

import contextlib
import threading
import time

from edgerun.errors import LabError
from edgerun.lab.ledger import Ledger
from edgerun.lab.place_worker import PlaceWorker, Pool
from edgerun.lab.plan import Job, Plan, PlanTarget
from edgerun.lab.store import LabStore
from edgerun.lab.target_runner import Progress, TargetSummary
from edgerun.targets.labgrid_client import LabgridClient, PlaceBusy, coordinator_address, filter_text, matches

__all__ = ["LabgridRun"]


class LabgridRun:
    """The labgrid side of one ``run_plan``: one coordinator connection, the ledger, the workers."""

    def __init__(self, plan: Plan, store: LabStore, run_id: int, say: Progress) -> None:
        self.store, self.run_id, self.say = store, run_id, say
        self.address = coordinator_address(plan.coordinator)
        self.ledger = Ledger(store)
        self.pools: list[Pool] = []
        self.client: LabgridClient | None = None
        self.error: str | None = None
        try:
            self.client = LabgridClient(self.address)
            self._recover()
        except LabError as exc:
            self.error = str(exc)

    def _recover(self) -> None:
        """Release the places a lab process on this host acquired and never released (it was killed)."""
        assert self.client is not None
        places = self.client.places()
        for lease in self.ledger.orphaned_leases(self.address):
            info = places.get(lease["place"])
            if info is not None and info.acquired == lease["identity"]:
                self.client.release(lease["place"], identity=lease["identity"])
                self.say("labgrid", f"released place {lease['place']}, left acquired by a lab (pid {lease['pid']}) "
                         "that is gone")  # fmt: skip
            if lease["reservation"]:
                self.client.cancel(lease["reservation"])
            self.ledger.forget_lease(self.address, lease["place"], lease["pid"])

    def workers(self, plan_target: PlanTarget, jobs: list[Job], summary: TargetSummary) -> list[PlaceWorker]:
        """The place workers for one target's jobs (none when no place matches: the reason is said)."""
        if self.client is None:
            summary.stopped = self.error
            self.say(summary.name, f"stopped, {len(jobs)} job(s) left for the next run: {self.error}")
            return []
        assert plan_target.labgrid is not None
        candidates = [p for p in self.client.places().values() if matches(p, plan_target.labgrid)]
        pool = Pool(plan_target, jobs, summary)
        self.pools.append(pool)
        if not candidates:
            summary.stopped = f"no place on coordinator {self.address} matches {filter_text(plan_target.labgrid)}"
            self.say(summary.name, f"stopped, {len(jobs)} job(s) left for the next run: {summary.stopped}")
            return []
        self.say(summary.name, f"{len(jobs)} job(s) for place(s) {', '.join(sorted(p.name for p in candidates))}")
        pool.workers = [PlaceWorker(self, pool) for _ in range(min(len(candidates), len(jobs)))]
        return pool.workers

    def settle(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """After this lab's workers are done: wait for the jobs of its targets that another lab is
        running (live claims), so that every ``lab run`` on a shared plan ends when the plan does.
        A claim whose process dies or whose place is let go lapses: that job is left, not waited for;
        nor longer than the targets' place_wait_s."""
        if self.client is None or not self.pools:
            return
        client, said = self.client, False
        # bounded like a held place: another host that crashed mid-job keeps its place acquired, and
        # its claim would look alive until that host runs again
        deadline = time.monotonic() + max(pool.plan_target.place_wait_s for pool in self.pools)
        while not stop.is_set():
            done = self.store.done_keys(self.pools[0].jobs[0].plan) if self.pools[0].jobs else set()
            left = {j.key for pool in self.pools for j in pool.jobs} - done
            elsewhere = self.ledger.claimed_by_others(left, client.holder) if left else {}
            if not elsewhere:
                return
            where = "; ".join(sorted(set(elsewhere.values())))
            if time.monotonic() >= deadline:
                self.say("labgrid", f"{len(elsewhere)} job(s) still run elsewhere after place_wait_s, left: {where}")
                return
            if not said:
                self.say("labgrid", f"waiting for {len(elsewhere)} job(s) another lab is running ({where})")
                said = True
            stop.wait(poll_s)

    def close(self) -> None:
        """Release every place and reservation, count what each target did, say what was skipped."""
        for pool in self.pools:
            for worker in pool.workers:
                worker.let_go()
        done = self.store.done_keys(self.pools[0].jobs[0].plan) if self.pools and self.pools[0].jobs else set()
        for pool in self.pools:
            with contextlib.suppress(LabError):  # the coordinator is gone: the counts below still hold
                self._fold(pool, done)
        if self.client is not None:
            self.client.close()

    def _fold(self, pool: Pool, done: set[str]) -> None:
        """The target's counts: done = in the database (by this lab or another), failed = here."""
        s = pool.summary
        s.failed = sum(w.summary.failed for w in pool.workers)
        s.power_cycles = sum(w.power_cycles for w in pool.workers)
        s.done = sum(1 for j in pool.jobs if j.key in done)
        stopped = [w.summary.stopped for w in pool.workers if w.summary.stopped]
        s.stopped = s.stopped or (stopped[0] if stopped else None)
        if pool.workers and all(w.gave_up for w in pool.workers):
            self._skip(pool, str(pool.workers[0].gave_up), done)

    def _skip(self, pool: Pool, reason: str, done: set[str]) -> None:
        """No place came free: the target's jobs that nobody ran or runs are skipped, with the reason."""
        assert self.client is not None
        left = {j.key for j in pool.jobs} - done
        elsewhere = self.ledger.claimed_by_others(left, self.client.holder)
        skipped = [j for j in pool.jobs if j.key in left and j.key not in elsewhere]
        for job in skipped:
            self.store.record_failure(self.run_id, job, PlaceBusy(reason))
        pool.summary.stopped = f"{len(skipped)} job(s) skipped: {reason}"
        self.say(pool.summary.name, pool.summary.stopped)
