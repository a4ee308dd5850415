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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.errors import ProbeError, ProbeUnavailable
from edgerun.power import discover, measure_energy, probe_names, select_probe, window_energy
from edgerun.power.android import AndroidBatteryProbe, AndroidOdpmProbe, charging_sources, parse_powerstats
from edgerun.power.base import Trace
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
    # start() and stop() each read once; how many reads the thread adds in between depends on the load.
    assert trace.t_ns.size >= 2 and all(trace.t_ns[1:] >= trace.t_ns[:-1])


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


class PowerSchedule:
    """Piecewise-constant power in whole watts, set by recorded transitions; its exact integral in nJ.

    A transition is stamped under the lock, and the writer reads the clock and the integral under
    the same lock, so a busy period counts exactly from its own stamp: it cannot leak into an idle
    span however late a thread runs.
    """

    def __init__(self, watts: int) -> None:
        self.lock = threading.Lock()
        self.t_ns = [time.perf_counter_ns()]
        self.watts = [watts]

    def set(self, watts: int) -> int:
        with self.lock:
            self.t_ns.append(time.perf_counter_ns())
            self.watts.append(watts)
            return self.t_ns[-1]

    def now_and_energy_nj(self) -> tuple[int, int]:
        with self.lock:
            now_ns = time.perf_counter_ns()
            return now_ns, self._energy_nj(now_ns)

    def energy_nj(self, t_ns: int) -> int:
        with self.lock:
            return self._energy_nj(int(t_ns))

    def _energy_nj(self, t_ns: int) -> int:
        ends = [*self.t_ns[1:], max(t_ns, self.t_ns[-1])]
        return sum(w * (min(e, t_ns) - s) for s, e, w in zip(self.t_ns, ends, self.watts) if s < t_ns)  # W x ns = nJ


class CounterWriter:
    """Writes a fixture energy_uj from a thread: the schedule's exact energy at each write, wrapping.

    ``writes`` maps each unwrapped µJ value written to (stamp, done): the instant its energy was
    computed and the instant the file held it, so a test can check that every value the probe
    read is one written here, and not older than the reads around it allow.
    """

    def __init__(self, path: Path, max_uj: int, schedule: PowerSchedule) -> None:
        self.path, self.max_uj, self.schedule = path, max_uj, schedule
        self.writes: dict[int, tuple[int, int]] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _write(self) -> None:
        stamp_ns, energy_nj = self.schedule.now_and_energy_nj()
        energy_uj = energy_nj // 1000
        write_atomic(self.path, f"{energy_uj % self.max_uj}\n")
        self.writes.setdefault(energy_uj, (stamp_ns, time.perf_counter_ns()))

    def _run(self) -> None:
        while not self.done.is_set():
            self._write()
            time.sleep(0.0002)  # pacing only: how stale a read may be is checked from `writes`

    def __enter__(self) -> CounterWriter:
        self._write()  # the file holds a schedule value before any read
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


class TracedRaplProbe(RaplProbe):
    """The real RaplProbe, keeping the Trace its stop() returns (measure_energy returns only the report)."""

    trace: Trace | None = None

    def stop(self) -> Trace:
        self.trace = super().stop()
        return self.trace


def check_reads_are_written_values(trace: Trace, writer: CounterWriter) -> list[int]:
    """Every read is a value the writer wrote, unwrapped exactly, and no staler than the reads around it allow.

    Returns the reads in µJ. A read can only see a write made before it ended (stamp before the next
    sample's stamp) and not yet replaced when it began (the next write landed after the previous sample).
    """
    read_uj = [round(v * 1e6) for v in trace.values]
    t = [int(x) for x in trace.t_ns]
    order = sorted(writer.writes)
    for j, uj in enumerate(read_uj):
        assert uj in writer.writes, f"read {j} = {uj} µJ was never written (a wrap missed or miscounted?)"
        stamp_ns, _ = writer.writes[uj]
        if j + 1 < len(t):
            assert stamp_ns <= t[j + 1], f"read {j} saw a value written after the next read"
        later = order.index(uj) + 1
        if j > 0 and later < len(order):
            assert writer.writes[order[later]][1] >= t[j - 1], f"read {j} is staler than the writes allow"
    assert read_uj == sorted(read_uj)  # unwrapped: monotonic
    return read_uj


def edge_slack_j(trace: Trace, read_uj: list[int], schedule: PowerSchedule, lo_ns: int, hi_ns: int) -> float:
    """The most a window edge anywhere in [lo_ns, hi_ns] can be off, in J, from the reads around it.

    Between reads a and b (t_a <= x <= t_b) the report interpolates between the values read, and the
    schedule's energy at x lies between its values at t_a and t_b; so they differ by at most the span
    of those four numbers. No timing is assumed: a late read widens this slack, never breaks it.
    """
    t = [int(x) for x in trace.t_ns]
    worst = 0.0
    for a in range(len(t) - 1):
        if t[a + 1] < lo_ns or t[a] > hi_ns:
            continue
        high = max(read_uj[a + 1] * 1000, schedule.energy_nj(t[a + 1]))
        low = min(read_uj[a] * 1000, schedule.energy_nj(t[a]))
        worst = max(worst, (high - low) / 1e9)
    return worst + 2e-6  # the file holds whole µJ


