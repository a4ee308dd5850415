"""The serial host against tools/firmware_emulator.py over real pseudo-terminals, through pyserial.

Every test opens a real pty; the emulator's firmware streams simulated ECG
frames (docs/serial-protocol.md) and injects the faults the test asks for, and
the host runs the bundled ECG demo model. Faults are counted by the emulator
as it injects them, so the host's counts are checked exactly where the
protocol makes them exact. The emulator runs at 20x the sensor's rate so a
4 s window arrives in 0.2 s. No test waits a fixed time: each runs until a
condition holds, then ``quiesce`` brings both sides to rest (the firmware's
last frame read by the host, every window settled, every RESULT read by the
firmware) before the counts are compared, so a loaded machine only waits longer.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import waiting
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


#: Bound on every wait below. A run that works meets each condition long before; only a broken one
#: reaches it, and then fails naming the condition. Nothing here depends on how fast the machine is.
PATIENCE_S = 30.0


def wait_for(predicate: Any, what: str, timeout_s: float = PATIENCE_S) -> None:
    """waiting.wait_for with this file's bound, polled every 5 ms."""
    waiting.wait_for(predicate, what, timeout_s, poll_s=0.005)


def accounted(host: Any) -> int:
    """Windows the host is done with: decided, dropped by the queue, stale, failed or unsent."""
    c = host.counters
    return c.windows_decided + host.queue.dropped + c.windows_stale + c.inference_errors + c.results_unsent


def host_read_the_marker(host: Any) -> bool:
    return any(e["code"] == emu_mod.QUIET_CODE for e in host.counters.device_errors)


def quiesce(fw: Any, host: Any, running: Any) -> None:
    """Bring a live session to rest, each step a condition: the firmware stops streaming and sends its
    marker last; the host reads up to the marker (so every byte the firmware wrote); the worker is done
    with every window the reader made; the firmware has read every RESULT the host counts as sent.
    Then the counts on both sides are final and can be compared exactly."""
    fw.quiet()
    wait_for(lambda: host_read_the_marker(host) or not running(), "the host to read the firmware's last frame")
    wait_for(lambda: accounted(host) == host.counters.windows_made or not running(), "the worker to finish")
    wait_for(lambda: len(fw.results) >= host.counters.windows_decided, "the firmware to read every RESULT")


def serve(runtime: Any, firmware: Any, until: Any, link: str | None = None, on_status: Any = None, **config: Any):
    """Run an emulator and a host against each other until ``until(firmware, host)`` holds, quiesce
    (``quiesce``), stop the host; return (summary, firmware, host). A host that fails (the port never
    comes back) raises its error here."""
    with emu_mod.FirmwareEmulator(firmware, link=link) as emu:
        config.setdefault("hop", 250)
        host = SerialHost(runtime, HostConfig(port=link or emu.path, **config), on_status=on_status)
        stop, box = threading.Event(), {}

        def run() -> None:
            try:
                box["summary"] = host.run(stop)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                box["error"] = exc

        runner = threading.Thread(target=run, name="serial-host", daemon=True)
        runner.start()
        try:
            wait_for(lambda: not runner.is_alive() or until(firmware, host), "the scenario's condition")
            if runner.is_alive():
                quiesce(firmware, host, runner.is_alive)
        finally:
            stop.set()
            runner.join(PATIENCE_S)
    if "error" in box:
        raise box["error"]
    return box["summary"], firmware, host


def streamed_all(fw: Any, host: Any) -> bool:
    """The firmware sent every frame its --stop-after allows (the host may still be reading them)."""
    return fw.streamed_all


def chunks_for(windows: int, chunk: int = 25) -> int:
    """SAMPLES frames of ``chunk`` samples that make exactly ``windows`` windows (1000 long, hop 250)."""
    samples = WINDOW + (windows - 1) * 250
    assert samples % chunk == 0
    return samples // chunk


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
    summary, fw, _ = serve(runtime, fast(), until=lambda fw, host: fw.acks and fw.host_heartbeats)
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
    # a HELLO_ACK later than the firmware's 500 ms HELLO repeat (a loaded machine) is a repeated HELLO
    sessions = summary["sessions"]
    assert sessions["handshakes"] == 1 + sessions["repeated_hellos"] and fw.host_heartbeats >= 1


