"""What edgerun makes of a labgrid place's resources beyond SSH: serial ports, power ports, phones.

A place's resources come from the coordinator as labgrid's exporters announced them (the shape
of ``LabgridClient.place_resources``: ``cls``, ``params``, ``avail``, ``exporter``, ``group``,
``name``). Three kinds matter here besides the ``NetworkService`` of an SSH board:

- ``NetworkSerialPort`` (labgrid/resource/serialport.py: ``host``, ``port``, ``speed``,
  ``protocol`` = ``rfc2217`` | ``raw``): a wearable on a serial adapter, served by ser2net on the
  exporter host. A labgrid exporter starts ser2net itself for a ``RawSerialPort`` or
  ``USBSerialPort`` (RFC 2217); a ser2net you run yourself is declared as a ``NetworkSerialPort``
  directly (either protocol). It becomes a pyserial URL, ``rfc2217://host:port`` or
  ``socket://host:port``, that ``edgerun serial host`` and ``serial tiny`` open
  (edgerun/serialhost/link.py says what DTR can and cannot do on each).
- A power port: any resource ``labgrid-client power`` drives (``NetworkPowerPort`` with any of
  labgrid's PDU models, ``PDUDaemonPort``, ``NetworkUSBPowerPort``, ``TasmotaPowerPort``,
  ``NetworkYKUSHPowerPort``, ...; edgerun/lab/power.py).
- An Android phone. labgrid has no ADB resource, so edgerun reads a ``NetworkService`` whose
  resource *name* starts with ``adb`` as one (``is_adb_service``), with two forms:

  ``username`` set: ``address:port`` is an adb server (on the exporter host, where the phone is
  plugged in over USB: ``adb -a -P 5037 server nodaemon``) and ``username`` is the phone's serial
  there; the target is ``adb://SERIAL?server_host=ADDRESS&server_port=PORT`` (``adb -H -P -s``).
  ``username`` empty: ``address:port`` is the phone's own adbd over TCP (``adb tcpip 5555`` or
  wireless debugging); the target is ``adb://ADDRESS:PORT``, which ``adb connect``s first.

  Why this convention: ``NetworkService`` is labgrid's resource for "a service at an address and
  port"; its exporter passes it through as it is, and every labgrid tool still understands the
  place (a class labgrid does not know would make ``labgrid-client`` fail on the whole place).
  The adb server on the exporter host is the preferred form: the phone stays on USB (charged,
  no Wi-Fi in the timing path, no re-pairing after a reboot), exactly as a serial board stays on
  its exporter's USB-UART behind ser2net. Like ser2net, an adb server listening on the network
  has no authentication: keep the port inside the lab's network.

``labgrid_serial_url("labgrid://PLACE")`` is what ``edgerun serial host/tiny --port labgrid://PLACE``
opens: the coordinator (``LG_COORDINATOR``) is asked for the place, which must be acquired by this
identity (``labgrid-client -p PLACE acquire``; the exporter starts ser2net only then), and its
``NetworkSerialPort`` becomes the URL. It is asked again at every (re)open, so a restarted exporter's
new ser2net port is found. ``labgrid://PLACE?name=RESOURCE`` picks one of several serial ports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from edgerun.errors import LabError

__all__ = [
    "POWER_CLASSES",
    "SERIAL_PROTOCOLS",
    "PlaceDevices",
    "adb_target_url",
    "is_adb_service",
    "labgrid_serial_url",
    "place_devices",
    "serial_url",
    "ssh_service",
]

#: labgrid's NetworkSerialPort ``protocol`` -> the pyserial URL scheme that speaks it.
SERIAL_PROTOCOLS = {"rfc2217": "rfc2217", "raw": "socket"}
#: Resources ``labgrid-client power`` drives (labgrid/remote/client.py, ClientSession.power).
POWER_CLASSES = (
    "NetworkPowerPort",
    "PDUDaemonPort",
    "NetworkUSBPowerPort",
    "NetworkSiSPMPowerPort",
    "TasmotaPowerPort",
    "NetworkYKUSHPowerPort",
    "NetworkSysfsGPIO",
)


def is_adb_service(resource: dict[str, Any]) -> bool:
    """A ``NetworkService`` named ``adb...``: a phone (see the module doc), not an SSH board."""
    return resource.get("cls") == "NetworkService" and str(resource.get("name") or "").startswith("adb")


def _where(resource: dict[str, Any]) -> str:
    return f"{resource.get('exporter', '?')}/{resource.get('group', '?')}/{resource.get('name', '?')}"


def serial_url(resource: dict[str, Any]) -> tuple[str, int]:
    """(pyserial URL, baud) of a ``NetworkSerialPort``; LabError for an unknown protocol or no port."""
    params = resource.get("params") or {}
    protocol = params.get("protocol", "rfc2217")
    scheme = SERIAL_PROTOCOLS.get(protocol)
    host, port = params.get("host"), params.get("port")
    if scheme is None:
        raise LabError(f"NetworkSerialPort {_where(resource)}: protocol {protocol!r}, expected rfc2217 or raw")
    if not host or not isinstance(port, int) or port <= 0:
        raise LabError(
            f"NetworkSerialPort {_where(resource)} has no host:port yet ({host}:{port}): its exporter has not "
            "started ser2net (is the serial device present on the exporter host?)"
        )
    return f"{scheme}://{host}:{port}", int(params.get("speed") or 115200)


def adb_target_url(resource: dict[str, Any]) -> str:
    """The ``adb://`` target of an ``adb`` NetworkService (module doc: server form or adbd-over-TCP form)."""
    params = resource.get("params") or {}
    address, port, serial = params.get("address"), params.get("port"), params.get("username") or ""
    if not address or not isinstance(port, int) or port == 22:
        raise LabError(
            f"NetworkService {_where(resource)} (a phone): needs address and port, the adb server's (with the "
            f"phone's serial as username) or the phone's adbd (5555); got {address}:{port}"
        )
    if serial:
        return f"adb://{quote(serial, safe=':.')}?server_host={quote(address)}&server_port={port}"
    return f"adb://{address}:{port}"


