"""The Target protocol and what every transport shares: remote command lines and their exit status.

A remote command is sent as one POSIX shell line (ssh and ``adb shell`` both hand a
string to the device's shell). Two things are added around it:

- a device-side ``timeout`` (coreutils on Linux, toybox on Android 7+) where the device
  has one, so a command we give up on does not keep running there; the local deadline
  stays authoritative either way;
- a sentinel line with the exit status, printed after the command. ``adb shell`` exit
  codes are unreliable (before shell protocol v2, Android 7, the client always exits 0),
  and ssh exits 255 both for its own failures and for a command that exits 255. With the
  sentinel, "the command ran and exited N" and "the link failed" cannot be confused: no
  sentinel means the transport failed.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgerun.errors import TargetError, TargetTimeout
from edgerun.targets.spec import TargetSpec

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "SENTINEL",
    "CommandRunner",
    "Completed",
    "Target",
    "check_device_timeout",
    "command_runner",
    "shell_line",
    "split_sentinel",
]

DEFAULT_TIMEOUT_S = 60.0
SENTINEL = b"__EDGERUN_RC__:"
# Seconds the device-side timeout gets before SIGKILL follows its SIGTERM, and the local
# deadline's margin over the device-side one (so the device reports first when it can).
KILL_AFTER_S = 3
LOCAL_MARGIN_S = 5.0

CommandRunner = Callable[[Sequence[str]], "str | None"]  # edgerun.detection.CommandRunner


@dataclass(frozen=True)
class Completed:
    """A finished remote command: its exit status as the device reported it, and its output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes
    duration_s: float

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    def tail(self, limit: int = 600) -> str:
        """The end of stderr (or stdout when stderr is empty), for error messages."""
        data = (self.stderr or self.stdout).decode("utf-8", errors="replace").strip()
        return data[-limit:]

    def check(self, target: str, what: str) -> Completed:
        """Raise TargetError unless the command exited 0."""
        if self.returncode != 0:
            raise TargetError(f"{target}: {what} failed (exit status {self.returncode}): {self.tail() or 'no output'}")
        return self


class Target(Protocol):
    """A device that edgerun can drive: push a file, run a command, pull a file, read a file.

    Every method takes a timeout in seconds and raises ``TargetUnreachable``,
    ``TargetAuthError`` or ``TargetTimeout`` instead of hanging or leaking a foreign
    exception. ``run`` returns the command's own exit status; a non-zero status is not an
    error at this level.
    """

    spec: TargetSpec
    workdir: str
    python: str | None  # the interpreter with edgerun on the device; None: none known (native runner)

    def path(self, remote: str) -> str:
        """The device path of ``remote``: absolute as is, relative under ``workdir``."""
        ...

    def run(self, argv: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> Completed: ...

    def push(self, local: Path, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None: ...

    def pull(self, remote: str, local: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None: ...

    def read_file(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes: ...


def shell_line(argv: Sequence[str], timeout_s: float | None) -> str:
    """One shell line that runs argv (under the device's ``timeout`` when it has one) and prints the sentinel."""
    command = shlex.join(argv)
    if timeout_s is not None:
        seconds = max(1, math.ceil(timeout_s))
        # No `exec`: the shell must survive to print the sentinel with timeout's status (124 = timed out).
        command = (
            "if command -v timeout >/dev/null 2>&1; then "
            f"timeout -k {KILL_AFTER_S} {seconds} sh -c {shlex.quote(command)};"
            f" else sh -c {shlex.quote(command)}; fi"
        )
    return f"{command}; printf '\\n{SENTINEL.decode()}%d\\n' $?"


def split_sentinel(stdout: bytes) -> tuple[bytes, int | None]:
    """(the command's own stdout, its exit status) or (stdout, None) when the sentinel never came.

    A legacy ``adb shell`` runs commands on a pty, which turns every "\\n" into "\\r\\n";
    when the sentinel line shows that, the translation is undone for the whole output.
    """
    at = stdout.rfind(b"\n" + SENTINEL)
    if at < 0:
        return stdout, None
    body, tail = stdout[:at], stdout[at + 1 + len(SENTINEL) :]
    if tail.endswith(b"\r\n"):
        body = body.removesuffix(b"\r").replace(b"\r\n", b"\n")
    status = tail.strip()
    return (body, int(status)) if status.lstrip(b"-").isdigit() else (stdout, None)


def check_device_timeout(label: str, done: Completed, timeout_s: float) -> Completed:
    """TargetTimeout when the device-side ``timeout`` stopped the command (status 124, or 137 after
    SIGKILL, once the time was up); otherwise ``done`` unchanged."""
    if done.returncode in (124, 137) and done.duration_s >= timeout_s:
        raise TargetTimeout(
            f"{label}: {shlex.join(done.argv)[:80]} ran past its {timeout_s:g} s timeout and was stopped on the device"
        )
    return done


def command_runner(target: Target, timeout_s: float = 15.0) -> CommandRunner:
    """Adapt a target to ``CommandRunner`` (detection, power probes, thermal): stdout, or None on any failure."""

    def run(argv: Sequence[str]) -> str | None:
        try:
            done = target.run(argv, timeout_s)
        except TargetError:
            return None
        return done.text if done.returncode == 0 else None

    return run