def test_windows_and_results_end_to_end_with_the_right_rhythms(runtime):
    # Exactly 60 windows; a queue that holds them all: this test is about every window's result, not
    # about keeping up (the backpressure tests are), so a slow or loaded machine only makes it wait.
    fw = fast(rhythms=("normal", "af-like", "pvc"), segment_s=6.0, speed=25.0, stop_after=chunks_for(60))
    summary, fw, _ = serve(runtime, fw, until=streamed_all, queue_size=64)
    w = summary["windows"]
    assert w["made"] == 60 and w["decided"] == len(fw.results) == w["made"]
    assert w["dropped"] == 0 and summary["verdicts"]["coverage"]["status"] == "pass"
    ends = [r.end_index for _, r in fw.results]
    assert ends == list(range(1000, 1000 + 250 * len(ends), 250))  # every hop, in order
    right, judged = correct_share(fw)
    assert judged >= 25 and right >= 0.95 * judged
    assert {fr.ResultMsg.unpack(r.pack()).class_index for _, r in fw.results} == {0, 1, 2}
    dec = summary["stats"]["decision"]
    assert dec["n"] == w["decided"] and dec["percentiles"]["p50"]["value_ns"] > 0
    # a RESULT's late flags judge the time before its write, the counts the time after it
    assert sum(bool(r.flags & fr.LATE_HARD) for _, r in fw.results) <= w["late_hard"]
    assert sum(bool(r.flags & fr.LATE_SOFT) for _, r in fw.results) <= w["late_soft"]
    assert summary["verdicts"]["hard"]["n"] == w["decided"]
    assert summary["schema"] == "edgerun.serial_host" and summary["schema_version"] == 2


def test_noise_between_frames_is_thrown_away_and_costs_no_frame(runtime):
    fw = fast(noise_every=4, noise_bytes=40, seed=3, stop_after=chunks_for(25))
    summary, fw, _ = serve(runtime, fw, until=streamed_all, queue_size=32)
    f = summary["frames"]
    assert fw.injected["noise"] == chunks_for(25) // 4
    assert f["crc_failed"] + f["malformed"] >= fw.injected["noise"] // 2 and f["noise_bytes"] > 0
    assert f["lost_by_seq"] == 0 and summary["samples"]["gaps"] == 0  # every frame's leading zero ended the noise
    assert summary["windows"]["decided"] == summary["windows"]["made"] == 25
    right, judged = correct_share(fw)
    assert right == judged > 0


def test_crc_failure_is_counted_and_skipped_exactly(runtime):
    summary, fw, _ = serve(runtime, fast(crc_every=7, stop_after=200), until=streamed_all)
    n = fw.injected["crc"]
    assert n == 200 // 7  # the last bad frame (196) has good ones after it, so each is also a gap
    assert summary["frames"]["crc_failed"] == n and summary["frames"]["malformed"] == 0
    assert summary["frames"]["lost_by_seq"] == n  # each bad frame is also a hole in the sequence
    assert summary["samples"]["gaps"] == n and summary["samples"]["lost_in_gaps"] == 25 * n


def test_truncated_frames_lose_only_themselves(runtime):
    summary, fw, _ = serve(runtime, fast(truncate_every=9, stop_after=200), until=streamed_all)
    n = fw.injected["truncate"]
    f = summary["frames"]
    assert n == 200 // 9 and f["crc_failed"] + f["malformed"] == n and f["lost_by_seq"] == n


def test_dropped_and_reordered_frames_by_sequence_number(runtime):
    fw = fast(drop_every=11, reorder_every=13, stop_after=200)
    summary, fw, _ = serve(runtime, fw, until=streamed_all)
    f = summary["frames"]
    assert fw.injected["drop"] == 200 // 11 and fw.injected["reorder"] >= 3
    assert f["out_of_order"] == fw.injected["reorder"]
    assert f["lost_by_seq"] == fw.injected["drop"] + fw.injected["reorder"]
    assert f["crc_failed"] == f["malformed"] == 0


def results_after_the_reset(fw: Any) -> list[Any]:
    """RESULTs after the first one whose end_index went backwards: the new boot counts from 0 again."""
    ends = [r.end_index for _, r in fw.results]
    back = next((i for i in range(1, len(ends)) if ends[i] < ends[i - 1]), None)
    return [] if back is None else [r for _, r in fw.results[back:]]


