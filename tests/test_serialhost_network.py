"""The serial host and `serial tiny` over a network serial port: real ser2net in front of the firmware
emulator's pty, reached through pyserial's ``rfc2217://`` and ``socket://`` URLs (what a labgrid
``NetworkSerialPort`` with ``protocol: rfc2217`` or ``raw`` points at).

Each test compares what crossed the network with what the emulated firmware itself recorded (its
DUT timer's latency, its received RESULT frames, its resets), so nothing depends on the machine's speed.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ser2net_env import Ser2net, require_ser2net
from tool_modules import tool
from waiting import wait_for

import edgerun
from edgerun.errors import PortUnavailable
from edgerun.serialhost import ECG_DEMO_DIR
from edgerun.serialhost.host import HostConfig, SerialHost
from edgerun.serialhost.link import dtr_settable, network_scheme, open_port, port_url
from edgerun.serialhost.tiny import TinyConfig, run_tiny
from edgerun.serialhost.tinydata import read_dataset

emu_mod = tool("firmware_emulator")
ARTIFACT = ECG_DEMO_DIR / "ecg-int8.tflite"
PATIENCE_S = 60.0  # bound on every wait: a working run meets each condition long before


@pytest.fixture(scope="module", autouse=True)
def _ser2net() -> None:
    require_ser2net()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-net")
    emu_mod.make_dataset(ARTIFACT, root / "ecg01", n=4)
    return root


def direct_predictions(dataset: Path) -> list[int]:
    """The model's class for every dataset input, run here directly (no line, no emulator)."""
    rt = edgerun.load(ARTIFACT, threads=1)
    spec = rt.pipeline.session.inputs[0]
    files = read_dataset(dataset, "ecg01").files
    return [int(np.argmax(rt.pipeline.session.run([np.frombuffer(f.data, spec.dtype).reshape(spec.shape)])[0]))
            for f in files]  # fmt: skip


def test_urls_and_what_each_can_do() -> None:
    assert network_scheme("rfc2217://h:1") == "rfc2217" and network_scheme("socket://h:1") == "socket"
    assert network_scheme("/dev/ttyACM0") is None and network_scheme("loop://") is None
    # ser2net never acknowledges SET_CONTROL; labgrid's SerialDriver adds the same option
    assert port_url("rfc2217://h:1") == "rfc2217://h:1?ign_set_control"
    assert port_url("rfc2217://h:1?timeout=3") == "rfc2217://h:1?timeout=3&ign_set_control"
    assert port_url("socket://h:1") == "socket://h:1" and port_url("/dev/ttyUSB0") == "/dev/ttyUSB0"
    assert dtr_settable("rfc2217://h:1") and dtr_settable("/dev/ttyUSB0") and not dtr_settable("socket://h:1")


@pytest.mark.parametrize("protocol", ["rfc2217", "raw"])
def test_tiny_through_ser2net_measures_what_the_dut_timed(dataset: Path, tmp_path: Path, protocol: str) -> None:
    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=1500)
    with emu_mod.FirmwareEmulator(fw) as emu, Ser2net(emu.path, protocol, log=tmp_path / "ser2net.log") as net:
        cfg = TinyConfig(port=net.url, iterations=20, warmups=1, perf_files=2)
        run = run_tiny(cfg, dataset)
    assert run.info.name == "edgerun-emulator" and run.info.timestamp_mode == "performance"
    assert [r["per_inference_ns"] for r in run.perf] == [1_500_000, 1_500_000]  # the DUT's own timer
    assert [f["predicted"] for f in run.files] == direct_predictions(dataset)
    assert fw.commands.count("name") >= 1 and fw.overrun_bytes == 0


def test_rfc2217_open_reaches_a_board_that_resets_on_open(dataset: Path) -> None:
    # The emulated board reboots when its port is opened and flushed (pyserial's open; over RFC 2217 the
    # purge travels to ser2net, which flushes the pty). `serial tiny` waits for the banner and syncs.
    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=700, reset_on_open=True, boot_s=0.2)
    with emu_mod.FirmwareEmulator(fw) as emu, Ser2net(emu.path, "rfc2217") as net:
        cfg = TinyConfig(port=net.url, iterations=5, warmups=0, perf_files=1, limit=1, reset_wait_s=3.0)
        run = run_tiny(cfg, dataset)
    assert fw.resets >= 1 and run.perf[0]["per_inference_ns"] == 700_000


