"""Power probes against fixture sysfs trees and recorded command outputs (tests/fixtures/power/README.md).

Every probe runs its real reading code: files are read from a fixture tree passed as
``root``, and commands are answered by ``Shell``, a fake command runner. Wrap-around,
a sensor vanishing mid-run and end-to-end energy use copies of the trees in tmp_path
that a background thread rewrites while the probe samples.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import edgerun
from edgerun.errors import ProbeUnavailable
from edgerun.power import discover, measure_energy, probe_names, select_probe, window_energy
from edgerun.power.android import AndroidBatteryProbe, AndroidOdpmProbe, charging_sources, parse_powerstats
from edgerun.power.jetson import JetsonIna3221Probe, TegrastatsProbe, parse_tegrastats_line
from edgerun.power.rapl import PERMISSION_HINT, RaplProbe
from edgerun.power.rpi import RpiPmicProbe, parse_pmic_read_adc
from edgerun.profiles import load_profile

FIX = Path(__file__).resolve().parent / "fixtures" / "power"
CMD = FIX / "commands"
RAPL_PKG = "sys/class/powercap/intel-rapl:0"
ORIN_HWMON = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"


class Shell:
    """Fake command runner: ``cat`` reads files under ``root``; other argv get canned (or computed) text."""

    def __init__(self, root: Path | None = None, outputs: dict[tuple[str, ...], object] | None = None) -> None:
        self.root = root
        self.outputs = outputs or {}

    def __call__(self, argv: Sequence[str]) -> str | None:
        argv = tuple(argv)
        if argv[0] == "cat" and self.root is not None:
            try:
                return "".join((self.root / p.lstrip("/")).read_text() for p in argv[1:])
            except OSError:
                return None  # cat exits non-zero; run_local gives None
        out = self.outputs.get(argv)
        return out() if callable(out) else out  # type: ignore[return-value]


def copy_tree(name: str, tmp_path: Path) -> Path:
    root = tmp_path / name
    shutil.copytree(FIX / name, root)
    return root


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # a reader sees the old or the new value, never half a number


def run_probe(probe, seconds: float):
    probe.start()
    time.sleep(seconds)
    return probe.stop()


# ----------------------------------------------------------------- RAPL


def test_rapl_reads_only_top_level_packages():
    probe = RaplProbe(root=FIX / "rapl")
    assert probe.check().available, probe.check().reason
    trace = run_probe(probe, 0.1)
    assert (trace.kind, trace.scope, trace.probe, trace.measured) == ("energy", "package", "rapl", True)
    assert trace.rails == ("package-0",)  # not the core/uncore subzones, not psys
    assert trace.values[0] == pytest.approx(17515.587911)
    assert trace.t_ns.size >= 3 and all(trace.t_ns[1:] >= trace.t_ns[:-1])


def test_rapl_sums_packages(tmp_path):
    root = copy_tree("rapl", tmp_path)
    pkg1 = root / "sys/class/powercap/intel-rapl:1"
    (pkg1 / "name").write_text("package-1\n")
    (pkg1 / "energy_uj").write_text("1000000\n")
    trace = run_probe(RaplProbe(root=root), 0.05)
    assert trace.rails == ("package-0", "package-1")
    assert trace.values[0] == pytest.approx(17515.587911 + 1.0)


def test_rapl_root_only_energy_uj_gives_the_actionable_reason(tmp_path, monkeypatch):
    # Tests run as root here, where mode 000 is still readable; so we make os.access answer as it
    # would for a normal user. This proves the message and the os.access path, not the kernel's mode.
    root = copy_tree("rapl", tmp_path)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).endswith("energy_uj") else real_access(p, mode))
    availability = RaplProbe(root=root).check()
    assert not availability.available
    assert availability.reason == PERMISSION_HINT
    assert "CVE-2020-8694" in availability.reason and "chmod a+r" in availability.reason
    with pytest.raises(ProbeUnavailable, match="readable by root only"):
        select_probe("rapl", root=root)


def test_rapl_permission_error_on_read_gives_the_same_reason(tmp_path, monkeypatch):
    # os.access can say yes while the read is refused (LSMs, or root without CAP_DAC_READ_SEARCH).
    import edgerun.power.rapl as rapl

    def refuse(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text().strip()

    monkeypatch.setattr(rapl, "read_text", refuse)
    assert RaplProbe(root=FIX / "rapl").check().reason == PERMISSION_HINT


def test_rapl_mode_000_refused_by_the_kernel(tmp_path):
    # The real thing: a mode-000 energy_uj read by a process the kernel refuses. As root that needs
    # the DAC-override capabilities dropped (setpriv); as a normal user it is refused anyway.
    root = copy_tree("rapl", tmp_path)
    (root / RAPL_PKG / "energy_uj").chmod(0)
    code = "import sys; from pathlib import Path; from edgerun.power.rapl import RaplProbe\n"
    code += "print(RaplProbe(root=Path(sys.argv[1])).check().reason)"
    argv = [sys.executable, "-c", code, str(root)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: mode 000 would still be readable")
        argv = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", *argv]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0 and "setpriv" in done.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == PERMISSION_HINT


def test_rapl_missing_or_odd_energy_file(tmp_path):
    root = copy_tree("rapl", tmp_path)
    (root / RAPL_PKG / "energy_uj").unlink()
    assert "energy_uj does not exist" in RaplProbe(root=root).check().reason
    (root / RAPL_PKG / "energy_uj").mkdir()
    assert "cannot read" in RaplProbe(root=root).check().reason
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no RAPL package domain" in RaplProbe(root=empty).check().reason


class CounterWriter:
    """Advances a fixture energy_uj from a thread (``busy_w`` while ``busy`` is set, else ``idle_w``), wrapping."""

    def __init__(self, path: Path, max_uj: int, idle_w: float, busy_w: float) -> None:
        self.path, self.max_uj, self.idle_w, self.busy_w = path, max_uj, idle_w, busy_w
        self.busy = threading.Event()
        self.done = threading.Event()
        self.wraps = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        energy_uj, last = 0.0, time.perf_counter()
        while not self.done.is_set():
            now = time.perf_counter()
            energy_uj += (self.busy_w if self.busy.is_set() else self.idle_w) * (now - last) * 1e6
            last = now
            self.wraps = int(energy_uj // self.max_uj)
            write_atomic(self.path, f"{int(energy_uj) % self.max_uj}\n")
            time.sleep(0.0005)

    def __enter__(self) -> CounterWriter:
        self.thread.start()
        time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def test_rapl_probe_unwraps_a_counter_that_wraps_while_sampling(tmp_path):
    root = copy_tree("rapl", tmp_path)
    (root / RAPL_PKG / "max_energy_range_uj").write_text("2000000\n")  # 2 J: wraps every 0.4 s at 5 W
    with CounterWriter(root / RAPL_PKG / "energy_uj", 2_000_000, idle_w=5.0, busy_w=5.0) as writer:
        trace = run_probe(RaplProbe(root=root), 1.3)
    assert writer.wraps >= 2
    assert all(trace.values[1:] >= trace.values[:-1])  # unwrapped: monotonic
    start, end = int(trace.t_ns[0]) + 100_000_000, int(trace.t_ns[-1]) - 100_000_000
    result = window_energy(trace, start, end)
    assert result.valid, result.reason
    assert result.mean_power_w == pytest.approx(5.0, rel=0.03)


def sleepy_inferences(on_busy: threading.Event | None = None, per_inference_s: float = 0.002) -> Callable[[float], int]:
    """run_for: 'inferences' that sleep (releasing the GIL for the writer thread), counting how many ran."""

    def run_for(seconds: float) -> int:
        if on_busy is not None:
            on_busy.set()
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(per_inference_s)
            count += 1
        if on_busy is not None:
            on_busy.clear()
        return count

    return run_for


def test_measure_energy_with_a_rapl_counter_at_known_power(tmp_path):
    root = copy_tree("rapl", tmp_path)
    (root / RAPL_PKG / "max_energy_range_uj").write_text("2000000\n")
    with CounterWriter(root / RAPL_PKG / "energy_uj", 2_000_000, idle_w=2.0, busy_w=5.0) as writer:
        report = measure_energy(
            RaplProbe(root=root), sleepy_inferences(writer.busy), windows=3, window_s=0.3, idle_s=0.3
        )
    assert report.valid, report.reason
    assert writer.wraps >= 2
    assert report.idle_power_w == pytest.approx(2.0, rel=0.05)
    assert report.mean_power_w == pytest.approx(5.0, rel=0.05)
    gross = [5.0 * w.duration_s * 1e3 / w.inferences for w in report.windows]
    net = [3.0 * w.duration_s * 1e3 / w.inferences for w in report.windows]
    assert report.gross_mj_per_inference == pytest.approx(sum(gross) / 3, rel=0.05)
    assert report.net_mj_per_inference == pytest.approx(sum(net) / 3, rel=0.08)
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert (d["source"], d["scope"], d["probe"]) == ("measured", "package", "rapl")
    assert d["sample_rate_hz"] == 50.0 and d["sample_count"] > 50


# ----------------------------------------------------------------- Jetson


def test_jetson_orin_hwmon_rails_by_label_total_is_vdd_in():
    probe = JetsonIna3221Probe(root=FIX / "jetson-orin")
    assert "VDD_IN, VDD_CPU_GPU_CV, VDD_SOC" in probe.check().reason
    trace = run_probe(probe, 0.05)
    assert (trace.scope, trace.kind) == ("module", "power")
    assert trace.rails == ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")  # "sum of shunt voltages" skipped
    assert trace.values[0] == pytest.approx(5080 * 1123 / 1e6)
    assert any("total = VDD_IN" in n for n in trace.notes)
    assert any("VDD_SOC 1.626 W" in n for n in trace.notes)


def test_jetson_without_an_input_rail_sums_the_rails(tmp_path):
    root = copy_tree("jetson-orin", tmp_path)
    (root / ORIN_HWMON / "in1_label").write_text("NC\n")  # an unconnected channel: skipped
    trace = run_probe(JetsonIna3221Probe(root=root), 0.05)
    assert trace.rails == ("VDD_CPU_GPU_CV", "VDD_SOC")
    assert trace.values[0] == pytest.approx(5080 * (164 + 320) / 1e6)
    assert any("sum of the rails" in n for n in trace.notes)


def test_jetson_jetpack4_iio_power_in_milliwatts():
    probe = JetsonIna3221Probe(root=FIX / "jetson-jp4")
    assert "iio (JetPack 4)" in probe.check().reason
    trace = run_probe(probe, 0.05)
    assert trace.rails == ("POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU")
    assert trace.values[0] == pytest.approx(2.632)


def test_tegrastats_lines_verbatim_from_the_reference():
    orin = parse_tegrastats_line((CMD / "tegrastats_orin.txt").read_text(encoding="utf-8"))
    assert orin == {"VDD_IN": 5.704, "VDD_CPU_GPU_CV": 0.831, "VDD_SOC": 1.624}
    xavier = parse_tegrastats_line((CMD / "tegrastats_xavier_jp42.txt").read_text(encoding="utf-8"))
    assert xavier == {"GPU": 0.463, "CPU": 0.618, "SOC": 2.936, "CV": 0.0, "VDDRQ": 0.309, "SYS5V": 3.306}
    # RAM/SWAP share the a/b shape but carry MB: not rails.
    assert parse_tegrastats_line("RAM 2123/7860MB (lfb 1x4MB) SWAP 0/3930MB (cached 0MB) GPU 463/463") == {"GPU": 0.463}


def fake_tegrastats(root: Path) -> Path:
    line = (CMD / "tegrastats_orin.txt").read_text(encoding="utf-8").strip()
    script = root / "usr/bin/tegrastats"
    script.parent.mkdir(parents=True)
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\nperiod = int(sys.argv[sys.argv.index('--interval') + 1]) / 1000\n"
        f"while True:\n    sys.stdout.buffer.write({(line + chr(10)).encode()!r})\n    sys.stdout.flush()\n"
        "    time.sleep(period)\n"
    )
    script.chmod(0o755)
    return script


def test_tegrastats_probe_runs_the_command_and_kills_it_on_stop(tmp_path):
    fake_tegrastats(tmp_path)
    probe = select_probe("tegrastats", root=tmp_path)
    assert isinstance(probe, TegrastatsProbe)
    trace = run_probe(probe, 0.4)
    assert probe._process is not None and probe._process.poll() is not None  # no orphan left running
    assert trace.t_ns.size >= 3
    assert set(trace.values) == {5.704}
    assert trace.rails == ("VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC")
    assert not any("failed" in n for n in trace.notes)


def test_sensor_disappearing_mid_run_ends_the_trace_with_a_note(tmp_path):
    root = copy_tree("jetson-orin", tmp_path)
    probe = JetsonIna3221Probe(root=root, rate_hz=100.0)
    probe.start()
    time.sleep(0.15)
    gone_ns = time.perf_counter_ns()
    (root / ORIN_HWMON / "in1_input").unlink()
    time.sleep(0.1)
    trace = probe.stop()  # must not raise
    assert trace.t_ns.size >= 5 and trace.t_ns[-1] <= gone_ns + 20_000_000
    assert "sensor read failed" in trace.notes[-1] and "the trace ends there" in trace.notes[-1]
    assert "in1_input" in trace.notes[-1]
    late = window_energy(trace, gone_ns + 30_000_000, time.perf_counter_ns())
    assert not late.valid and "not covered" in late.reason


# ----------------------------------------------------------------- Raspberry Pi 5


def test_pi5_pmic_pairs_rails_and_sums_v_times_i():
    excerpt = parse_pmic_read_adc((CMD / "pmic_read_adc_excerpt.txt").read_text())
    assert excerpt == {"VDD_CORE": (0.74944980, 1.11625000)}  # 3V3_SYS has no _V line; EXT5V/BATT no _A
    full = parse_pmic_read_adc((CMD / "pmic_read_adc_synthetic.txt").read_text())
    assert len(full) == 12 and "EXT5V" not in full and "BATT" not in full
    shell = Shell(outputs={("vcgencmd", "pmic_read_adc"): (CMD / "pmic_read_adc_excerpt.txt").read_text()})
    probe = RpiPmicProbe(root=FIX, run=shell, rate_hz=50.0)
    assert probe.check().available
    trace = run_probe(probe, 0.05)
    assert trace.scope == "board" and trace.values[0] == pytest.approx(0.74944980 * 1.11625)
    assert any("excludes PMIC conversion losses and 5 V peripherals" in n for n in trace.notes)


def test_pi5_pmic_unavailable_reasons():
    assert "video group" in RpiPmicProbe(root=FIX, run=Shell()).check().reason
    pi4 = Shell(outputs={("vcgencmd", "pmic_read_adc"): 'error=1 error_msg="Command not registered"\n'})
    assert "Pi 4 and older" in RpiPmicProbe(root=FIX, run=pi4).check().reason


# ----------------------------------------------------------------- Android


def battery_shell(root: Path, charging: bool) -> Shell:
    name = "dumpsys_battery_usb.txt" if charging else "dumpsys_battery_unplugged.txt"
    return Shell(root, {("dumpsys", "battery"): (CMD / name).read_text()})


def test_android_battery_negative_discharging_in_microunits():
    probe = AndroidBatteryProbe(root=FIX / "android", run=battery_shell(FIX / "android", charging=False))
    trace = run_probe(probe, 0.05)
    assert trace.scope == "battery"
    assert trace.values[0] == pytest.approx(1.469687 * 3.873)  # discharging reads positive
    assert any("on battery at start" in n for n in trace.notes)
    assert any("uA" in n and "uV" in n for n in trace.notes)


@pytest.mark.parametrize(
    ("current", "voltage", "sign", "units", "watts"),
    [
        ("1469687", "3873000", "positive-discharging", {}, 1.469687 * 3.873),
        ("-1470", "3873", "negative-discharging", {}, 1.470 * 3.873),  # mA/mV detected by magnitude
        ("1470", "3873", "positive-discharging", {}, 1.470 * 3.873),
        ("-1470", "3873000", "negative-discharging", {"current_unit": "mA"}, 1.470 * 3.873),  # set explicitly
        ("25000", "3873", "positive-discharging", {}, 0.025 * 3.873),  # 25 A in mA is impossible: µA
    ],
)
def test_android_battery_sign_and_unit_conventions(tmp_path, current, voltage, sign, units, watts):
    root = copy_tree("android", tmp_path)
    (root / "sys/class/power_supply/battery/current_now").write_text(current + "\n")
    (root / "sys/class/power_supply/battery/voltage_now").write_text(voltage + "\n")
    probe = AndroidBatteryProbe(root=root, run=battery_shell(root, charging=False), sign=sign, **units)
    assert run_probe(probe, 0.02).values[0] == pytest.approx(watts)


def test_android_battery_warns_while_charging_and_explains_selinux():
    trace = run_probe(AndroidBatteryProbe(root=FIX / "android", run=battery_shell(FIX / "android", True)), 0.02)
    warnings = [n for n in trace.notes if n.startswith("WARNING")]
    assert len(warnings) == 2 and "USB powered" in warnings[0] and "wrong while charging" in warnings[0]
    assert charging_sources((CMD / "dumpsys_battery_usb.txt").read_text()) == ["USB"]
    denied = AndroidBatteryProbe(root=FIX / "android", run=Shell()).check()
    assert not denied.available and "SELinux" in denied.reason


def test_powerstats_parsing_of_both_text_forms():
    channels, energies = parse_powerstats((CMD / "dumpsys_powerstats.txt").read_text())
    assert channels[0] == "S10M_VDD_TPU" and len(channels) == 5 and energies == {}
    _, hal = parse_powerstats((CMD / "dumpsys_powerstats_hal.txt").read_text())
    assert hal["S2M_VDD_CPUCL2"] == 30_000_000.0 and "CPU_CLUSTER0" not in hal  # consumers are not meters
    text = "ChannelId: 0, ChannelName: S10M_VDD_TPU, ChannelSubsystem: TPU\n"
    text += "ChannelId: 0, Timestamp (ms): 1234, Duration (ms): 5678, Energy (uWs): 424242\n"
    assert parse_powerstats(text)[1] == {"S10M_VDD_TPU": 424242.0}


def odpm_shell(rail_w: dict[str, float]) -> Shell:
    """powerstats lists channels only; the HAL dump's counters advance at rail_w watts."""
    t0 = time.perf_counter()
    template = (CMD / "dumpsys_powerstats_hal.txt").read_text()
    base_mws = {name: mws for name, mws in ((n, v / 1e3) for n, v in parse_powerstats(template)[1].items())}

    def hal() -> str:
        text, elapsed = template, time.perf_counter() - t0
        for name, mws in base_mws.items():
            text = text.replace(f"{mws:14.2f} mWs", f"{mws + rail_w.get(name, 0.0) * elapsed * 1e3:14.2f} mWs")
        return text

    return Shell(
        outputs={
            ("dumpsys", "powerstats"): (CMD / "dumpsys_powerstats.txt").read_text(),
            (
                "dumpsys",
                "android.hardware.power.stats.IPowerStats/default",
            ): hal,
        }
    )


