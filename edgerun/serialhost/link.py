"""Opening a serial port for a firmware link, and reopening it after an unplug, with backoff.

pyserial's ``SerialException`` is an ``OSError``; its errno says what went
wrong, and ``port_error_reason`` turns that into one sentence a person can act
on. A USB-UART that is unplugged vanishes from /dev (and its
/dev/serial/by-id/ link with it); it comes back under the same by-id name, so
reconnecting means retrying ``open`` on the same path until it works, waiting
a little longer each time (``Backoff``) so a missing device costs no CPU.

A port may also be a serial port on another machine, served by ser2net (a labgrid
``NetworkSerialPort``), given as a pyserial URL:

- ``rfc2217://host:port``: telnet with RFC 2217 (the baud rate, DTR and RTS travel to the
  serving host; ser2net's ``telnet(rfc2217)`` accepter, which a labgrid exporter starts for a
  ``RawSerialPort``/``USBSerialPort``). ``ign_set_control`` is added to the URL, as labgrid's own
  SerialDriver does (labgrid/driver/serialdriver.py): ser2net does not acknowledge SET_CONTROL,
  so without it pyserial's open fails with "timeout while waiting for option 'control'". DTR and
  RTS are still sent; they are just not waited for.
- ``socket://host:port``: the bytes as they are (ser2net's plain ``tcp`` accepter, labgrid's
  ``protocol: raw``). Nothing but data travels: the baud rate is whatever ser2net's connector
  says, and DTR/RTS cannot be set from here (``dtr_settable``).

Either way the serving host opens the UART when a client connects, and the kernel raises
DTR and RTS as it opens a tty: a board that resets on DTR resets then, whatever this side asks.
A lost connection reads as an unplug: the host reconnects with the same backoff.

``labgrid://PLACE`` is a labgrid place's ``NetworkSerialPort``, looked up in the coordinator at
every open (edgerun/targets/labgrid_resources.py, ``labgrid_serial_url``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgerun.errors import PortUnavailable
from edgerun.power.serial_base import port_error_reason as meter_port_error_reason

if TYPE_CHECKING:
    import serial

__all__ = [
    "Backoff",
    "close_quietly",
    "dtr_settable",
    "network_scheme",
    "open_port",
    "port_error_reason",
    "port_url",
    "serial_object",
    "set_write_timeout",
]

#: Read timeout: bounds how late the reader notices a stop request or a silent line.
READ_TIMEOUT_S = 0.02
#: A write that cannot finish in this time means the device stopped reading (or flow control is stuck).
WRITE_TIMEOUT_S = 1.0


#: URL schemes of a serial port served over the network, and what labgrid calls each (``protocol``).
NETWORK_SCHEMES = {"rfc2217": "rfc2217", "socket": "raw"}


def network_scheme(port: str) -> str | None:
    """``"rfc2217"`` or ``"socket"`` for a network port URL; None for a device path."""
    scheme, sep, _ = port.partition("://")
    return scheme if sep and scheme in NETWORK_SCHEMES else None


def dtr_settable(port: str) -> bool:
    """Whether opening ``port`` can set DTR/RTS: a local tty and RFC 2217 can, a raw TCP socket cannot."""
    return network_scheme(port) != "socket"


def port_url(port: str) -> str:
    """What pyserial opens for ``port``: a path as it is; an RFC 2217 URL with ``ign_set_control`` added."""
    if network_scheme(port) != "rfc2217" or "ign_set_control" in port:
        return port
    return port + ("&" if "?" in port else "?") + "ign_set_control"


def port_error_reason(port: str, exc: BaseException) -> str:
    """One actionable sentence for a port that would not open (the same rules as the power meters')."""
    if network_scheme(port) is not None:
        return (
            f"cannot reach the serial server {port} ({exc}): is ser2net (the labgrid exporter) running there "
            "and listening on that port?"
        )
    return meter_port_error_reason(port, exc, device="board")


def serial_object(port: str) -> serial.Serial:
    """An unopened pyserial object for a path or a network URL (``serial_for_url`` handles both)."""
    import serial  # lazy: import edgerun stays light

    if port.startswith("labgrid://"):  # a labgrid place: its NetworkSerialPort, asked for at every open
        from edgerun.errors import LabError
        from edgerun.targets.labgrid_resources import labgrid_serial_url

        try:
            port = labgrid_serial_url(port)
        except LabError as exc:
            raise PortUnavailable(str(exc)) from exc
    try:
        ser = serial.serial_for_url(port_url(port), do_not_open=True)
    except (OSError, ValueError) as exc:  # an unknown URL scheme or a malformed URL
        raise PortUnavailable(port_error_reason(port, exc)) from exc
    if network_scheme(port) is None:
        ser.exclusive = True  # a second reader on the same port would steal half of every frame
    return ser


def set_write_timeout(ser: serial.Serial, port: str) -> None:
    """WRITE_TIMEOUT_S where pyserial supports it. Its RFC 2217 client does not (NotImplementedError at
    open); its socket has the 5 s timeout it connected with, so a stuck server fails a write after that."""
    if network_scheme(str(ser.port or port)) != "rfc2217":  # ser.port: a labgrid:// port's resolved URL
        ser.write_timeout = WRITE_TIMEOUT_S


def open_port(port: str, baud: int, read_timeout_s: float = READ_TIMEOUT_S) -> serial.Serial:
    """Open ``port`` raw (8N1) at ``baud``; PortUnavailable with ``port_error_reason`` if it will not open."""
    ser = serial_object(port)
    ser.baudrate, ser.timeout = baud, read_timeout_s
    set_write_timeout(ser, port)
    try:
        ser.open()
    except (OSError, ValueError) as exc:  # ValueError: a baud rate pyserial rejects
        raise PortUnavailable(port_error_reason(port, exc)) from exc
    return ser


@dataclass
class Backoff:
    """Exponential waits between reconnect attempts: first_s, 2*first_s, ... capped at max_s."""

    first_s: float = 0.05
    max_s: float = 2.0
    attempts: int = 0

    def next_delay_s(self) -> float:
        delay = min(self.max_s, self.first_s * (2**self.attempts))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0


def close_quietly(ser: serial.Serial | None) -> None:
    if ser is None:
        return
    with contextlib.suppress(OSError):  # the device is already gone: nothing left to release
        ser.close()
