"""One labgrid place of a pool: reserve, acquire, run the pool's jobs there, release (``PlaceWorker``).

A labgrid target (``labgrid = "rpi5-1"`` or ``labgrid = {board = "rpi5"}``) is a ``Pool`` of
jobs with one worker per matching place (edgerun/lab/labgrid_run.py makes them), each on its own
thread:

1. **reserve** with the target's filter (labgrid's scheduler allocates a free matching place
   to each waiting reservation, so N workers get N different places) and poll until it is
   allocated, for at most the target's ``place_wait_s``; a place someone else holds is never
   allocated, so it is waited for, and after the limit the worker gives up (``gave_up``). A
   place the coordinator refuses because its exporter marked a resource broken (ser2net could
   not start for a ``RawSerialPort``) stops the worker at once with that reason;
2. **lease** the place in the ledger (before acquiring: a crash between the two leaves a lease
   to recover from), then **acquire** it;
3. the place's ``NetworkService`` (address, port, user, from its exporter) becomes an ssh
   target with the plan's ssh options: identify once, then take jobs from the pool, each
   claimed in the ledger first (edgerun.lab.ledger: a job done or claimed by a live lab
   elsewhere is not taken), run and stored exactly as for an ssh target (``TargetRunner``),
   the result's ``target.labgrid`` saying which coordinator, place, exporter, lab host,
   identity and when. Phones, wearables (`serial tiny`) and power cycles: edgerun/lab/place_kinds.py;
4. **release** the place and cancel the reservation (``let_go``) when the pool is empty, the
   device is gone, or the lab stops.

When the exporter of a place in use goes away (the coordinator deletes its resources) the
worker's running job is stopped at once (its process groups killed; every further call of it
fails: ``Guarded``), recorded as a failure, and the worker lets the place go; the other places
go on, and the next run does that job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Any

from edgerun.errors import LabError, TargetUnreachable
from edgerun.lab.ledger import precise_utc
from edgerun.lab.place_kinds import PlaceKinds
from edgerun.lab.plan import Job, PlanTarget
from edgerun.lab.power import LabgridPower, power_for_place
from edgerun.lab.target_runner import DEVICE_GONE, TargetRunner, TargetSummary
from edgerun.targets.labgrid_client import PlaceBusy, filter_text, matches
from edgerun.targets.labgrid_resources import place_devices, ssh_service

if TYPE_CHECKING:
    from edgerun.lab.labgrid_run import LabgridRun

__all__ = ["Guarded", "PlaceWorker", "Pool"]

POLL_S = 0.25  # how often a waiting reservation is polled (also keeps it from expiring: labgrid's 60 s)
EXPORT_WAIT_S = 30.0  # how long an acquired place's exporter may take to publish its ser2net port


class Pool:
    """The jobs of one labgrid target, shared by its place workers."""

    def __init__(self, plan_target: PlanTarget, jobs: list[Job], summary: TargetSummary) -> None:
        self.plan_target, self.jobs, self.summary = plan_target, jobs, summary
        self.pending = list(jobs)
        self.lock = threading.Lock()
        self.workers: list[PlaceWorker] = []

    def has_work(self) -> bool:
        with self.lock:
            return bool(self.pending)


class Guarded:
    """A target whose every call fails with TargetUnreachable once ``lost`` is set: killing the
    command in flight is not enough (a failed load reading is not an error), the job must not go on."""

    def __init__(self, target: Any, lost: threading.Event, why: str) -> None:
        self._target, self._lost, self._why = target, lost, why

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._lost.is_set():
                raise TargetUnreachable(self._why)
            return value(*args, **kwargs)

        return call


class PlaceWorker(PlaceKinds, TargetRunner):
    """One place of a pool: reserve, acquire, run jobs from the pool, release."""

    def __init__(self, run: LabgridRun, pool: Pool) -> None:
        super().__init__(pool.plan_target, pool.jobs, run.store, run.run_id, run.say)
        self.lab, self.pool = run, pool
        self.summary = TargetSummary(pool.plan_target.name, 0)
        self.place: str | None = None
        self.token: str | None = None
        self.exporter: str | None = None
        self.group: str | None = None
        self.gave_up: str | None = None
        self.lost = threading.Event()
        self.thread_id: int | None = None
        self._started = ""
        self._let_go = threading.Lock()
        self.power: LabgridPower | None = None
        self.power_cycles = 0  # this place's power cycles (each one is in its job's result too)

    def _run(self, stop: threading.Event) -> None:
        self.thread_id = threading.get_ident()
        try:
            place = self._acquire(stop)
            if place is not None:
                self._work(place, stop)
        except LabError as exc:  # the coordinator went away or refused: this place stops, the lab goes on
            self._stop(str(exc))
        finally:
            with contextlib.suppress(LabError):
                self.let_go()

    # ------------------------------------------------------------ reserve + acquire

    def _acquire(self, stop: threading.Event) -> str | None:
        client, t = self.lab.client, self.plan_target
        assert client is not None and t.labgrid is not None
        deadline = time.monotonic() + t.place_wait_s
        self.token = client.reserve(t.labgrid).token
        while True:
            if stop.is_set() or not self.pool.has_work():
                return None
            res = client.poll(self.token)
            if res.state == "allocated" and res.places:
                place = res.places[0]
                self.lab.ledger.lease(self.lab.address, place, client.identity, self.run_id, self.token)
                try:
                    client.acquire(place)
                except PlaceBusy:  # taken between allocation and acquire (wait on), or a resource is broken
                    self.lab.ledger.drop_lease(self.lab.address, place)
                    broken = client.broken_resources(place)
                    if broken:  # it stays so until its exporter restarts: waiting would only hide why
                        raise LabError(f"place {place} cannot be acquired: {'; '.join(broken)}") from None
                else:
                    self.place = place
                    return place
            elif res.state in ("expired", "invalid"):
                client.cancel(self.token)
                self.token = client.reserve(t.labgrid).token
            if time.monotonic() >= deadline:
                self.gave_up = self._busy_reason()
                return None
            stop.wait(POLL_S)

    def _busy_reason(self) -> str:
        t = self.plan_target
        assert self.lab.client is not None and t.labgrid is not None
        held = [
            f"{p.name} by {p.acquired}"
            if p.acquired
            else f"{p.name} (reserved for {'this lab' if p.reservation == self.token else 'someone else'})"
            for p in self.lab.client.places().values()
            if matches(p, t.labgrid)
        ]
        return (
            f"no place matching {filter_text(t.labgrid)} came free within place_wait_s = {t.place_wait_s:g} s "
            f"(held: {', '.join(held) or 'none'})"
        )

    # ------------------------------------------------------------ run jobs there

    def _work(self, place: str, stop: threading.Event) -> None:
        from edgerun.targets import open_target

        client = self.lab.client
        assert client is not None
        self.summary.name = f"{self.plan_target.name}@{place}"
        # an exporter starts ser2net for a RawSerialPort on acquire: until then its port is missing (a LabError)
        deadline = time.monotonic() + EXPORT_WAIT_S
        while True:
            resources = client.place_resources(place)
            try:
                devices = place_devices(resources)
                break
            except LabError as exc:  # no ser2net port yet, or a phone without an address (that stays so)
                if stop.is_set() or time.monotonic() >= deadline:
                    self._stop(f"{exc} (waited {EXPORT_WAIT_S:g} s)")
                    return
            stop.wait(POLL_S)
        self.power = power_for_place(resources, self.lab.address, place, client.identity, self.plan_target.power_off_s)
        if self.plan_target.tiny is not None:
            self._work_tiny(place, devices, resources, stop)
            return
        spec = self._spec(place, devices, ssh_service(resources), resources)
        if spec is None:
            return
        client.watch(self._on_resource_gone)
        self.plan_target = dataclasses.replace(self.plan_target, spec=spec)
        lost = "phone" if spec.kind == "adb" else "NetworkService"
        gone = f"exporter {self.exporter} went away: place {place} lost its {lost}"
        target = Guarded(open_target(spec), self.lost, gone)
        try:
            identity = self._identify(target)
        except DEVICE_GONE as exc:
            self._stop(f"{type(exc).__name__}: {exc}")
            return
        index = 0
        while not stop.is_set() and not self.lost.is_set():
            job = self._next_job()
            if job is None:
                return
            if index:
                self._cooldown(target)
            try:
                ok = self._one(target, identity, job, index)
            finally:
                self.lab.ledger.unclaim(job)
            index += 1
            if self.lost.is_set():
                self._stop(f"exporter {self.exporter} went away during a job: place {place} lost its NetworkService")
                return
            if not ok:
                return

    def _next_job(self) -> Job | None:
        client = self.lab.client
        assert client is not None and self.place is not None
        with self.pool.lock:
            for job in list(self.pool.pending):
                state = self.lab.ledger.claim(job, self.run_id, client.identity, self.place, client.holder)
                if state != "taken":
                    self.pool.pending.remove(job)
                if state == "ok":
                    return job
        return None

    def _one(self, target: Any, identity: Any, job: Job, index: int) -> bool:
        self._started = precise_utc()
        return super()._one(target, identity, job, index)

    def _annotate(self, result: dict[str, Any]) -> None:
        assert self.lab.client is not None
        block = result.get("target")
        if not isinstance(block, dict):
            block = result["target"] = {}
        block["labgrid"] = {
            "coordinator": self.lab.address, "place": self.place, "exporter": self.exporter,
            "identity": self.lab.client.identity, "lab_host": self.lab.ledger.me.host,
            "started_utc": self._started, "finished_utc": precise_utc(),
        }  # fmt: skip

    def _on_resource_gone(self, exporter: str, group: str, name: str) -> None:
        """On the client's loop thread: an exporter's resource was deleted or became unavailable."""
        if (exporter, group) == (self.exporter, self.group) and self.place is not None and not self.lost.is_set():
            self.lost.set()
            from edgerun.targets.local import kill_running

            if self.thread_id is not None:
                kill_running(self.thread_id)  # the job in flight on that place stops now

    def _stop(self, why: str) -> None:
        """This place stops taking jobs (the pool's other places go on; what is left waits for the next run)."""
        self.summary.stopped = why
        self.say(self.summary.name, f"stopped taking jobs: {why}")

    def let_go(self) -> None:
        """Release the place (only if we still hold it) and cancel the reservation; idempotent."""
        client = self.lab.client
        with self._let_go:
            if client is None:
                return
            if self.place is not None:
                with contextlib.suppress(LabError):
                    client.release(self.place)
                self.lab.ledger.drop_lease(self.lab.address, self.place)
                self.say(self.summary.name, f"released place {self.place}")
                self.place = None
            if self.token is not None:
                client.cancel(self.token)
                self.token = None
