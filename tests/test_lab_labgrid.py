"""`edgerun lab run` on labgrid places: a real labgrid-coordinator and labgrid-exporter on loopback
(tests/labgrid_env.py) exporting NetworkServices that point at the loopback sshd (the session's ssh
device, edgerun set up there). No stand-in for labgrid: places are reserved, acquired and released
through the coordinator, and what it says afterwards is what the tests check.
"""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as parameters)
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from labgrid_env import labgrid_lab  # noqa: F401
from tool_modules import target_devices

from edgerun.cli import main
from edgerun.lab.store import LabStore

devices = target_devices()
DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"

BENCH = """
[bench]
runs = 40
min_seconds = 0.02
warmup = 2
warmup_seconds = 0
no_energy = true
in_process = true
"""


def ssh_config_for_ip(device, tmp_path: Path) -> Path:  # noqa: ANN001
    """An ssh_config for the address the exporter announces (127.0.0.1), as a lab host has for its boards."""
    root = device.server.root
    path = tmp_path / "ssh_config"
    path.write_text(
        f"Host 127.0.0.1\n  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
    )
    return path


def service(device) -> dict:  # noqa: ANN001
    return {"NetworkService": {"address": "127.0.0.1", "username": device.server.user, "port": device.server.port}}


def write_plan(tmp_path: Path, device, coordinator: str, select: str, repetitions: int = 1, extra: str = "") -> Path:  # noqa: ANN001
    cfg = ssh_config_for_ip(device, tmp_path)
    text = (
        f'[lab]\nname = "lg-{tmp_path.name}"\nrepetitions = {repetitions}\ncoordinator = "{coordinator}"\n{BENCH}\n'
        f'[[artifact]]\npath = "{DEMO / "digits-int8.tflite"}"\n\n'
        f'[targets.pi]\nlabgrid = {select}\nssh_config = "{cfg}"\nworkdir = "{device.server.workdir}"\n'
        f"alive_interval_s = 1\nconnect_timeout_s = 5\n{extra}"
    )
    (tmp_path / "plan.toml").write_text(text)
    return tmp_path / "plan.toml"


def results(db: Path) -> list:
    store = LabStore(db, create=False)
    try:
        return store.results()
    finally:
        store.close()


def test_acquire_run_release_on_a_place_picked_by_tags(labgrid_lab, ssh_device, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    lab = labgrid_lab
    place = lab.unique("rpi")
    board = lab.unique("rpi5")  # a tag no other test's places carry, nor a repetition's (pytest --count)
    lab.exporter(lab.unique("exp"), {place: service(ssh_device)})
    lab.add_place(place, tags={"board": board})
    plan = write_plan(tmp_path, ssh_device, lab.address, f'{{board = "{board}"}}', repetitions=2)
    db = tmp_path / "lab.sqlite"
    assert main(["lab", "run", str(plan), "--db", str(db)]) == 0
    err = capsys.readouterr().err
    assert f"[pi@{place}] 2/2 digits-int8.tflite rep 2:" in err and f"released place {place}" in err
    rows = results(db)
    assert len(rows) == 2 and {r.result["target"]["labgrid"]["place"] for r in rows} == {place}
    block = rows[0].result["target"]["labgrid"]
    assert block["coordinator"] == lab.address and block["identity"].count("/") == 1
    assert block["started_utc"] < block["finished_utc"]
    assert rows[0].result["target"]["kind"] == "ssh" and rows[0].result["status"] == "ok"
    assert lab.places()[place].acquired is None, "the place was released"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # all done: nothing reserved or rerun
    assert len(results(db)) == 2


def test_a_place_held_by_someone_else_is_waited_for_then_its_jobs_are_skipped(
    labgrid_lab,
    ssh_device,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    lab = labgrid_lab
    place = lab.unique("held")
    lab.exporter(lab.unique("exp"), {place: service(ssh_device)})
    lab.add_place(place)
    lab.hold(place, user="colleague")
    wait_s = 1.5
    plan = write_plan(tmp_path, ssh_device, lab.address, f'"{place}"', extra=f"place_wait_s = {wait_s}\n")
    db = tmp_path / "lab.sqlite"
    import time

    start = time.monotonic()
    assert main(["lab", "run", str(plan), "--db", str(db)]) == 1
    assert time.monotonic() - start >= wait_s, "gave up before the configured wait was over"
    out = capsys.readouterr()
    assert f"came free within place_wait_s = {wait_s:g} s" in out.out and f"{place} by " in out.out
    assert "1 job(s) skipped" in out.out
    assert lab.places()[place].acquired.endswith("/colleague"), "the colleague's place was left alone"
    assert results(db) == []
    store = LabStore(db, create=False)
    (failure,) = store.failures()
    store.close()
    assert failure["error_type"] == "PlaceBusy" and "colleague" in failure["message"]
    lab.free(place)
    assert main(["lab", "run", str(plan), "--db", str(db), "-q"]) == 0  # free now: the next run does it
    assert [r.result["target"]["labgrid"]["place"] for r in results(db)] == [place]


def test_no_matching_place_and_no_coordinator_are_one_line_each(
    labgrid_lab, ssh_device, tmp_path: Path, capsys, monkeypatch
) -> None:  # noqa: ANN001
    plan = write_plan(tmp_path, ssh_device, labgrid_lab.address, '{board = "nosuchboard"}')
    assert main(["lab", "run", str(plan), "--db", str(tmp_path / "a.sqlite")]) == 1
    assert "no place on coordinator" in capsys.readouterr().out
    text = plan.read_text().replace(f'coordinator = "{labgrid_lab.address}"\n', "")
    plan.write_text(text)
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    assert main(["lab", "run", str(plan), "--db", str(tmp_path / "b.sqlite")]) == 1  # a LabError, before any job
    assert "LG_COORDINATOR" in capsys.readouterr().err
    assert not (tmp_path / "b.sqlite").exists() or results(tmp_path / "b.sqlite") == []
    monkeypatch.setenv("LG_COORDINATOR", f"127.0.0.1:{devices.free_port()}")  # nothing listens there
    assert main(["lab", "run", str(plan), "--db", str(tmp_path / "c.sqlite")]) == 1
    assert "cannot connect" in capsys.readouterr().out


def test_lab_places_lists_the_coordinator_and_what_a_plan_uses(labgrid_lab, ssh_device, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    lab = labgrid_lab
    place, board = lab.unique("listed"), lab.unique("board")  # a tag only this run's place carries
    lab.exporter(lab.unique("exp"), {place: service(ssh_device)})
    lab.add_place(place, tags={"board": board})
    plan = write_plan(tmp_path, ssh_device, lab.address, f'{{board = "{board}"}}')
    assert main(["lab", "places", str(plan), "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    (mine,) = [p for p in view["places"] if p["name"] == place]
    assert mine["targets"] == ["pi"] and mine["acquired"] is None and mine["tags"] == {"board": board}
    (res,) = mine["resources"]
    assert res["cls"] == "NetworkService" and res["avail"] and res["params"]["port"] == ssh_device.server.port
    assert res["broken"] is None
    assert view["targets"]["pi"] == {"selector": f"labgrid://?board={board}", "places": [place]}
    assert main(["lab", "places", "--coordinator", lab.address]) == 0
    table = capsys.readouterr().out
    assert place in table and f"@127.0.0.1:{ssh_device.server.port}" in table
