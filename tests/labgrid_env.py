"""A real labgrid lab on loopback for the tests: ``labgrid-coordinator`` and ``labgrid-exporter``
processes (labgrid's own programs, no stand-ins) on ephemeral ports, killed with the test.

Use it in a test module::

    from labgrid_env import labgrid_lab  # noqa: F401  (the module-scoped fixture)

    def test_x(labgrid_lab):
        lab = labgrid_lab                         # a LabgridEnv: one coordinator per test module
        lab.address                               # "127.0.0.1:PORT", what LG_COORDINATOR would hold
        name = lab.unique("pi")                   # a place/group name no other test of the module uses
        exp = lab.exporter("exp-a", {name: {"NetworkService": {"address": "127.0.0.1",
                                                               "username": "me", "port": 2222}}})
        lab.add_place(name, tags={"board": "rpi5"})   # matches */NAME/* (the group of that name)
        lab.places()[name]                        # labgrid.remote.common.Place, as the coordinator has it
        exp.kill(); exp.restart()                 # the exporter host goes away and comes back
        lab.coordinator.expect("text")            # an Event, set when the coordinator prints a line with it
        with lab.session(user="bob") as c: ...  # an edgerun LabgridClient (c.acquire, c.rpc(...))

Or without pytest: ``env = LabgridEnv.start(tmp_dir)`` ... ``env.stop()``.

- ``exporter(name, resources)`` writes the exporter YAML (``resources`` is what the YAML file
  holds: group -> resource class -> arguments; see labgrid's "Exporter configuration") to
  ``<root>/<name>.yaml`` and returns once labgrid-exporter printed "Exporter ready".
- ``add_place(name, matches=None, tags=None)``: AddPlace, AddPlaceMatch (default ``*/NAME/*``)
  and SetPlaceTags through labgrid's client library, as ``labgrid-client create / add-match /
  set-tags`` do.
- ``hold(place)``: another client (a different ``LG_USERNAME``) acquires the place, as a
  colleague would; ``free(place)`` releases it (``release --kick``).
- Every process runs in its own process group with ``setpriv --pdeathsig`` (a killed pytest
  takes them along); ``stop()`` and the fixture's teardown SIGKILL each group by its id.
  Their stdout/stderr is drained into ``<root>/<name>.log`` (the coordinator prints every
  request: an undrained pipe would block it).

``labgrid_missing_reason()`` says why the lab cannot run here (labgrid not installed); under
``CI`` the fixture fails instead of skipping.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0


def _tool(name: str) -> str | None:
    """The labgrid program beside this Python (the venv's), else on PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def labgrid_missing_reason() -> str | None:
    try:
        import labgrid.remote.client  # noqa: F401
    except ImportError as exc:
        return f"labgrid is not installed ({exc}); pip install 'edgerun[lab]'"
    if not _tool("labgrid-coordinator") or not _tool("labgrid-exporter"):
        return "labgrid-coordinator / labgrid-exporter not found beside this Python or on PATH"
    return None


def _die_with_parent() -> list[str]:
    return ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


@dataclass
class _Proc:
    """One labgrid program in its own process group, its output drained to a log file."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    watched: list[tuple[str, threading.Event]] = field(default_factory=list)

    def expect(self, text: str) -> threading.Event:
        """An event set when a line of its output from now on contains ``text``."""
        seen = threading.Event()
        self.watched.append((text, seen))
        return seen

    def start(self, ready: re.Pattern[str]) -> re.Match[str]:
        self.lines = []
        log = (self.cwd / f"{self.name}.log").open("a")
        self.process = subprocess.Popen(
            [*_die_with_parent(), *self.argv], cwd=self.cwd, env=self.env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        found: list[re.Match[str]] = []
        seen = threading.Event()

        def drain() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                self.lines.append(line)
                del self.lines[:-200]
                for text, event in list(self.watched):
                    if text in line:
                        event.set()
                if not found and (m := ready.search(line)):
                    found.append(m)
                    seen.set()
            log.close()
            seen.set()  # the program ended: stop waiting for it

        threading.Thread(target=drain, name=f"drain-{self.name}", daemon=True).start()
        if not seen.wait(START_TIMEOUT_S) or not found:
            self.kill()
            raise RuntimeError(f"{self.name} did not become ready: {''.join(self.lines)[-1500:]}")
        return found[0]

    def kill(self) -> None:
        """SIGKILL its process group (no goodbye to the coordinator: a host that went away)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Exporter:
    """A labgrid-exporter; ``yaml`` is its resource file."""

    proc: _Proc
    yaml: Path

    def kill(self) -> None:
        self.proc.kill()

    def restart(self) -> None:
        self.proc.start(re.compile(r"Exporter ready"))

    @property
    def running(self) -> bool:
        return self.proc.running


class LabgridEnv:
    """A running coordinator (and the exporters started through it)."""

    def __init__(self, root: Path, coordinator: _Proc, address: str) -> None:
        self.root, self.coordinator, self.address = root, coordinator, address
        self.exporters: list[Exporter] = []
        self._names = itertools.count(1)

    @classmethod
    def start(cls, root: Path) -> LabgridEnv:
        root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("LG_COORDINATOR", None)
        proc = _Proc("coordinator", [_tool("labgrid-coordinator") or "", "-l", "127.0.0.1:0"], root, env)
        match = proc.start(re.compile(r"listening on (\S+):(\d+)"))
        return cls(root, proc, f"127.0.0.1:{match.group(2)}")

    def unique(self, prefix: str) -> str:
        """A name no other caller of this coordinator got (places and groups are coordinator-wide)."""
        return f"{prefix}-{next(self._names)}"

    def exporter(self, name: str, resources: dict[str, Any]) -> Exporter:
        import yaml

        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(resources, sort_keys=False))
        argv = [_tool("labgrid-exporter") or "", "-c", self.address, "--name", name, "--hostname", "127.0.0.1"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        exp = Exporter(_Proc(f"exporter-{name}", [*argv, str(path)], self.root, env), path)
        exp.restart()
        self.exporters.append(exp)
        return exp

    @contextlib.contextmanager
    def session(self, user: str | None = None) -> Iterator[Any]:
        """A client of this coordinator: ``edgerun.targets.labgrid_client.LabgridClient`` (labgrid's
        ClientSession on the process's one grpc event loop: grpc.aio fails with two loops at once,
        so the tests never open a ClientSession of their own beside the lab's). Not while another
        is open in this process, a running lab's included: the coordinator refuses a second session
        on the same connection (edgerun/targets/labgrid_client.py says why). ``user`` sets the user
        part of the identity it acquires places under."""
        from edgerun.targets.labgrid_client import LabgridClient

        client = LabgridClient(self.address, user=user)
        try:
            yield client
        finally:
            client.close()

    def add_place(self, name: str, matches: list[str] | None = None, tags: dict[str, str] | None = None) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        with self.session() as c:
            c.rpc("AddPlace", pb.AddPlaceRequest(name=name), "create")
            for pattern in matches or [f"*/{name}/*"]:
                c.rpc("AddPlaceMatch", pb.AddPlaceMatchRequest(placename=name, pattern=pattern), "add-match")
            if tags:
                c.rpc("SetPlaceTags", pb.SetPlaceTagsRequest(placename=name, tags=tags), "set-tags")

    def places(self) -> dict[str, Any]:
        with self.session() as c:
            return c.places()

    def hold(self, place: str, user: str = "colleague") -> None:
        """Another engineer acquires ``place`` (their own labgrid identity: this host, ``user``)."""
        with self.session(user=user) as c:
            c.acquire(place)

    def free(self, place: str) -> None:
        """Release ``place`` whoever holds it (``labgrid-client release --kick``)."""
        with self.session() as c:
            holder = c.places()[place].acquired
            if holder:
                c.release(place, identity=holder)

    def stop(self) -> None:
        for exp in self.exporters:
            exp.kill()
        self.coordinator.kill()


def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabgridEnv]:
    reason = labgrid_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI installs it: missing there is a broken install, not a pass
        pytest.skip(reason)
    env = LabgridEnv.start(tmp_path_factory.mktemp("labgrid"))
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(scope="module")
def labgrid_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabgridEnv]:
    """One real coordinator per test module (names from ``unique`` keep tests apart)."""
    yield from _lab(tmp_path_factory)


@pytest.fixture
def fresh_labgrid_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabgridEnv]:
    """A coordinator of the test's own, for tests that run docs/lab.md as written: its exporter, place
    and group names are fixed, so a repetition (`pytest --count N`) on a shared coordinator would find
    the last run's places and the killed exporter's resources still registered."""
    yield from _lab(tmp_path_factory)
