"""docs/lab.md "From one host to a lab", run as written: its exporter YAML (addresses pointed at the
loopback sshd), its `labgrid-client` commands (labgrid's own CLI, against the test's coordinator), its
plan (`edgerun lab places`, `edgerun lab run`), then `edgerun lab merge` of lab databases.
"""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as parameters)
from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from labgrid_env import fresh_labgrid_lab, labgrid_lab  # noqa: F401
from test_lab_labgrid import BENCH, DEMO, results, ssh_config_for_ip

from edgerun.cli import main
from edgerun.lab.store import LabStore

DOC = (Path(__file__).resolve().parent.parent / "docs" / "lab.md").read_text(encoding="utf-8")


def block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", DOC, re.S)
    assert found, f"docs/lab.md lost its {marker} block"
    return found.group(1)


def test_the_docs_exporter_places_and_plan_run_as_written(
    fresh_labgrid_lab, ssh_device, tmp_path: Path, capsys
) -> None:  # noqa: ANN001, E501
    import yaml  # labgrid's dependency: present wherever the fresh_labgrid_lab fixture did not skip

    lab, server = fresh_labgrid_lab, ssh_device.server
    exported = yaml.safe_load(block("lab-exporter-yaml"))
    assert {r["NetworkService"]["username"] for r in exported.values()} == {"pi", "ubuntu"}
    for resources in exported.values():  # the boards' addresses -> the loopback sshd
        resources["NetworkService"].update(address="127.0.0.1", port=server.port, username=server.user)
    lab.exporter("shelf-1", exported)

    commands = block("lab-place-commands").replace("labserver:20408", lab.address)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", commands], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    places = lab.places()
    assert places["rpi5-1"].tags == {"board": "rpi5"} and places["jetson-1"].tags == {"board": "orin_nano"}

    cfg = ssh_config_for_ip(ssh_device, tmp_path)
    plan_text = (
        block("lab-labgrid-plan")
        .replace("labserver:20408", lab.address)
        .replace("models/ecg-int8.tflite", str(DEMO / "digits-int8.tflite"))
        .replace('identity_file = "~/.ssh/lab_ed25519"', f'ssh_config = "{cfg}"\nworkdir = "{server.workdir}"')
    )
    plan = tmp_path / "plan.toml"
    plan.write_text(plan_text + BENCH)
    assert main(["lab", "places", str(plan), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["targets"] == {
        "pi5": {"selector": "labgrid://?board=rpi5", "places": ["rpi5-1"]},
        "orin": {"selector": "labgrid://jetson-1", "places": ["jetson-1"]},
    }
    db = tmp_path / "lab.sqlite"
    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0
    rows = results(db)
    assert {(r.target, r.result["target"]["labgrid"]["place"]) for r in rows} == {
        ("pi5", "rpi5-1"), ("orin", "jetson-1")
    }  # fmt: skip
    assert all(p.acquired is None for p in lab.places().values())

    # lab merge: this database and another lab host's (here: a copy, so every job is in both)
    other = tmp_path / "shelf-2.sqlite"
    shutil.copy(db, other)
    merged = tmp_path / "all.sqlite"
    assert main(["lab", "merge", str(merged), str(db), str(other)]) == 0
    out = capsys.readouterr()
    assert "2 result(s)" in out.out and "2 job(s) already in an earlier input" in out.err
    store = LabStore(merged, create=False)
    try:
        assert sorted(r.job_key for r in store.results()) == sorted(r.job_key for r in rows)
        assert [r["run_id"] for r in store.runs()] == [1, 2]  # renumbered: one run from each input
    finally:
        store.close()
    with sqlite3.connect(merged) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert main(["lab", "merge", str(merged), str(db), str(other)]) == 1  # never over an existing file
    assert "exists" in capsys.readouterr().err
