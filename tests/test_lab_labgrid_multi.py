"""The labgrid lab when things go wrong and when it is shared: an exporter killed mid-job, two
`edgerun lab run` processes on one plan, SIGTERM, and the acceptance run of issue 14 (two exporters,
three places, SIGKILL at a point, then resume). Real labgrid-coordinator/-exporter processes
(tests/labgrid_env.py) in front of the loopback sshd; the labs run as their own processes, as users
run them; every wait is a poll with a bound, never a sleep that a result depends on.
"""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as parameters)
from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from labgrid_env import labgrid_lab  # noqa: F401
from test_lab_labgrid import DEMO, results, service, ssh_config_for_ip
from tool_modules import target_devices

from edgerun.cli import main

devices = target_devices()


def plan_for(tmp_path: Path, device, coordinator: str, board: str, repetitions: int, min_seconds: float) -> Path:  # noqa: ANN001
    cfg = ssh_config_for_ip(device, tmp_path)
    text = (
        f'[lab]\nname = "lg-{tmp_path.name}"\nrepetitions = {repetitions}\ncoordinator = "{coordinator}"\n\n'
        f"[bench]\nruns = 20\nmin_seconds = {min_seconds}\nmax_seconds = {min_seconds + 1}\nwarmup = 1\n"
        "warmup_seconds = 0\nno_energy = true\nin_process = true\n\n"
        f'[[artifact]]\npath = "{DEMO / "digits-int8.tflite"}"\n\n'
        f'[targets.pi]\nlabgrid = {{board = "{board}"}}\nssh_config = "{cfg}"\nworkdir = "{device.server.workdir}"\n'
        "alive_interval_s = 1\nconnect_timeout_s = 5\nplace_wait_s = 300\n"
    )
    (tmp_path / "plan.toml").write_text(text)
    return tmp_path / "plan.toml"


def places_on_exporters(lab, device, board: str, per_exporter: tuple[int, ...]) -> tuple[list[str], list]:  # noqa: ANN001
    """Exporters each exporting ``n`` places' NetworkServices (all the loopback sshd), tagged ``board``."""
    names, exporters = [], []
    for n in per_exporter:
        groups = {lab.unique(board): service(device) for _ in range(n)}
        exporters.append(lab.exporter(lab.unique("exp"), groups))
        for name in groups:
            lab.add_place(name, tags={"board": board})
        names += list(groups)
    return names, exporters


def start_lab(plan: Path, db: Path, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edgerun.cli", "lab", "run", str(plan), "--db", str(db)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # Ctrl-C as a terminal gives it: a shell without job control starts background commands with
            # SIGINT ignored (POSIX), and Python keeps an ignored SIGINT, so the Ctrl-C case would never fire
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )  # fmt: skip


def query(db: Path, sql: str) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return []


def held(lab, names: list[str]) -> dict[str, str]:  # noqa: ANN001
    places = lab.places()
    return {n: places[n].acquired for n in names if places[n].acquired}


def test_exporter_killed_mid_job_fails_that_job_the_lab_goes_on_resume_finishes(
    labgrid_lab, ssh_device, tmp_path: Path
) -> None:  # noqa: ANN001
    lab = labgrid_lab
    board = lab.unique("exk").replace("-", "_")
    names, exporters = places_on_exporters(lab, ssh_device, board, (1, 1))
    # 2 jobs of >= 2 s each (min_seconds): the first job a place claims is still running when its exporter
    # is killed right after the claim is seen (the claim comes before the job's load reading, staging and bench).
    plan, db, log = (
        plan_for(tmp_path, ssh_device, lab.address, board, 2, 2.0),
        tmp_path / "lab.sqlite",
        tmp_path / "1.log",
    )
    proc = start_lab(plan, db, log)
    try:
        assert devices.wait_for(lambda: query(db, "SELECT place FROM claims") or proc.poll() is not None, 120)
        assert proc.poll() is None, log.read_text()
        ((victim,),) = query(db, "SELECT place FROM claims LIMIT 1")
        exporters[names.index(victim)].kill()
        assert proc.wait(timeout=180) == 1, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert f"went away during a job: place {victim} lost its NetworkService" in text, text
    survivor = next(n for n in names if n != victim)
    rows = results(db)
    assert len(rows) == 1 and {r.result["target"]["labgrid"]["place"] for r in rows} == {survivor}, text
    (failure,) = query(db, "SELECT job_key FROM failures")
    assert failure[0] not in {r.job_key for r in rows}
    assert held(lab, names) == {}, "both places released"

    exporters[names.index(victim)].restart()
    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # resume: the failed job, once
    after = results(db)
    assert len(after) == 2 and len({r.job_key for r in after}) == 2 and failure[0] in {r.job_key for r in after}
    assert held(lab, names) == {}


