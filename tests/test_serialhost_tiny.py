"""DUT mode: the EEMBC / MLPerf Tiny command protocol against the emulated firmware on a real pty.

The emulated DUT runs the bundled int8 ECG model with edgerun on the bytes it
is loaded with, and its microsecond timer reports the per-inference latency it
was told to. So latency is checked exactly, and accuracy against a direct run
of the same model on the same dataset bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tool_modules import tool

import edgerun
from edgerun.bench.environment import environment
from edgerun.errors import DutError, PortUnavailable
from edgerun.serialhost import ECG_DEMO_DIR
from edgerun.serialhost.tiny import TinyConfig, run_tiny
from edgerun.serialhost.tinydata import TRUTH_FILE, read_dataset
from edgerun.serialhost.tinyresult import SCHEMA, build_tiny_result

ARTIFACT = ECG_DEMO_DIR / "ecg-int8.tflite"
N_FILES = 12


emu_mod = tool("firmware_emulator")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EEMBC dataset folder (per-model subfolder, as the runner lays it out) from the bundled samples."""
    root = tmp_path_factory.mktemp("tiny")
    data = np.load(ECG_DEMO_DIR / "ecg-test.npz")
    pick = np.r_[0:4, 20:24, 40:44]  # four windows of each rhythm
    assert len(pick) == N_FILES
    emu_mod.make_dataset(ARTIFACT, root / "ecg01")  # the tool's own path: all 60 samples
    folder = root / "ecg01"
    lines = (folder / TRUTH_FILE).read_text().splitlines()
    (folder / TRUTH_FILE).write_text("\n".join(lines[i] for i in pick) + "\n")
    assert len(read_dataset(root, "ecg01").files) == N_FILES and data["y"][pick].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    return root


def expected_predictions(dataset: Path) -> list[int]:
    """What the model predicts for every dataset input, run directly (no serial line, no emulator)."""
    rt = edgerun.load(ARTIFACT, threads=1)
    spec = rt.pipeline.session.inputs[0]
    out = []
    for f in read_dataset(dataset, "ecg01").files:
        x = np.frombuffer(f.data, dtype=spec.dtype).reshape(spec.shape)
        out.append(int(np.argmax(rt.pipeline.session.run([x])[0])))
    return out


def session(dataset: Path, config: dict[str, Any] | None = None, **firmware: Any):
    fw = emu_mod.DutFirmware(ARTIFACT, **firmware)
    with emu_mod.FirmwareEmulator(fw) as emu:
        cfg = TinyConfig(port=emu.path, **({"iterations": 50, "warmups": 2, "perf_files": 3} | (config or {})))
        run = run_tiny(cfg, dataset)
    return run, cfg, fw


def test_session_end_to_end_latency_and_accuracy(dataset):
    run, cfg, fw = session(dataset, latency_us=1500)
    result = build_tiny_result(run, cfg, cfg.budget, environment())
    assert result["dut"] | {"port": ""} == {
        "name": "edgerun-emulator",
        "profile": "edgerun firmware emulator",
        "model": "ecg01",
        "timestamp_mode": "performance",
        "port": "",
        "baud": 115200,
    }
    perf = result["performance"]
    assert [r["per_inference_ns"] for r in perf["runs"]] == [1_500_000] * 3  # exactly what the DUT was told
    assert perf["median_per_inference_ns"] == 1_500_000 and perf["throughput_per_s"] == pytest.approx(666.67, 1e-3)
    assert result["samples_ns"]["single"] == [1_500_000] * N_FILES
    assert result["verdicts"]["hard"]["status"] == "pass" and result["verdicts"]["soft"]["status"] == "not-valid"
    expected = expected_predictions(dataset)
    assert [f["predicted"] for f in result["files"]] == expected
    acc = result["accuracy"]
    assert acc["n"] == N_FILES and acc["correct"] == sum(p == f.label for p, f in zip(expected, run.dataset.files))
    assert acc["top1"] >= 0.9
    # the DUT saw the runner's protocol: 31-byte db chunks, infer N W for performance, results% for accuracy
    assert fw.commands[:3] == ["name", "timestamp", "profile"]  # timestamp%: which mode, boot lines long gone
    assert "db load 1000" in fw.commands and f"db {bytes(31).hex()}" not in fw.commands[:3]
    assert max(len(c) for c in fw.commands if c.startswith("db ") and "load" not in c) == 3 + 62
    assert fw.commands.count("infer 50 2") == 3 and fw.commands.count("infer 1 0") == N_FILES
    assert fw.commands.count("results") == N_FILES


def test_wrong_results_lower_accuracy_exactly(dataset):
    run, cfg, fw = session(dataset, {"perf_files": 0}, latency_us=800, wrong_every=3)
    expected = expected_predictions(dataset)
    got = [f["predicted"] for f in run.files]
    for i, (g, e) in enumerate(zip(got, expected)):
        assert (g != e) if (i + 1) % 3 == 0 else (g == e)
    result = build_tiny_result(run, cfg, cfg.budget, environment())
    assert result["accuracy"]["correct"] == sum(g == f.label for g, f in zip(got, run.dataset.files))


