"""A throwaway OpenSSH server on 127.0.0.1, to try ``--target ssh://`` against this machine.

    python tools/loopback_sshd.py DIR          # start; prints the target URL, stays up until Ctrl-C

Everything lives in DIR: a generated host key and user key, ``authorized_keys``,
``known_hosts`` and an ``ssh_config`` with a host alias ``edgerun-loopback``, so the
user's own ~/.ssh is never touched. The "device" is this machine: the login user's
commands run here, in ``DIR/device`` (the ``workdir`` of the printed URL).

The tests import this module (``start`` / ``LoopbackSshd.stop``). Needs the sshd of
openssh-server (``apt-get install openssh-server``); as root, sshd also needs
``/run/sshd`` (privilege separation), which ``start`` creates when it is missing.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
ALIAS = "edgerun-loopback"


class SshdUnavailable(RuntimeError):
    """sshd or ssh-keygen is not installed, or sshd would not start here (the message says which)."""


def sshd_path() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgerun-test", "-f", str(path)], check=True)


@dataclass
class LoopbackSshd:
    """A running sshd; ``url`` reaches it through the generated ssh_config."""

    root: Path
    port: int
    process: subprocess.Popen[bytes]
    user: str

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def workdir(self) -> Path:
        return self.root / "device"

    def url(self, **options: str) -> str:
        query = {"ssh_config": str(self.ssh_config), "workdir": str(self.workdir), "alive_interval_s": "1", **options}
        return f"ssh://{ALIAS}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _write_config(root: Path, port: int, user: str) -> None:
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nStrictModes no\nPubkeyAuthentication yes\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        "LogLevel ERROR\nMaxStartups 50:30:100\n"
    )
    host_key = (root / "host_key.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (root / "ssh_config").write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {root / 'user_key'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
    )


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise SshdUnavailable(f"sshd exited with status {process.returncode}: {err.strip()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise SshdUnavailable(f"sshd did not listen on 127.0.0.1:{port} within {timeout_s:g} s")


def die_with_parent() -> list[str]:
    """A command prefix that makes the child get SIGTERM when its parent dies (a killed test run
    leaves no sshd behind): util-linux ``setpriv --pdeathsig``. Not a preexec_fn: running Python
    code between fork and exec can deadlock a multithreaded parent."""
    return ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


def start(root: Path) -> LoopbackSshd:
    """Generate keys and configs in ``root`` and start sshd on a free loopback port."""
    sshd = sshd_path()
    if sshd is None or shutil.which("ssh-keygen") is None or shutil.which("ssh") is None:
        raise SshdUnavailable("OpenSSH server or client not installed (apt-get install openssh-server openssh-client)")
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key"):
        if not (root / name).exists():
            keygen(root / name)
    shutil.copy(root / "user_key.pub", root / "authorized_keys")
    user, port = getpass.getuser(), free_port()
    _write_config(root, port, user)
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    # -D: stay in the foreground (we own it); -e: errors to stderr. sshd needs its absolute path.
    process = subprocess.Popen(
        [*die_with_parent(), os.path.abspath(sshd), "-D", "-e", "-f", str(root / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait_listening(port, process)
    return LoopbackSshd(root, port, process, user)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="folder for the keys, ssh_config and the device's workdir (made if missing)")
    args = ap.parse_args(argv)
    server = start(args.dir.resolve())
    print(f"sshd on 127.0.0.1:{server.port} (pid {server.process.pid}); try:")
    print(f"  edgerun target setup '{server.url()}'")
    print(f"  edgerun bench --target '{server.url()}' --runs 200")
    try:
        server.process.wait()
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
