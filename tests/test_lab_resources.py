"""A labgrid place's resources beyond SSH, with real parts: labgrid's coordinator and exporter
(tests/labgrid_env.py), real ser2net, the firmware emulator as a wearable, labgrid's own
``labgrid-client power`` switching tools/power_relay.py (labgrid's ``rest`` power model), and
the real adb client and server in front of tools/adb_emulator.py.

- docs/lab.md's wearable YAML and commands as written: the exporter starts ser2net for the
  ``RawSerialPort`` on acquire; `edgerun serial tiny --port labgrid://PLACE` measures through it;
  ``labgrid-client power get`` reads the outlet; before the acquire, the port is refused;
- a hung board (its process stopped with SIGSTOP: it neither answers nor dies) behind ser2net
  and a ``NetworkPowerPort``: the job times out, the place is power-cycled through labgrid,
  the job is retried once and works, and the result records the power cycle;
- power is never switched on a place another identity holds;
- docs/lab.md's phone YAML: the adb server on the "exporter host" knows the phone, and the
  target built from the place runs a command on it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from labgrid_env import fresh_labgrid_lab, labgrid_lab  # noqa: F401
from ser2net_env import Ser2net, require_ser2net
from tool_modules import REPO, target_devices, tool
from waiting import wait_for

from edgerun.errors import DutTimeout, LabError, PortUnavailable
from edgerun.lab.power import LabgridPower, run_with_power_cycle
from edgerun.lab.wearable import dut_ready, tiny_job
from edgerun.serialhost import ECG_DEMO_DIR
from edgerun.serialhost.tiny import TinyConfig, run_tiny
from edgerun.targets.labgrid_resources import adb_target_url, is_adb_service, place_devices, serial_url

emu_mod = tool("firmware_emulator")
relay_mod = tool("power_relay")
devices = target_devices()
ARTIFACT = ECG_DEMO_DIR / "ecg-int8.tflite"
PATIENCE_S = 60.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-lab")
    emu_mod.make_dataset(ARTIFACT, root / "ecg01", n=2)
    return root


def acquired_devices(client: Any, place: str, want: str) -> Any:
    """The place's devices once the exporter has published ``want`` (ser2net's port comes after acquire)."""

    def ready() -> Any:
        try:
            found = place_devices(client.place_resources(place))
        except LabError:  # the NetworkSerialPort is there, its port not yet
            return None
        return found if getattr(found, want) else None

    return wait_for(ready, f"the place's {want}")


def test_mapping_of_resources_without_a_lab() -> None:
    serial = {"cls": "NetworkSerialPort", "name": "uart", "avail": True,
              "params": {"host": "lab1", "port": 4001, "speed": 921600, "protocol": "raw"}}  # fmt: skip
    assert serial_url(serial) == ("socket://lab1:4001", 921600)
    assert serial_url({**serial, "params": {"host": "lab1", "port": 4001}}) == ("rfc2217://lab1:4001", 115200)
    with pytest.raises(LabError, match="protocol 'ssh', expected rfc2217 or raw"):
        serial_url({**serial, "params": {"host": "h", "port": 1, "protocol": "ssh"}})
    with pytest.raises(LabError, match="has no host:port yet"):
        serial_url({**serial, "params": {"host": "h", "port": None}})
    phone = {
        "cls": "NetworkService",
        "name": "adb-pixel",
        "params": {"address": "lab2", "port": 5037, "username": "1A2B"},
    }
    assert is_adb_service(phone) and not is_adb_service({**phone, "name": "ssh"})
    assert adb_target_url(phone) == "adb://1A2B?server_host=lab2&server_port=5037"
    assert adb_target_url({**phone, "params": {"address": "10.0.0.7", "port": 5555, "username": ""}}) == (
        "adb://10.0.0.7:5555"
    )
    power = {"cls": "NetworkPowerPort", "name": "pdu", "params": {"model": "rest", "host": "h", "index": "0"}}
    gone = {**serial, "avail": False}
    found = place_devices([gone, power, phone])
    assert found.serial is None and found.power_resource == "pdu" and found.adb == adb_target_url(phone)
    assert found.unavailable == ("NetworkSerialPort ?/?/uart",)


DOC = (REPO / "docs" / "lab.md").read_text(encoding="utf-8")


def doc_block(marker: str) -> str:
    found = re.search(rf"<!-- {marker} -->\n```\w+\n(.*?)```", DOC, re.S)
    assert found, f"docs/lab.md lost its {marker} block"
    return found.group(1)


def test_the_docs_wearable_runs_as_written(fresh_labgrid_lab: Any, dataset: Path, tmp_path: Path) -> None:  # noqa: F811
    """docs/lab.md's wearable YAML (the serial path -> the emulator's pty, the relay -> tools/power_relay.py)
    and its commands, as written: the exporter starts ser2net on acquire; `serial tiny --port labgrid://...`."""
    require_ser2net()
    lab = fresh_labgrid_lab
    exported = yaml.safe_load(doc_block("lab-exporter-yaml-wearable"))
    (name,) = exported
    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=1200)
    with emu_mod.FirmwareEmulator(fw) as emu, relay_mod.PowerRelay([["sleep", "600"]] * 5) as relay:
        exported[name]["RawSerialPort"]["port"] = emu.path
        exported[name]["NetworkPowerPort"]["host"] = relay.url
        lab.exporter("shelf-2", exported)
        env = {**os.environ, "LG_COORDINATOR": lab.address,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
        with pytest.MonkeyPatch.context() as mp:  # before anyone acquired it: refused, with what to do
            mp.setenv("LG_COORDINATOR", lab.address)
            lab.add_place(name)
            with pytest.raises(PortUnavailable, match=f"place {name} is not acquired; acquire it first"):
                run_tiny(TinyConfig(port=f"labgrid://{name}"), dataset)
            lab.free(name)
        commands = doc_block("lab-wearable-commands").replace("ecg-dataset/", f"{dataset}/")
        commands = commands.replace("--json tiny.json", f"--json {tmp_path / 'tiny.json'}")
        commands = commands.replace(f"labgrid-client -p {name} create\n", "")  # made above, to test the refusal
        commands = commands.replace(f"labgrid-client -p {name} add-match '*/{name}/*'\n", "")
        lines = commands.strip().splitlines()
        lines.insert(-1, f"labgrid-client -p {name} power get")  # the outlet, through labgrid, before the release
        for line in lines:  # each as written; tiny exits 3 (not valid: 20 inferences are too few for MLPerf Tiny)
            done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, timeout=300)
            assert done.returncode in ((0, 3) if line.startswith("edgerun") else (0,)), (line, done.stderr[-3000:])
            if "power get" in line:
                assert f"power for place {name} is on" in done.stdout, done.stderr
    tiny = json.loads((tmp_path / "tiny.json").read_text())["results"][0]
    assert (
        tiny["dut"]["port"] == f"labgrid://{name}" and tiny["performance"]["runs"][0]["per_inference_ns"] == 1_200_000
    )
    assert lab.places()[name].acquired is None


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


# The same hung wearable through `lab run` is in the default run (tests/test_lab_labgrid_kinds.py): this
# one drives tiny_job and LabgridPower directly, without the lab around them.
@pytest.mark.slow
def test_a_hung_board_is_power_cycled_through_labgrid_and_its_job_retried_once(
    labgrid_lab: Any,  # noqa: F811
    dataset: Path,
    tmp_path: Path,
) -> None:
    require_ser2net()
    lab, name = labgrid_lab, labgrid_lab.unique("hung")
    link = tmp_path / "ttyWearable"  # the board's port, stable across power cycles like /dev/serial/by-id/
    board = [sys.executable, str(REPO / "tools" / "firmware_emulator.py"), "dut", "--link", str(link),
             "--latency-us", "800", "--boot-s", "0"]  # fmt: skip
    with relay_mod.PowerRelay([board], log_dir=tmp_path) as relay, Ser2net(link, "rfc2217") as net:
        outlet = relay.url.replace("{index}", "0").rsplit("/", 1)[0]
        lab.exporter(name, {name: {
            "NetworkSerialPort": {"host": "127.0.0.1", "port": net.port, "speed": 115200, "protocol": "rfc2217"},
            "NetworkPowerPort": {"model": "rest", "host": relay.url, "index": "0"},
        }})  # fmt: skip
        lab.add_place(name)
        with lab.session() as client:
            client.acquire(name)
            try:
                found = acquired_devices(client, name, "power_resource")
                url, baud = found.serial
                dut_ready(url, baud, PATIENCE_S)  # the first boot answers
                hung_pid = int(_get(f"{outlet}/pid"))
                os.kill(hung_pid, signal.SIGSTOP)  # the board hangs: it neither answers nor dies
                power = LabgridPower(lab.address, name, identity=client.identity, resource=found.power_resource,
                                     delay_s=0.2)  # fmt: skip
                result = tiny_job(found, dataset, power, boot_timeout_s=PATIENCE_S, iterations=5, warmups=0,
                                  perf_files=1, timeout_s=1.0, sync_timeout_s=2.0)  # fmt: skip
            finally:
                client.release(name)
        assert _get(f"{outlet}/boots") == "2" and int(_get(f"{outlet}/pid")) != hung_pid
        assert _get(f"{outlet}/value") == "1"
    # the retried job measured the rebooted board, and says it was power-cycled
    assert result["performance"]["runs"][0]["per_inference_ns"] == 800_000
    (cycle,) = result["power_cycles"]
    assert cycle["place"] == name and cycle["retry_ok"] is True and cycle["reason"].startswith("DutTimeout: ")
    assert any("power-cycled through labgrid" in w for w in result["warnings"])


def test_power_is_refused_for_a_place_this_lab_did_not_acquire(labgrid_lab: Any) -> None:  # noqa: F811
    lab, name = labgrid_lab, labgrid_lab.unique("theirs")
    with relay_mod.PowerRelay([["sleep", "600"]]) as relay:
        lab.exporter(name, {name: {"NetworkPowerPort": {"model": "rest", "host": relay.url, "index": "0"}}})
        lab.add_place(name)
        lab.hold(name)  # another engineer's board
        try:
            pid = relay.outlets[0].pid
            with pytest.raises(LabError, match=f"power cycle on place {name} failed: .*not acquired by your user"):
                LabgridPower(lab.address, name, delay_s=0.1).cycle()
            assert relay.outlets[0].pid == pid and relay.outlets[0].boots == 1  # never switched
        finally:
            lab.free(name)


def test_a_failure_that_is_not_a_hang_is_not_power_cycled() -> None:
    calls: list[str] = []

    class Power:
        place, resource = "p", None

        def cycle(self) -> None:
            calls.append("cycle")

    def bad_reply() -> None:
        raise LabError("a malformed answer")

    with pytest.raises(LabError, match="a malformed answer"):
        run_with_power_cycle(bad_reply, Power())  # type: ignore[arg-type]

    def always_hung() -> None:
        raise DutTimeout("no m-ready")

    with pytest.raises(DutTimeout, match=r"no m-ready \(after a power cycle of place p") as info:
        run_with_power_cycle(always_hung, Power())  # type: ignore[arg-type]
    assert calls == ["cycle"] and info.value.power_cycles[0].retry_ok is False  # type: ignore[attr-defined]


def test_a_phone_behind_the_exporter_hosts_adb_server(fresh_labgrid_lab: Any, tmp_path: Path) -> None:  # noqa: F811
    if not shutil.which("adb"):
        pytest.fail("adb is not installed") if os.environ.get("CI") else pytest.skip("adb is not installed")
    from edgerun.targets import open_target
    from edgerun.targets.spec import parse_target

    lab = fresh_labgrid_lab
    exported = yaml.safe_load(doc_block("lab-exporter-yaml-phone"))  # docs/lab.md's phone, as written
    ((name, group),) = exported.items()
    server_port = devices.free_port()  # the exporter host's adb server
    phone = devices.start_adb_device(tmp_path / "sandbox", server_port)
    try:
        assert "connected to" in phone.adb("connect", phone.serial).stdout  # the phone, as that server knows it
        (resource,) = group.values()
        resource.update(address="127.0.0.1", port=server_port, username=phone.serial)
        lab.exporter("shelf-3", exported)
        lab.add_place(name)
        with lab.session() as client:
            client.acquire(name)
            try:
                found = acquired_devices(client, name, "adb")
            finally:
                client.release(name)
        assert found.adb == f"adb://{phone.serial}?server_host=127.0.0.1&server_port={server_port}"
        target = open_target(parse_target(found.adb))
        assert target.client_argv()[1:] == ["-H", "127.0.0.1", "-P", str(server_port)]
        done = target.run(["getprop", "ro.product.model"], 30)
        assert done.returncode == 0 and done.text.strip() and target.emulated()
    finally:
        phone.kill()
        devices.stop_adb_server(server_port)


def test_power_for_place_and_waiting_for_a_target_to_answer() -> None:
    from edgerun.errors import TargetUnreachable
    from edgerun.lab.power import power_for_place, target_ready
    from edgerun.targets import open_target
    from edgerun.targets.spec import parse_target

    pdu = {"cls": "NetworkPowerPort", "name": "pdu", "avail": True, "params": {"model": "rest", "host": "h"}}
    power = power_for_place([pdu], "lab:20408", "rpi5-1", "host/me")
    assert power is not None and Path(power.argv("cycle")[0]).name == "labgrid-client"  # the venv's, else PATH's
    assert power.argv("cycle")[1:] == ["-x", "lab:20408", "-p", "rpi5-1", "power", "cycle", "--name", "pdu"]
    assert power_for_place([{**pdu, "avail": False}], "lab:20408", "rpi5-1") is None
    target_ready(open_target(parse_target("local")), 10.0)  # answers at once
    gone = open_target(parse_target(f"ssh://127.0.0.1:{devices.free_port()}?connect_timeout_s=1"))
    with pytest.raises(TargetUnreachable):  # nothing listens there: retried until the bound, then the last error
        target_ready(gone, 1.5)