def test_rapl_probe_unwraps_a_counter_that_wraps_while_sampling(tmp_path):
    root = copy_tree("rapl", tmp_path)
    (root / RAPL_PKG / "max_energy_range_uj").write_text("2000000\n")  # 2 J: wraps every 0.4 s at 5 W
    schedule = PowerSchedule(5)
    with CounterWriter(root / RAPL_PKG / "energy_uj", 2_000_000, schedule) as writer:
        trace = run_probe(RaplProbe(root=root, rate_hz=500.0), 1.0)  # >= 5 J at 5 W: at least two wraps
    read_uj = check_reads_are_written_values(trace, writer)
    assert read_uj[-1] // 2_000_000 - read_uj[0] // 2_000_000 >= 2  # the reads crossed two wrap points
    start, end = int(trace.t_ns[0]) + 100_000_000, int(trace.t_ns[-1]) - 100_000_000
    result = window_energy(trace, start, end)
    assert result.valid, result.reason
    slack_j = edge_slack_j(trace, read_uj, schedule, start, start) + edge_slack_j(trace, read_uj, schedule, end, end)
    assert abs(result.joules - 5.0 * (end - start) / 1e9) <= slack_j


def test_measure_energy_with_a_rapl_counter_at_known_power(tmp_path):
    root = copy_tree("rapl", tmp_path)
    (root / RAPL_PKG / "max_energy_range_uj").write_text("2000000\n")
    schedule = PowerSchedule(2)  # 2 W idle; 5 W while an inference window runs
    busy_spans: list[tuple[int, int, int]] = []

    def run_for(seconds: float) -> int:
        busy_ns = schedule.set(5)
        count, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            time.sleep(0.002)  # an 'inference' that releases the GIL for the writer and the probe
            count += 1
        busy_spans.append((busy_ns, schedule.set(2), count))
        return count

    # A starved sampler (a host loaded past its cores) is reported as not valid, by design: that
    # is the mechanism working, so a window with a sampling gap is measured again, up to 3 times.
    for _attempt in range(3):
        busy_spans.clear()
        probe = TracedRaplProbe(root=root, rate_hz=1000.0)  # reads 1 ms apart: each edge is bracketed tightly
        with CounterWriter(root / RAPL_PKG / "energy_uj", 2_000_000, schedule) as writer:
            report = measure_energy(probe, run_for, windows=3, window_s=0.3, idle_s=0.5)
        if report.valid or "gap between samples" not in report.reason:
            break
    assert report.valid, report.reason
    trace = probe.trace
    read_uj = check_reads_are_written_values(trace, writer)
    assert read_uj[-1] // 2_000_000 - read_uj[0] // 2_000_000 >= 2  # >= 2.4 J idle + 4.5 J busy: wraps
    t_first, t_last = int(trace.t_ns[0]), int(trace.t_ns[-1])

    def slack(lo_ns: int, hi_ns: int) -> float:
        return edge_slack_j(trace, read_uj, schedule, lo_ns, hi_ns)

    # Run windows: their spans are in the report; the schedule says exactly what they took.
    assert len(report.windows) == len(busy_spans) == 3
    for w, (busy_ns, idle_ns, count) in zip(report.windows, busy_spans):
        assert w.start_ns <= busy_ns < idle_ns <= w.end_ns and w.inferences == count
        true_j = (schedule.energy_nj(w.end_ns) - schedule.energy_nj(w.start_ns)) / 1e9
        assert abs(w.gross_j - true_j) <= slack(w.start_ns, w.start_ns) + slack(w.end_ns, w.end_ns)
    # Idle windows: the first lies between the first read and the first run, the second between the
    # last run and the last read, where the schedule holds 2 W; only their durations are reported,
    # so each edge may lie anywhere its window fits.
    first, last = report.windows[0].start_ns, report.windows[-1].end_ns
    d0, d1 = (round(w.duration_s * 1e9) for w in report.idle)
    idle_slack_w = (slack(t_first, first - d0) + slack(t_first + d0, first)) / d0 * 1e9
    idle_slack_w += (slack(last, t_last - d1) + slack(last + d1, t_last)) / d1 * 1e9
    idle_slack_w /= 2  # idle power is the mean of the two windows
    assert abs(report.idle_power_w - 2.0) <= idle_slack_w, f"slack {idle_slack_w:.3f} W"

    true_j = [(schedule.energy_nj(w.end_ns) - schedule.energy_nj(w.start_ns)) / 1e9 for w in report.windows]
    gross_slack = [slack(w.start_ns, w.start_ns) + slack(w.end_ns, w.end_ns) for w in report.windows]
    net_slack = [g + idle_slack_w * w.duration_s for g, w in zip(gross_slack, report.windows)]
    n = [w.inferences for w in report.windows]
    d = [w.duration_s for w in report.windows]
    assert abs(report.mean_power_w - np.mean([j / s for j, s in zip(true_j, d)])) <= np.mean(
        [g / s for g, s in zip(gross_slack, d)]
    )
    expected_gross = np.mean([j * 1e3 / k for j, k in zip(true_j, n)])
    assert abs(report.gross_mj_per_inference - expected_gross) <= np.mean([g * 1e3 / k for g, k in zip(gross_slack, n)])
    expected_net = np.mean([(j - 2.0 * s) * 1e3 / k for j, s, k in zip(true_j, d, n)])
    assert abs(report.net_mj_per_inference - expected_net) <= np.mean([g * 1e3 / k for g, k in zip(net_slack, n)])
    out = report.to_dict()
    json.dumps(out, allow_nan=False)
    assert (out["source"], out["scope"], out["probe"]) == ("measured", "package", "rapl")
    assert out["sample_rate_hz"] == 1000.0 and out["sample_count"] == trace.t_ns.size


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
    (root / ORIN_HWMON / "in1_input").unlink()
    gone_ns = time.perf_counter_ns()
    time.sleep(0.1)
    trace = probe.stop()  # must not raise
    # A read that succeeded opened in1_input before the unlink; reads do not overlap, so only the
    # last one can end (and be stamped, mid-read) after it: no sample after the sensor is gone.
    assert trace.t_ns.size >= 1 and np.count_nonzero(trace.t_ns > gone_ns) <= 1
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


