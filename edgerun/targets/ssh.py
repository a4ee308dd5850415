"""SSH targets (Raspberry Pi, Jetson, any Linux box) through the OpenSSH client.

Why the ``ssh`` executable and not a Python SSH library: it already honours everything
users set up for their boards (``~/.ssh/config`` host aliases, ``ProxyJump``, keys,
certificates, the agent, ``known_hosts``, ControlMaster multiplexing), it is on every
machine that talks to a Pi, and it adds no dependency. Files travel over the same
channel (``cat`` / ``tar`` on the device), so devices without an SFTP server (dropbear
builds) work too.

Every call is bounded: ``ConnectTimeout`` for the handshake, ``ServerAliveInterval`` x 3
for a link that goes silent, the device-side ``timeout`` and a local deadline for the
command. ``BatchMode=yes`` turns a would-be password prompt into an immediate error.

A command also dies with us. ``run`` holds the ssh client's stdin open and the device
runs the command under ``guard_script``: when this process exits in any way (SIGKILL
included) the pipe closes, ssh sends EOF on the channel, and the guard sends SIGTERM to
the device's ``timeout``, which passes it to the command's process group (SIGKILL 3 s
later); the session then ends and the ssh client exits. ``ssh -tt`` would do it with a
pty's SIGHUP, but a pty mangles the output that is parsed here.
"""

from __future__ import annotations

import io
import math
import re
import shlex
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from edgerun.errors import TargetAuthError, TargetError, TargetUnreachable
from edgerun.targets.base import (
    DEFAULT_TIMEOUT_S,
    KILL_AFTER_S,
    LOCAL_MARGIN_S,
    SENTINEL,
    Completed,
    check_device_timeout,
    shell_line,
    split_sentinel,
)
from edgerun.targets.local import guard_script, run_process
from edgerun.targets.spec import TargetSpec

__all__ = ["SshTarget", "classify_ssh_failure"]

SSH_FAILED = 255  # ssh's own exit status for connection and authentication failures
_AUTH = re.compile(
    r"Permission denied|Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|"
    r"No \S+ host key is known|Too many authentication failures",
    re.IGNORECASE,
)


def classify_ssh_failure(label: str, done: Completed) -> TargetError:
    """The typed error for an ssh call that produced no sentinel (the command never finished there)."""
    stderr = done.stderr.decode("utf-8", errors="replace").strip()
    if _AUTH.search(stderr):
        return TargetAuthError(
            f"{label}: the device refused us: {stderr[-400:]}. Check the key (identity_file, ssh-agent) "
            "and that its public half is in the device's ~/.ssh/authorized_keys, and the host key in known_hosts"
        )
    if done.returncode == SSH_FAILED or not done.stdout:
        return TargetUnreachable(
            f"{label}: cannot reach the device or the link dropped (ssh exit {done.returncode}): "
            f"{stderr[-400:] or 'no message'}. Check that it is powered, on the network, and sshd is running"
        )
    return TargetUnreachable(f"{label}: the command's output ended early (exit {done.returncode}): {stderr[-400:]}")


def _home_relative(path: str) -> str:
    """ "~/x" as "x": commands start in the login directory, and quoting would stop the shell expanding "~"."""
    return path[2:] if path.startswith("~/") else path


def _fields(done: Completed) -> tuple[int, bytes, bytes, float]:
    return done.returncode, done.stdout, done.stderr, done.duration_s


def guarded_line(argv: Sequence[str], timeout_s: float) -> str:
    """``shell_line`` that also stops the command when the channel's stdin closes (we died).

    ``$c`` is the device's ``timeout`` itself (a simple command run in the background), which
    forwards the SIGTERM to the command's process group; without ``timeout``, ``sh -c`` of one
    simple command execs it, so the signal reaches the command."""
    seconds = max(1, math.ceil(timeout_s))
    pick = f'if command -v timeout >/dev/null 2>&1; then t="timeout -k {KILL_AFTER_S} {seconds}"; else t=; fi; '
    run = guard_script(f"$t sh -c {shlex.quote(shlex.join(argv))}", "kill -TERM $c")
    return f"{pick}{run}printf '\\n{SENTINEL.decode()}%d\\n' $rc"


