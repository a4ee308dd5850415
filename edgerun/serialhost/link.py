"""Opening a serial port for a firmware link, and reopening it after an unplug, with backoff.

pyserial's ``SerialException`` is an ``OSError``; its errno says what went
wrong, and ``port_error_reason`` turns that into one sentence a person can act
on. A USB-UART that is unplugged vanishes from /dev (and its
/dev/serial/by-id/ link with it); it comes back under the same by-id name, so
reconnecting means retrying ``open`` on the same path until it works, waiting
a little longer each time (``Backoff``) so a missing device costs no CPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgerun.errors import PortUnavailable
from edgerun.power.serial_base import port_error_reason as meter_port_error_reason

if TYPE_CHECKING:
    import serial

__all__ = ["Backoff", "close_quietly", "open_port", "port_error_reason"]

#: Read timeout: bounds how late the reader notices a stop request or a silent line.
READ_TIMEOUT_S = 0.02
#: A write that cannot finish in this time means the device stopped reading (or flow control is stuck).
WRITE_TIMEOUT_S = 1.0


def port_error_reason(port: str, exc: BaseException) -> str:
    """One actionable sentence for a port that would not open (the same rules as the power meters')."""
    return meter_port_error_reason(port, exc, device="board")


def open_port(port: str, baud: int, read_timeout_s: float = READ_TIMEOUT_S) -> serial.Serial:
    """Open ``port`` raw (8N1) at ``baud``; PortUnavailable with ``port_error_reason`` if it will not open."""
    import serial  # lazy: import edgerun stays light

    try:
        # exclusive: a second reader on the same port would steal half of every frame
        return serial.Serial(port, baud, timeout=read_timeout_s, write_timeout=WRITE_TIMEOUT_S, exclusive=True)
    except (OSError, ValueError) as exc:  # ValueError: a baud rate pyserial rejects
        raise PortUnavailable(port_error_reason(port, exc)) from exc


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
