"""`edgerun lab run` on wearable places whose ser2net labgrid's exporter starts itself (a
``RawSerialPort`` in its YAML), and on a wearable whose exporter goes away mid-job. A real
labgrid-coordinator and labgrid-exporter on loopback (tests/labgrid_env.py), real ser2net, the
firmware emulator as the board; nothing of labgrid is stood in for.

- a ``RawSerialPort`` at the board's device (a pty under /dev/pts, as a USB-UART is under /dev):
  the exporter starts ser2net on acquire, the job runs through it, the place is released;
- a ``RawSerialPort`` whose path is not under /dev/: labgrid's exporter refuses to start ser2net
  for it (labgrid/remote/exporter.py, SerialPortExport._start) and marks the resource broken, so
  the coordinator refuses every acquire of the place. The lab says so at once, naming the resource
  and the cause, instead of waiting ``place_wait_s`` for a place that never comes free;
- two wearables, one of whose exporter is SIGKILLed while its `serial tiny` job is in flight (the
  board's firmware kills it on the job's ``infer%``, then answers once the coordinator has dropped
  the exporter's resources; its ser2net is the test's own, so the link itself stays up): that job
  fails with a reason naming the place and is not power-cycled, the other wearable's job is done,
  and a resume after the exporter is back does the failed one.
"""

# ruff: noqa: F811  (pytest fixtures imported by name and taken as parameters)
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from labgrid_env import labgrid_lab  # noqa: F401
from ser2net_env import Ser2net, require_ser2net
from tool_modules import tool

from edgerun.cli import main
from edgerun.lab.store import LabStore
from edgerun.serialhost import ECG_DEMO_DIR

emu_mod = tool("firmware_emulator")
ARTIFACT = ECG_DEMO_DIR / "ecg-int8.tflite"
PATIENCE_S = 60.0  # a bound for what a working run does at once; only a broken one reaches it
TINY = "tiny = {{ dataset = '{dataset}', iterations = 5, warmups = 0, perf_files = 1, sync_timeout_s = 5.0 }}"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-raw")
    emu_mod.make_dataset(ARTIFACT, root / "ecg01", n=2)
    return root


def plan_for(tmp_path: Path, coordinator: str, place: str, dataset: Path, wait_s: float, more: str = "") -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(
        f'[lab]\nname = "raw-{tmp_path.name}"\ncoordinator = "{coordinator}"\n\n'
        f'[targets.watch]\nlabgrid = "{place}"\nplace_wait_s = {wait_s}\n{TINY.format(dataset=dataset)}\n{more}'
    )
    return path


