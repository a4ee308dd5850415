"""`edgerun lab run` over a local and a loopback-ssh target: SIGKILL mid-run, then resume.

The lab runs as its own process (as a user runs it); it is killed with SIGKILL, its
whole process group, once a few results are stored. The database must then hold only
whole results, and a second run must finish the plan without redoing any of them.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tool_modules import target_devices

from edgerun.cli import main
from edgerun.lab.store import LabStore

devices = target_devices()
HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "edgerun" / "demo"


BENCH = """
[bench]
runs = 60
min_seconds = 0.05
warmup = 2
warmup_seconds = 0
no_energy = true
in_process = true
"""


def _plan(
    tmp_path: Path, targets: str, repetitions: int = 2, artifacts: tuple[str, ...] = ("int8.onnx", "int8.tflite")
):
    paths = "".join(f'\n[[artifact]]\npath = "{DEMO / ("digits-" + a)}"\n' for a in artifacts)
    text = f'[lab]\nname = "kill-test"\nrepetitions = {repetitions}\n{BENCH}{paths}\n{targets}'
    (tmp_path / "plan.toml").write_text(text)
    return tmp_path / "plan.toml"


def _rows(db: Path) -> list[tuple[str, int, str, str]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT job_key, run_id, created_utc, result_json FROM results ORDER BY job_key").fetchall()


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM results").fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(ssh_device, tmp_path: Path) -> None:
    ssh = ssh_device.server
    targets = (
        '[targets.here]\nurl = "local"\n\n'
        f'[targets.loopback]\nurl = "ssh://edgerun-loopback"\nssh_config = "{ssh.ssh_config}"\n'
        f'workdir = "{ssh.workdir}"\n'
    )
    # 8 jobs, 4 per device run one after another: killed at 2 stored, the lab cannot have finished the other 6
    # (at least 4 more benchmarks and their ssh round trips) in the 0.1 s between a poll and the kill.
    plan, db = _plan(tmp_path, targets, repetitions=2), tmp_path / "lab.sqlite"
    lab = subprocess.Popen(
        [sys.executable, "-m", "edgerun.cli", "lab", "run", str(plan), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        assert devices.wait_for(lambda: _count(db) >= 2 or lab.poll() is not None, timeout_s=60), "no results came"
        assert lab.poll() is None, f"the lab finished before it could be killed: {lab.stdout.read()!r}"
        os.killpg(lab.pid, signal.SIGKILL)  # the lab and everything it started, mid-job
    finally:
        lab.wait(timeout=30)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    before = _rows(db)
    assert 2 <= len(before) < 8
    assert all(json.loads(r[3])["status"] == "ok" for r in before), "only whole results are stored"

    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # resume: finishes the plan
    after = _rows(db)
    assert len(after) == 8 and len({r[0] for r in after}) == 8
    assert set(before) <= set(after), "results stored before the kill were kept as they were, not redone"
    store = LabStore(db)
    results = store.results()
    assert {(r.target, r.columns["artifact"]) for r in results} == {
        (t, a) for t in ("here", "loopback") for a in ("digits-cnn-int8-onnx", "digits-cnn-int8-tflite")
    }
    assert {r.result["target"]["kind"] for r in results} == {"local", "ssh"}
    assert [r["jobs_total"] for r in store.runs()] == [8, 8]
    store.close()
    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # nothing left: nothing redone
    assert _rows(db) == after


def test_an_unreachable_device_leaves_its_jobs_for_the_next_run(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    gone = devices.free_port()
    targets = f'[targets.here]\nurl = "local"\n\n[targets.gone]\nurl = "ssh://127.0.0.1:{gone}?connect_timeout_s=2"\n'
    plan, db = _plan(tmp_path, targets, repetitions=1, artifacts=("int8.tflite",)), tmp_path / "lab.sqlite"
    assert main(["lab", "run", str(plan), "--db", str(db)]) == 1
    out = capsys.readouterr()
    assert "1 run now, 1 left" in out.out and "gone: TargetUnreachable" in out.out
    assert "[here] 1/1 digits-int8.tflite rep 1:" in out.err
    store = LabStore(db)
    assert [r.target for r in store.results()] == ["here"]
    store.close()
