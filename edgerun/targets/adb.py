"""Android devices through the ``adb`` client: ``adb shell`` for commands, adb's sync protocol for files.

The adb client talks to the adb server, which talks to the device (USB, or TCP after
``adb connect``). What this module relies on is adb's documented command line:
``adb [-P port] [-s serial] shell|push|pull|connect ...``.

Exit codes: ``adb shell`` returns the command's status only with shell protocol v2
(Android 7 and later); older devices always return 0. Every command therefore carries
a sentinel with its real status (``edgerun.targets.base``), and a missing sentinel is a
transport failure. Files never travel through ``adb shell cat``: on old devices the
shell's pty turns "\\n" into "\\r\\n" and corrupts binary files; push and pull use sync.

Emulators: the Android emulator (goldfish / ranchu) sets ``ro.kernel.qemu=1`` (older images)
or ``ro.boot.qemu=1`` (newer ones), and tools/adb_emulator.py answers both as it does. Its
results are canned or run on a PC's CPU, whatever model the device reports, so
``AdbTarget.facts()`` says ``emulated: true`` for the result's ``target`` block, and the
reports print "(emulated)".
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from edgerun.errors import TargetAuthError, TargetError, TargetUnreachable
from edgerun.targets.base import (
    DEFAULT_TIMEOUT_S,
    LOCAL_MARGIN_S,
    Completed,
    check_device_timeout,
    shell_line,
    split_sentinel,
)
from edgerun.targets.local import run_process
from edgerun.targets.spec import TargetSpec

__all__ = ["EMULATOR_PROPERTIES", "AdbTarget", "classify_adb_failure"]

DEFAULT_WORKDIR = "/data/local/tmp/edgerun"
EMULATOR_PROPERTIES = ("ro.kernel.qemu", "ro.boot.qemu")  # "1" on the Android emulator
_UNAUTHORIZED = re.compile(r"unauthorized|insufficient permissions", re.IGNORECASE)
_GONE = re.compile(
    r"device .* not found|no devices|device offline|error: closed|protocol fault|connection reset|"
    r"cannot connect|failed to connect|more than one device",
    re.IGNORECASE,
)


def classify_adb_failure(label: str, done: Completed, what: str) -> TargetError:
    """The typed error for an adb call that failed before the command reported its status."""
    stderr = (done.stderr or done.stdout).decode("utf-8", errors="replace").strip()[-400:]
    if _UNAUTHORIZED.search(stderr):
        return TargetAuthError(
            f"{label}: the device refused adb ({stderr}). Accept the USB debugging prompt on the phone, "
            "or fix the udev permissions"
        )
    if _GONE.search(stderr) or not stderr:
        return TargetUnreachable(
            f"{label}: {what}: the device is not there or went away ({stderr or 'no output'}). "
            "Check the cable or Wi-Fi and `adb devices`"
        )
    return TargetError(f"{label}: {what} failed: {stderr}")


class AdbTarget:
    """One Android device by serial ("" = the only one attached, as plain ``adb`` does)."""

    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.workdir = spec.options.workdir or DEFAULT_WORKDIR
        self.python = spec.options.python  # e.g. Termux's; None: only the native runner is possible
        self._connected = False
        self._emulated: bool | None = None

    def client_argv(self) -> list[str]:
        """The adb client and its server's host and port, without a device selection."""
        argv, opts = [self.spec.options.adb], self.spec.options
        argv += ["-H", opts.server_host] if opts.server_host else []
        return argv + ["-P", str(opts.server_port)] if opts.server_port else argv

    def adb_argv(self) -> list[str]:
        argv = self.client_argv()
        return [*argv, "-s", self.spec.host] if self.spec.host else argv

    def _adb(self, args: Sequence[str], timeout_s: float, what: str) -> Completed:
        self._connect()
        return run_process([*self.adb_argv(), *args], timeout_s + LOCAL_MARGIN_S, f"{self.spec.label}: {what}")

    def _connect(self) -> None:
        """``adb connect`` once for a network serial (host:port); USB serials need nothing."""
        if self._connected or not re.fullmatch(r"[\w.-]+:\d+", self.spec.host):
            return
        argv = [*self.client_argv(), "connect", self.spec.host]
        done = run_process(argv, self.spec.options.connect_timeout_s + LOCAL_MARGIN_S, f"{self.spec.label}: connect")
        if b"connected to" not in done.stdout or b"failed" in done.stdout:
            raise classify_adb_failure(self.spec.label, done, "adb connect")
        self._connected = True

    def path(self, remote: str) -> str:
        """The device path of ``remote``: absolute as is, relative under the workdir."""
        path = PurePosixPath(remote)
        return str(path if path.is_absolute() else PurePosixPath(self.workdir) / path)

    def run(self, argv: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> Completed:
        done = self._adb(["shell", shell_line(argv, timeout_s)], timeout_s, " ".join(argv)[:60])
        body, status = split_sentinel(done.stdout)
        if status is None:
            raise classify_adb_failure(self.spec.label, done, f"running {' '.join(argv)[:60]}")
        return check_device_timeout(
            self.spec.label, Completed(tuple(argv), status, body, done.stderr, done.duration_s), timeout_s
        )

    def push(self, local: Path, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        dest = self.path(remote)
        done = self._adb(["push", str(local), dest], timeout_s, f"push {Path(local).name}")
        if done.returncode != 0:  # the client's own status: reliable for push and pull
            raise classify_adb_failure(self.spec.label, done, f"pushing {local} to {dest}")

    def pull(self, remote: str, local: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        src = self.path(remote)
        done = self._adb(["pull", src, str(local)], timeout_s, f"pull {src}")
        if done.returncode != 0:
            raise classify_adb_failure(self.spec.label, done, f"pulling {src}")

    def read_file(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
        with tempfile.TemporaryDirectory(prefix="edgerun-adb-") as tmp:
            local = Path(tmp) / "pulled"
            self.pull(remote, local, timeout_s)
            return local.read_bytes()

    def emulated(self, timeout_s: float = 30.0) -> bool:
        """Whether the device is an emulator (one of EMULATOR_PROPERTIES is 1); asked once, then cached."""
        if self._emulated is None:
            script = "; ".join(f"getprop {name}" for name in EMULATOR_PROPERTIES)
            done = self.run(["sh", "-c", script], timeout_s)
            self._emulated = done.returncode == 0 and "1" in done.text.split()
        return self._emulated

    def facts(self) -> dict[str, bool]:
        """What a result's ``target`` block adds for this device: ``{"emulated": True}`` on an emulator."""
        return {"emulated": True} if self.emulated() else {}