def serve_host(port: str, fw: Any, windows: int) -> tuple[dict[str, Any], Any]:
    """The host on ``port`` until the firmware has read ``windows`` RESULT frames; then stop it."""
    host = SerialHost(edgerun.load(ARTIFACT, threads=1), HostConfig(port=port, baud=115200, hop=250))
    stop, box = threading.Event(), {}
    runner = threading.Thread(target=lambda: box.update(summary=host.run(stop)), daemon=True)
    runner.start()
    try:
        wait_for(lambda: len(fw.results) >= windows or not runner.is_alive(), f"{windows} RESULT frames")
    finally:
        stop.set()
        runner.join(PATIENCE_S)
    assert "summary" in box, "the host ended without a summary"
    return box["summary"], host


@pytest.mark.parametrize("protocol", ["rfc2217", "raw"])
def test_host_decides_windows_through_ser2net(tmp_path: Path, protocol: str) -> None:
    fw = emu_mod.HostFirmware(speed=20.0)
    with emu_mod.FirmwareEmulator(fw) as emu, Ser2net(emu.path, protocol, log=tmp_path / "ser2net.log") as net:
        summary, host = serve_host(net.url, fw, windows=5)
    assert summary["port"]["path"] == net.url
    assert summary["sessions"]["handshakes"] >= 1 and fw.acks[0].window_samples == 1000
    assert summary["windows"]["decided"] >= 5 and summary["frames"]["crc_failed"] == 0
    # every RESULT the firmware read names a window the host decided, in order
    ends = [r.end_index for _, r in fw.results]
    assert ends == sorted(ends) and all((e - 1000) % 250 == 0 for e in ends)


def test_a_refused_network_port_is_one_clear_sentence() -> None:
    from ser2net_env import free_port

    url = f"rfc2217://127.0.0.1:{free_port()}"
    with pytest.raises(PortUnavailable, match=r"cannot reach the serial server rfc2217://127\.0\.0\.1:\d+ .*ser2net"):
        open_port(url, 115200)


def test_cli_tiny_over_raw_tcp_says_no_dtr_does_nothing(dataset: Path, tmp_path: Path, capsys: Any) -> None:
    from edgerun.cli import main

    out = tmp_path / "tiny.json"
    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=900)
    with emu_mod.FirmwareEmulator(fw) as emu, Ser2net(emu.path, "raw") as net:
        argv = ["serial", "tiny", "--port", net.url, "--dataset", str(dataset), "--iterations", "4", "--warmups", "0",
                "--perf-files", "1", "--limit", "2", "--no-dtr", "--json", str(out), "-q"]  # fmt: skip
        rc = main(argv)
    err = capsys.readouterr().err
    assert "--no-dtr does nothing on socket://" in err
    doc = json.loads(out.read_text())["results"][0]
    assert rc in (0, 3) and doc["dut"]["port"] == net.url
    assert doc["performance"]["runs"][0]["per_inference_ns"] == 900_000


def test_host_reconnects_when_ser2net_goes_away_and_comes_back(tmp_path: Path) -> None:
    # The exporter host's ser2net dies (SIGKILL) and is started again on the same port: the host sees
    # the loss as an unplug, reconnects with backoff, re-handshakes, and goes on deciding windows.
    fw = emu_mod.HostFirmware(speed=20.0)
    with emu_mod.FirmwareEmulator(fw) as emu:
        net = Ser2net(emu.path, "rfc2217", log=tmp_path / "ser2net.log").start()
        host = SerialHost(edgerun.load(ARTIFACT, threads=1), HostConfig(port=net.url, baud=115200, hop=250))
        stop, box = threading.Event(), {}
        runner = threading.Thread(target=lambda: box.update(summary=host.run(stop)), daemon=True)
        runner.start()
        try:
            wait_for(lambda: len(fw.results) >= 2, "RESULT frames before the outage")
            net.stop()
            wait_for(lambda: host.counters.port_lost >= 1, "the host to notice the lost connection")
            before = len(fw.results)
            net.start(port=net.port)
            wait_for(lambda: len(fw.results) >= before + 2, "RESULT frames after ser2net came back")
        finally:
            stop.set()
            runner.join(PATIENCE_S)
            net.stop()
    summary = box["summary"]
    assert summary["link"]["port_lost"] >= 1 and summary["link"]["port_opens"] >= 2
    assert summary["windows"]["decided"] >= 4
