#!/usr/bin/env python3
"""A network power switch whose outlets power *processes*: a board that can be switched off and on.

It speaks the HTTP interface of labgrid's ``rest`` power backend (labgrid/driver/power/rest.py):
``GET /outlet/<index>/value`` answers ``1`` (on) or ``0`` (off); ``PUT`` with the body ``1`` or
``0`` switches. So an exporter can export it as a ``NetworkPowerPort``::

    NetworkPowerPort:
      model: rest
      host: 'http://127.0.0.1:PORT/outlet/{index}/value'
      index: 0

and ``labgrid-client power cycle`` (labgrid's ``NetworkPowerDriver``) switches it.

An outlet's load is a command line. On: the command starts in a session of its own. Off: the
whole process group gets SIGKILL, as a board loses power (a stopped, hung process included), and
the switch waits until it is gone. The processes die with the switch (``setpriv --pdeathsig``).

Test seams, beside the rest interface: ``GET /outlet/<index>/pid`` (the running load's pid, or
empty), ``GET /outlet/<index>/boots`` (how many times it was switched on) and ``GET
/outlet/<index>/off_s`` (how long, in seconds, it was last off: from the moment its load was gone
to the next switch on; empty before the first off-and-on).

By hand::

    python tools/power_relay.py --outlet "python tools/firmware_emulator.py dut --link /tmp/wearable"
    # prints http://127.0.0.1:PORT/outlet/{index}/value ; Ctrl-C switches everything off

In tests: ``relay = PowerRelay([argv]).start()`` ... ``relay.url`` ... ``relay.close()``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_PATH = re.compile(r"^/outlet/(\d+)/(value|pid|boots|off_s)$")


def _die_with_parent() -> list[str]:
    """``setpriv --pdeathsig KILL``: the load dies with the switch. Not a ``preexec_fn``: Python code
    between fork and exec can deadlock or crash in a process with other threads (gRPC's, in the tests)."""
    return ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class _Worker:
    """One long-lived thread that runs the switching (see ``Outlet.switch``)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], None], threading.Event, list[BaseException]]] = queue.Queue()
        threading.Thread(target=self._serve, name="power-relay-switch", daemon=True).start()

    def _serve(self) -> None:
        while True:
            job, done, errors = self._jobs.get()
            try:
                job()
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                errors.append(exc)
            done.set()

    def call(self, job: Callable[[], None]) -> None:
        done, errors = threading.Event(), []  # type: ignore[var-annotated]
        self._jobs.put((job, done, errors))
        done.wait()
        if errors:
            raise errors[0]


_WORKER = _Worker()


class Outlet:
    """One switched load: a command that runs while the outlet is on."""

    def __init__(self, argv: list[str], log: Path | None = None) -> None:
        self.argv, self.log = argv, log
        self.process: subprocess.Popen[bytes] | None = None
        self.boots = 0
        self.last_off_s: float | None = None  # seconds between the last switch off (load gone) and on
        self._off_at: float | None = None
        self._lock = threading.Lock()

    @property
    def on(self) -> bool:
        return self.process is not None

    def switch(self, on: bool) -> None:
        """Switch on or off; the work is done on the switch's one worker thread, because a child's
        PR_SET_PDEATHSIG fires when the *thread* that forked it ends (an HTTP handler thread would
        kill the board as soon as its request was answered)."""
        _WORKER.call(lambda: self._switch(on))

    def _switch(self, on: bool) -> None:
        with self._lock:
            if on and self.process is None:
                out = self.log.open("ab") if self.log else subprocess.DEVNULL
                self.process = subprocess.Popen(
                    [*_die_with_parent(), *self.argv], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, start_new_session=True,
                )  # fmt: skip
                self.boots += 1
                if self._off_at is not None:
                    self.last_off_s = time.monotonic() - self._off_at
            elif not on and self.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                self.process = None
                self._off_at = time.monotonic()  # before the answer: a driver's off time starts after it

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class PowerRelay:
    """The switch: outlets 0..n-1 and an HTTP server on 127.0.0.1 (``port`` 0: a free one)."""

    def __init__(self, loads: list[list[str]], port: int = 0, log_dir: Path | None = None, on: bool = True) -> None:
        self.outlets = [Outlet(argv, log_dir / f"outlet-{i}.log" if log_dir else None) for i, argv in enumerate(loads)]
        self._on = on
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet: a test's output stays readable
                pass

            def _outlet(self) -> tuple[Outlet, str] | None:
                m = _PATH.match(self.path)
                if m is None or int(m.group(1)) >= len(relay.outlets):
                    self._reply(404, f"no such outlet: {self.path}")
                    return None
                return relay.outlets[int(m.group(1))], m.group(2)

            def _reply(self, status: int, text: str) -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                found = self._outlet()
                if found is not None:
                    outlet, what = found
                    value = {
                        "value": "1" if outlet.on else "0",
                        "pid": str(outlet.pid or ""),
                        "boots": str(outlet.boots),
                        "off_s": "" if outlet.last_off_s is None else f"{outlet.last_off_s:.3f}",
                    }
                    self._reply(200, value[what])

            def do_PUT(self) -> None:  # noqa: N802
                found = self._outlet()
                if found is None:
                    return
                outlet, what = found
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).strip()
                if what != "value" or body not in (b"0", b"1"):
                    self._reply(400, "PUT /outlet/<index>/value with the body 0 or 1")
                    return
                outlet.switch(body == b"1")
                self._reply(200, body.decode())

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, name="power-relay", daemon=True)

    @property
    def url(self) -> str:
        """What a ``NetworkPowerPort`` of model ``rest`` takes as ``host``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/outlet/{{index}}/value"

    def start(self) -> PowerRelay:
        if self._on:
            for outlet in self.outlets:
                outlet.switch(True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        for outlet in self.outlets:
            outlet.switch(False)

    def __enter__(self) -> PowerRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outlet", action="append", required=True, metavar="COMMAND",
                    help="a load: the command line it runs while on (repeat for outlets 1, 2, ...)")  # fmt: skip
    ap.add_argument("--port", type=int, default=0, help="HTTP port on 127.0.0.1 (default: a free one)")
    ap.add_argument("--off", action="store_true", help="start with every outlet off")
    args = ap.parse_args(argv)
    relay = PowerRelay([shlex.split(c) for c in args.outlet], args.port, on=not args.off)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    relay.start()
    print(relay.url, flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
