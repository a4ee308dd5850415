"""An EMULATED arm64 board on this machine: Debian bookworm arm64 under qemu-user, with its own sshd.

    python tools/arm64_board.py build        # the root file system, once (cached; ~5.5 min CPU)
    python tools/arm64_board.py wheelhouse   # aarch64 wheels for edgerun's dependencies (pip download)
    python tools/arm64_board.py wheelhouse --torch   # opt-in: + torch and the compress extra (~3 GB)
    python tools/arm64_board.py start        # its sshd on 127.0.0.1; prints the target URL
    python tools/arm64_board.py stop

The board is a Debian arm64 root file system (``debootstrap --foreign --arch=arm64``, then
its second stage run under emulation) with python3, python3-venv and openssh-server. Its
programs are aarch64 code that qemu-user (Debian ``qemu-user-static``, qemu 10 from
bookworm-backports: 7.2 crashes the engines' CPU detection) translates on this CPU, started
through binfmt_misc so that every process the board's sshd starts is emulated too. The CPU
model is a Cortex-A76 (``QEMU_CPU``, a Raspberry Pi 5's core). It is a real aarch64 userland
(Debian's packages, the aarch64 wheels of onnxruntime and LiteRT) but NOT a real board: the
demo's inferences ran 250-960x slower than natively on the same CPU (tools/bench_arm64_board.py
on the loaded 2-core development VM), its timings say nothing about a Pi, and results are marked
``emulated`` (edgerun.targets.identity: aarch64 code on an x86_64 kernel, and the marker
``/etc/edgerun/emulated`` written here).

``start`` runs the board in private mount and PID namespaces (``unshare``): an overlay on
the cached root file system (changes go to the state folder, the cache stays pristine), the
namespace's own /proc, this machine's /dev, and ``chroot``. When the board's first process
ends, the kernel ends the rest and drops the mounts. Needs root (chroot, mounts,
binfmt_misc), debootstrap, qemu-user-static, util-linux's unshare, and OpenSSH's client
and ssh-keygen here. Key authentication only, keys generated in the state folder, as
tools/loopback_sshd.py does.

Folders (environment variables override): the root file system
``EDGERUN_ARM64_ROOTFS`` (~/.cache/edgerun/arm64-rootfs), the wheelhouse
``EDGERUN_ARM64_WHEELHOUSE`` (~/.cache/edgerun/arm64-wheelhouse), the running board's state
``EDGERUN_ARM64_STATE`` (~/.cache/edgerun/arm64-board). The tests import this module.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import loopback_sshd  # noqa: E402  (tools/loopback_sshd.py: keys, free ports, die-with-parent)

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "openssh-server")
CPU = "cortex-a76"
PYTHON = "3.11"  # bookworm's
GLIBC = (2, 36)  # bookworm's: the newest manylinux tag its wheels may carry
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # Debian qemu-user-static's registration (flags F)
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
COMPLETE = ".edgerun-rootfs.json"
ALIAS = "edgerun-arm64"
EMULATED_NOTE = "EMULATED board: qemu-user on this CPU, hundreds of times slower than native code, no board's timings"

Say = Callable[[str], None]


class BoardUnavailable(RuntimeError):
    """A tool, root, or binfmt_misc is missing, so the board cannot run here (the message says which)."""


def _cache(env: str, name: str) -> Path:
    return Path(os.environ.get(env) or Path.home() / ".cache" / "edgerun" / name).expanduser()


def rootfs_dir() -> Path:
    return _cache("EDGERUN_ARM64_ROOTFS", "arm64-rootfs")


def wheelhouse_dir() -> Path:
    return _cache("EDGERUN_ARM64_WHEELHOUSE", "arm64-wheelhouse")


def state_dir() -> Path:
    return _cache("EDGERUN_ARM64_STATE", "arm64-board")


def missing_reason(build: bool = False) -> str | None:
    """Why the board cannot be built (``build``) or started here, or None."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "the emulated board runs on an x86_64 Linux host"
    if os.geteuid() != 0:
        return "the emulated board needs root (chroot, mounts, binfmt_misc)"
    tools = ["qemu-aarch64-static", "unshare", "chroot", "ssh", "ssh-keygen", *(["debootstrap"] if build else [])]
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return (f"not installed: {', '.join(missing)} (apt-get install -t bookworm-backports qemu-user-static; "
                "apt-get install debootstrap openssh-client; .ci/run installs them)")  # fmt: skip
    return None