def test_device_reset_mid_stream_starts_a_new_session(runtime):
    fw = fast(reset_at=0.8)
    summary, fw, _ = serve(runtime, fw, until=lambda fw, host: fw.boots == 2 and results_after_the_reset(fw))
    s = summary["sessions"]
    # 2 HELLOs answered, plus any the firmware repeated because an answer took over 500 ms
    assert fw.boots == 2 and s["handshakes"] == 2 + s["repeated_hellos"] and s["device_resets"] == 1
    assert len(fw.acks) >= 2 and all(a.status == fr.ACK_OK for a in fw.acks)
    assert summary["device"]["boot_id"] == fw.boot_id
    after = results_after_the_reset(fw)
    assert after and all(r.end_index <= fw.index for r in after)  # the new boot's indices
    assert summary["windows"]["decided"] == len(fw.results)


def test_port_vanishing_and_returning(runtime, tmp_path):
    link = str(tmp_path / "ttyECG")
    fw = fast(unplug_at=0.6, unplug_s=0.8)

    def after_replug(fw: Any, host: Any) -> bool:
        return "replug" in fw.marks and any(r.end_index >= fw.marks["replug"] + WINDOW for _, r in fw.results)

    summary, fw, _ = serve(runtime, fw, until=after_replug, link=link, backoff_max_s=0.2)
    assert summary["link"]["port_lost"] >= 1 and summary["link"]["port_opens"] == summary["link"]["port_lost"] + 1
    s = summary["sessions"]
    # the host asks for a HELLO after reconnecting; the same boot id says the device did not reset
    assert s["handshakes"] == 1 + s["repeated_hellos"] and s["repeated_hellos"] >= 1 and s["device_resets"] == 0
    unplugged, replugged = fw.marks["unplug"], fw.marks["replug"]
    # the windower restarted at the new session, not across the hole; the hole is one gap of at least the
    # samples the sensor made while unplugged (more: those in the pty when it vanished were lost with it)
    assert summary["samples"]["gaps"] == 1 and summary["samples"]["lost_in_gaps"] >= replugged - unplugged
    assert any("1 gaps in the sample stream" in w for w in summary["warnings"])
    assert replugged >= 250 * 20 * 1.4  # the sensor's samples of the outage were skipped, never sent
    ends = [r.end_index for _, r in fw.results]
    # no window holds a sample from the outage: each ends before it, or a whole window after it (RESULTs
    # before the unplug may have been in the pty when it vanished, as on a real cable: none are required)
    assert all(e <= unplugged or e >= replugged + WINDOW for e in ends)
    assert any(e >= replugged + WINDOW for e in ends)


def test_port_that_never_comes_back_gives_up(runtime, tmp_path):
    link = str(tmp_path / "ttyGone")
    fw = fast(unplug_at=0.3, unplug_s=60.0)
    with pytest.raises(PortUnavailable, match="no such port"):
        serve(runtime, fw, until=lambda fw, host: False, link=link, give_up_s=0.5, backoff_max_s=0.1)


def test_missing_port_at_start_is_a_clear_error(runtime, tmp_path):
    with pytest.raises(PortUnavailable, match=r"no such port .*ttyNope.*plugged in"):
        SerialHost(runtime, HostConfig(port=str(tmp_path / "ttyNope"))).run(duration_s=0.1)


def test_silence_counts_a_stall_and_the_stream_resumes(runtime):
    seen = {}

    def resumed(fw: Any, host: Any) -> bool:
        # the stall count once results of samples sent after the stall arrive (later, quiesce()
        # itself is a silence the host may count)
        seen["stalls"] = host.counters.stalls
        return "stall" in fw.marks and any(r.end_index > fw.marks["stall"] + WINDOW for _, r in fw.results)

    # the firmware catches up after the stall in one burst (12 windows): a queue that holds them
    summary, fw, _ = serve(runtime, fast(stall_at=0.4, stall_s=0.6), until=resumed, silence_s=0.3, queue_size=64)
    assert seen["stalls"] == 1 and summary["link"]["stalls"] >= 1
    ends = [r.end_index for _, r in fw.results]
    assert any(e <= fw.marks["stall"] for e in ends)  # results before the stall, and after it
    assert ends == list(range(1000, 1000 + 250 * len(ends), 250))  # the same stream, no gap