def odpm_shell(rail_w: dict[str, float]) -> tuple[Shell, list[tuple[int, float]]]:
    """powerstats lists channels only; the HAL dump's counters advance at rail_w watts.

    Each HAL answer is computed when the probe asks (as the real HAL does) and logged as
    (perf_counter_ns at the answer, joules of the rails in rail_w as printed), so the test
    knows exactly when each counter value it gets back was taken.
    """
    t0_ns = time.perf_counter_ns()
    template = (CMD / "dumpsys_powerstats_hal.txt").read_text()
    base_mws = {name: mws for name, mws in ((n, v / 1e3) for n, v in parse_powerstats(template)[1].items())}
    answers: list[tuple[int, float]] = []

    def hal() -> str:
        now_ns = time.perf_counter_ns()
        text, joules = template, 0.0
        for name, mws in base_mws.items():
            printed = f"{mws + rail_w.get(name, 0.0) * (now_ns - t0_ns) / 1e6:14.2f}"
            text = text.replace(f"{mws:14.2f} mWs", f"{printed} mWs")
            joules += float(printed) / 1e3 if name in rail_w else 0.0
        answers.append((now_ns, joules))
        return text

    shell = Shell(
        outputs={
            ("dumpsys", "powerstats"): (CMD / "dumpsys_powerstats.txt").read_text(),
            (
                "dumpsys",
                "android.hardware.power.stats.IPowerStats/default",
            ): hal,
        }
    )
    return shell, answers


def test_android_odpm_rail_energy_counters():
    shell, answers = odpm_shell({"S10M_VDD_TPU": 1.5, "S2M_VDD_CPUCL2": 2.0})
    probe = AndroidOdpmProbe(root=FIX, run=shell, rate_hz=20.0, rails=["S10M_VDD_TPU", "S2M_VDD_CPUCL2"])
    assert probe.check().available, probe.check().reason
    trace = run_probe(probe, 0.6)
    assert (trace.kind, trace.scope, trace.rails) == ("energy", "rail", ("S10M_VDD_TPU", "S2M_VDD_CPUCL2"))
    # Each sample is one HAL answer, summed over the two rails and converted to J, and stamped
    # between its neighbours' stamps (the answer came during its own read).
    t = [int(x) for x in trace.t_ns]
    answered_ns = []
    for j, joules in enumerate(trace.values):
        match = [a_ns for a_ns, a_j in answers if a_j == pytest.approx(joules, abs=1e-9)]
        assert match, f"sample {j} ({joules} J) is not a HAL answer"
        answered_ns.append(match[0])
        assert (j == 0 or t[j - 1] <= match[0]) and (j + 1 == len(t) or match[0] <= t[j + 1])
    result = window_energy(trace, t[0], t[-1])
    assert result.valid, result.reason
    # 3.5 W between the first and last answers; each printed counter is rounded to 0.01 mWs.
    assert result.joules == pytest.approx(3.5 * (answered_ns[-1] - answered_ns[0]) / 1e9, abs=4e-5)
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
    with pytest.raises(ProbeError, match="not started"):
        probe.stop()
    probe.start()
    with pytest.raises(ProbeError, match="already started"):
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
