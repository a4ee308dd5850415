"""A SIGKILLed `edgerun lab run` leaves none of its job's processes running.

The lab runs as its own process in its own session, as a user runs it; only the lab
process is killed (not its group), mid-benchmark. The bench it started (a `python -m
edgerun.cli bench` in a session of its own, and that bench's worker in another) must then
go by itself: nothing else would kill them, and a leftover worker loads the machine under
the next run's timings. Processes are found by walking /proc; the waits are polls with a
bound, not fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tool_modules import target_devices

devices = target_devices()
DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="walks /proc (Linux)")

# A job that would run for minutes: long enough that it is surely still running when the lab is killed.
PLAN = """
[lab]
name = "kill-children"
repetitions = 1

[bench]
runs = 10000000
min_seconds = 120
max_seconds = 120
warmup = 2
warmup_seconds = 0
no_energy = true

[[artifact]]
path = "{artifact}"

[targets.here]
url = "local"
"""


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a live process, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), fields[0], int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live process below ``root``."""
    parents, starts = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            parents[int(entry)], starts[int(entry)] = stat[0], stat[2]
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = starts[pid]
                frontier.append(pid)
    return found


def _alive(pid: int, start: int) -> bool:
    """The same process (not a reused pid) still runs; a zombie has finished."""
    stat = _stat(pid)
    return stat is not None and stat[2] == start and stat[1] != "Z"


def test_sigkill_of_the_lab_takes_its_bench_and_worker_with_it(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(artifact=DEMO / "digits-int8.tflite"))
    lab = subprocess.Popen(
        [sys.executable, "-m", "edgerun.cli", "lab", "run", str(plan), "--db", str(tmp_path / "lab.sqlite")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    started: dict[int, int] = {}
    try:

        def worker_running() -> bool:
            started.update(_descendants(lab.pid))
            return any("edgerun.bench.worker" in _cmdline(pid) for pid in started) or lab.poll() is not None

        assert devices.wait_for(worker_running, timeout_s=120), "the bench worker never started"
        assert lab.poll() is None, "the lab ended before it could be killed"
        started.update(_descendants(lab.pid))
        names = {pid: _cmdline(pid) for pid in started}
        assert any("edgerun.cli bench" in c for c in names.values()), names
        os.kill(lab.pid, signal.SIGKILL)  # the lab only: its children are in sessions of their own
        lab.wait(timeout=30)
        gone = devices.wait_for(lambda: not any(_alive(p, s) for p, s in started.items()), timeout_s=30)
        left = {pid: names[pid] for pid, start in started.items() if _alive(pid, start)}
        assert gone, f"still running after the lab was SIGKILLed: {left}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(lab.pid, signal.SIGKILL)
        for pid, start in started.items():  # whatever the lab left behind, so that no test suffers it
            if _alive(pid, start):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if lab.poll() is None:
            lab.wait(timeout=30)


def test_the_load_at_job_start_is_recorded_and_a_busy_device_warned_about(tmp_path: Path) -> None:
    from edgerun.cli import main
    from edgerun.lab.store import LabStore
    from edgerun.lab.target_runner import device_load, load_warning
    from edgerun.targets import open_target
    from edgerun.targets.spec import parse_target

    plan = tmp_path / "plan.toml"
    quick = PLAN.replace("runs = 10000000", "runs = 30").replace("120", "0.05") + "\n"
    plan.write_text(quick.format(artifact=DEMO / "digits-int8.tflite").replace("[bench]", "[bench]\nin_process = true"))
    assert main(["lab", "run", str(plan), "--db", str(tmp_path / "lab.sqlite"), "-q"]) == 0
    store = LabStore(tmp_path / "lab.sqlite")
    (row,) = store.results()
    store.close()
    load = row.result["load_at_start"]
    assert load["cpus"] >= 1 and len(load["loadavg"]) == 3 and 0 <= load["cpu_busy_pct"] <= 100

    # Every CPU spinning in other processes: the device reads as busy, and the job would be warned about.
    if len(os.sched_getaffinity(0)) < load["cpus"]:
        pytest.skip("this process may use only some of the CPUs /proc/stat counts: it cannot load them all")
    spin = [sys.executable, "-c", "while True: pass"]
    burners = [subprocess.Popen(spin) for _ in range(os.cpu_count() or 1)]
    try:
        busy = device_load(open_target(parse_target("local")))
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
    assert busy is not None and busy["cpu_busy_pct"] >= 50, busy
    assert "busy with other processes" in (load_warning(busy) or "")
