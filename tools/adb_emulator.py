"""An Android device emulator for the real ``adb`` client: the ADB transport protocol on loopback.

    python tools/adb_emulator.py --fixture tests/fixtures/targets/android --sandbox /tmp/phone [--port 0]
    adb connect 127.0.0.1:PORT && adb -s 127.0.0.1:PORT shell getprop ro.product.model

What it speaks (AOSP ``packages/modules/adb/protocol.txt``, ``SERVICES.TXT``, ``SYNC.TXT``;
``file_sync_protocol.h``, ``shell_protocol.h``): the 24-byte message header (command,
arg0, arg1, length, checksum, magic) with CNXN / OPEN / OKAY / WRTE / CLSE, one WRTE in
flight per stream until the peer's OKAY; no AUTH (like a device with ``ro.adb.secure=0``).
Services: ``shell,v2,...:CMD`` (shell protocol v2: stdout, stderr and exit packets),
legacy ``shell:CMD`` (``--legacy-shell``, as before Android 7: output on a pty, so "\\n"
becomes "\\r\\n", and no exit status: the client exits 0 whatever the command did), and
``sync:`` with STAT, LIST, SEND (+DATA/DONE), RECV and QUIT.

The "device" is a sandbox directory, a copy of the fixture tree: device paths under
``/data``, ``/sys``, ``/sdcard``, ``/system`` and ``/vendor`` map into it, both for sync and
inside shell command lines (rewritten before ``/bin/sh -c`` runs them, with the sandbox
as the working directory and ``/system/bin`` first on PATH). Other paths (``/proc``,
``/tmp``, ``/usr``) are this machine's, so a Python on this machine can stand in for a
device's Python (Termux). The fixture's ``system/bin`` holds stand-ins for ``getprop``,
``dumpsys`` and ``taskset``, and tests push stand-ins for the benchmark binaries that
print recorded output (tests/fixtures/targets/README.md says where each comes from).

The emulator says it is one, as the Android emulator does: ``ro.kernel.qemu`` and
``ro.boot.qemu`` are 1 (added to the sandbox's properties), so a result from it is marked
emulated (edgerun.targets.adb) instead of passing for the phone whose name it borrows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import struct
import sys
from pathlib import Path

A_CNXN, A_OPEN, A_OKAY, A_CLSE, A_WRTE, A_AUTH = 0x4E584E43, 0x4E45504F, 0x59414B4F, 0x45534C43, 0x45545257, 0x48545541
A_VERSION = 0x01000001  # from this version on, the checksum may be skipped
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
HEADER = struct.Struct("<6I")
SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT = 1, 2, 3
DEVICE_ROOTS = ("data", "sys", "sdcard", "system", "vendor")
_DEVICE_PATH = re.compile(rf"(?<![\w.~-])/(?=(?:{'|'.join(DEVICE_ROOTS)})(?:/|\b))")


def read_props(path: Path) -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        m = re.match(r"\[(.+?)\]: \[(.*)\]$", line.strip())
        if m:
            props[m.group(1)] = m.group(2)
    return props


class Stream:
    """One open service: our id, the host's id, and flow control (one WRTE until the host's OKAY)."""

    def __init__(self, conn: Connection, local_id: int, remote_id: int) -> None:
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self.ready = asyncio.Event()
        self.ready.set()
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False
        self.task: asyncio.Task[None] | None = None

    async def write(self, data: bytes) -> None:
        for at in range(0, len(data), self.conn.max_payload):
            await self.ready.wait()
            if self.closed:
                return
            self.ready.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[at : at + self.conn.max_payload])

    async def close(self) -> None:
        await self.ready.wait()  # the host must have taken our last WRTE
        if not self.closed:
            self.closed = True
            self.conn.send(A_CLSE, self.local_id, self.remote_id)


class Connection:
    """One TCP connection from the adb server: the transport and its streams."""

    def __init__(self, device: Device, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.device, self.reader, self.writer = device, reader, writer
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.max_payload = MAX_PAYLOAD

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = HEADER.pack(command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, command ^ 0xFFFFFFFF)
        self.writer.write(header + data)

    async def serve(self) -> None:
        try:
            while True:
                command, arg0, arg1, length, _, magic = HEADER.unpack(await self.reader.readexactly(HEADER.size))
                if magic != command ^ 0xFFFFFFFF:
                    return  # not adb: drop the connection, as adbd does
                await self.handle(command, arg0, arg1, await self.reader.readexactly(length) if length else b"")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for stream in self.streams.values():
                stream.closed = True
                if stream.task is not None:
                    stream.task.cancel()
            self.writer.close()

    async def handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = min(MAX_PAYLOAD, arg1)
            self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode())
        elif command == A_OPEN:
            self.open(arg0, data.rstrip(b"\0").decode("utf-8", errors="replace"))
        elif command == A_OKAY and arg1 in self.streams:
            self.streams[arg1].ready.set()
        elif command == A_WRTE and arg1 in self.streams:
            await self.streams[arg1].inbox.put(data)
            self.send(A_OKAY, arg1, arg0)
        elif command == A_CLSE and arg1 in self.streams:
            stream = self.streams.pop(arg1)
            stream.closed = True
            stream.ready.set()
            await stream.inbox.put(None)
            if stream.task is not None:  # the host hung up (adb client killed): stop the service
                stream.task.cancel()

    def open(self, remote_id: int, service: str) -> None:
        handler = self.device.handler(service)
        if handler is None:
            self.send(A_CLSE, 0, remote_id)  # refused, as adbd does for an unknown service
            return
        stream = Stream(self, self.next_id, remote_id)
        self.next_id += 1
        self.streams[stream.local_id] = stream
        self.send(A_OKAY, stream.local_id, remote_id)
        stream.task = asyncio.ensure_future(self.run_service(stream, handler))

    async def run_service(self, stream: Stream, handler) -> None:  # noqa: ANN001
        try:
            await handler(stream)
        finally:
            await stream.close()
            self.streams.pop(stream.local_id, None)


class Device:
    """The sandbox and the services on it."""

    def __init__(self, sandbox: Path, legacy_shell: bool) -> None:
        self.sandbox = sandbox.resolve()
        self.legacy_shell = legacy_shell
        self.props = read_props(self.sandbox / "system" / "getprop.txt")

    def banner(self) -> str:
        features = "" if self.legacy_shell else "shell_v2,cmd"
        keys = ("ro.product.name", "ro.product.model", "ro.product.device")
        return "device::" + "".join(f"{k}={self.props.get(k, 'edgerun-emu')};" for k in keys) + f"features={features}"

    def handler(self, service: str):  # noqa: ANN201
        if service.startswith("shell,v2,") or (service.startswith("shell:") and len(service) > len("shell:")):
            v2 = service.startswith("shell,v2,")
            if v2 and self.legacy_shell:
                return None
            command = service.split(":", 1)[1]
            return lambda stream: self.shell(stream, command, v2)
        if service == "sync:":
            return self.sync
        return None

    def host_path(self, device_path: str) -> Path:
        """A device path inside the sandbox; ValueError for one that escapes it."""
        path = (self.sandbox / device_path.lstrip("/")).resolve()
        if path != self.sandbox and self.sandbox not in path.parents:
            raise ValueError(f"{device_path}: outside the device")
        return path

    def rewrite(self, command: str) -> str:
        return _DEVICE_PATH.sub(str(self.sandbox) + "/", command)

    async def shell(self, stream: Stream, command: str, v2: bool) -> None:
        env = {
            **os.environ,
            "PATH": f"{self.sandbox}/system/bin:/usr/bin:/bin",
            "ANDROID_DATA": str(self.sandbox / "data"),
        }
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", self.rewrite(command), cwd=self.sandbox, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE if v2 else asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        pumps = [self.pump(stream, proc.stdout, SHELL_STDOUT, v2)]
        if v2:
            pumps.append(self.pump(stream, proc.stderr, SHELL_STDERR, v2))
        try:
            await asyncio.gather(*pumps)
            status = await proc.wait()
        finally:
            if proc.returncode is None:  # the host closed the stream: stop the command, as adbd does
                os.killpg(proc.pid, 9)
                await proc.wait()
        if v2 and not stream.closed:
            await stream.write(struct.pack("<BI", SHELL_EXIT, 1) + bytes([status & 0xFF]))

    @staticmethod
    async def pump(stream: Stream, pipe: asyncio.StreamReader | None, packet_id: int, v2: bool) -> None:
        while pipe is not None and not stream.closed:
            chunk = await pipe.read(32 * 1024)
            if not chunk:
                return
            if v2:
                await stream.write(struct.pack("<BI", packet_id, len(chunk)) + chunk)
            else:  # a pty's ONLCR: what old devices' adb shell did to every newline
                await stream.write(chunk.replace(b"\n", b"\r\n"))

    async def sync(self, stream: Stream) -> None:
        buf = bytearray()

        async def take(n: int) -> bytes | None:
            while len(buf) < n:
                data = await stream.inbox.get()
                if data is None:
                    return None
                buf.extend(data)
            out = bytes(buf[:n])
            del buf[:n]
            return out

        while True:
            head = await take(8)
            if head is None:
                return
            request, length = head[:4], struct.unpack("<I", head[4:])[0]
            if request == b"QUIT":
                return
            payload = await take(length)
            if payload is None:
                return
            await SyncSession(self, stream, take).dispatch(request, payload.decode("utf-8", errors="replace"))


class SyncSession:
    """The requests of the sync service (SYNC.TXT); replies go out through the stream."""

    def __init__(self, device: Device, stream: Stream, take) -> None:  # noqa: ANN001
        self.device, self.stream, self.take = device, stream, take

    async def fail(self, message: str) -> None:
        data = message.encode()
        await self.stream.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    async def dispatch(self, request: bytes, path: str) -> None:
        handlers = {b"STAT": self.stat, b"LIST": self.list, b"SEND": self.send, b"RECV": self.recv}
        handler = handlers.get(request)
        if handler is None:
            await self.fail(f"unsupported sync request {request!r}")
            return
        try:
            await handler(path)
        except (OSError, ValueError) as exc:
            await self.fail(str(exc))

    async def stat(self, path: str) -> None:
        try:
            st = self.device.host_path(path).stat()
            fields = (st.st_mode, st.st_size, int(st.st_mtime))
        except (OSError, ValueError):
            fields = (0, 0, 0)  # "no such file" is all zeros in STAT v1
        await self.stream.write(b"STAT" + struct.pack("<3I", *(f & 0xFFFFFFFF for f in fields)))

    async def list(self, path: str) -> None:
        folder = self.device.host_path(path)
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            st, name = entry.stat(), entry.name.encode()
            await self.stream.write(
                b"DENT" + struct.pack("<4I", st.st_mode, st.st_size, int(st.st_mtime), len(name)) + name
            )
        await self.stream.write(b"DONE" + struct.pack("<4I", 0, 0, 0, 0))

    async def send(self, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        target = self.device.host_path(path)
        chunks = []
        while True:
            head = await self.take(8)
            if head is None:
                return
            kind, value = head[:4], struct.unpack("<I", head[4:])[0]
            if kind == b"DONE":
                break
            if kind != b"DATA":
                await self.fail(f"expected DATA or DONE, got {kind!r}")
                return
            chunks.append(await self.take(value) or b"")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"".join(chunks))
        os.chmod(target, int(mode) & 0o7777 if mode.isdigit() else 0o644)  # adb sends st_mode in decimal
        await self.stream.write(b"OKAY" + struct.pack("<I", 0))

    async def recv(self, path: str) -> None:
        source = self.device.host_path(path)
        if not source.is_file():
            await self.fail(f"{path}: No such file or directory")
            return
        data = source.read_bytes()
        for at in range(0, len(data), SYNC_DATA_MAX):
            part = data[at : at + SYNC_DATA_MAX]
            await self.stream.write(b"DATA" + struct.pack("<I", len(part)) + part)
        await self.stream.write(b"DONE" + struct.pack("<I", 0))


EMULATOR_PROPS = {"ro.kernel.qemu": "1", "ro.boot.qemu": "1"}  # what the Android emulator sets


def mark_emulated(props_file: Path) -> None:
    """Add the emulator properties to the sandbox's getprop list (the fixture's ``getprop`` reads it)."""
    props = read_props(props_file)
    extra = "".join(f"[{k}]: [{v}]\n" for k, v in EMULATOR_PROPS.items() if k not in props)
    text = props_file.read_text() if props_file.exists() else ""
    props_file.write_text(text + ("" if not text or text.endswith("\n") else "\n") + extra)


async def serve(device: Device, port: int) -> None:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await Connection(device, reader, writer).serve()

    server = await asyncio.start_server(on_connect, "127.0.0.1", port)
    bound = server.sockets[0].getsockname()[1]
    print(f"ready 127.0.0.1:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixture", type=Path, required=True, help="device tree to copy into the sandbox")
    parser.add_argument("--sandbox", type=Path, required=True, help="the device's file system (created)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--legacy-shell", action="store_true", help="no shell protocol v2 (pre-Android 7)")
    args = parser.parse_args(argv)
    if not args.sandbox.exists():
        shutil.copytree(args.fixture, args.sandbox, symlinks=True)
        mark_emulated(args.sandbox / "system" / "getprop.txt")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(Device(args.sandbox, args.legacy_shell), args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
