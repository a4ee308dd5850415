"""Serial meter probes against real pseudo-terminals driven by tools/meter_emulator.py.

Every probe here opens a real pty with pyserial and decodes the protocol the
emulator speaks (reference/power-and-thermal-sensors.md §5): clean streams,
noise bytes, truncated frames, the port vanishing mid-run, and ports that do
not exist or do not answer. The pure decoders get unit tests of their own.
"""

from __future__ import annotations

import errno
import os
import re
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tool_modules import tool

from edgerun.errors import InputError, ProbeError, ProbeUnavailable
from edgerun.power import serial_lpm01a, serial_ppk2, serial_um
from edgerun.power.base import Trace
from edgerun.power.serial_base import SerialMeter, parse_scope, port_error_reason, stream_times_ns
from edgerun.power.serial_ina219 import CsvDecoder, Ina219CsvProbe, mcu_to_host_ns
from edgerun.power.serial_lpm01a import Lpm01aProbe, decode_data_line
from edgerun.power.serial_ppk2 import Ppk2Calibration, Ppk2Decoder, Ppk2Probe, source_voltage_bytes
from edgerun.power.serial_um import RdtechUmProbe, UmFrameSync, decode_frame

emulator = tool("meter_emulator")

# meter -> (emulated watts, probe factory, relative tolerance of the decoded power)
METERS: dict[str, tuple[float, Callable[[str], SerialMeter], float]] = {
    "ina219": (2.5, lambda port: Ina219CsvProbe(port), 1e-3),
    "um24c": (2.5, lambda port: RdtechUmProbe(port, poll_hz=20, response_timeout_s=0.2), 1e-3),
    "um25c": (2.5, lambda port: RdtechUmProbe(port, model="um25c", poll_hz=20, response_timeout_s=0.2), 1e-3),
    "um34c": (2.5, lambda port: RdtechUmProbe(port, poll_hz=20, response_timeout_s=0.2), 1e-3),
    "ppk2": (0.05, lambda port: Ppk2Probe(port, voltage_mv=3300), 2e-3),  # 15 mA from 3.3 V
    "lpm01a": (0.0165, lambda port: Lpm01aProbe(port, voltage_mv=3300), 2e-3),  # 5 mA at 3.3 V
}


@pytest.fixture
def emulate() -> Iterator[Callable[..., object]]:
    started = []

    def start(meter: str, **kwargs: object):
        emu = emulator.MeterEmulator(meter, METERS[meter][0], **kwargs)
        emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.close()


def _run(probe: SerialMeter, seconds: float) -> tuple[Trace, int, int]:
    t0 = time.perf_counter_ns()
    probe.start()
    time.sleep(seconds)
    trace = probe.stop()
    return trace, t0, time.perf_counter_ns()


def _count(trace: Trace, phrase: str) -> int:
    """The number in the note that mentions ``phrase`` (0 when there is none)."""
    for note in trace.notes:
        if phrase in note:
            return int(re.match(r"(\d+)", note).group(1))  # type: ignore[union-attr]
    return 0


def _assert_power(trace: Trace, watts: float, rel: float) -> None:
    assert trace.values.size > 0, trace.notes
    np.testing.assert_allclose(trace.values, watts, rtol=rel)


# -- every meter, real pty --------------------------------------------------------------


@pytest.mark.parametrize("meter", list(METERS))
def test_decoded_power_matches_the_emulated_power(meter: str, emulate) -> None:
    watts, make, rel = METERS[meter]
    # lossless: a reader starved on a loaded machine makes the emulator wait, not cut a frame in half
    # (a clean stream is what this test claims; the noise tests cover lost bytes)
    emu = emulate(meter, boot_delay_s=0.05, lossless=True)
    probe = make(emu.path)
    assert probe.check().available, probe.check().reason
    trace, t0, t1 = _run(probe, 0.3)
    _assert_power(trace, watts, rel)
    assert (trace.kind, trace.scope, trace.probe, trace.measured) == ("power", "board", probe.name, True)
    assert trace.t_ns.dtype == np.int64 and np.all(np.diff(trace.t_ns) > 0)
    assert t0 - 50_000_000 <= trace.t_ns[0] and trace.t_ns[-1] <= t1  # perf_counter_ns, inside the run
    assert trace.sample_rate_hz and trace.sample_rate_hz > 0
    assert not any("skipped" in n or "lost" in n for n in trace.notes), trace.notes