def test_android_odpm_rail_energy_counters():
    shell = odpm_shell({"S10M_VDD_TPU": 1.5, "S2M_VDD_CPUCL2": 2.0})
    probe = AndroidOdpmProbe(root=FIX, run=shell, rate_hz=20.0, rails=["S10M_VDD_TPU", "S2M_VDD_CPUCL2"])
    assert probe.check().available, probe.check().reason
    trace = run_probe(probe, 0.6)
    assert (trace.kind, trace.scope, trace.rails) == ("energy", "rail", ("S10M_VDD_TPU", "S2M_VDD_CPUCL2"))
    result = window_energy(trace, int(trace.t_ns[0]), int(trace.t_ns[-1]))
    assert result.valid, result.reason
    assert result.mean_power_w == pytest.approx(3.5, rel=0.02)
    missing = AndroidOdpmProbe(root=FIX, run=shell, rails=["NO_SUCH_RAIL"]).check()
    assert not missing.available and "NO_SUCH_RAIL" in missing.reason
    assert "no output" in AndroidOdpmProbe(root=FIX, run=Shell()).check().reason


# ----------------------------------------------------------------- registry


def test_unknown_probe_name_raises_probe_unavailable_listing_the_known_ones():
    with pytest.raises(ProbeUnavailable, match=r"unknown power probe 'joulemeter'.*rapl"):
        select_probe("joulemeter", root=FIX / "rapl", run=Shell())
    assert edgerun.ProbeUnavailable is ProbeUnavailable