@pytest.mark.parametrize(
    ("firmware", "status", "reason"),
    [
        ({"rate_hz": 500.0}, fr.ACK_BAD_FORMAT, "device streams 500 Hz, the model was trained at 250 Hz"),
        ({"protocol_version": 2}, fr.ACK_BAD_VERSION, "protocol version 2 unsupported"),
    ],
)
def test_incompatible_handshake_is_refused_with_a_reason(runtime, firmware, status, reason):
    summary, fw, _ = serve(runtime, fast(**firmware), until=lambda fw, host: len(fw.acks) >= 2)
    assert fw.acks and all(a.status == status and reason in a.text for a in fw.acks)
    assert summary["sessions"]["handshakes"] == 0 and summary["sessions"]["handshakes_rejected"] >= 2
    assert summary["windows"]["made"] == 0 and summary["verdicts"]["coverage"]["status"] == "not-valid"
    assert any(reason in w for w in summary["warnings"])


def test_a_host_that_joins_mid_stream_asks_for_a_hello(runtime):
    fw = fast()
    with emu_mod.FirmwareEmulator(fw) as emu:
        first = run_until(runtime, emu.path, lambda host: host.counters.handshakes >= 1)
        sent = fw.chunks_sent
        wait_for(lambda: fw.chunks_sent >= sent + 8, "the device to stream on to nobody")
        second = run_until(runtime, emu.path, lambda host: host.counters.windows_decided >= 1)
    # Each host got its session from the running device: no reset, no reboot. (A HELLO that
    # takes over no_session_every_s to arrive on a loaded box is asked for again: a repeat.)
    for summary in (first, second):
        sessions = summary["sessions"]
        assert sessions["handshakes"] == 1 + sessions["repeated_hellos"] and sessions["device_resets"] == 0
    assert sum(e.code == fr.E_NO_SESSION for e in fw.errors) >= 2  # each host asked on connecting
    assert fw.boots == 1 and second["windows"]["decided"] >= 1


def run_until(runtime: Any, port: str, until: Any, max_s: float = PATIENCE_S) -> dict[str, Any]:
    host = SerialHost(runtime, HostConfig(port=port, hop=250))
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline and not until(host):
            time.sleep(0.005)
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
    fw = fast(speed=40.0, stop_after=chunks_for(60))
    summary, fw, host = serve(slow, fw, until=streamed_all, queue_size=3, policy="drop-oldest")
    w = summary["windows"]
    assert w["made"] == 60 and w["dropped"] > 10 and w["queue"]["high_water"] == 3
    assert w["made"] == w["decided"] + w["dropped"] and w["decided"] == len(fw.results)
    assert summary["verdicts"]["coverage"]["status"] == "fail"
    assert "dropped by the queue" in summary["verdicts"]["coverage"]["reason"]
    assert summary["frames"]["crc_failed"] == 0 and fw.emu.tx_dropped_bytes == 0  # the reader kept up


def test_backpressure_block_loses_no_window(runtime):
    slow = SlowRuntime(runtime, 0.05)  # 20 windows/s against a producer of 40 windows/s
    # flow control: the device waits instead of losing bytes
    fw = fast(speed=40.0, wait_when_full=True, stop_after=chunks_for(20))
    summary, fw, host = serve(slow, fw, until=streamed_all, queue_size=2, policy="block")
    w = summary["windows"]
    assert w["dropped"] == 0 and w["queue"]["blocked_ns"] > 0
    assert w["decided"] == w["made"] == 20 == len(fw.results)
    assert summary["verdicts"]["coverage"]["status"] == "pass"


def test_late_decisions_are_counted_against_the_budgets(runtime):
    slow = SlowRuntime(runtime, 0.02)  # every decision takes over 20 ms: later than both budgets
    budget = edgerun.Budget(soft_ms=15.0, hard_ms=10.0)
    fw = fast(stop_after=chunks_for(8))
    summary, fw, _ = serve(slow, fw, until=streamed_all, budget=budget, queue_size=64)
    w, v = summary["windows"], summary["verdicts"]
    assert w["late_hard"] == w["late_soft"] == w["decided"] == 8
    assert all(r.flags == fr.LATE_SOFT | fr.LATE_HARD for _, r in fw.results) and len(fw.results) == 8
    assert v["hard"]["status"] == "fail" and v["hard"]["miss_rate"] == 1.0
    assert summary["overall"] == "fail"