@pytest.mark.parametrize(
    ("meter", "counted"),
    [
        ("ina219", "garbage lines skipped"),
        ("um24c", "bad frames"),
        ("um34c", "bad frames"),
        ("ppk2", "stray bytes skipped"),
        ("lpm01a", "garbage lines skipped"),
    ],
)
def test_noise_and_truncated_frames_are_survived_and_counted(meter: str, counted: str, emulate) -> None:
    watts, make, rel = METERS[meter]
    emu = emulate(meter, noise_bytes=7, noise_every=3, truncate_every=4, seed=1)
    trace, _, _ = _run(make(emu.path), 0.4)
    assert emu.noise_events > 0 and emu.truncated > 0
    _assert_power(trace, watts, rel)  # every sample, not just the mean: no garbage got through
    assert _count(trace, counted) > 0, trace.notes


def test_ppk2_truncated_words_cost_samples_but_not_timing(emulate) -> None:
    emu = emulate("ppk2", truncate_every=3)
    trace, _, _ = _run(Ppk2Probe(emu.path), 0.35)
    _assert_power(trace, 0.05, 2e-3)
    assert _count(trace, "samples lost") > 0
    assert _count(trace, "stray bytes skipped") > 0
    # lost samples still advance the sample index, so the blocks stay on the 1 ms grid
    assert np.all(np.abs(np.diff(trace.t_ns[:-1]) / 1e6 - 1.0) < 0.05)  # the last block may be partial


@pytest.mark.parametrize("meter", ["ina219", "um25c", "ppk2", "lpm01a"])
def test_port_disappearing_mid_run_gives_a_trace_with_a_note(meter: str, emulate) -> None:
    watts, make, rel = METERS[meter]
    emu = emulate(meter)
    probe = make(emu.path)
    probe.start()
    time.sleep(0.2)
    emu.drop()
    time.sleep(0.15)
    t = time.monotonic()
    trace = probe.stop()
    assert time.monotonic() - t < 1.0  # no hang on a dead port
    assert any("lost mid-run" in n for n in trace.notes), trace.notes
    _assert_power(trace, watts, rel)


@pytest.mark.parametrize("meter", ["ina219", "ppk2", "lpm01a"])
def test_a_power_step_lands_at_the_right_time(meter: str, emulate) -> None:
    watts, make, _ = METERS[meter]
    emu = emulate(meter, step_at_s=0.15, step_watts=2 * watts)
    trace, _, _ = _run(make(emu.path), 0.3)
    high = np.flatnonzero(trace.values > 1.5 * watts)
    assert high.size and np.all(trace.values[high[0] :] > 1.5 * watts)
    expected_ns = emu.stream_t0_ns + 150_000_000
    assert abs(int(trace.t_ns[high[0]]) - expected_ns) < 5_000_000  # within 5 ms on the host clock


# -- check() and start() failures ---------------------------------------------------------

PROBES = [Ina219CsvProbe, RdtechUmProbe, Ppk2Probe, Lpm01aProbe]


@pytest.mark.parametrize("cls", PROBES)
def test_check_on_a_missing_port_says_so(cls) -> None:
    probe = cls("/dev/ttyEDGERUN404")
    availability = probe.check()
    assert not availability.available
    assert availability.reason.startswith("no such port /dev/ttyEDGERUN404")
    with pytest.raises(ProbeUnavailable, match="no such port"):
        probe.start()
    with pytest.raises(ProbeError, match="was not started"):
        probe.stop()


