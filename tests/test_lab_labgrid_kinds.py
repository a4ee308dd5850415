"""`edgerun lab run` on labgrid places that are not plain ssh boards: a wearable (`serial tiny` over
real ser2net), a board that hangs (power-cycled through labgrid's own ``labgrid-client power``
switching tools/power_relay.py, its job retried once), and a phone (the real adb client and server
in front of tools/adb_emulator.py). A real labgrid-coordinator and labgrid-exporter on loopback
(tests/labgrid_env.py); nothing of labgrid is stood in for.
"""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as parameters)
from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from labgrid_env import labgrid_lab  # noqa: F401
from ser2net_env import Ser2net, require_ser2net
from test_lab_resources import doc_block
from tool_modules import REPO, target_devices, tool

from edgerun.cli import main
from edgerun.errors import LabError
from edgerun.lab.plan import load_plan
from edgerun.lab.store import LabStore
from edgerun.lab.wearable import dut_ready
from edgerun.serialhost import ECG_DEMO_DIR

emu_mod = tool("firmware_emulator")
relay_mod = tool("power_relay")
devices = target_devices()
ARTIFACT = ECG_DEMO_DIR / "ecg-int8.tflite"
PATIENCE_S = 60.0
TINY = (
    "tiny = {{ dataset = '{dataset}', iterations = 5, warmups = 0, perf_files = 1, timeout_s = 1.0, "
    "sync_timeout_s = 2.0 }}"
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-lab")
    emu_mod.make_dataset(ARTIFACT, root / "ecg01", n=2)
    return root


def tiny_plan(tmp_path: Path, coordinator: str, place: str, dataset: Path, extra: str = "") -> Path:
    text = (
        f'[lab]\nname = "watch-{tmp_path.name}"\ncoordinator = "{coordinator}"\n\n'
        f'[targets.watch]\nlabgrid = "{place}"\nboot_wait_s = {PATIENCE_S}\n{TINY.format(dataset=dataset)}\n{extra}'
    )
    (tmp_path / "plan.toml").write_text(text)
    return tmp_path / "plan.toml"


def stored(db: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    store = LabStore(db, create=False)
    try:
        return store.results(), store.failures()
    finally:
        store.close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def test_a_tiny_table_is_checked_and_keys_its_jobs_by_the_dataset(dataset: Path, tmp_path: Path) -> None:
    plan = load_plan(tiny_plan(tmp_path, "127.0.0.1:1", "w-1", dataset))  # no [[artifact]]: the dataset is the input
    ((target,), (job,)) = plan.targets, plan.jobs()
    assert target.tiny is not None and dict(target.tiny.options)["iterations"] == 5 and job.artifact == dataset
    assert job.describe() == f"serial tiny {dataset.name} rep 1"
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    (next(copy.rglob("*.bin"))).write_bytes(b"\0")  # other data: another job
    assert load_plan(tiny_plan(tmp_path, "127.0.0.1:1", "w-1", copy)).jobs()[0].key != job.key
    for bad, said in (
        ("iterations = 0", "tiny.iterations: Input should be greater than or equal to 1"),
        ("iterations = '5'", "tiny.iterations: Input should be a valid integer"),
        ("port = '/dev/ttyUSB0'", "tiny.port: Extra inputs are not permitted"),
    ):
        path = tiny_plan(tmp_path, "127.0.0.1:1", "w-1", dataset)
        path.write_text(path.read_text().replace("iterations = 5", bad))
        with pytest.raises(LabError, match=f"targets.watch.: {said}"):
            load_plan(path)
    path = tiny_plan(tmp_path, "127.0.0.1:1", "w-1", tmp_path / "nowhere")
    with pytest.raises(LabError, match="tiny.dataset .* is not a directory"):
        load_plan(path)


def test_a_hung_wearable_is_power_cycled_and_its_tiny_job_retried_once_by_lab_run(
    labgrid_lab: Any, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole path through `lab run`: the place's NetworkSerialPort (real ser2net) runs `serial tiny`;
    the board (its process stopped: it neither answers nor dies) times out, labgrid power-cycles the
    place's NetworkPowerPort, the job is retried once and works, and the stored result says so."""
    require_ser2net()
    lab, name = labgrid_lab, labgrid_lab.unique("wearable")
    link = tmp_path / "ttyWearable"  # stable across power cycles, like /dev/serial/by-id/
    board = [sys.executable, str(REPO / "tools" / "firmware_emulator.py"), "dut", "--link", str(link),
             "--latency-us", "800", "--boot-s", "0"]  # fmt: skip
    plan = tmp_path / "plan.toml"  # docs/lab.md's wearable plan, pointed at this lab, as written otherwise
    text = doc_block("lab-wearable-plan").replace("labserver:20408", lab.address).replace('"wearable-1"', f'"{name}"')
    plan.write_text(text.replace('"ecg-dataset"', f'"{dataset}"'))
    with relay_mod.PowerRelay([board], log_dir=tmp_path) as relay, Ser2net(link, "rfc2217") as net:
        outlet = relay.url.replace("{index}", "0").rsplit("/", 1)[0]
        lab.exporter(name, {name: {
            "NetworkSerialPort": {"host": "127.0.0.1", "port": net.port, "speed": 115200, "protocol": "rfc2217"},
            "NetworkPowerPort": {"model": "rest", "host": relay.url, "index": "0"},
        }})  # fmt: skip
        lab.add_place(name)
        dut_ready(net.url, 115200, PATIENCE_S)  # the first boot answers
        hung = int(_get(f"{outlet}/pid"))
        os.kill(hung, signal.SIGSTOP)
        db = tmp_path / "lab.sqlite"
        assert main(["lab", "run", str(plan), "--db", str(db)]) == 0
        assert _get(f"{outlet}/boots") == "2" and int(_get(f"{outlet}/pid")) != hung
        # the plan's power_off_s = 3 reached labgrid's driver (its own default is 2 s): a lower bound, it sleeps
        assert float(_get(f"{outlet}/off_s")) >= load_plan(plan).targets[0].power_off_s == 3.0
    out, err = capsys.readouterr()
    assert f"[watch@{name}] place {name} was power-cycled and the job retried once" in err
    assert "watch: 1 board(s) power-cycled and the job retried" in out
    (row,), failures = stored(db)
    assert failures == []
    result = row.result
    assert result["performance"]["runs"][0]["per_inference_ns"] == 800_000  # the rebooted board measured
    (cycle,) = result["power_cycles"]
    assert cycle["place"] == name and cycle["retry_ok"] is True and cycle["reason"].startswith("DutTimeout: ")
    assert any("power-cycled through labgrid" in w for w in result["warnings"])
    assert result["target"]["labgrid"]["place"] == name and result["dut"]["port"] == net.url
    assert lab.places()[name].acquired is None
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    assert row.columns["p50_ns"] == result["stats"]["single"]["percentiles"]["p50"]["value_ns"]  # the DUT's latency
    assert main(["lab", "report", str(db), "-o", str(tmp_path / "r.html")]) == 0  # the report reads it
    assert "power-cycled through labgrid" in (tmp_path / "r.html").read_text()


def test_tiny_on_a_place_without_a_serial_port_is_one_line_and_left(
    labgrid_lab: Any, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lab, name = labgrid_lab, labgrid_lab.unique("board")
    lab.exporter(name, {name: {"NetworkService": {"address": "127.0.0.1", "username": "me", "port": 2222}}})
    lab.add_place(name)
    db = tmp_path / "lab.sqlite"
    assert main(["lab", "run", str(tiny_plan(tmp_path, lab.address, name, dataset)), "--db", str(db)]) == 1
    said = [line for line in capsys.readouterr().out.splitlines() if "NetworkSerialPort" in line]
    assert (
        said
        and f"place {name} has no available NetworkSerialPort for `serial tiny` (it has: NetworkService)" in (said[0])
    )
    assert stored(db) == ([], []) and lab.places()[name].acquired is None


# A board on the network whose power the relay switches: a TCP forwarder in front of the loopback sshd
# (stopped with SIGSTOP it accepts connections and never answers, as a hung board's network stack can).
FORWARDER = """
import socket, sys, threading
listen, to = int(sys.argv[1]), int(sys.argv[2])
server = socket.create_server(("127.0.0.1", listen))
def pipe(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
while True:
    client, _ = server.accept()
    upstream = socket.create_connection(("127.0.0.1", to))
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"""


@pytest.mark.slow  # ~15 s: ssh's own timeouts, then labgrid-client's power cycle (its 2 s off time)
def test_a_hung_ssh_board_is_power_cycled_and_its_job_retried_once_by_lab_run(
    labgrid_lab: Any, ssh_device: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_lab_labgrid import BENCH, DEMO

    from edgerun.lab.scheduler import run_plan

    lab, name = labgrid_lab, labgrid_lab.unique("pi")
    server, port = ssh_device.server, devices.free_port()
    (tmp_path / "known_hosts").write_text(
        (server.root / "known_hosts").read_text().replace(f"]:{server.port} ", f"]:{port} ")
    )
    (tmp_path / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {server.root / 'user_key'}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {tmp_path / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
    )
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'[lab]\nname = "hung-{tmp_path.name}"\ncoordinator = "{lab.address}"\n{BENCH}\n'
        f'[[artifact]]\npath = "{DEMO / "digits-int8.tflite"}"\n\n'
        f'[targets.pi]\nlabgrid = "{name}"\nssh_config = "{tmp_path / "ssh_config"}"\n'
        f'workdir = "{server.workdir}"\nalive_interval_s = 1\nconnect_timeout_s = 2\nboot_wait_s = {PATIENCE_S}\n'
    )
    board = [sys.executable, "-c", FORWARDER, str(port), str(server.port)]
    with relay_mod.PowerRelay([board], log_dir=tmp_path) as relay:
        outlet = relay.url.replace("{index}", "0").rsplit("/", 1)[0]
        lab.exporter(name, {name: {
            "NetworkService": {"address": "127.0.0.1", "username": server.user, "port": port},
            "NetworkPowerPort": {"model": "rest", "host": relay.url, "index": "0"},
        }})  # fmt: skip
        lab.add_place(name)
        hung: list[int] = []

        def progress(who: str, line: str) -> None:
            print(f"[{who}] {line}")
            if who == f"pi@{name}" and line.endswith("job(s)") and not hung:  # identified: now it hangs
                hung.append(int(_get(f"{outlet}/pid")))
                os.kill(hung[0], signal.SIGSTOP)

        store = LabStore(tmp_path / "lab.sqlite")
        try:
            summary = run_plan(load_plan(plan), store, progress)
        finally:
            store.close()
        assert hung and _get(f"{outlet}/boots") == "2" and int(_get(f"{outlet}/pid")) != hung[0]
    assert summary.complete, capsys.readouterr().out
    assert f"place {name} was power-cycled (TargetUnreachable) and the job retried once" in capsys.readouterr().out
    (row,), failures = stored(tmp_path / "lab.sqlite")
    assert failures == [] and row.result["status"] == "ok"
    (cycle,) = row.result["power_cycles"]
    assert cycle["place"] == name and cycle["retry_ok"] is True and cycle["reason"].startswith("TargetUnreachable")
    assert any("power-cycled through labgrid" in w for w in row.result["warnings"])
    assert lab.places()[name].acquired is None


def test_a_phone_place_runs_its_job_through_the_exporter_hosts_adb_server(
    labgrid_lab: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A place whose NetworkService is named ``adb...`` (docs/lab.md's phone convention) is a phone: the lab
    runs its job over adb (the real adb client and server, tools/adb_emulator.py as the phone), never ssh."""
    if not shutil.which("adb"):
        pytest.fail("adb is not installed") if os.environ.get("CI") else pytest.skip("adb is not installed")
    from test_lab_labgrid import BENCH, DEMO

    lab, name = labgrid_lab, labgrid_lab.unique("pixel")
    server_port = devices.free_port()  # the exporter host's adb server
    phone = devices.start_adb_device(tmp_path / "sandbox", server_port)
    try:
        assert "connected to" in phone.adb("connect", phone.serial).stdout
        lab.exporter(name, {name: {"adb-pixel-8": {
            "cls": "NetworkService", "address": "127.0.0.1", "port": server_port, "username": phone.serial,
        }}})  # fmt: skip
        lab.add_place(name)
        plan = tmp_path / "plan.toml"
        plan.write_text(  # the emulator's "phone" has this machine's Python, with edgerun, as Termux would
            f'[lab]\nname = "phone-{tmp_path.name}"\ncoordinator = "{lab.address}"\n{BENCH}\n'
            f'[[artifact]]\npath = "{DEMO / "digits-int8.tflite"}"\n\n'
            f'[targets.phone]\nlabgrid = "{name}"\npython = "{sys.executable}"\nrunner = "edgerun"\n'
            'benchmark_model = "/data/local/tmp/benchmark_model"\n'  # an adb option: accepted, unused by this runner
        )
        assert main(["lab", "places", "--coordinator", lab.address]) == 0
        assert f"phone {phone.serial}@adb 127.0.0.1:{server_port}" in capsys.readouterr().out  # not an ssh board
        db = tmp_path / "lab.sqlite"
        assert main(["lab", "run", str(plan), "--db", str(db)]) == 0, capsys.readouterr()
    finally:
        phone.kill()
        devices.stop_adb_server(server_port)
    (row,), failures = stored(db)
    target = row.result["target"]
    assert failures == [] and row.result["status"] == "ok"
    assert target["kind"] == "adb" and target["emulated"] is True and target["model"] == "Google Pixel 8"
    assert target["labgrid"]["place"] == name and lab.places()[name].acquired is None
