"""Real ``ser2net`` (Debian package ``ser2net``, installed by .ci/run) in front of a serial device, for tests.

``Ser2net(device, protocol)`` serves one device on a free loopback port, configured on the
command line (``-n -d -Y``) as labgrid's exporter starts it for a ``RawSerialPort``
(labgrid/remote/exporter.py, SerialPortExport._start):

- ``protocol="rfc2217"``: accepter ``telnet(rfc2217,mode=server),tcp,...``; ``url`` is
  ``rfc2217://127.0.0.1:PORT``;
- ``protocol="raw"``: accepter ``tcp,...`` (the bytes as they are); ``url`` is ``socket://127.0.0.1:PORT``.

The connector is ``serialdev(nouucplock=true),DEVICE,SPEEDn81,local``. ser2net opens the device
when a client connects (not before), so a device path that is a symlink (the firmware emulator's
``--link``) may change behind it between connections, like /dev/serial/by-id/ after a replug.

``ser2net_missing_reason()`` says why it cannot run here; ``require_ser2net()`` skips the test,
or fails it under ``CI`` (where .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

READY_TIMEOUT_S = 20.0


def ser2net_binary() -> str | None:
    return shutil.which("ser2net") or ("/usr/sbin/ser2net" if Path("/usr/sbin/ser2net").exists() else None)


def require_ser2net() -> str:
    found = ser2net_binary()
    if found is None:
        reason = "ser2net is not installed (apt-get install ser2net; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def free_port() -> int:
    """A loopback TCP port nobody listens on now (the kernel's pick; ser2net binds it right after)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_lines(device: str, port: int, protocol: str, speed: int = 115200) -> list[str]:
    """ser2net 4 YAML, one ``-Y`` argument per line (as labgrid's exporter passes it)."""
    accepter = "telnet(rfc2217,mode=server),tcp" if protocol == "rfc2217" else "tcp"
    return [
        "connection: &con01",
        f"  accepter: {accepter},127.0.0.1,{port}",
        f"  connector: serialdev(nouucplock=true),{device},{speed}n81,local",
        "  options:",
        "    max-connections: 10",
    ]


class Ser2net:
    """One ser2net process serving ``device``; a context manager (the process dies with it)."""

    def __init__(self, device: str | Path, protocol: str = "rfc2217", log: Path | None = None) -> None:
        if protocol not in ("rfc2217", "raw"):
            raise ValueError(f"protocol {protocol!r}: expected rfc2217 or raw")
        self.device, self.protocol, self.log = str(device), protocol, log
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rfc2217" if self.protocol == "rfc2217" else "socket"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self, port: int | None = None) -> Ser2net:
        binary = require_ser2net()
        self.port = port or self.port or free_port()
        argv = [binary, "-n", "-d"]
        for line in config_lines(self.device, self.port, self.protocol):
            argv += ["-Y", line]
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        pdeath = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self.process = subprocess.Popen([*pdeath, *argv], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ser2net did not listen on 127.0.0.1:{self.port} ({' '.join(argv)})")
            time.sleep(0.01)
        return self

    def _listening(self) -> bool:
        """A LISTEN socket on the port in /proc/net/tcp: asked without connecting (a connection would
        make ser2net open the device, which a board that resets on open would take as a reset)."""
        want = f":{self.port:04X}"
        with open("/proc/net/tcp") as table:
            next(table)
            return any(f[1].endswith(want) and f[3] == "0A" for f in (line.split() for line in table))

    def stop(self) -> None:
        """SIGKILL the process group (ser2net 4.3 takes about a second to react to SIGTERM)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def __enter__(self) -> Ser2net:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
