"""edgerun.measure.thermal against fixture trees and recorded outputs (tests/fixtures/thermal/README.md)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgerun.measure.thermal import (
    ThermalState,
    ThrottleBits,
    compare,
    cooldown,
    parse_thermalservice,
    parse_throttled,
    read_thermal,
)

FIXTURES = Path(__file__).parent / "fixtures" / "thermal"
COMMANDS = FIXTURES / "commands"


def runner(throttled: str | None = None, dumpsys: bool = False):
    """A command runner answering from recorded outputs; None for anything else (absent)."""

    def run(argv: Sequence[str]) -> str | None:
        if list(argv) == ["vcgencmd", "get_throttled"] and throttled is not None:
            return (COMMANDS / f"vcgencmd_get_throttled_{throttled}.txt").read_text()
        if list(argv) == ["dumpsys", "thermalservice"] and dumpsys:
            return (COMMANDS / "dumpsys_thermalservice.txt").read_text()
        return None

    return run


def state(temp_c: float | None = None, *, throttled: int | None = None, android_status: int | None = None):
    zones = {} if temp_c is None else {"cpu-thermal": temp_c}
    bits = None if throttled is None else ThrottleBits(throttled)
    return ThermalState(0, zones, {}, {}, throttled=bits, android_status=android_status)


# --------------------------------------------------------------------------- sysfs trees


def test_rpi5_tree():
    s = read_thermal(FIXTURES / "rpi5")
    assert s.zones_c == {"cpu-thermal": 48.3}
    assert s.cpu_freq_khz == {0: 2400000, 1: 2400000, 2: 2400000, 3: 2400000}
    assert set(s.governors.values()) == {"ondemand"}
    assert s.hottest_c == 48.3
    assert len(s.sources) == 2 and all(src.startswith("sysfs") for src in s.sources)
    # A fixture root is not this machine: no local command may answer for it.
    assert s.throttled is None and any("vcgencmd" in note for note in s.notes)


def test_jetson_orin_nano_zones_skip_offline_cv_zones():
    s = read_thermal(FIXTURES / "jetson-orin-nano")
    assert s.zones_c == {
        "cpu-thermal": 46.531,
        "gpu-thermal": 48.218,
        "soc0-thermal": 46.593,
        "soc1-thermal": 48.843,
        "soc2-thermal": 47.312,
        "tj-thermal": 48.843,
    }
    offline = [note for note in s.notes if "temp unreadable" in note]
    assert [note.split()[0] for note in offline] == ["thermal_zone2", "thermal_zone3", "thermal_zone4"]
    assert len(s.cpu_freq_khz) == 6 and set(s.governors.values()) == {"schedutil"}
    assert s.hottest_c == 48.843


def test_jetson_nano_pmic_placeholder_is_kept_but_not_hottest():
    s = read_thermal(FIXTURES / "jetson-nano")
    assert s.zones_c["PMIC-Die"] == 100.0
    assert s.hottest_c == 41.5  # AO-therm, not the constant 100 C


def test_duplicate_zone_types_and_sentinels(tmp_path):
    for i, (kind, temp) in enumerate([("acpitz", "27800"), ("acpitz", "29800"), ("gpu-thermal", "-256000")]):
        zone = tmp_path / f"sys/class/thermal/thermal_zone{i}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(temp + "\n")
    (tmp_path / "sys/class/thermal/thermal_zone1/temp").unlink()
    (tmp_path / "sys/class/thermal/thermal_zone1/temp").mkdir()  # a read that fails with an OSError
    (tmp_path / "sys/class/thermal/thermal_zone3").mkdir()  # a zone with no files at all
    s = read_thermal(tmp_path)
    assert s.zones_c == {"acpitz": 27.8}
    assert any("-256" in note and "sentinel" in note for note in s.notes)
    assert any("thermal_zone1 (acpitz): temp unreadable" in note for note in s.notes)
    shutil.copytree(
        FIXTURES / "jetson-nano/sys/class/thermal/thermal_zone0", tmp_path / "sys/class/thermal/thermal_zone7"
    )
    (tmp_path / "sys/class/thermal/thermal_zone8").mkdir()
    (tmp_path / "sys/class/thermal/thermal_zone8/type").write_text("acpitz\n")
    (tmp_path / "sys/class/thermal/thermal_zone8/temp").write_text("31000\n")
    assert read_thermal(tmp_path).zones_c == {"acpitz": 27.8, "AO-therm": 41.5, "acpitz@thermal_zone8": 31.0}


def test_nothing_readable_is_a_state_with_notes_not_a_crash(tmp_path):
    s = read_thermal(tmp_path)
    assert s.zones_c == {} and s.cpu_freq_khz == {} and s.hottest_c is None and s.sources == ()
    assert len(s.notes) == 4  # zones, cpufreq, vcgencmd, dumpsys


def test_real_read_on_this_machine():
    s = read_thermal()
    data = json.loads(json.dumps(s.to_dict()))
    assert data["t_ns"] > 0
    if not s.zones_c:  # containers and VMs: no zones, and the state says so
        assert any("thermal zones" in note for note in s.notes)
    for temp_c in s.zones_c.values():
        assert -100 < temp_c < 150


# --------------------------------------------------------------------------- Raspberry Pi throttling


@pytest.mark.parametrize(
    ("name", "now", "occurred"),
    [
        ("0x0", (), ()),
        ("0x50000", (), ("under-voltage", "throttled")),
        ("0x50005", ("under-voltage", "throttled"), ("under-voltage", "throttled")),
    ],
)
def test_recorded_get_throttled_outputs(name, now, occurred):
    bits = parse_throttled((COMMANDS / f"vcgencmd_get_throttled_{name}.txt").read_text())
    assert bits is not None and bits.raw == int(name, 16)
    assert bits.now == now and bits.occurred == occurred
    assert bits.to_dict() == {"raw": name, "now": list(now), "occurred": list(occurred)}


def test_every_throttle_bit_and_garbage():
    every = ThrottleBits(0xF000F)
    names = ("under-voltage", "arm-frequency-capped", "throttled", "soft-temperature-limit")
    assert every.now == names and every.occurred == names
    assert ThrottleBits(0x80008).now == ("soft-temperature-limit",)
    assert ThrottleBits(0x20000).occurred == ("arm-frequency-capped",)
    assert parse_throttled('error=1 error_msg="Command not registered"') is None


def test_read_thermal_asks_the_runner_for_vcgencmd():
    s = read_thermal(FIXTURES / "rpi5", run=runner(throttled="0x50005"))
    assert s.throttled == ThrottleBits(0x50005)
    assert "vcgencmd get_throttled" in s.sources
    assert s.to_dict()["throttled"]["raw"] == "0x50005"


def test_unexpected_vcgencmd_output_is_a_note():
    s = read_thermal(None, run=lambda argv: "VCHI initialization failed\n" if argv[0] == "vcgencmd" else None)
    assert s.throttled is None
    assert any("unexpected output" in note and "VCHI" in note for note in s.notes)


# --------------------------------------------------------------------------- compare


def test_compare_flags_a_frequency_drop_between_two_trees():
    flags = compare(read_thermal(FIXTURES / "rpi5"), read_thermal(FIXTURES / "rpi5-hot"))
    assert flags.frequency_changed and flags.flagged and not flags.throttled
    assert flags.max_temp_rise_c == pytest.approx(36.3)
    assert (flags.start_hottest_c, flags.end_hottest_c) == (48.3, 84.6)
    (reason,) = flags.reasons
    assert "cpu0 2400000 -> 1500000 kHz" in reason and "ondemand" in reason


def test_compare_same_tree_is_clean():
    s = read_thermal(FIXTURES / "jetson-orin-nano")
    flags = compare(s, s)
    assert not flags.flagged and flags.reasons == () and flags.max_temp_rise_c == 0.0


def test_compare_governor_change(tmp_path):
    shutil.copytree(FIXTURES / "rpi5", tmp_path / "rpi5")
    (tmp_path / "rpi5/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor").write_text("powersave\n")
    flags = compare(read_thermal(FIXTURES / "rpi5"), read_thermal(tmp_path / "rpi5"))
    assert flags.frequency_changed and "cpu2 governor ondemand -> powersave" in flags.reasons[0]


@pytest.mark.parametrize(
    ("before", "after", "throttled"),
    [
        (0x0, 0x0, False),
        (0x50000, 0x50000, False),  # happened before this run: sticky bits, unchanged
        (0x0, 0x50000, True),  # under-voltage and throttling occurred during the run
        (0x50000, 0x50005, True),  # throttled right now
        (0x50005, 0x50000, True),  # throttled at the start
    ],
)
def test_compare_throttle_bits(before, after, throttled):
    flags = compare(state(50.0, throttled=before), state(50.0, throttled=after))
    assert flags.throttled is throttled and flags.flagged is throttled
    assert bool(flags.reasons) is throttled


def test_compare_names_what_occurred_during_the_run():
    flags = compare(state(throttled=0x0), state(throttled=0x50000))
    assert flags.reasons == ("during the run: under-voltage, throttled (get_throttled 0x0 -> 0x50000)",)


def test_compare_without_throttle_info_does_not_flag():
    assert not compare(state(50.0), state(51.0, throttled=0x0)).flagged


# --------------------------------------------------------------------------- Android


def test_thermalservice_ignores_cached_block_and_non_temperatures():
    android = parse_thermalservice((COMMANDS / "dumpsys_thermalservice.txt").read_text())
    assert android.status == 1
    assert android.temps_c == {
        "CPU0": 62.500004,
        "CPU1": 61.000004,
        "GPU": 55.2,
        "battery": 31.6,
        "VIRTUAL-SKIN": 38.92,
    }
    skipped = " ".join(android.notes)
    assert "vbat" in skipped and "NPU" in skipped and "STALE-NPU" not in skipped


def test_thermalservice_with_hal_not_ready_reports_no_temperatures():
    text = (
        "Thermal Status: 0\nCached temperatures:\n"
        "\tTemperature{mValue=44.0, mType=0, mName=CPU0, mStatus=0}\nHAL Ready: false\n"
    )
    android = parse_thermalservice(text)
    assert android.status == 0 and android.temps_c == {}
    assert any("cached values ignored" in note for note in android.notes)


def test_read_thermal_over_a_runner_only():
    s = read_thermal(None, run=runner(dumpsys=True))
    assert s.sources == ("dumpsys thermalservice",)
    assert s.android_status == 1 and s.zones_c == {}
    assert s.hottest_c == 62.500004
    assert s.temps_c()["android:VIRTUAL-SKIN"] == 38.92
    json.dumps(s.to_dict())


def test_android_status_rising_is_flagged():
    flags = compare(state(40.0, android_status=0), state(45.0, android_status=2))
    assert flags.android_status_rose and flags.throttled and flags.max_temp_rise_c == 5.0
    assert any("moderate" in reason for reason in flags.reasons)
    assert not compare(state(40.0, android_status=0), state(41.0, android_status=0)).flagged


# --------------------------------------------------------------------------- cooldown


class Clock:
    """Injected read/sleep: each read returns the next temperature; sleeps are recorded."""

    def __init__(self, temps_c: list[float | None]) -> None:
        self.temps_c, self.sleeps = list(temps_c), []

    def read(self) -> ThermalState:
        temp = self.temps_c.pop(0) if len(self.temps_c) > 1 else self.temps_c[0]
        return state(temp)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_cooldown_polls_until_under_the_target():
    clock = Clock([70.0, 66.0, 61.0, 58.0, 99.0])
    result = cooldown(60.0, None, 120.0, read=clock.read, sleep=clock.sleep, poll_s=5.0)
    assert result.reached and result.waited_s == 15.0 and clock.sleeps == [5.0, 5.0, 5.0]
    assert (result.start_c, result.end_c, result.readings) == (70.0, 58.0, 4)
    assert "under 60 C" in result.reason


def test_cooldown_gives_up_after_max_wait():
    clock = Clock([70.0])
    result = cooldown(60.0, None, 12.0, read=clock.read, sleep=clock.sleep, poll_s=5.0)
    assert not result.reached and clock.sleeps == [5.0, 5.0, 2.0] and result.waited_s == 12.0
    assert "gave up" in result.reason and result.end_c == 70.0
    json.dumps(result.to_dict())


def test_cooldown_already_cool_does_not_sleep():
    clock = Clock([40.0])
    result = cooldown(60.0, None, 12.0, read=clock.read, sleep=clock.sleep)
    assert result.reached and clock.sleeps == [] and result.readings == 1


def test_cooldown_fixed_pause_then_temperature():
    clock = Clock([70.0, 62.0, 55.0])
    result = cooldown(60.0, 30.0, 100.0, read=clock.read, sleep=clock.sleep, poll_s=10.0)
    assert result.reached and clock.sleeps == [30.0, 10.0] and result.waited_s == 40.0
    assert result.reason.startswith("paused 30 s; ")


def test_cooldown_pause_only_and_pause_capped():
    clock = Clock([50.0])
    assert cooldown(None, 20.0, 60.0, read=clock.read, sleep=clock.sleep).reached
    assert clock.sleeps == [20.0]
    capped = cooldown(None, 90.0, 60.0, read=clock.read, sleep=clock.sleep)
    assert not capped.reached and capped.waited_s == 60.0 and "capped" in capped.reason


def test_cooldown_without_any_temperature_gives_up_at_once():
    clock = Clock([None])
    result = cooldown(60.0, None, 100.0, read=clock.read, sleep=clock.sleep)
    assert not result.reached and clock.sleeps == [] and "no temperature" in result.reason


def test_cooldown_nothing_asked_and_bad_arguments():
    clock = Clock([99.0])
    result = cooldown(read=clock.read, sleep=clock.sleep)
    assert result.reached and result.readings == 0 and clock.sleeps == []
    with pytest.raises(ValueError):
        cooldown(60.0, None, -1.0, read=clock.read, sleep=clock.sleep)
    with pytest.raises(ValueError):
        cooldown(60.0, None, 10.0, read=clock.read, sleep=clock.sleep, poll_s=0)
