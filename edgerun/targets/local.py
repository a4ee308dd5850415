"""The local target: this machine, through the same protocol as the remote ones.

Commands run in their own process group so that a timeout kills the whole tree (the
bench worker included), like the device-side ``timeout`` does for remote targets.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from edgerun.errors import TargetError, TargetTimeout
from edgerun.targets.base import DEFAULT_TIMEOUT_S, Completed
from edgerun.targets.spec import TargetSpec

__all__ = ["LocalTarget", "run_process"]


def run_process(argv: Sequence[str], timeout_s: float, what: str, stdin: bytes | None = None) -> Completed:
    """Run argv here with a deadline; TargetTimeout (after killing its process group) when it passes."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise TargetError(f"{what}: cannot start {argv[0]!r}: {exc}") from exc
    try:
        out, err = proc.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TargetTimeout(f"{what}: no answer within {timeout_s:g} s; stopped it") from None
    return Completed(tuple(argv), proc.returncode, out, err, time.monotonic() - start)


class LocalTarget:
    """This machine. ``workdir`` defaults to a per-user folder in the temp directory."""

    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        default = Path(tempfile.gettempdir()) / f"edgerun-local-{os.getuid()}"
        self.workdir = str(Path(spec.options.workdir or default).expanduser())
        self.python: str | None = spec.options.python or sys.executable

    def path(self, remote: str) -> str:
        """The path of ``remote``: absolute as is, relative under the workdir."""
        path = Path(remote).expanduser()
        return str(path if path.is_absolute() else Path(self.workdir) / path)

    def run(self, argv: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> Completed:
        return run_process(argv, timeout_s, f"{self.spec.label}: {' '.join(argv)[:80]}")

    def push(self, local: Path, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        dest = Path(self.path(remote))
        if dest.resolve() == Path(local).resolve():
            return
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(local, dest)
        except OSError as exc:
            raise TargetError(f"{self.spec.label}: cannot copy {local} to {dest}: {exc}") from exc

    def pull(self, remote: str, local: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        Path(local).write_bytes(self.read_file(remote, timeout_s))

    def read_file(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
        try:
            return Path(self.path(remote)).read_bytes()
        except OSError as exc:
            raise TargetError(f"{self.spec.label}: cannot read {remote}: {exc}") from exc