def stored(db: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    store = LabStore(db, create=False)
    try:
        return store.results(), store.failures()
    finally:
        store.close()


def test_a_raw_serial_port_exported_by_labgrid_runs_through_lab_run(
    labgrid_lab: Any, dataset: Path, tmp_path: Path
) -> None:
    require_ser2net()
    lab, name = labgrid_lab, labgrid_lab.unique("raw")
    with emu_mod.FirmwareEmulator(emu_mod.DutFirmware(ARTIFACT, latency_us=1200)) as emu:
        assert emu.path.startswith("/dev/")
        lab.exporter(name, {name: {"RawSerialPort": {"port": emu.path, "speed": 115200}}})
        lab.add_place(name)
        db = tmp_path / "lab.sqlite"
        assert main(["lab", "run", str(plan_for(tmp_path, lab.address, name, dataset, 60)), "--db", str(db)]) == 0
    (row,), failures = stored(db)
    assert failures == []
    result = row.result
    assert result["dut"]["port"].startswith("rfc2217://127.0.0.1:")  # the exporter's own ser2net
    assert result["performance"]["runs"][0]["per_inference_ns"] == 1_200_000
    assert result["target"]["labgrid"]["place"] == name and result["target"]["labgrid"]["exporter"] == name
    assert lab.places()[name].acquired is None


def test_a_raw_serial_port_outside_dev_is_a_clear_error_not_a_wait(
    labgrid_lab: Any, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_ser2net()
    lab, name = labgrid_lab, labgrid_lab.unique("raw-link")
    link = tmp_path / "ttyWearable"  # a stable link, but not under /dev/ (as the exporter requires)
    with emu_mod.FirmwareEmulator(emu_mod.DutFirmware(ARTIFACT, latency_us=1200), link=str(link)):
        lab.exporter(name, {name: {"RawSerialPort": {"port": str(link), "speed": 115200}}})
        lab.add_place(name)
        db = tmp_path / "lab.sqlite"
        # the wait is long enough that running out of it could not pass for the answer
        rc = main(["lab", "run", str(plan_for(tmp_path, lab.address, name, dataset, 30)), "--db", str(db)])
    out = capsys.readouterr().out
    assert rc == 1, out
    (line,) = [x for x in out.splitlines() if "cannot be acquired" in x]
    assert f"place {name} cannot be acquired: resource {name}/{name}/RawSerialPort was marked broken" in line
    assert f"its serial port {link} is not under /dev/" in line and "restart labgrid-exporter" in line
    assert "came free within place_wait_s" not in out  # not taken for a colleague's place
    assert stored(db) == ([], [])  # left for the next run
    assert lab.places()[name].acquired is None
    assert main(["lab", "places", "--coordinator", lab.address]) == 0  # the place list says so too
    (row,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith(f"{name} ")]
    assert f"({name}, BROKEN (" in row and "): restart its exporter)" in row  # the reason follows within 0.25 s


def test_a_wearable_whose_exporter_dies_mid_job_fails_that_job_and_the_lab_goes_on(
    labgrid_lab: Any, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_ser2net()
    lab = labgrid_lab
    gone_name, other = lab.unique("wrist"), lab.unique("chest")
    killed: list[str] = []

    class DyingExporter(emu_mod.DutFirmware):  # type: ignore[misc, name-defined]
        """On the first infer%: the exporter host goes away; answered once the coordinator knows it."""

        def handle(self, cmd: str) -> list[str]:
            if cmd.startswith("infer") and not killed:
                killed.append(cmd)
                # the coordinator logs the deletion in the same event-loop step that queues it for its clients
                dropped = lab.coordinator.expect(f"set_resource {gone_name} NetworkSerialPort None")
                gone.kill()
                assert dropped.wait(PATIENCE_S), "the coordinator never dropped the killed exporter's resource"
            return list(super().handle(cmd))

    board = DyingExporter(ARTIFACT, latency_us=1000)
    with (
        emu_mod.FirmwareEmulator(board) as emu,
        Ser2net(emu.path, "rfc2217") as net,
        emu_mod.FirmwareEmulator(emu_mod.DutFirmware(ARTIFACT, latency_us=1500)) as emu2,
    ):
        gone = lab.exporter(gone_name, {gone_name: {
            "NetworkSerialPort": {"host": "127.0.0.1", "port": net.port, "speed": 115200, "protocol": "rfc2217"},
        }})  # fmt: skip
        lab.exporter(other, {other: {"RawSerialPort": {"port": emu2.path, "speed": 115200}}})
        lab.add_place(gone_name)
        lab.add_place(other)
        more = f'\n[targets.other]\nlabgrid = "{other}"\n{TINY.format(dataset=dataset)}\n'
        plan, db = plan_for(tmp_path, lab.address, gone_name, dataset, 60, more), tmp_path / "lab.sqlite"
        assert main(["lab", "run", str(plan), "--db", str(db)]) == 1
        out = capsys.readouterr().out
        assert killed
        rows, (failure,) = stored(db)
        assert [r.result["target"]["labgrid"]["place"] for r in rows] == [other]  # the lab went on
        assert failure["target"] == "watch" and failure["error_type"] == "PortUnavailable"
        assert failure["message"].startswith(
            f"exporter {gone_name} went away during the job: place {gone_name} lost its NetworkSerialPort"
        )
        assert "power-cycled" not in out and lab.places()[gone_name].acquired is None
        gone.restart()  # the exporter host is back: a resume does what was left
        assert main(["lab", "run", str(plan), "--db", str(db)]) == 0
    rows, _ = stored(db)
    assert sorted(r.result["target"]["labgrid"]["place"] for r in rows) == sorted([gone_name, other])
    assert all(p.acquired is None for n, p in lab.places().items() if n in (gone_name, other))