def test_timer_wrap_between_the_two_timestamps(dataset):
    run, _, _ = session(dataset, {"perf_files": 2, "limit": 2}, latency_us=2000, clock_start_us=2**32 - 50_000)
    assert [p["per_inference_ns"] for p in run.perf] == [2_000_000, 2_000_000]


def test_real_dut_time_when_not_told_a_latency(dataset):
    run, cfg, _ = session(dataset, {"perf_files": 1, "limit": 3})
    per = run.perf[0]["per_inference_ns"]
    assert 1_000 < per < 50_000_000  # the emulator's own time for the model: microseconds to milliseconds


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("no-name", r"no m-name-dut-\[<name>\] answer to 'name%' .* within 0.5 s \(sent .*'m-hello"),
        ("garbled-results", r"m-results-\[\.\.\.\] must hold comma-separated numbers, got 'm-results-\[0.125,zz"),
        ("infer-error", r"'infer 50 2%' with an error: e-\[Inference failed: arena too small\]"),
        ("one-timestamp", r"expected 2 m-lap-us-<us> timestamps around the inferences, got 1"),
        ("no-ready", r"no m-ready within 0.5 s after 'infer 50 2%'; it said \[.*m-results"),
        ("energy-mode", r"energy mode \(m-timestamp-mode-energy\): it prints no timestamps"),
    ],
)
def test_malformed_dut_replies_are_clear_errors(dataset, fault, message):
    # Only no-ready waits out a timeout (0.5 s, the one its message names). Every other fault is a
    # reply that arrives: a generous timeout costs them nothing and a loaded machine cannot trip it.
    # no-name waits out the sync timeout the same way (name% is retried until then).
    timeouts = {"timeout_s": 10.0, "infer_timeout_s": 0.5 if fault == "no-ready" else 10.0}
    timeouts["sync_timeout_s"] = 0.5 if fault == "no-name" else 10.0
    with pytest.raises(DutError, match=message):
        session(dataset, timeouts, latency_us=100, fault=fault)


class FakeEdgeMonitor:
    """Stands in for an energy monitor on the DUT's timestamp GPIO (no edgerun probe drives one yet)."""

    def __init__(self) -> None:
        self.armed = 0

    def arm(self) -> None:
        self.armed += 1

    def collect(self) -> tuple[float, float]:
        return 0.05, 0.002  # 50 ms and 2 mJ between the edges


def test_energy_mode_goes_through_the_monitor_seam(dataset):
    fw = emu_mod.DutFirmware(ARTIFACT, fault="energy-mode")
    monitor = FakeEdgeMonitor()
    with emu_mod.FirmwareEmulator(fw) as emu:
        cfg = TinyConfig(port=emu.path, iterations=10, warmups=0, perf_files=2, limit=3)
        run = run_tiny(cfg, dataset, energy_monitor=monitor)
    result = build_tiny_result(run, cfg, cfg.budget, environment())
    assert monitor.armed == 2
    assert [p["per_inference_ns"] for p in run.perf] == [5_000_000, 5_000_000]
    assert result["energy"]["median_j_per_inference"] == pytest.approx(0.0002)
    assert result["samples_ns"]["single"] == []  # no timestamps in energy mode: accuracy only


def test_dataset_problems_name_the_file_and_the_expected_form(tmp_path):
    with pytest.raises(DutError, match=r"no .*y_labels.csv or .*/kws01/y_labels.csv"):
        read_dataset(tmp_path, "kws01")
    (tmp_path / TRUTH_FILE).write_text("a.bin, 12\n")
    with pytest.raises(DutError, match=r"1: expected 'file, class_count, class'.*\(ad01\), got \['a.bin', ' 12'\]"):
        read_dataset(tmp_path)
    (tmp_path / TRUTH_FILE).write_text("a.bin, 12, 3\n")
    with pytest.raises(DutError, match=r"input file .*a.bin does not exist"):
        read_dataset(tmp_path)


def test_missing_port_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(PortUnavailable, match="no such port"):
        run_tiny(TinyConfig(port=str(tmp_path / "ttyDUT")), dataset)


def test_cli_serial_tiny_json_in_the_bench_family(dataset, tmp_path, capsys):
    from edgerun.cli import main

    out = tmp_path / "tiny.json"
    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=1200)
    with emu_mod.FirmwareEmulator(fw) as emu:
        rc = main(
            ["serial", "tiny", "--port", emu.path, "--dataset", str(dataset), "--iterations", "20"]
            + ["--warmups", "1", "--perf-files", "2", "--json", str(out), "-q"]
        )
    assert rc == 3  # hard passes; 12 samples cannot make a p99 valid
    doc = json.loads(out.read_text())
    assert (doc["schema"], doc["schema_version"]) == (SCHEMA, 1) and doc["edgerun_version"]
    (result,) = doc["results"]
    assert result["stats"]["single"]["percentiles"]["p50"]["value_ns"] == 1_200_000
    assert set(result["verdicts"]["hard"]) >= {"kind", "status", "passed", "valid", "measured", "limit", "reason"}
    assert "accuracy    top-1" in capsys.readouterr().out


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """What a session measured, without where and when it ran."""
    return {k: result[k] for k in ("performance", "accuracy", "files", "samples_ns", "verdicts", "dataset")}