@dataclass(frozen=True)
class PlaceDevices:
    """What a place offers edgerun: at most one of each, with the resource name (None: the place has none)."""

    serial: tuple[str, int] | None = None  # (URL, baud)
    serial_resource: str | None = None
    adb: str | None = None
    power_resource: str | None = None  # the name ``labgrid-client power --name`` takes
    unavailable: tuple[str, ...] = ()  # resources of those kinds whose exporter says they are gone


def ssh_service(resources: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The place's available ``NetworkService`` that is an ssh board (not a phone): its parameters
    (address, username, port) with ``exporter`` and ``group`` added; None when it has none."""
    for entry in resources:
        if entry["cls"] == "NetworkService" and entry["avail"] and not is_adb_service(entry):
            return {**entry["params"], "exporter": entry["exporter"], "group": entry["group"]}
    return None


def place_devices(resources: list[dict[str, Any]]) -> PlaceDevices:
    """Pick the serial port, phone and power port out of a place's resources (first available of each)."""
    serial = serial_name = adb = power = None
    gone: list[str] = []
    for res in resources:
        cls = res.get("cls")
        relevant = cls == "NetworkSerialPort" or cls in POWER_CLASSES or is_adb_service(res)
        if not relevant:
            continue
        if not res.get("avail", True):
            gone.append(f"{cls} {_where(res)}")
            continue
        if cls == "NetworkSerialPort" and serial is None:
            serial, serial_name = serial_url(res), res.get("name")
        elif is_adb_service(res) and adb is None:
            adb = adb_target_url(res)
        elif cls in POWER_CLASSES and power is None:
            power = str(res.get("name") or cls)
    return PlaceDevices(serial, serial_name, adb, power, tuple(gone))


def labgrid_serial_url(spec: str) -> str:
    """``labgrid://PLACE[?name=RESOURCE]`` -> the place's NetworkSerialPort URL (see the module doc)."""
    from urllib.parse import parse_qs, urlsplit

    from edgerun.targets.labgrid_client import LabgridClient, coordinator_address

    parts = urlsplit(spec)
    place, want = parts.netloc, (parse_qs(parts.query).get("name") or [""])[0] or None
    if not place:
        raise LabError(f"{spec}: expected labgrid://PLACE (the coordinator comes from LG_COORDINATOR)")
    client = LabgridClient(coordinator_address(None))
    try:
        info = client.places().get(place)
        if info is None:
            raise LabError(f"{spec}: the coordinator {client.address} has no place {place!r}")
        if info.acquired != client.identity:
            who = f"acquired by {info.acquired}" if info.acquired else "not acquired"
            raise LabError(f"{spec}: place {place} is {who}; acquire it first: labgrid-client -p {place} acquire")
        ports = [r for r in client.place_resources(place) if r["cls"] == "NetworkSerialPort"]
    finally:
        client.close()
    ports = [r for r in ports if want is None or r["name"] == want]
    usable = [r for r in ports if r["avail"]]
    if not usable:
        what = f"no NetworkSerialPort{f' named {want}' if want else ''}"
        raise LabError(f"{spec}: place {place} has {what}{' available' if ports else ''}")
    return serial_url(usable[0])[0]