class SshTarget:
    """A Linux device over OpenSSH. ``workdir`` is relative to the login directory unless absolute."""

    def __init__(self, spec: TargetSpec) -> None:
        self.spec = spec
        self.workdir = _home_relative(spec.options.workdir or ".edgerun")
        self.python: str | None = _home_relative(spec.options.python or f"{self.workdir}/venv/bin/python")

    def ssh_argv(self) -> list[str]:
        """The ssh command line up to and including the destination."""
        o = self.spec.options
        argv = ["ssh"]
        if o.ssh_config:
            argv += ["-F", str(Path(o.ssh_config).expanduser())]
        if o.identity_file:
            argv += ["-i", str(Path(o.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        if self.spec.port:
            argv += ["-p", str(self.spec.port)]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, round(o.connect_timeout_s))}"]
        argv += ["-o", f"ServerAliveInterval={max(1, round(o.alive_interval_s))}", "-o", "ServerAliveCountMax=3"]
        user = f"{self.spec.user}@" if self.spec.user else ""
        return [*argv, "-T", "--", f"{user}{self.spec.host}"]

    def _call(self, line: str, timeout_s: float, stdin: bytes | None = None, hold: bool = False) -> Completed:
        """Run one shell line on the device; the command's own status, or a typed transport error."""
        deadline_s = timeout_s + self.spec.options.connect_timeout_s + LOCAL_MARGIN_S
        what = f"{self.spec.label}: {line[:60]}"
        done = run_process([*self.ssh_argv(), line], deadline_s, what, stdin, hold_stdin=hold)
        body, status = split_sentinel(done.stdout)
        if status is None:
            raise classify_ssh_failure(self.spec.label, done)
        return Completed(done.argv, status, body, done.stderr, done.duration_s)

    def run(self, argv: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S) -> Completed:
        done = self._call(guarded_line(argv, timeout_s), timeout_s, hold=True)
        return check_device_timeout(self.spec.label, Completed(tuple(argv), *_fields(done)), timeout_s)

    def path(self, remote: str) -> str:
        """The device path of ``remote``: absolute as is, relative under the workdir."""
        path = PurePosixPath(_home_relative(remote))
        return str(path if path.is_absolute() else PurePosixPath(self.workdir) / path)

    def push(self, local: Path, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Copy a file to the device (written to a temporary name, then renamed: never half a file)."""
        dest = self.path(remote)
        mode = "755" if Path(local).stat().st_mode & 0o111 else "644"
        script = f'mkdir -p "$(dirname "$1")" && cat > "$1.part" && chmod {mode} "$1.part" && mv "$1.part" "$1"'
        done = self._call(
            shell_line(["sh", "-c", script, "push", dest], timeout_s), timeout_s, Path(local).read_bytes()
        )
        done.check(self.spec.label, f"copying {local} to {dest}")

    def push_tree(self, local_dir: Path, remote_dir: str, timeout_s: float = 600.0) -> None:
        """Copy a folder's files (a wheelhouse) to the device as one tar stream."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(Path(local_dir).iterdir()):
                if path.is_file():
                    tar.add(path, arcname=path.name)
        dest = self.path(remote_dir)
        line = shell_line(["sh", "-c", 'mkdir -p "$1" && tar -xf - -C "$1"', "untar", dest], timeout_s)
        self._call(line, timeout_s, buf.getvalue()).check(self.spec.label, f"unpacking {local_dir} into {dest}")

    def read_file(self, remote: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
        path = self.path(remote)
        done = self._call(shell_line(["cat", path], timeout_s), timeout_s)
        return done.check(self.spec.label, f"reading {path}").stdout

    def pull(self, remote: str, local: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        Path(local).write_bytes(self.read_file(remote, timeout_s))

    def __repr__(self) -> str:
        return f"SshTarget({shlex.join(self.ssh_argv())})"