def qemu_version() -> str:
    out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True, check=True).stdout
    return out.split("\n", 1)[0].replace("qemu-aarch64 version ", "qemu ")


def ensure_binfmt(say: Say = print) -> None:
    """aarch64 ELF files run through qemu (binfmt_misc with flag F: the interpreter is opened
    now, so it also works inside the chroot). Mounts binfmt_misc and registers Debian's
    qemu-aarch64 entry when they are missing; raises BoardUnavailable saying why it cannot."""
    entry = BINFMT_DIR / "qemu-aarch64"
    if not (BINFMT_DIR / "register").exists():
        done = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True)
        if done.returncode != 0:
            raise BoardUnavailable(f"cannot mount binfmt_misc at {BINFMT_DIR}: {done.stderr.decode().strip()} "
                                   "(a container needs --privileged, or the host's binfmt_misc)")  # fmt: skip
        say(f"mounted binfmt_misc at {BINFMT_DIR}")
    if not entry.exists():
        if not BINFMT_CONF.exists():
            raise BoardUnavailable(f"{BINFMT_CONF} missing: install qemu-user-static (bookworm-backports)")
        try:
            (BINFMT_DIR / "register").write_text(BINFMT_CONF.read_text().strip())
        except OSError as exc:
            raise BoardUnavailable(f"cannot register qemu-aarch64 with binfmt_misc: {exc}") from exc
        say(f"registered {BINFMT_CONF.name} with binfmt_misc")
    text = entry.read_text()
    if not text.startswith("enabled") or "F" not in text.split("flags:", 1)[-1].split("\n", 1)[0]:
        raise BoardUnavailable(f"{entry} is disabled or lacks flag F (fix-binary), needed inside a chroot: {text!r}")


def _run(argv: list[str], say: Say, what: str, env: dict[str, str] | None = None) -> None:
    say(f"{what}: {' '.join(argv)}")
    start = time.monotonic()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise BoardUnavailable(f"{what} failed (exit {done.returncode}): {done.stdout.strip()[-1500:]}")
    say(f"{what}: done in {time.monotonic() - start:.0f} s")


def is_complete(root: Path) -> bool:
    return (root / COMPLETE).is_file()


