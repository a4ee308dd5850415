"""The lab's link to a labgrid coordinator, through labgrid's own client library (``labgrid`` >= 25).

labgrid (https://github.com/labgrid-project/labgrid, LGPL-2.1) is the device registry, lock
and scheduler: exporters announce resources (a ``NetworkService`` = an SSH-reachable board),
places group them and carry tags (``board=rpi5``), a client *reserves* places by tags
(the coordinator's scheduler allocates a free matching place to each waiting reservation, by
priority and age) and *acquires* one (exclusive: ``AcquirePlace`` fails while another client
holds it). edgerun writes none of that itself: ``LabgridClient`` is a ``ClientSession``
(labgrid/remote/client.py, the class ``labgrid-client`` itself uses) on an event loop in a
thread of its own (one per process, shared: grpc.aio fails when two loops use it at once), so
the lab's worker threads can call it, plus the calls the lab needs. One client per process
and coordinator at a time: grpc gives two channels to one address one TCP connection, and the
coordinator keys its client sessions by the connection's peer address, so it refuses a second
session while the first is open (labgrid/remote/coordinator.py, ClientStream's ``assert peer not
in self.clients``; seen as "Could not connect to coordinator"). A lab run holds one for its run.

- ``places()``: the coordinator's places (copies: name, tags, acquired, acquired_resources, ...);
- ``reserve(filters)`` / ``poll(token)`` / ``cancel(token)``: a reservation (``name`` = a
  place name is one of labgrid's filter keys, so a place named in the plan is reserved the
  same way as one picked by tags);
- ``acquire(place)`` / ``release(place)``: release is always ``fromuser=<our identity>``, so
  it never releases a place someone else acquired meanwhile;
- ``place_resources(place)``: what the acquired place's exporters announce (what edgerun makes of
  them, an ssh board, a phone, a serial or power port, is edgerun/targets/labgrid_resources.py's business);
- ``broken_resources(place)``: the resources of a place that its exporter marked broken (why an
  acquire of a free place fails: ser2net could not start for a ``RawSerialPort``);
- ``watch(callback)``: called (on the loop's thread) with ``(exporter, group, name)`` when a
  resource is deleted or becomes unavailable: its exporter went away; ``sync()`` returns once
  every update the coordinator sent before it has arrived (so a loss it knew of has been seen).

Why the library and not the ``labgrid-client`` program: one connection for the whole run (the
CLI is a new process per call: acquire took a median 2.2 s and release 2.0 s there, against 15 ms
and 20 ms through this client, n = 10 each, on the loaded 2-core development VM: ``python
tools/bench_labgrid.py``), typed errors instead of parsed text, and place updates pushed by the
coordinator (resource loss is seen at once). The ``ClientSession`` and the
generated protobuf messages are what labgrid's own ``RemotePlaceManager`` uses.

The identity a place is acquired under is labgrid's: ``<hostname>/<user>`` (``LG_HOSTNAME``,
``LG_USERNAME`` override them), as ``labgrid-client who`` shows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from edgerun.errors import LabError

__all__ = [
    "DEFAULT_PORT",
    "LabgridClient",
    "PlaceBusy",
    "coordinator_address",
    "filter_text",
    "matches",
]

DEFAULT_PORT = 20408  # labgrid's coordinator port
CALL_TIMEOUT_S = 30.0


class PlaceBusy(LabError):
    """The place is acquired or reserved by another client."""


def coordinator_address(plan_value: str | None) -> str:
    """The plan's ``[lab] coordinator``, else ``LG_COORDINATOR`` (as labgrid-client reads it)."""
    address = plan_value or os.environ.get("LG_COORDINATOR")
    if not address:
        raise LabError(
            'the plan has labgrid targets but no coordinator: set [lab] coordinator = "HOST:PORT" '
            "or the LG_COORDINATOR environment variable (labgrid's default port is 20408)"
        )
    return address if ":" in address.rsplit("]", 1)[-1] else f"{address}:{DEFAULT_PORT}"


def matches(place: Any, filters: dict[str, str]) -> bool:
    """Whether a place satisfies a reservation filter, as the coordinator's scheduler reads it:
    every key equal to the place's tag of that name; ``name`` is the place's name."""
    tags = {**place.tags, "name": place.name}
    return all(tags.get(k) == v for k, v in filters.items())


def filter_text(filters: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(filters.items()))


@dataclass(frozen=True)
class Reservation:
    token: str
    state: str  # waiting / allocated / acquired / expired / invalid
    places: tuple[str, ...]