@pytest.mark.parametrize("reset_wait_s", [0.0, 5.0])
def test_board_that_resets_on_open_syncs_and_measures_the_same(dataset, reset_wait_s):
    # A DTR auto-reset board: the host's open reboots it; it is deaf while it boots, then prints a banner
    # ending in m-ready. That m-ready is no answer to name%: the runner retries name% until m-name-... .
    # With --reset-wait the banner is awaited first (it ends the wait early, at its m-ready).
    config = {"perf_files": 2, "limit": 4}
    steady, cfg, _ = session(dataset, config, latency_us=1200)
    reset, _, fw = session(dataset, config | {"reset_wait_s": reset_wait_s}, latency_us=1200, reset_on_open=True)
    assert fw.resets == 1 and fw.emu.opens == 1  # one open, one reboot
    env = environment()
    assert comparable(build_tiny_result(reset, cfg, cfg.budget, env)) == comparable(
        build_tiny_result(steady, cfg, cfg.budget, env)
    )
    assert reset.info == steady.info
    assert fw.overrun_bytes == 0 and "profile" in fw.commands and "infer 1 0" in fw.commands


def test_emulated_dut_parses_as_the_real_firmware(dataset):
    # internally_implemented.cpp: nothing stripped ("\r\nname" is an unknown command), only N bytes
    # stored after 'db load N' and the rest of the digits disregarded.
    fw = emu_mod.DutFirmware(ARTIFACT)
    with emu_mod.FirmwareEmulator(fw):
        assert fw.handle("\r\nname") == ["e-[Unknown command: \r\nname]"]
        assert fw.handle("db load 2") == ["m-[Expecting 2 bytes]"]
        assert fw.handle("db 0102ff") == ["m-load-done"] and bytes(fw._buf) == b"\x01\x02"
        assert fw.handle("db 03") == [] and fw.overrun_bytes == 1 and bytes(fw._buf) == b"\x01\x02"
        assert fw.handle("db 0") == ["e-[Insufficent number of hex digits]"]
        assert fw.handle("db load 0") == ["e-[Command 'db load' must be >0 bytes]"]


def test_sync_gives_up_with_a_clear_error(dataset):
    # A board that never finishes booting (deaf for longer than the sync timeout).
    with pytest.raises(DutError, match=r"no m-name-dut-\[<name>\] answer to 'name%' .* within 0.3 s .*--reset-wait"):
        session(dataset, {"sync_timeout_s": 0.3}, reset_on_open=True, boot_s=1e6)


def test_cli_reset_wait_and_no_dtr_against_a_resetting_board(dataset, tmp_path, capsys):
    # A pty has no DTR line (pyserial ignores the ioctl there), so the board still resets on open:
    # --no-dtr must open it all the same, and --reset-wait take the banner before name%.
    from edgerun.cli import main

    out = tmp_path / "tiny.json"
    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=900, reset_on_open=True)
    with emu_mod.FirmwareEmulator(fw) as emu:
        rc = main(
            ["serial", "tiny", "--port", emu.path, "--dataset", str(dataset), "--iterations", "20", "--limit", "3"]
            + ["--perf-files", "1", "--reset-wait", "10", "--no-dtr", "--json", str(out), "-q"]
        )
    assert rc == 3 and fw.resets == 1
    (result,) = json.loads(out.read_text())["results"]
    assert result["samples_ns"]["single"] == [900_000] * 3


def test_performance_runs_under_10_s_are_warned(dataset, capsys):
    # The DUT's timer decides: 50 x 1.2 ms = 60 ms per run is far below MLPerf Tiny's 10 s; 20 x 600 ms
    # = 12 s is not. Virtual time (latency_us): the test itself takes no 10 s.
    short, cfg, _ = session(dataset, {"perf_files": 2, "limit": 2}, latency_us=1200)
    (warning,) = [w for w in build_tiny_result(short, cfg, cfg.budget, {})["warnings"] if "10 s" in w]
    assert warning.startswith("2 of 2 performance runs took under MLPerf Tiny's 10 s minimum (shortest 0.06 s)")
    assert "--iterations 8333" in warning
    long, cfg, _ = session(dataset, {"perf_files": 1, "limit": 1, "iterations": 20}, latency_us=600_000)
    assert not [w for w in build_tiny_result(long, cfg, cfg.budget, {})["warnings"] if "10 s" in w]
    from edgerun.cli import main

    fw = emu_mod.DutFirmware(ARTIFACT, latency_us=1200)
    with emu_mod.FirmwareEmulator(fw) as emu:
        main(
            ["serial", "tiny", "--port", emu.path, "--dataset", str(dataset), "--iterations", "10"]
            + ["--limit", "2", "-q"]
        )
    assert "edgerun: warning: 2 of 2 performance runs took under MLPerf Tiny's 10 s minimum" in capsys.readouterr().err