def build(root: Path | None = None, mirror: str = MIRROR, say: Say = print) -> Path:
    """The cached root file system at ``root``: reused when complete, else built (into
    ``root.partial``, renamed when done, so a killed build never passes for a complete one)."""
    root = (root or rootfs_dir()).resolve()
    if is_complete(root):
        say(f"reusing {root} ({json.loads((root / COMPLETE).read_text())['built_utc']})")
        return root
    reason = missing_reason(build=True)
    if reason:
        raise BoardUnavailable(reason)
    ensure_binfmt(say)
    start = time.monotonic()
    partial = root.with_name(root.name + ".partial")
    for old in (partial, root):
        if old.exists():
            say(f"removing the incomplete {old}")
            shutil.rmtree(old)
    partial.parent.mkdir(parents=True, exist_ok=True)
    include = ",".join(PACKAGES)
    _run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", f"--include={include}", SUITE,
          str(partial), mirror], say, "debootstrap, first stage (downloads and unpacks)")  # fmt: skip
    env = {**os.environ, "QEMU_CPU": CPU, "LC_ALL": "C"}
    _run(["chroot", str(partial), "/debootstrap/debootstrap", "--second-stage"], say,
         "debootstrap, second stage (configures the packages, EMULATED: the slow part)", env)  # fmt: skip
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()  # the downloaded packages (~60 MB): installed now, not needed in the cache
    facts = {"suite": SUITE, "arch": "arm64", "packages": list(PACKAGES), "mirror": mirror,
             "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "build_s": round(time.monotonic() - start), "qemu": qemu_version()}  # fmt: skip
    (partial / COMPLETE).write_text(json.dumps(facts, indent=1) + "\n")
    partial.rename(root)
    say(f"built {root} in {facts['build_s']} s")
    return root


def manylinux_platforms(arch: str = "aarch64", glibc: tuple[int, int] = GLIBC) -> list[str]:
    """Every manylinux tag a glibc ``glibc`` system takes: pip's ``--platform`` does not
    widen a tag to the older ones (ai-edge-litert publishes manylinux_2_27 only)."""
    return ["manylinux2014_" + arch, *(f"manylinux_2_{minor}_{arch}" for minor in range(17, glibc[1] + 1))]


def wheelhouse(dest: Path | None = None, say: Say = print) -> Path:
    """aarch64 / CPython 3.11 wheels of everything this edgerun needs (``pip download`` of
    the wheel ``target setup`` installs), for ``target setup --wheelhouse`` offline."""
    from edgerun.targets.wheel import build_self_wheel

    dest = (dest or wheelhouse_dir()).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in manylinux_platforms() for arg in ("--platform", p)]
    with tempfile.TemporaryDirectory(prefix="edgerun-wheel-") as tmp:
        wheel = build_self_wheel(Path(tmp))
        # reused while edgerun's requirements and the platform are those it was downloaded for
        want = {"requires": sorted(metadata.Distribution.at(_unzip_info(wheel, Path(tmp))).requires or []),
                "platforms": platforms, "python": PYTHON}  # fmt: skip
        done = dest / ".edgerun-wheelhouse.json"
        if done.is_file() and json.loads(done.read_text()) == want:
            say(f"reusing the wheelhouse {dest}")
            return dest
        done.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet", "--dest",
                str(dest), "--only-binary=:all:", *platforms, "--python-version", PYTHON, "--implementation", "cp",
                str(wheel)]  # fmt: skip
        _run(argv, say, "pip download (aarch64, CPython 3.11)")
    for own in dest.glob("edgerun-*.whl"):
        own.unlink()  # target setup pushes the running edgerun itself
    done.write_text(json.dumps(want, indent=1) + "\n")
    say(f"wheelhouse {dest}: {len(list(dest.glob('*.whl')))} wheels")
    return dest


def _unzip_info(wheel: Path, into: Path) -> Path:
    """The wheel's .dist-info folder, unpacked under ``into`` (to read its requirements)."""
    with zipfile.ZipFile(wheel) as whl:
        names = [n for n in whl.namelist() if n.split("/")[0].endswith(".dist-info")]
        whl.extractall(into / "info", names)
    return next((into / "info").glob("*.dist-info"))


