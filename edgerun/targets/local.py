"""The local target: this machine, through the same protocol as the remote ones.

Commands run in their own process group so that a timeout kills the whole tree (the
bench worker included), like the device-side ``timeout`` does for remote targets.

They also die with us. Each child's stdin is a pipe whose write end only this process
holds: when it exits in any way (return, exception, SIGTERM, SIGKILL) the kernel closes
it, and a POSIX ``sh`` guard around the command (``guard_script``) kills the command on
EOF. Chosen over Linux's ``prctl(PR_SET_PDEATHSIG)`` because it works on every POSIX
shell, here and on the device at the far end of ssh (the same script guards remote
commands), needs no ``preexec_fn`` (unsafe with the lab's threads) and reacts at once
instead of polling. ``kill_running`` also kills every live group explicitly, for the
ways out where Python still runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgerun.errors import TargetError, TargetTimeout
from edgerun.targets.base import DEFAULT_TIMEOUT_S, Completed
from edgerun.targets.spec import TargetSpec

__all__ = ["LocalTarget", "guard_script", "kill_running", "run_process"]

_running: dict[int, int] = {}  # process group -> the thread that started it (run_process, not finished yet)
_running_lock = threading.Lock()


def guard_script(command: str, on_close: str) -> str:
    """POSIX sh lines that run ``command`` (a shell command, its stdin /dev/null) in the background
    and run ``on_close`` (e.g. ``kill -KILL 0``; ``$c`` is the command's pid) if the script's stdin
    reaches EOF first: that is the process at the other end of the pipe dying. Leaves ``$rc`` set
    to the command's exit status. fd 3 keeps the pipe because an asynchronous list's stdin is
    /dev/null in a shell without job control; ``read`` is a builtin, so killing the watcher
    subshell leaves no orphan behind."""
    return (
        f"exec 3<&0; {command} </dev/null 3<&- & c=$!; "
        f"(while read -r _ <&3; do :; done; {on_close}) >/dev/null 2>&1 & w=$!; "
        "wait $c; rc=$?; kill $w 2>/dev/null; "
    )


def kill_running(thread: int | None = None) -> None:
    """SIGKILL every process group run_process started that is still running (the lab is leaving),
    or only those started by the thread ``thread`` (``threading.get_ident()``: one lab worker whose
    device went away)."""
    with _running_lock:
        groups = [pgid for pgid, owner in _running.items() if thread is None or owner == thread]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def run_process(
    argv: Sequence[str], timeout_s: float, what: str, stdin: bytes | None = None, hold_stdin: bool = False
) -> Completed:
    """Run argv here with a deadline; TargetTimeout (after killing its process group) when it passes.

    ``hold_stdin``: the child's stdin is a pipe kept open until it exits, closed by the kernel
    if this process dies first, for a child that watches it (``guard_script``, ssh's channel).
    """
    start = time.monotonic()
    held = os.pipe() if hold_stdin and stdin is None else None
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=held[0] if held else subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        if held:
            os.close(held[1])
        raise TargetError(f"{what}: cannot start {argv[0]!r}: {exc}") from exc
    finally:
        if held:
            os.close(held[0])
    with _running_lock:
        _running[proc.pid] = threading.get_ident()
    try:
        out, err = proc.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TargetTimeout(f"{what}: no answer within {timeout_s:g} s; stopped it") from None
    finally:
        if proc.poll() is None:  # an exception in this thread (KeyboardInterrupt): take the group down
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        with _running_lock:
            _running.pop(proc.pid, None)
        if held:
            os.close(held[1])
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
        # Under the guard: the sh is the group leader (a new session), so `kill -KILL 0` takes the
        # command and everything it started in its group when this process dies. The exit status
        # is the command's; a signal death reads 128+N through sh, as on a remote target.
        guarded = ["sh", "-c", guard_script('"$@"', "kill -KILL 0") + "exit $rc", "edgerun-guard", *argv]
        done = run_process(guarded, timeout_s, f"{self.spec.label}: {' '.join(argv)[:80]}", hold_stdin=True)
        return Completed(tuple(argv), done.returncode, done.stdout, done.stderr, done.duration_s)

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
