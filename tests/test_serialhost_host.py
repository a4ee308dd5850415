"""The serial host against tools/firmware_emulator.py over real pseudo-terminals, through pyserial.

Every test opens a real pty; the emulator's firmware streams simulated ECG
frames (docs/serial-protocol.md) and injects the faults the test asks for, and
the host runs the bundled ECG demo model. Faults are counted by the emulator
as it injects them, so the host's counts are checked exactly where the
protocol makes them exact. The emulator runs at 20x the sensor's rate so a
4 s window arrives in 0.2 s.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from tool_modules import tool

import edgerun
from edgerun.errors import PortUnavailable
from edgerun.serialhost import ECG_DEMO_DIR
from edgerun.serialhost import frames as fr
from edgerun.serialhost.host import HostConfig, SerialHost

emu_mod = tool("firmware_emulator")
WINDOW = 1000


@pytest.fixture(scope="module")
def runtime():
    return edgerun.load(ECG_DEMO_DIR / "ecg-int8.tflite", threads=1)


def serve(runtime: Any, firmware: Any, seconds: float, link: str | None = None, until: Any = None, **config: Any):
    """Run an emulator and a host against each other; return (summary, firmware, host).

    Without ``until`` the host runs ``seconds``; with it, until ``until(firmware, host)`` holds
    (checked every 50 ms, at most 5 x ``seconds``), so a loaded CI machine only makes tests slower.
    """
    with emu_mod.FirmwareEmulator(firmware, link=link) as emu:
        config.setdefault("hop", 250)
        host = SerialHost(runtime, HostConfig(port=link or emu.path, **config))
        if until is None:
            return host.run(duration_s=seconds), firmware, host
        stop, box = threading.Event(), {}
        runner = threading.Thread(target=lambda: box.update(summary=host.run(stop)))
        runner.start()
        deadline = time.monotonic() + 5 * seconds
        while time.monotonic() < deadline and runner.is_alive() and not until(firmware, host):
            time.sleep(0.05)
        stop.set()
        runner.join(10)
    return box["summary"], firmware, host


class Settled:
    """True once the firmware stopped streaming (``stop_at``) and the host's frame counts held for 0.3 s."""

    def __init__(self) -> None:
        self.last: tuple[int, ...] = ()
        self.since = time.monotonic()

    def __call__(self, fw: Any, host: Any) -> bool:
        c = host.decoder.counts
        now = (c.frames, c.crc_failed, c.malformed, host.counters.windows_decided)
        if now != self.last:
            self.last, self.since = now, time.monotonic()
        started = fw._stream_t0 is not None and time.monotonic() - fw._stream_t0 > fw.faults["stop_at"]
        return started and time.monotonic() - self.since > 0.3


def fast(**kwargs: Any) -> Any:
    kwargs.setdefault("speed", 20.0)
    return emu_mod.HostFirmware(**kwargs)


def correct_share(fw: Any) -> tuple[int, int]:
    """(correct, judged) over results whose window holds a single rhythm in the emulator's ground truth."""
    labels = edgerun.load(ECG_DEMO_DIR / "ecg-int8.tflite").artifact.manifest.labels
    right = judged = 0
    for _, res in fw.results:
        truth = fw.window_truth(fw.boot_id, res.end_index, WINDOW)
        if len(truth) == 1:
            judged += 1
            right += labels[res.class_index] in truth
    return right, judged


def test_handshake_acks_window_hop_and_labels(runtime):
    summary, fw, _ = serve(runtime, fast(), 0.6, until=lambda fw, host: fw.acks and fw.host_heartbeats)
    ack = fw.acks[0]
    assert (ack.status, ack.protocol_version, ack.window_samples, ack.hop_samples) == (fr.ACK_OK, 1, 1000, 250)
    assert ack.text.split("\n") == ["normal", "af-like", "pvc"]
    assert summary["device"] | {"boot_id": 0} == {
        "name": "edgerun-emu-ecg",
        "boot_id": 0,
        "protocol_version": 1,
        "sample_rate_hz": 250.0,
        "channels": 1,
        "sample_type": "<i2",
        "scale": pytest.approx(0.001),
    }
    assert summary["sessions"]["handshakes"] == 1 and fw.host_heartbeats >= 1