@dataclass
class Board:
    """A running emulated board: its sshd answers at ``url()``."""

    state: Path
    port: int
    process: subprocess.Popen[bytes] | None = None  # None: started by another process (``stop`` uses the pid file)

    @property
    def ssh_config(self) -> Path:
        return self.state / "ssh_config"

    def url(self, **options: str) -> str:
        query = {"ssh_config": str(self.ssh_config), "connect_timeout_s": "60", "alive_interval_s": "10", **options}
        return f"ssh://{ALIAS}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def stop(self) -> None:
        pid = self.process.pid if self.process else _board_pid(self.state)
        if pid is None:
            return
        # unshare --fork blocks SIGTERM in its parent while it waits: the board's PID 1 (its sshd, the
        # parent's child) gets it, ends the namespace, and unshare exits with it (no 15 s SIGKILL wait)
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for target in (*map(int, children), pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        else:  # started by another process: wait until the pid is gone (SIGKILL after 15 s)
            for _ in range(150):
                if _board_pid(self.state) is None:
                    break
                time.sleep(0.1)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        (self.state / "board.json").unlink(missing_ok=True)


def _board_pid(state: Path) -> int | None:
    """The pid in ``state/board.json`` if that process is still our ``unshare`` for ``state``."""
    try:
        pid = int(json.loads((state / "board.json").read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, KeyError):
        return None
    return pid if any(b"unshare" in part for part in cmdline) and str(state).encode() in cmdline else None


_SSHD_CONFIG = """Port {port}
ListenAddress 127.0.0.1
HostKey /etc/edgerun-board/host_key
PidFile none
AuthorizedKeysFile /etc/edgerun-board/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
LogLevel ERROR
MaxStartups 50:30:100
# every session's programs run on the same emulated CPU
SetEnv QEMU_CPU={cpu}
"""
# In the namespaces: an overlay on the cached root file system, its own /proc, this /dev, optionally a
# folder of wheels read-only at WHEELS_MOUNT ($3, $4), then sshd as PID 1.
WHEELS_MOUNT = "/mnt/edgerun-wheels"
_BOOT = (
    'mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/merged" && '
    'mount -t proc proc "$2/merged/proc" && mount --rbind /dev "$2/merged/dev" && '
    'if [ -n "$3" ]; then mkdir -p "$2/merged$4" && mount --bind "$3" "$2/merged$4" && '
    'mount -o remount,bind,ro "$2/merged$4"; fi && '
    'exec chroot "$2/merged" /usr/sbin/sshd -D -e -f /etc/edgerun-board/sshd_config'
)


def _prepare_state(root: Path, state: Path, port: int) -> None:
    for name in ("upper", "work", "merged"):
        (state / name).mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "user_key"):
        if not (state / name).exists():
            loopback_sshd.keygen(state / name)
    etc = state / "upper" / "etc" / "edgerun-board"
    etc.mkdir(parents=True, exist_ok=True)
    shutil.copy(state / "host_key", etc / "host_key")
    shutil.copy(state / "user_key.pub", etc / "authorized_keys")
    (etc / "sshd_config").write_text(_SSHD_CONFIG.format(port=port, cpu=CPU))
    (state / "upper" / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    marker = state / "upper" / "etc" / "edgerun" / "emulated"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"qemu-user ({qemu_version()}, QEMU_CPU={CPU}) on an {os.uname().machine} host: "
                      "tools/arm64_board.py, not a real board\n")  # fmt: skip
    host_key = (state / "host_key.pub").read_text().split()
    (state / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    keys = (f"  IdentityFile {state / 'user_key'}\n  IdentitiesOnly yes\n  UserKnownHostsFile {state / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n")  # fmt: skip
    # the alias, and 127.0.0.1 itself: a labgrid NetworkService names the address and port
    (state / "ssh_config").write_text(
        f"Host {ALIAS}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n{keys}Host 127.0.0.1\n{keys}"
    )


def _wait_ready(board: Board, log: Path, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    """Until one ssh command runs on the board (an emulated sshd takes seconds to answer)."""
    deadline = time.monotonic() + timeout_s
    argv = ["ssh", "-F", str(board.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=30", ALIAS, "uname -m"]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BoardUnavailable(f"the board's sshd exited ({process.returncode}): {log.read_text()[-800:]}")
        done = subprocess.run(argv, capture_output=True, text=True, timeout=max(5.0, deadline - time.monotonic()))
        if done.returncode == 0 and done.stdout.strip() == "aarch64":
            return
        time.sleep(0.5)
    raise BoardUnavailable(f"the board's sshd did not answer within {timeout_s:g} s: {log.read_text()[-800:]}")


def start(root: Path | None = None, state: Path | None = None, detach: bool = False, say: Say = print,
          timeout_s: float = 180.0, wheels: Path | None = None) -> Board:  # fmt: skip
    """Start the board's sshd on a free loopback port; returns once a command ran there.
    ``detach``: outlive this process (the CLI); otherwise it dies with this process. ``wheels``:
    a folder the board sees read-only at ``WHEELS_MOUNT`` (a GB-sized wheelhouse, not copied)."""
    root, state = (root or rootfs_dir()).resolve(), (state or state_dir()).resolve()
    reason = missing_reason()
    if reason:
        raise BoardUnavailable(reason)
    if not is_complete(root):
        raise BoardUnavailable(f"no complete root file system at {root}: run `tools/arm64_board.py build` first")
    if _board_pid(state) is not None:
        raise BoardUnavailable(f"a board already runs with the state folder {state}: stop it first")
    ensure_binfmt(say)
    port = loopback_sshd.free_port()
    _prepare_state(root, state, port)
    unshare = ["unshare", "--fork", "--pid", "--kill-child=TERM", "--mount", "--propagation", "private"]
    mount = [str(wheels.resolve()), WHEELS_MOUNT] if wheels else ["", ""]
    argv = [*([] if detach else loopback_sshd.die_with_parent()), *unshare, "--", "sh", "-c", _BOOT, "board",
            str(root), str(state), *mount]  # fmt: skip
    log = state / "sshd.log"
    with log.open("wb") as err:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                   env={**os.environ, "QEMU_CPU": CPU}, start_new_session=detach)  # fmt: skip
    board = Board(state, port, process)
    (state / "board.json").write_text(json.dumps({"pid": process.pid, "port": port, "root": str(root)}) + "\n")
    try:
        _wait_ready(board, log, timeout_s, process)
    except BaseException:
        board.stop()
        raise
    say(f"{EMULATED_NOTE}; sshd on 127.0.0.1:{port} (pid {process.pid}), root file system {root}")
    return board


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the arm64 root file system (reused when complete)")
    b.add_argument("--root", type=Path, help="where (default: $EDGERUN_ARM64_ROOTFS or ~/.cache/edgerun/arm64-rootfs)")
    b.add_argument("--mirror", default=MIRROR, help=f"Debian mirror (default {MIRROR})")
    w = sub.add_parser("wheelhouse", help="download aarch64 CPython 3.11 wheels of edgerun's dependencies")
    w.add_argument("dir", type=Path, nargs="?", help="where (default: $EDGERUN_ARM64_WHEELHOUSE)")
    w.add_argument("--torch", action="store_true", help="instead: aarch64 torch and the compress extra (~3 GB; "
                   "default $EDGERUN_ARM64_TORCH_WHEELHOUSE; tools/arm64_compress.py)")  # fmt: skip
    s = sub.add_parser("start", help="start the board's sshd in the background and print the target URL")
    s.add_argument("--root", type=Path, help="the root file system (default: as build)")
    s.add_argument("--state", type=Path, help="keys, ssh_config, the board's changes (default: $EDGERUN_ARM64_STATE)")
    s.add_argument("--wheels", type=Path, help=f"a wheelhouse the board sees read-only at {WHEELS_MOUNT}")
    t = sub.add_parser("stop", help="stop the board started with this state folder")
    t.add_argument("--state", type=Path, help="as given to start")
    args = ap.parse_args(argv)
    say = lambda line: print(f"arm64-board: {line}", flush=True)  # noqa: E731
    try:
        if args.command == "build":
            build(args.root, args.mirror, say)
        elif args.command == "wheelhouse" and args.torch:
            import arm64_compress  # tools/arm64_compress.py

            arm64_compress.torch_wheelhouse(args.dir, say)
        elif args.command == "wheelhouse":
            wheelhouse(args.dir, say)
        elif args.command == "start":
            board = start(args.root, args.state, detach=True, say=say, wheels=args.wheels)
            house = wheelhouse_dir()
            print(f"  edgerun target setup '{board.url()}' --wheelhouse {house}")
            print(f"  edgerun bench --target '{board.url()}' edgerun/demo/digits-int8.tflite --runs 8 --min-seconds 0 "
                  "--warmup 1 --warmup-seconds 0 --no-energy")  # fmt: skip
        else:
            state = (args.state or state_dir()).resolve()
            pid = _board_pid(state)
            Board(state, 0).stop()
            say(f"stopped the board (pid {pid})" if pid else f"no board running with the state folder {state}")
    except BoardUnavailable as exc:
        print(f"arm64-board: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