def test_named_probe_that_is_not_here_raises_with_its_reason():
    with pytest.raises(ProbeUnavailable, match="no INA3221 rail"):
        select_probe("jetson-ina3221", root=FIX / "rapl", run=Shell())


def test_select_without_a_name_takes_the_first_measured_probe_else_the_estimate(tmp_path):
    assert select_probe(root=FIX / "jetson-orin", run=Shell()).name == "jetson-ina3221"
    fallback = select_probe(root=tmp_path, run=Shell(), profile=load_profile("raspberry-pi-5"))
    assert (fallback.name, fallback.measured, fallback.scope) == ("estimate", False, "estimate")
    assert "raspberry-pi-5" in fallback.check().reason and "estimate" in fallback.check().reason


def test_the_profile_orders_discovery(tmp_path):
    root = copy_tree("rapl", tmp_path)
    shutil.copytree(FIX / "jetson-orin/sys/bus", root / "sys/bus")
    assert select_probe(root=root, run=Shell()).name == "rapl"
    assert select_probe(root=root, run=Shell(), profile=load_profile("jetson-orin-nano")).name == "jetson-ina3221"


def test_discover_lists_every_probe_with_a_reason(tmp_path):
    found = discover(root=tmp_path, run=Shell(), profile=load_profile("generic-x86_64-linux"))
    assert [name for name, _ in found] == probe_names()
    assert all(a.reason for _, a in found)
    assert [name for name, a in found if a.available] == ["estimate"]