def test_windows_and_results_end_to_end_with_the_right_rhythms(runtime):
    fw = fast(rhythms=("normal", "af-like", "pvc"), segment_s=6.0, speed=25.0)
    summary, fw, _ = serve(runtime, fw, 3.0, until=lambda fw, host: len(fw.results) >= 60)
    w = summary["windows"]
    assert w["made"] >= 40 and w["decided"] == len(fw.results) == w["made"]
    assert w["dropped"] == 0 and summary["verdicts"]["coverage"]["status"] == "pass"
    ends = [r.end_index for _, r in fw.results]
    assert ends == list(range(1000, 1000 + 250 * len(ends), 250))  # every hop, in order
    right, judged = correct_share(fw)
    assert judged >= 25 and right >= 0.95 * judged
    assert {fr.ResultMsg.unpack(r.pack()).class_index for _, r in fw.results} == {0, 1, 2}
    dec = summary["stats"]["decision"]
    assert dec["n"] == w["decided"] and dec["percentiles"]["p50"]["value_ns"] < 100_000_000
    assert summary["verdicts"]["hard"]["n"] == w["decided"]
    assert summary["schema"] == "edgerun.serial_host" and summary["schema_version"] == 1


def test_noise_between_frames_is_thrown_away_and_costs_no_frame(runtime):
    fw = fast(noise_every=4, noise_bytes=40, seed=3)
    summary, fw, _ = serve(runtime, fw, 2.0, until=lambda fw, host: len(fw.results) >= 25)
    f = summary["frames"]
    assert fw.injected["noise"] >= 20
    assert f["crc_failed"] + f["malformed"] >= fw.injected["noise"] // 2 and f["noise_bytes"] > 0
    assert f["lost_by_seq"] == 0 and summary["samples"]["gaps"] == 0  # every frame's leading zero ended the noise
    assert summary["windows"]["decided"] >= 20
    right, judged = correct_share(fw)
    assert right == judged > 0


def test_crc_failure_is_counted_and_skipped_exactly(runtime):
    summary, fw, _ = serve(runtime, fast(crc_every=7, stop_at=1.0), 1.6, until=Settled())
    n = fw.injected["crc"]
    assert n >= 5
    assert summary["frames"]["crc_failed"] == n and summary["frames"]["malformed"] == 0
    assert summary["frames"]["lost_by_seq"] == n  # each bad frame is also a hole in the sequence
    assert summary["samples"]["gaps"] == n and summary["samples"]["lost_in_gaps"] == 25 * n


def test_truncated_frames_lose_only_themselves(runtime):
    summary, fw, _ = serve(runtime, fast(truncate_every=9, stop_at=1.0), 1.6, until=Settled())
    n = fw.injected["truncate"]
    f = summary["frames"]
    assert n >= 4 and f["crc_failed"] + f["malformed"] == n and f["lost_by_seq"] == n


def test_dropped_and_reordered_frames_by_sequence_number(runtime):
    summary, fw, _ = serve(runtime, fast(drop_every=11, reorder_every=13, stop_at=1.0), 1.6, until=Settled())
    f = summary["frames"]
    assert fw.injected["drop"] >= 3 and fw.injected["reorder"] >= 3
    assert f["out_of_order"] == fw.injected["reorder"]
    assert f["lost_by_seq"] == fw.injected["drop"] + fw.injected["reorder"]
    assert f["crc_failed"] == f["malformed"] == 0


def test_device_reset_mid_stream_starts_a_new_session(runtime):
    fw = fast(reset_at=0.8)
    summary, fw, _ = serve(
        runtime, fw, 2.0, until=lambda fw, host: fw.boots == 2 and host.counters.windows_decided >= 12
    )
    s = summary["sessions"]
    assert fw.boots == 2 and s["handshakes"] == 2 and s["device_resets"] == 1
    assert len(fw.acks) == 2 and summary["device"]["boot_id"] == fw.boot_id
    after = [r for t, r in fw.results if r.end_index < 4000]  # indices restart at 0 after the reset
    assert after and summary["windows"]["decided"] >= 10


