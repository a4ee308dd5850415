"""Energy through the whole bench: a measured serial meter (emulated on a real pty) and the estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tool_modules import tool

from edgerun.cli import main
from edgerun.errors import ProbeUnavailable
from edgerun.power import select_probe
from edgerun.power.serial_ina219 import Ina219CsvProbe


def test_serial_meters_are_selected_by_meter_and_port():
    with pytest.raises(ProbeUnavailable, match="unknown power probe 'nope'.*ppk2:PORT"):
        select_probe("nope")
    with pytest.raises(ProbeUnavailable, match="needs a port"):
        select_probe("ppk2:")
    with pytest.raises(ProbeUnavailable, match="no such port"):
        select_probe("ppk2:/dev/does-not-exist")


def test_bench_with_an_emulated_ina219_reports_measured_energy(tiny_onnx: Path, tmp_path: Path):
    emu = tool("meter_emulator").MeterEmulator("ina219", 2.5)  # a constant 2.5 W board
    emu.start()
    try:
        assert isinstance(select_probe(f"ina219-csv:{emu.path}"), Ina219CsvProbe)
        out = tmp_path / "r.json"
        main(
            [
                "bench",
                str(tiny_onnx),
                "--probe",
                f"ina219-csv:{emu.path}",
                "--runs",
                "100",
                "--min-seconds",
                "0",
                "--warmup-seconds",
                "0",
                "--hard-ms",
                "1000",
                "--energy-windows",
                "3",
                "--energy-window-seconds",
                "0.3",
                "-q",
                "--json",
                str(out),
            ]
        )
    finally:
        emu.close()
    energy = json.loads(out.read_text())["results"][0]["energy"]
    assert energy["source"] == "measured" and energy["probe"] == "ina219-csv" and energy["scope"] == "board"
    assert energy["valid"], energy["reason"]
    assert energy["mean_power_w"] == pytest.approx(2.5, rel=0.01)
    assert energy["idle_power_w"] == pytest.approx(2.5, rel=0.01)
    # constant power: running inferences costs nothing over idle, so net ~ 0 and gross = 2.5 W x time per inference
    assert abs(energy["net_mj_per_inference"]) < 0.02 * energy["gross_mj_per_inference"]