@pytest.fixture
def silent_pty() -> Iterator[str]:
    master, slave = os.openpty()
    tty.setraw(slave)
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.mark.parametrize(
    ("cls", "expected"),
    [(RdtechUmProbe, "no valid UM frame"), (Ppk2Probe, "metadata request"), (Lpm01aProbe, "no 'ack htc'")],
)
def test_check_on_a_port_where_nothing_answers(cls, expected: str, silent_pty: str, monkeypatch) -> None:
    monkeypatch.setattr(serial_um, "IDENTIFY_TIMEOUT_S", 0.2)
    monkeypatch.setattr(serial_ppk2, "METADATA_TIMEOUT_S", 0.2)
    monkeypatch.setattr(serial_lpm01a, "COMMAND_TIMEOUT_S", 0.2)
    probe = cls(silent_pty, response_timeout_s=0.2) if cls is RdtechUmProbe else cls(silent_pty)
    availability = probe.check()
    assert not availability.available and expected in availability.reason
    with pytest.raises(ProbeUnavailable):
        probe.start()


def test_um_refuses_a_meter_of_another_model(emulate) -> None:
    emu = emulate("um34c")
    availability = RdtechUmProbe(emu.path, model="um25c").check()
    assert not availability.available
    assert "is a UM34C, not a UM25C" in availability.reason


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.ENOENT, "no such port"),
        (errno.EACCES, "add yourself to the dialout group"),
        (errno.EBUSY, "busy"),
        (errno.EHOSTDOWN, "Bluetooth"),
    ],
)
def test_open_errors_become_actionable_reasons(code: int, expected: str, monkeypatch) -> None:
    import serial

    def refuse(port: str, *args: object, **kwargs: object) -> None:
        raise serial.SerialException(code, f"could not open port {port}: [Errno {code}] {os.strerror(code)}")

    monkeypatch.setattr(serial, "Serial", refuse)
    availability = Ina219CsvProbe("/dev/ttyUSB0").check()
    assert not availability.available and expected in availability.reason
    assert expected in port_error_reason("/dev/ttyUSB0", OSError(code, os.strerror(code)))


def test_a_file_that_is_not_a_tty_is_not_a_serial_port(tmp_path: Path) -> None:
    path = tmp_path / "not-a-port"
    path.write_text("")
    availability = Ina219CsvProbe(str(path)).check()
    assert not availability.available and "is not a serial port" in availability.reason


def test_scope_is_what_the_meter_is_wired_to(emulate) -> None:
    emu = emulate("lpm01a")
    probe = Lpm01aProbe(emu.path, scope="rail:vdd_mcu")
    probe.start()
    with pytest.raises(ProbeError, match="already started"):
        probe.start()
    time.sleep(0.1)
    trace = probe.stop()
    assert (trace.scope, trace.rails) == ("rail", ("vdd_mcu",))
    assert parse_scope("battery") == ("battery", ())
    for bad in ("estimate", "rail", "wall"):
        with pytest.raises(InputError, match="scope"):
            parse_scope(bad)


def test_constructor_arguments_are_validated() -> None:
    with pytest.raises(InputError, match="800-5000"):
        Ppk2Probe("/dev/null", voltage_mv=6000)
    with pytest.raises(InputError, match="1800-3300"):
        Lpm01aProbe("/dev/null", voltage_mv=5000)
    with pytest.raises(InputError, match="freq_hz"):
        Lpm01aProbe("/dev/null", freq_hz=10_000)  # ascii_dec with acqtime inf stops at 5 kHz
    with pytest.raises(InputError, match="model"):
        RdtechUmProbe("/dev/null", model="um99")


# -- INA219 CSV ----------------------------------------------------------------------