def test_port_vanishing_and_returning(runtime, tmp_path):
    link = str(tmp_path / "ttyECG")
    fw = fast(unplug_at=0.6, unplug_s=0.8)
    summary, fw, _ = serve(runtime, fw, 2.6, link=link, backoff_max_s=0.2)
    assert summary["link"]["port_lost"] >= 1 and summary["link"]["port_opens"] == summary["link"]["port_lost"] + 1
    replugged_at = min(t for t, _ in fw.results) + 0.6 + 0.8
    late_results = [r for t, r in fw.results if t > replugged_at]
    assert late_results, "no results after the port came back"
    s = summary["sessions"]
    # the host asks for a HELLO after reconnecting; the same boot id says the device did not reset
    assert (s["handshakes"], s["repeated_hellos"], s["device_resets"]) == (2, 1, 0)
    assert summary["samples"]["gaps"] == 0  # the windower restarted at the new session, not across the hole
    assert late_results[0].end_index > 250 * 20 * 1.4  # the samples of the outage never came


def test_port_that_never_comes_back_gives_up(runtime, tmp_path):
    link = str(tmp_path / "ttyGone")
    fw = fast(unplug_at=0.3, unplug_s=60.0)
    with pytest.raises(PortUnavailable, match="no such port"):
        serve(runtime, fw, 5.0, link=link, give_up_s=0.5, backoff_max_s=0.1)


def test_missing_port_at_start_is_a_clear_error(runtime, tmp_path):
    with pytest.raises(PortUnavailable, match=r"no such port .*ttyNope.*plugged in"):
        SerialHost(runtime, HostConfig(port=str(tmp_path / "ttyNope"))).run(duration_s=0.1)


def test_silence_counts_a_stall_and_the_stream_resumes(runtime):
    summary, fw, _ = serve(runtime, fast(stall_at=0.4, stall_s=0.6), 1.8, silence_s=0.3)
    assert summary["link"]["stalls"] == 1
    assert max(t for t, _ in fw.results) - min(t for t, _ in fw.results) > 0.8


@pytest.mark.parametrize(
    ("firmware", "status", "reason"),
    [
        ({"rate_hz": 500.0}, fr.ACK_BAD_FORMAT, "device streams 500 Hz, the model was trained at 250 Hz"),
        ({"protocol_version": 2}, fr.ACK_BAD_VERSION, "protocol version 2 unsupported"),
    ],
)
def test_incompatible_handshake_is_refused_with_a_reason(runtime, firmware, status, reason):
    summary, fw, _ = serve(runtime, fast(**firmware), 1.2)
    assert fw.acks and all(a.status == status and reason in a.text for a in fw.acks)
    assert summary["sessions"]["handshakes"] == 0 and summary["sessions"]["handshakes_rejected"] >= 2
    assert summary["windows"]["made"] == 0 and summary["verdicts"]["coverage"]["status"] == "not-valid"
    assert any(reason in w for w in summary["warnings"])


def test_a_host_that_joins_mid_stream_asks_for_a_hello(runtime):
    fw = fast()
    with emu_mod.FirmwareEmulator(fw) as emu:
        first = run_until(runtime, emu.path, lambda host: host.counters.handshakes >= 1)
        time.sleep(0.2)  # the device streams on to nobody
        second = run_until(runtime, emu.path, lambda host: host.counters.windows_decided >= 1)
    # Each host got its session from the running device: no reset, no reboot. (A HELLO that
    # takes over no_session_every_s to arrive on a loaded box is asked for again: a repeat.)
    for summary in (first, second):
        sessions = summary["sessions"]
        assert sessions["handshakes"] == 1 + sessions["repeated_hellos"] and sessions["device_resets"] == 0
    assert sum(e.code == fr.E_NO_SESSION for e in fw.errors) >= 2  # each host asked on connecting
    assert fw.boots == 1 and second["windows"]["decided"] >= 1


def run_until(runtime: Any, port: str, until: Any, max_s: float = 10.0) -> dict[str, Any]:
    host = SerialHost(runtime, HostConfig(port=port, hop=250))
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline and not until(host):
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=watch, daemon=True).start()
    return host.run(stop)


