"""Power-cycle a board that stopped answering, through labgrid, and retry its job once.

``LabgridPower`` runs ``labgrid-client -x COORDINATOR -p PLACE power cycle`` (labgrid's own
client; its ``power`` command picks the driver for whatever power resource the place has:
``NetworkPowerDriver`` for a ``NetworkPowerPort`` of any PDU model, ``PDUDaemonDriver``,
``USBPowerDriver``, ... see edgerun/targets/labgrid_resources.py). labgrid-client only switches a place
that the calling identity has acquired, so it runs under the lab's identity
(``LG_HOSTNAME``/``LG_USERNAME``): a place another engineer holds is never switched.

``run_with_power_cycle(job, power)``: run the job; if it fails because the board stopped
answering (``is_unresponsive``: a remote call timed out, the link dropped, a DUT went silent),
power-cycle the place, wait until the board answers again (``ready``), and run the job once
more. What happened is recorded (``PowerCycle``): the retried result carries it as
``power_cycles`` plus a warning; a retry that fails too carries it on the exception
(``power_cycles`` attribute, and its text says so), so the failure row says so too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from edgerun.errors import DutTimeout, LabError, PortUnavailable, TargetTimeout, TargetUnreachable

__all__ = [
    "LabgridPower",
    "PowerCycle",
    "is_unresponsive",
    "note_power_cycles",
    "power_for_place",
    "run_with_power_cycle",
    "target_ready",
]

T = TypeVar("T")
#: labgrid-client's own start-up and gRPC round trips, beside the driver's off/on delay.
CLIENT_TIMEOUT_S = 60.0


def is_unresponsive(exc: BaseException) -> bool:
    """Whether a failure means "the board stopped answering" (worth a power cycle), not a bad answer."""
    return isinstance(exc, (TargetTimeout, TargetUnreachable, DutTimeout, PortUnavailable))


@dataclass
class PowerCycle:
    """One power cycle: where, why, when, how long it took, and whether the retry then worked."""

    place: str
    resource: str | None
    reason: str
    at_utc: str
    cycle_s: float
    retry_ok: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _labgrid_client() -> str:
    """labgrid's client program beside this Python (a venv used without activating it), else from PATH."""
    local = Path(sys.executable).parent / "labgrid-client"
    return str(local) if local.exists() else "labgrid-client"


class LabgridPower:
    """The power port of one acquired place, switched through ``labgrid-client``."""

    def __init__(
        self,
        coordinator: str,
        place: str,
        identity: str | None = None,
        resource: str | None = None,
        delay_s: float | None = None,
        client: str | None = None,
    ) -> None:
        """``identity``: ``host/user`` the place is acquired under (LabgridClient.identity); ``resource``:
        the power resource's name when the place has several; ``delay_s``: off time (labgrid's default 2 s)."""
        self.coordinator, self.place, self.identity = coordinator, place, identity
        self.resource, self.delay_s, self.client = resource, delay_s, client or _labgrid_client()

    def argv(self, action: str) -> list[str]:
        argv = [self.client, "-x", self.coordinator, "-p", self.place, "power", action]
        argv += ["--name", self.resource] if self.resource else []
        return argv + (["--delay", f"{self.delay_s:g}"] if self.delay_s is not None else [])

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.identity:
            host, _, user = self.identity.partition("/")
            env["LG_HOSTNAME"], env["LG_USERNAME"] = host, user
        return env

    def run(self, action: str) -> str:
        """``on``/``off``/``cycle``/``get``; LabError with labgrid-client's own message when it fails."""
        try:
            done = subprocess.run(
                self.argv(action), capture_output=True, text=True, env=self._env(), timeout=CLIENT_TIMEOUT_S
            )
        except FileNotFoundError as exc:
            raise LabError(f"power {action} on place {self.place}: {self.client} not found ({exc}); "
                           "pip install 'edgerun[lab]'") from exc  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"power {action} on place {self.place}: labgrid-client gave no answer in "
                           f"{CLIENT_TIMEOUT_S:g} s") from exc  # fmt: skip
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise LabError(f"power {action} on place {self.place} failed: {said[-1] if said else done.returncode}")
        return done.stdout

    def cycle(self) -> None:
        self.run("cycle")


def power_for_place(
    resources: list[dict[str, Any]],
    coordinator: str,
    place: str,
    identity: str | None = None,
    off_s: float | None = None,
) -> LabgridPower | None:
    """The place's power port (``LabgridClient.place_resources(place)``), or None when it has none available;
    ``off_s``: how long a cycle keeps it off (the plan's ``power_off_s``; None: the driver's default)."""
    from edgerun.targets.labgrid_resources import place_devices

    found = place_devices(resources).power_resource
    return None if found is None else LabgridPower(coordinator, place, identity, resource=found, delay_s=off_s)


def target_ready(target: Any, timeout_s: float) -> None:
    """Wait until ``target`` (an ssh/adb/local target) runs ``true`` again, e.g. a board booting after a
    power cycle; the last error (TargetUnreachable, TargetTimeout, ...) when it does not within ``timeout_s``."""
    from edgerun.errors import TargetError

    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        left = deadline - time.monotonic()
        try:
            target.run(["true"], max(1.0, min(10.0, left)))
            return
        except TargetError:
            if time.monotonic() + delay >= deadline:
                raise
        time.sleep(delay)
        delay = min(2.0, delay * 2)


def _utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_with_power_cycle(
    job: Callable[[], T],
    power: LabgridPower | None,
    ready: Callable[[], None] | None = None,
    is_hung: Callable[[BaseException], bool] = is_unresponsive,
) -> tuple[T, list[PowerCycle]]:
    """Run ``job``; if it fails as ``is_hung`` says and there is a ``power`` port, cycle it, call ``ready``
    (it waits, bounded, until the board answers; it raises if it never does), and run ``job`` once more.

    Returns (result, power cycles made: none or one). The second failure propagates with
    ``power_cycles`` set on it; failures that are not a hang propagate untouched."""
    try:
        return job(), []
    except Exception as exc:
        if power is None or not is_hung(exc):
            raise
        first = exc
    started = time.monotonic()
    record = PowerCycle(power.place, power.resource, f"{type(first).__name__}: {first}"[:500], _utc(), 0.0)
    try:
        power.cycle()
        record.cycle_s = round(time.monotonic() - started, 3)
        if ready is not None:
            ready()
        result = job()
    except Exception as exc:
        record.retry_ok = False
        exc.power_cycles = [record]  # type: ignore[attr-defined]
        exc.args = (f"{exc} (after a power cycle of place {power.place}: the board had stopped answering)",)
        raise
    record.retry_ok = True
    return result, [record]


def note_power_cycles(result: dict[str, Any], cycles: list[PowerCycle]) -> dict[str, Any]:
    """Put the power cycles into a job's result (``power_cycles``) and its ``warnings``."""
    if not cycles:
        return result
    result["power_cycles"] = [c.as_dict() for c in cycles]
    warnings = list(result.get("warnings") or [])
    for c in cycles:
        warnings.append(
            f"the board stopped answering ({c.reason.split(':')[0]}); place {c.place} was power-cycled through "
            "labgrid and the job retried once"
        )
    result["warnings"] = warnings
    return result