def test_importing_edgerun_power_loads_no_sensor_module():
    code = (
        "import sys, edgerun.power\n"
        "print(sorted(m for m in sys.modules if m.startswith(('edgerun.power.', 'psutil', 'serial'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["edgerun.power._polled", "edgerun.power.base", "edgerun.power.energy"]


# ----------------------------------------------------------------- lifecycle


def test_lifecycle_misuse_and_a_sensor_gone_before_start(tmp_path):
    root = copy_tree("jetson-orin", tmp_path)
    probe = JetsonIna3221Probe(root=root)
    with pytest.raises(RuntimeError, match="not started"):
        probe.stop()
    probe.start()
    with pytest.raises(RuntimeError, match="already started"):
        probe.start()
    probe.stop()
    (root / ORIN_HWMON / "curr1_input").unlink()
    with pytest.raises(ProbeUnavailable, match="unreadable"):
        probe.start()


def test_measure_energy_stops_the_probe_when_the_workload_raises():
    probe = JetsonIna3221Probe(root=FIX / "jetson-orin")

    def crashing_run_for(seconds: float) -> int:
        raise RuntimeError("engine crashed")

    with pytest.raises(RuntimeError, match="engine crashed"):
        measure_energy(probe, crashing_run_for, windows=2, window_s=0.05, idle_s=0.05)
    assert probe._thread is None  # stopped: no sampling thread left behind
    probe.start()  # and usable again
    assert probe.stop().t_ns.size >= 1