def test_ina219_hand_written_stream_through_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    probe = Ina219CsvProbe(os.ttyname(slave))
    probe.start()
    lines = [
        b"half a line from before the port opened\n",  # dropped unseen
        b"power_mW,t_us,current_mA,bus_V\r\n",  # a header in another order
        b"1000.0,1000,200.0,5.0\r\n",
        b"not,a,number,here\r\n",
        b"1000.0,2000,200.0,5.0,extra\r\n",
        b",3000,400.0,5.0\r\n",  # no power: V x I = 2 W
        b"1500.0,4000,200.0,5.0\r\n",  # disagrees with V x I
        b"nan,5000,200.0,5.0\r\n",
        b"\xff\xfe1000.0,6000,200.0,5.0\r\n",
        b"1000.0,7000,200.0,5.0\r\n",
    ]
    for line in lines:
        os.write(master, line)
        time.sleep(0.002)
    time.sleep(0.15)
    trace = probe.stop()
    os.close(master)
    os.close(slave)
    np.testing.assert_allclose(trace.values, [1.0, 2.0, 1.0])
    assert np.diff(trace.t_ns).tolist() == [2_000_000, 4_000_000]  # the MCU's spacing, not arrival jitter
    assert _count(trace, "garbage lines") == 4
    assert _count(trace, "disagreed") == 1


def test_csv_decoder_rules() -> None:
    dec = CsvDecoder()
    assert dec.decode("123456,5.012,412.3,2066.5") == (123456.0, pytest.approx(2.0665))
    assert dec.decode("123457,5.0,400.0") == (123457.0, pytest.approx(2.0))  # power missing: V x I
    assert dec.decode("") is None and dec.garbage == 0
    for junk in ("12,5.0,abc,1", "1,2,3,4,5", "inf,5,1,5", "shunt_mV,foo", "1\x002,5,400,2000"):
        assert dec.decode(junk) is None
    assert dec.garbage == 5
    assert dec.decode("bus_V,current_mA") is None and dec.columns == ("bus_V", "current_mA")
    assert dec.decode("5.0,100.0") == (None, pytest.approx(0.5))


def test_mcu_time_mapping_unwraps_and_survives_restarts_and_corrupt_stamps() -> None:
    period_us = 1000
    t_us = (np.arange(10) * period_us + 2**32 - 4500) % 2**32  # micros() wraps after sample 4
    arrival = 5_000_000_000 + np.arange(10) * 1_000_000 + 300_000  # 0.3 ms USB latency
    t_ns, keep, restarts = mcu_to_host_ns(t_us, arrival)
    assert keep.all() and restarts == 0
    np.testing.assert_array_equal(np.diff(t_ns), 1_000_000)
    assert t_ns[0] == arrival[0]  # the least latency is taken as zero
    t_us[6] += 7_000_000_000 // 1000  # a corrupted digit: 7 s in the future
    t_ns, keep, _ = mcu_to_host_ns(t_us, arrival)
    assert keep.tolist() == [True] * 6 + [False] + [True] * 3
    t_ns, keep, restarts = mcu_to_host_ns(
        [50_000, 51_000, 100, 1100], [10**9, 10**9 + 10**6, 2 * 10**9, 2 * 10**9 + 10**6]
    )
    assert restarts == 1 and keep.all() and t_ns[2] == 2 * 10**9  # the run after the reset is re-anchored


# -- RuiDeng UM ----------------------------------------------------------------------


@pytest.mark.parametrize(("meter", "volts"), [("um24c", 5.0), ("um25c", 5.0), ("um34c", 5.0)])
def test_um_frames_decode_with_each_models_scale(meter: str, volts: float) -> None:
    reading = decode_frame(emulator.um_frame(meter, 2.5, volts))
    assert reading is not None and reading.model.name == meter.upper()
    assert (reading.volts, reading.amps, reading.watts, reading.temp_c) == pytest.approx((5.0, 0.5, 2.5, 25))


def test_um_sync_skips_garbage_and_counts_bad_frames() -> None:
    good = emulator.um_frame("um34c", 1.25)
    corrupt = bytearray(good)
    corrupt[23] ^= 0x01  # a byte the UM34C checksum covers
    sync = UmFrameSync()
    stream = b"\x00\x13garbage" + good[:70] + bytes(corrupt) + good
    readings = [r for i in range(0, len(stream), 17) for r in sync.feed(stream[i : i + 17])]
    assert [r.watts for r in readings] == [1.25]
    assert sync.bad_frames == 2 and sync.skipped_bytes > 0
    assert decode_frame(good[:-1]) is None