def test_cli_serial_host_writes_the_summary(tmp_path, capsys):
    from edgerun.cli import main

    out = tmp_path / "host.json"
    fw = fast()
    with emu_mod.FirmwareEmulator(fw) as emu:
        # --queue 64 holds every window of 1.2 s at 20x and --hard-ms 5000 is met by any machine: this
        # test is about the CLI and its summary file, not about speed (those verdicts have their tests)
        argv = ["serial", "host", "--port", emu.path, "--hop", "250", "--duration", "1.2", "-q", "--queue", "64"]
        rc = main(argv + ["--json", str(out), "--hard-ms", "5000"])
        doc = json.loads(out.read_text())
        # the host's last RESULTs are still in the pty when it exits: the firmware reads them on
        wait_for(lambda: len(fw.results) >= doc["windows"]["decided"], "the firmware to read every RESULT")
    text = capsys.readouterr().out
    assert rc == 3  # hard and coverage pass; p99 needs 662 windows: not valid, never a pass
    assert doc["windows"]["decided"] == len(fw.results) > 0, (doc["sessions"], doc["frames"], doc["link"])
    assert doc["budget"]["hard_ms"] == 5000.0
    assert "ecg-cnn-int8-tflite" in text and "coverage    PASS" in text


def test_status_line_snapshots_arrive(runtime):
    seen: list[Any] = []

    def settled_status(fw: Any, host: Any) -> bool:
        return bool(seen) and seen[-1].windows_decided >= 4

    summary, fw, host = serve(runtime, fast(), until=settled_status, status_every_s=0.1, on_status=seen.append)
    # every snapshot is consistent with the run; they only ever grow
    decided = [st.windows_decided for st in seen]
    assert decided == sorted(decided) and decided[-1] <= summary["windows"]["decided"]
    dropped = summary["windows"]["dropped"]  # a loaded machine may drop windows: counted, not a status bug
    assert all(st.link in ("up", "silent") and st.windows_dropped <= dropped for st in seen)
    assert all(st.frames_good <= summary["frames"]["frames"] for st in seen)
    assert seen[-1].windows_decided >= 4 and seen[-1].last_label in ("normal", "af-like", "pvc")


def test_cli_errors_name_what_was_wrong(tmp_path, capsys):
    from edgerun.cli import main

    assert main(["serial", "host", "--port", str(tmp_path / "ttyX"), "--duration", "0.1", "-q"]) == 1
    assert "no such port" in capsys.readouterr().err
    assert main(["serial", "host", "--port", str(tmp_path / "ttyX"), "--window", "500", "-q"]) == 2
    assert "--window 500: the model takes windows of exactly 1000 samples" in capsys.readouterr().err


def test_cli_give_up_still_writes_the_summary(tmp_path, capsys):
    from edgerun.cli import main

    link, out = str(tmp_path / "ttyGone"), tmp_path / "host.json"
    with emu_mod.FirmwareEmulator(fast(unplug_at=0.3, unplug_s=600.0), link=link):
        rc = main(["serial", "host", "--port", link, "--give-up-after", "0.5", "--json", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "error: " in err and "no such port" in err
    doc = json.loads(out.read_text())
    assert doc["end"]["reason"] == "gave-up" and "no such port" in doc["end"]["message"]
    assert doc["link"]["port_lost"] == 1 and doc["link"]["port_opens"] == 1


def test_cli_session_without_a_handshake_fails_with_a_reason(tmp_path, capsys):
    # Something that never sends a HELLO (here an MLPerf Tiny DUT; on a real line, a wrong --baud)
    # measured nothing: exit 1 with the reason, not 3 like a healthy short session.
    from edgerun.cli import main

    out = tmp_path / "host.json"
    with emu_mod.FirmwareEmulator(emu_mod.DutFirmware()) as emu:
        rc = main(["serial", "host", "--port", emu.path, "--duration", "0.3", "--json", str(out), "-q"])
    doc = json.loads(out.read_text())
    assert rc == 1 and doc["sessions"]["handshakes"] == 0 and doc["overall"] == "fail"
    assert doc["verdicts"]["session"]["status"] == "fail" and "no handshake" in doc["verdicts"]["session"]["reason"]
    assert doc["end"]["reason"] == "duration" and "session     FAIL: no handshake" in capsys.readouterr().out