def _session_class() -> type:
    from labgrid.remote.client import ClientSession

    class _Session(ClientSession):  # type: ignore[misc, valid-type]
        """``ClientSession`` that also tells the lab when a resource goes away."""

        def __attrs_post_init__(self) -> None:
            super().__attrs_post_init__()
            self.watchers: list[Callable[[str, str, str], None]] = []
            self.user_override: str | None = None

        def getuser(self) -> str:
            return self.user_override or super().getuser()

        async def on_resource_changed(self, exporter: str, group: str, name: str, resource: Any) -> None:
            await super().on_resource_changed(exporter, group, name, resource)
            if not resource or not resource.get("avail", False):
                for watcher in list(self.watchers):
                    watcher(exporter, group, name)

    return _Session


class LabgridClient:
    """One coordinator connection for a lab run; every method may be called from any thread."""

    def __init__(self, address: str, user: str | None = None) -> None:
        """Connect to ``address`` (HOST:PORT); ``user`` replaces the user part of the identity places
        are acquired under (the tests' "another engineer"; labgrid-client reads LG_USERNAME for it)."""
        self.address = address
        self.loop = _shared_loop()
        try:
            from labgrid.remote.client import Error as LgError
        except ImportError as exc:
            raise LabError(f"labgrid targets need the labgrid package ({exc}): pip install 'edgerun[lab]'") from exc

        async def start() -> Any:
            session = _session_class()(address=address, loop=self.loop)  # the grpc channel binds to this loop
            session.user_override = user
            await session.start()
            return session

        try:
            self.session = self._run(start, what="connecting")
        except (LgError, LabError) as exc:
            raise LabError(
                f"labgrid coordinator {address}: cannot connect ({exc}); is labgrid-coordinator running there "
                "and reachable (LG_COORDINATOR / [lab] coordinator)?"
            ) from None
        self.identity = f"{self.session.gethostname()}/{self.session.getuser()}"

    def _run(self, make: Callable[[], Coroutine[Any, Any, Any]], what: str, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """Run a coroutine (made on the loop's thread: grpc calls bind to the running loop) and wait."""

        async def go() -> Any:
            return await make()

        future = asyncio.run_coroutine_threadsafe(go(), self.loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise LabError(f"labgrid coordinator {self.address}: no answer within {timeout_s:g} s ({what})") from None

    def rpc(self, method: str, request: Any, what: str) -> Any:
        """A coordinator call (a ``CoordinatorStub`` method and its request message, from
        ``labgrid.remote.generated.labgrid_coordinator_pb2``), then a sync: our view of the places
        includes its effect. PlaceBusy for FAILED_PRECONDITION / PERMISSION_DENIED, else LabError."""
        import grpc

        async def call() -> Any:
            try:
                response = await getattr(self.session.stub, method)(request)
            except grpc.aio.AioRpcError as exc:
                return exc
            await self.session.sync_with_coordinator()
            return response

        result = self._run(call, what)
        if isinstance(result, grpc.aio.AioRpcError):
            kind = PlaceBusy if result.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                                  grpc.StatusCode.PERMISSION_DENIED) else LabError  # fmt: skip
            raise kind(f"labgrid coordinator {self.address}: {what}: {result.details()}")
        return result

    def places(self) -> dict[str, Any]:
        """The coordinator's places (``labgrid.remote.common.Place`` copies), by name."""

        async def snap() -> dict[str, Any]:
            return copy.deepcopy(self.session.places)

        return self._run(snap, "reading places")

    def holder(self, place: str) -> str | None:
        """Who holds ``place`` now (an identity ``host/user``), None when nobody does or it is gone."""
        info = self.places().get(place)
        return info.acquired if info is not None else None

    def resources(self) -> dict[str, dict[str, dict[str, Any]]]:
        """exporter -> group -> resource name -> resource data (cls, params, avail, acquired)."""

        async def snap() -> dict[str, Any]:
            return {
                exp: {grp: {name: copy.deepcopy(entry.data) for name, entry in group.items()}
                      for grp, group in groups.items()}
                for exp, groups in self.session.resources.items()
            }  # fmt: skip

        return self._run(snap, "reading resources")

    def reserve(self, filters: dict[str, str]) -> Reservation:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter=filters)}, prio=0.0)
        response = self.rpc("CreateReservation", request, f"reserving {filter_text(filters)}")
        return _reservation(response.reservation)

    def poll(self, token: str) -> Reservation:
        """The reservation's state (polling also keeps a waiting reservation from expiring)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        response = self.rpc("PollReservation", pb.PollReservationRequest(token=token), f"polling reservation {token}")
        return _reservation(response.reservation)

    def cancel(self, token: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        with contextlib.suppress(LabError):  # gone already (expired, or cancelled by the other path out)
            self.rpc("CancelReservation", pb.CancelReservationRequest(token=token), f"cancelling {token}")

    def acquire(self, place: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        self.rpc("AcquirePlace", pb.AcquirePlaceRequest(placename=place), f"acquiring place {place}")

    def release(self, place: str, identity: str | None = None) -> None:
        """Release ``place`` if ``identity`` (default: ours) holds it; nothing if someone else does."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        request = pb.ReleasePlaceRequest(placename=place, fromuser=identity or self.identity)
        self.rpc("ReleasePlace", request, f"releasing place {place}")

    def place_resources(self, place: str) -> list[dict[str, Any]]:
        """The resources the place acquired: cls, params, avail, exporter, group, name."""
        info = self.places().get(place)
        if info is None:
            return []
        resources, out = self.resources(), []
        for exporter, group, cls, name in info.acquired_resources:
            data = resources.get(exporter, {}).get(group, {}).get(name)
            if data is not None:
                out.append({"cls": cls, "params": dict(data.get("params", {})), "avail": bool(data.get("avail")),
                            "exporter": exporter, "group": group, "name": name})  # fmt: skip
        return out

    def broken_resources(self, place: str) -> list[str]:
        """Why the coordinator refuses to acquire ``place`` although nobody holds it: one line per
        resource the place matches that its exporter marked broken. labgrid's exporter does that when
        it cannot start an export (ser2net for a ``RawSerialPort``); the resource then shows as
        acquired by ``<broken>`` and stays so until that exporter restarts."""
        info = self.places().get(place)
        if info is None:
            return []
        return [
            _broken_line(f"{exporter}/{group}/{name}", data)
            for exporter, groups in self.resources().items()
            for group, named in groups.items()
            for name, data in named.items()
            if data.get("acquired") == "<broken>" and info.hasmatch((exporter, group, data.get("cls"), name))
        ]

    def sync(self) -> None:
        """Wait until every update the coordinator sent before now has reached this client (its
        ``watch`` callbacks included): labgrid sends updates and the sync answer on one stream, in order."""

        async def sync() -> None:
            await self.session.sync_with_coordinator()

        self._run(sync, "syncing with the coordinator")

    def watch(self, callback: Callable[[str, str, str], None]) -> None:
        self.loop.call_soon_threadsafe(self.session.watchers.append, callback)

    def close(self) -> None:
        """End the session (the shared loop stays for the next client)."""

        async def stop() -> None:
            await self.session.stop()
            await self.session.close()

        with contextlib.suppress(Exception):  # closing a link that may be dead already
            self._run(stop, "closing", timeout_s=10.0)