# -- PPK2 ----------------------------------------------------------------------------


def test_ppk2_source_voltage_encoding() -> None:
    assert source_voltage_bytes(800) == (3, 32)
    assert source_voltage_bytes(3300) == (12, 228)
    assert source_voltage_bytes(5000) == (19, 136)


def test_ppk2_calibration_from_metadata() -> None:
    cal = Ppk2Calibration.from_metadata(emulator.ppk2_metadata() + "R2: 0\nO1: garbage\n")
    assert cal.r == emulator.PPK2_CAL["R"] and cal.o == emulator.PPK2_CAL["O"]  # R2: 0 kept, garbage ignored
    assert cal.gs == emulator.PPK2_CAL["GS"] and cal.ug == emulator.PPK2_CAL["UG"]
    assert Ppk2Calibration.from_metadata("").r == Ppk2Calibration().r
    words = emulator.encode_ppk2(0.015, 3.3, np.arange(4))
    np.testing.assert_allclose(cal.current_a(words, 3.3), 0.015, rtol=1e-3)
    assert not np.allclose(Ppk2Calibration().current_a(words, 3.3), 0.015, rtol=1e-2)


def test_ppk2_decoding_does_not_depend_on_how_the_bytes_are_chunked() -> None:
    cal = Ppk2Calibration.from_metadata(emulator.ppk2_metadata())
    rng = np.random.default_rng(3)
    parts = []
    for k in range(0, 5000, 500):
        parts.append(emulator.encode_ppk2(0.002 * (1 + k // 1000), 3.3, np.arange(k, k + 500)).tobytes())
        parts.append(rng.integers(0, 256, 5, dtype=np.uint8).tobytes())
    stream = b"".join(parts)
    results = []
    for chunk in (len(stream), 4, 7, 333):
        dec = Ppk2Decoder(cal, 3.3, 100)
        for i in range(0, len(stream), chunk):
            dec.feed(stream[i : i + chunk])
        dec.finish()
        results.append((dec.block_ids, np.round(dec.block_amps, 9).tolist(), dec.skipped_bytes, dec.lost_samples))
    assert all(r == results[0] for r in results)
    ids, amps, skipped, lost = results[0]
    # 10 noise events of 5 bytes; each costs its bytes (4 fewer when a noise word passed the counter
    # test by chance and was dropped as the suspect) and at most the 2 genuine words around it
    assert ids == list(range(50)) and 40 <= skipped <= 50 and lost <= 20
    np.testing.assert_allclose(amps, 0.002 * (1 + np.arange(50) // 10), rtol=1e-2)


# -- LPM01A and stream timing ----------------------------------------------------------


def test_lpm01a_data_lines() -> None:
    assert decode_data_line("6409-07") == [pytest.approx(6.409e-4)]
    assert decode_data_line("6409-07 1234+01") == [pytest.approx(6.409e-4), pytest.approx(12340.0)]
    for junk in ("64O9-07", "6409-7", "TimeStamp: 001s", "", "6409-07 x"):
        assert decode_data_line(junk) is None
    for amps in (6.409e-4, 1e-7, 0.0099999, 0.2):
        assert decode_data_line(emulator.lpm01a_value(amps)) == [pytest.approx(amps, rel=1e-3)]


def test_stream_times_take_the_least_latency_chunk() -> None:
    # 1 kHz; the first read was late by 20 ms, the second arrived 1 ms after its last sample
    chunks = [(1_030_000_000, 10), (1_041_000_000, 40)]
    t_ns = stream_times_ns(np.arange(40), chunks, 1000.0)
    assert t_ns[39] == 1_041_000_000 and np.all(np.diff(t_ns) == 1_000_000)  # the on-time read sets the clock
