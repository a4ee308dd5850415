"""What a labgrid place worker runs besides an ssh board's bench: phones, wearables, power cycles.

A mixin of ``edgerun.lab.place_worker.PlaceWorker`` (its attributes: ``plan_target``, ``store``,
``run_id``, ``summary``, ``say``, ``lab``, ``lost``, ``power``, ``exporter``/``group``), kept apart so
that each module reads in one sitting:

- ``_spec``: the place's device as a target. Its ``NetworkService`` is an ssh board (address, port,
  user from the exporter; the plan's ssh options); a ``NetworkService`` named ``adb...`` is a phone
  (edgerun/targets/labgrid_resources.py: the adb server on the exporter host, or the phone's adbd over TCP) run
  as an ``adb://`` target with the plan's options that apply to adb.
- ``_bench``: the job, and when its board stopped answering (a call timed out, the link dropped) and
  the place has a power port, one power cycle through labgrid, a wait until the board answers again
  (the target's ``boot_wait_s``), and one retry (edgerun/lab/power.py). Not when the exporter went
  away: that place is gone, not hung.
- ``_work_tiny``: a target with a ``tiny`` table runs `serial tiny` on the place's
  ``NetworkSerialPort`` (ser2net on the exporter host; edgerun/lab/wearable.py), power-cycled the
  same way; a place without one stops with that reason and its jobs wait for the next run. Its
  exporter going away (the coordinator drops its resources) fails the job in flight with a reason
  naming the place, never power-cycled, and the place takes no more jobs; the next run does them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

from edgerun.errors import LabError
from edgerun.lab.ledger import precise_utc
from edgerun.lab.plan import Job
from edgerun.lab.power import is_unresponsive, note_power_cycles, run_with_power_cycle
from edgerun.targets.labgrid_resources import PlaceDevices, is_adb_service

__all__ = ["PlaceKinds"]


class PlaceKinds:
    """Phones, wearables and power cycles for a place worker (see the module doc)."""

    plan_target: Any
    store: Any
    run_id: int
    summary: Any
    say: Any
    lab: Any
    lost: threading.Event
    power: Any
    power_cycles: int
    staged: dict[str, Any]
    exporter: str | None
    group: str | None
    _started: str

    _stop: Callable[[str], None]
    _on_resource_gone: Callable[[str, str, str], None]
    _next_job: Callable[[], Job | None]
    _annotate: Callable[[dict[str, Any]], None]

    def _spec(self, place: str, devices: PlaceDevices, service: dict[str, Any] | None, resources: list[Any]) -> Any:
        """The place's device as a target: its ssh board (the plan's ssh options), else its phone (adb; the
        plan's options that apply to adb); None, said, when it has neither."""
        from edgerun.targets.spec import parse_target

        if service is not None:
            self.exporter, self.group = str(service["exporter"]), str(service["group"])
            port = int(service.get("port") or 22)
            return dataclasses.replace(
                self.plan_target.spec, host=str(service["address"]), user=service.get("username") or None,
                port=None if port == 22 else port, options=_options_for("ssh", self.plan_target.spec.options),
            )  # fmt: skip
        phone = next((r for r in resources if is_adb_service(r) and r["avail"]), None)
        if devices.adb is None or phone is None:
            self._stop(f"place {place} has no available NetworkService (its exporter is down, or no match)")
            return None
        self.exporter, self.group = str(phone["exporter"]), str(phone["group"])
        phone_spec = parse_target(devices.adb, name=self.plan_target.name)
        return dataclasses.replace(phone_spec, options=_options_for("adb", self.plan_target.spec.options))

    def _bench(self, target: Any, job: Job, identity: Any) -> dict[str, Any]:
        """The job, power-cycled once and retried when the board stopped answering (not when the exporter
        went away: that place is gone, not hung)."""
        from edgerun.lab.power import target_ready

        def ready() -> None:
            self.staged.clear()  # a rebooted board may have lost what was pushed: push again
            target_ready(target, self.plan_target.boot_wait_s)

        bench = super()._bench  # type: ignore[misc]  # TargetRunner's, after this class in the worker's MRO
        try:
            result, cycles = run_with_power_cycle(
                lambda: bench(target, job, identity), self.power, ready=ready,
                is_hung=lambda exc: not self.lost.is_set() and is_unresponsive(exc),
            )  # fmt: skip
        except Exception as exc:  # the retry failed too (its message says so): still a power cycle made
            self.power_cycles += len(getattr(exc, "power_cycles", ()))
            raise
        return self._cycled(note_power_cycles(result, cycles), cycles)

    def _cycled(self, result: dict[str, Any], cycles: list[Any]) -> dict[str, Any]:
        for cycle in cycles:
            self.power_cycles += 1
            self.say(self.summary.name, f"place {cycle.place} was power-cycled ({cycle.reason.split(':')[0]}) "
                     "and the job retried once")  # fmt: skip
        return result

    def _work_tiny(self, place: str, devices: PlaceDevices, resources: list[Any], stop: threading.Event) -> None:
        """A wearable: each job is `serial tiny` on the place's NetworkSerialPort (edgerun.lab.wearable)."""
        tiny = self.plan_target.tiny
        assert tiny is not None
        if devices.serial is None:
            have = sorted({str(r["cls"]) for r in resources}) or ["none"]
            self._stop(f"place {place} has no available NetworkSerialPort for `serial tiny` (it has: "
                       f"{', '.join(have)}); its jobs are left for the next run")  # fmt: skip
            return
        port = next(r for r in resources if r["cls"] == "NetworkSerialPort" and r["name"] == devices.serial_resource)
        self.exporter, self.group = str(port["exporter"]), str(port["group"])
        self.lab.client.watch(self._on_resource_gone)  # its exporter going away sets self.lost
        options = dict(tiny.options)
        while not stop.is_set() and not self.lost.is_set():
            job = self._next_job()
            if job is None:
                return
            try:
                self._tiny_one(place, job, devices, tiny.dataset, options)
            finally:
                self.lab.ledger.unclaim(job)  # after the result (or failure) is stored
        if self.lost.is_set():
            self._stop(f"exporter {self.exporter} went away: place {place} lost its NetworkSerialPort")

    def _tiny_one(self, place: str, job: Job, devices: PlaceDevices, dataset: Any, options: dict[str, Any]) -> None:
        """One `serial tiny` job, stored; a failure when the place's exporter went away meanwhile (even if
        the job got through: the place is no longer what was acquired), never power-cycled then."""
        from edgerun.errors import EdgerunError, PortUnavailable
        from edgerun.lab.wearable import tiny_job

        self._started = precise_utc()
        result: dict[str, Any] | None = None
        try:
            result = tiny_job(devices, dataset, self.power, boot_timeout_s=self.plan_target.boot_wait_s,
                              lost=self.lost, **options)  # fmt: skip
            failure: EdgerunError | None = None
        except EdgerunError as exc:  # the message says so when the board was power-cycled and failed again
            self.power_cycles += len(getattr(exc, "power_cycles", ()))
            failure = exc
        with contextlib.suppress(LabError):  # a loss the coordinator knew of before the job ended is seen now
            self.lab.client.sync()
        if self.lost.is_set():
            ended = f"{type(failure).__name__}: {failure}" if failure else "it got through; not stored"
            failure = PortUnavailable(f"exporter {self.exporter} went away during the job: place {place} lost "
                                      f"its NetworkSerialPort ({ended})")  # fmt: skip
        if failure is not None:
            self.store.record_failure(self.run_id, job, failure)
            self.summary.failed += 1
            self.say(self.summary.name, f"{job.describe()}: FAILED: {failure}")
            return
        assert result is not None
        for cycle in result.get("power_cycles") or []:
            self.power_cycles += 1
            self.say(self.summary.name, f"place {cycle['place']} was power-cycled and the job retried once")
        self._annotate(result)
        self.store.record(self.run_id, job, result)
        self.summary.done += 1
        self.say(self.summary.name, f"{job.describe()}: {str(result.get('overall', '?')).upper()}")


def _options_for(kind: str, options: Any) -> Any:
    """The plan's target options with those that do not apply to ``kind`` (ssh/adb) back at their defaults."""
    from edgerun.targets.spec import _ONLY

    defaults = type(options)()
    other = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(options)
             if kind not in (_ONLY.get(f.name) or kind).split("/")}  # fmt: skip
    return dataclasses.replace(options, **other)