_LOOP: list[asyncio.AbstractEventLoop] = []
_LOOP_LOCK = threading.Lock()


def _shared_loop() -> asyncio.AbstractEventLoop:
    """One event loop for every labgrid session of this process, on a daemon thread: grpc.aio
    breaks ("Internal error from Core") when two event loops use it at the same time."""
    with _LOOP_LOCK:
        if not _LOOP:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="labgrid-client", daemon=True).start()
            _LOOP.append(loop)
        return _LOOP[0]


def _broken_line(where: str, data: dict[str, Any]) -> str:
    """One broken resource (see ``broken_resources``), with what to do about it."""
    extra = (data.get("params") or {}).get("extra") or {}
    why = extra.get("broken") or "see the exporter's log"  # published a poll (0.25 s) after the acquire failed
    line = f"resource {where} was marked broken by its exporter ({why})"
    path = str(extra.get("path") or "")
    if path and not path.startswith("/dev/"):
        line += (
            f": its serial port {path} is not under /dev/, and labgrid's exporter starts ser2net only for a device "
            "path under /dev/ (labgrid/remote/exporter.py, SerialPortExport._start); name the device or a udev "
            "link such as /dev/serial/by-id/..., or run ser2net yourself and export a NetworkSerialPort"
        )
    elif path:
        line += ": its exporter could not start ser2net for it (installed on the exporter host? see its log)"
    return line + "; then restart labgrid-exporter (a broken resource stays broken until it restarts)"


def _reservation(pb: Any) -> Reservation:
    from labgrid.remote.common import Reservation as LgReservation

    res = LgReservation.from_pb2(pb)
    places = tuple(name for group in res.allocations.values() for name in group)
    return Reservation(res.token, res.state.name, places)