class SlowRuntime:
    """The demo model made slower than the stream: inference cannot keep up with the producer."""

    def __init__(self, runtime: Any, delay_s: float) -> None:
        self.runtime, self.delay_s, self.artifact = runtime, delay_s, runtime.artifact

    def run(self, x: Any) -> Any:
        time.sleep(self.delay_s)
        return self.runtime.run(x)


def test_backpressure_drop_oldest_bounds_the_queue_and_counts(runtime):
    slow = SlowRuntime(runtime, 0.08)  # ~12 windows/s against a producer of 40 windows/s
    summary, fw, host = serve(slow, fast(speed=40.0), 2.0, queue_size=3, policy="drop-oldest")
    w = summary["windows"]
    assert w["dropped"] > 10 and w["queue"]["high_water"] == 3
    assert w["made"] == w["decided"] + w["dropped"]
    assert summary["verdicts"]["coverage"]["status"] == "fail"
    assert "dropped by the queue" in summary["verdicts"]["coverage"]["reason"]
    assert summary["frames"]["crc_failed"] == 0  # the reader kept up with the line


def test_backpressure_block_loses_no_window(runtime):
    slow = SlowRuntime(runtime, 0.05)
    fw = fast(speed=40.0, wait_when_full=True)  # flow control: the device waits instead of losing bytes
    summary, fw, host = serve(slow, fw, 2.0, queue_size=2, policy="block")
    w = summary["windows"]
    assert w["dropped"] == 0 and w["queue"]["blocked_ns"] > 0
    assert w["decided"] == w["made"] >= 10
    assert summary["verdicts"]["coverage"]["status"] == "pass"


def test_late_decisions_are_counted_against_the_budgets(runtime):
    slow = SlowRuntime(runtime, 0.02)
    budget = edgerun.Budget(soft_ms=15.0, hard_ms=10.0)
    summary, _, _ = serve(slow, fast(), 1.2, budget=budget, queue_size=64)
    w, v = summary["windows"], summary["verdicts"]
    assert w["late_hard"] == w["late_soft"] == w["decided"] > 0
    assert v["hard"]["status"] == "fail" and v["hard"]["miss_rate"] == 1.0
    assert summary["overall"] == "fail"


def test_cli_serial_host_writes_the_summary(tmp_path, capsys):
    from edgerun.cli import main

    out = tmp_path / "host.json"
    fw = fast()
    with emu_mod.FirmwareEmulator(fw) as emu:
        argv = ["serial", "host", "--port", emu.path, "--hop", "250", "--duration", "1.2", "-q"]
        rc = main(argv + ["--json", str(out), "--hard-ms", "50"])
    text = capsys.readouterr().out
    assert rc == 3  # hard and coverage pass; p99 needs 662 windows: not valid, never a pass
    doc = json.loads(out.read_text())
    assert doc["windows"]["decided"] == len(fw.results) > 0
    assert doc["budget"]["hard_ms"] == 50.0
    assert "ecg-cnn-int8-tflite" in text and "coverage    PASS" in text


def test_status_line_snapshots_arrive(runtime):
    seen = []
    fw = fast()
    with emu_mod.FirmwareEmulator(fw) as emu:
        host = SerialHost(runtime, HostConfig(port=emu.path, hop=250, status_every_s=0.1), on_status=seen.append)
        stop = threading.Event()
        threading.Timer(1.0, stop.set).start()
        host.run(stop)
    assert len(seen) >= 5 and seen[-1].windows_decided > 0 and seen[-1].link == "up"
    assert seen[-1].last_label in ("normal", "af-like", "pvc")


def test_cli_errors_name_what_was_wrong(tmp_path, capsys):
    from edgerun.cli import main

    assert main(["serial", "host", "--port", str(tmp_path / "ttyX"), "--duration", "0.1", "-q"]) == 1
    assert "no such port" in capsys.readouterr().err
    assert main(["serial", "host", "--port", str(tmp_path / "ttyX"), "--window", "500", "-q"]) == 2
    assert "--window 500: the model takes windows of exactly 1000 samples" in capsys.readouterr().err