def test_two_labs_on_one_plan_run_every_job_once(labgrid_lab, ssh_device, tmp_path: Path) -> None:  # noqa: ANN001
    lab = labgrid_lab
    board = lab.unique("two").replace("-", "_")
    names, _ = places_on_exporters(lab, ssh_device, board, (2, 1))
    plan, db = plan_for(tmp_path, ssh_device, lab.address, board, 4, 0.02), tmp_path / "lab.sqlite"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start_lab(plan, db, log) for log in logs]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    texts = [log.read_text() for log in logs]
    assert codes == [0, 0], texts
    done_line = re.compile(r"^\[pi@\S+\] \d+/\d+ digits-int8\.tflite rep \d+: (PASS|FAIL|NOT-VALID|ERROR)")
    ran = [line for t in texts for line in t.splitlines() if done_line.match(line)]
    assert len(ran) == 4, f"each job run once across both labs: {ran}"
    rows = results(db)
    assert len(rows) == 4 and len({r.job_key for r in rows}) == 4
    assert query(db, "SELECT count(*) FROM failures") == [(0,)]
    assert query(db, "SELECT count(*) FROM claims") == [(0,)] and query(db, "SELECT count(*) FROM leases") == [(0,)]
    assert held(lab, names) == {}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_and_ctrl_c_release_the_places(labgrid_lab, ssh_device, tmp_path: Path, sig: int) -> None:  # noqa: ANN001
    lab = labgrid_lab
    board = lab.unique("term").replace("-", "_")
    names, _ = places_on_exporters(lab, ssh_device, board, (2,))
    plan, db, log = plan_for(tmp_path, ssh_device, lab.address, board, 4, 3.0), tmp_path / "lab.sqlite", tmp_path / "l"
    proc = start_lab(plan, db, log)
    try:
        assert devices.wait_for(lambda: query(db, "SELECT place FROM claims") or proc.poll() is not None, 120)
        assert len(held(lab, names)) >= 1 and proc.poll() is None, log.read_text()
        proc.send_signal(sig)  # the lab only (`kill PID`, or Ctrl-C's SIGINT), mid-job
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert held(lab, names) == {}, log.read_text()
    assert query(db, "SELECT count(*) FROM leases") == [(0,)]


def test_sigkill_leaves_places_acquired_the_next_run_releases_and_finishes(
    labgrid_lab, ssh_device, tmp_path: Path
) -> None:  # noqa: ANN001, E501
    lab = labgrid_lab
    board = lab.unique("kill").replace("-", "_")
    names, _ = places_on_exporters(lab, ssh_device, board, (2,))
    plan, db, log = plan_for(tmp_path, ssh_device, lab.address, board, 2, 0.02), tmp_path / "lab.sqlite", tmp_path / "l"
    proc = start_lab(plan, db, log)
    try:
        assert devices.wait_for(lambda: query(db, "SELECT place FROM claims") or proc.poll() is not None, 120)
        assert proc.poll() is None, log.read_text()
        os.killpg(proc.pid, signal.SIGKILL)  # no Python code runs: nothing is released
    finally:
        proc.wait(timeout=60)
    leftover = held(lab, names)
    assert leftover and set(leftover) <= {r[0] for r in query(db, "SELECT place FROM leases")}
    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # releases the dead lab's places, re-acquires
    assert len({r.job_key for r in results(db)}) == 2
    assert held(lab, names) == {} and query(db, "SELECT count(*) FROM leases") == [(0,)]


@pytest.mark.slow
def test_acceptance_two_exporters_three_places_sigkill_then_resume(labgrid_lab, ssh_device, tmp_path: Path) -> None:  # noqa: ANN001
    """Issue 14's acceptance: every job exactly once, jobs on different places overlapping in time
    (the stored start/finish stamps), and a SIGKILL followed by a resume loses and duplicates
    nothing and leaves no place acquired. Killed twice: as soon as a place is leased (while it is
    being acquired, before any job), and mid-run with results stored and jobs in flight."""
    lab = labgrid_lab
    board = lab.unique("acc").replace("-", "_")
    names, _ = places_on_exporters(lab, ssh_device, board, (2, 1))
    plan, db = plan_for(tmp_path, ssh_device, lab.address, board, 9, 1.5), tmp_path / "lab.sqlite"
    stored = lambda: len(query(db, "SELECT job_key FROM results"))  # noqa: E731
    leased = lambda: len(query(db, "SELECT place FROM leases"))  # noqa: E731
    for point, reached in (("a place leased", leased), ("3 results stored", lambda: stored() >= 3)):
        log = tmp_path / f"{point}.log"
        proc = start_lab(plan, db, log)
        try:
            got = devices.wait_for(lambda: reached() or proc.poll() is not None, 300)  # noqa: B023
            assert got and proc.poll() is None, f"{point}: {log.read_text()}"
            os.killpg(proc.pid, signal.SIGKILL)  # the lab and everything it started
        finally:
            proc.wait(timeout=60)
        assert query(db, "SELECT count(*) FROM leases")[0][0] >= 1, point
    before = query(db, "SELECT job_key, created_utc, result_json FROM results ORDER BY job_key")
    assert 3 <= len(before) < 9
    assert held(lab, names), "the killed lab left its places acquired (the coordinator keeps them)"

    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # resume: releases, re-acquires, finishes
    after = query(db, "SELECT job_key, created_utc, result_json FROM results ORDER BY job_key")
    assert len(after) == 9 and len({r[0] for r in after}) == 9
    assert set(before) <= set(after), "results stored before the kill were kept as they were"
    assert held(lab, names) == {} and query(db, "SELECT count(*) FROM leases") == [(0,)]
    assert query(db, "SELECT count(*) FROM claims") == [(0,)]
    spans = [
        (b["place"], b["started_utc"], b["finished_utc"]) for b in (r.result["target"]["labgrid"] for r in results(db))
    ]
    assert len({s[0] for s in spans}) >= 2, spans
    overlapping = [(a, b) for a in spans for b in spans if a[0] < b[0] and a[1] < b[2] and b[1] < a[2]]
    assert overlapping, f"no two jobs on different places overlapped in time: {spans}"
