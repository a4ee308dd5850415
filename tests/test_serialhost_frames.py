"""The serial host's pure parts: frame codec, payloads, windows, the bounded queue, handshake check, ECG simulator."""

from __future__ import annotations

import threading
import time
import zlib

import numpy as np
import pytest
from cobs import cobs

from edgerun.serialhost import frames as fr
from edgerun.serialhost.ecgsim import RHYTHMS, EcgStream, simulate_window
from edgerun.serialhost.handshake import check_hello
from edgerun.serialhost.window import BoundedQueue, Window, Windower


def _samples(first: int, n: int) -> bytes:
    return fr.Samples(first, np.arange(n, dtype="<i2").tobytes()).pack()


# --- frames ---------------------------------------------------------------------------


def test_encode_decode_round_trip_and_layout():
    payload = bytes([0, 1, 2, 0, 255]) * 30
    wire = fr.encode_frame(fr.SAMPLES, 0x1234, payload)
    assert wire[0] == wire[-1] == 0 and b"\x00" not in wire[1:-1]  # COBS: the only zeros are the delimiters
    body = cobs.decode(wire[1:-1])
    assert body[:4] == bytes([fr.SAMPLES, 0, 0x34, 0x12])  # type, flags, seq little-endian
    assert int.from_bytes(body[-4:], "little") == zlib.crc32(body[:-4])  # CRC-32 over header + payload
    assert len(wire) == fr.frame_wire_bytes(len(payload))
    (frame,) = fr.FrameDecoder().feed(wire)
    assert (frame.type, frame.seq, frame.payload) == (fr.SAMPLES, 0x1234, payload)


def test_decoder_resynchronises_after_garbage_and_counts_it():
    dec = fr.FrameDecoder()
    good = [fr.encode_frame(fr.SAMPLES, i, _samples(i * 10, 10)) for i in range(3)]
    noise = bytes([7, 9, 0, 3, 3, 3, 0, 200, 1])  # two garbage "frames" with zeros inside
    stream = good[0] + noise + good[1] + good[2]
    frames = []
    for i in range(0, len(stream), 5):  # arbitrary read boundaries
        frames += dec.feed(stream[i : i + 5])
    assert [f.seq for f in frames] == [0, 1, 2]  # frame 1's leading zero ended the noise
    assert dec.counts.frames == 3
    assert dec.counts.malformed + dec.counts.crc_failed == 3  # [7, 9], [3, 3, 3], [200, 1]
    assert dec.counts.noise_bytes > 0


def test_crc_failure_is_counted_and_skipped():
    wire = bytearray(fr.encode_frame(fr.SAMPLES, 1, _samples(0, 20)))
    wire[10] = wire[10] % 255 + 1  # one corrupted byte, still no zero inside
    dec = fr.FrameDecoder()
    assert dec.feed(bytes(wire) + fr.encode_frame(fr.SAMPLES, 2, _samples(20, 20)))[0].seq == 2
    assert dec.counts.crc_failed + dec.counts.malformed == 1


def test_truncated_frame_costs_itself_only():
    frames = [fr.encode_frame(fr.SAMPLES, i, _samples(i, 30)) for i in range(4)]
    dec = fr.FrameDecoder()
    got = dec.feed(frames[0] + frames[1][:20] + frames[2] + frames[3])
    assert [f.seq for f in got] == [0, 2, 3]  # the next frame's leading zero ends the stump
    assert dec.counts.crc_failed + dec.counts.malformed == 1
    # without the leading zero (a sender that skips it), the stump swallows its successor
    bare = [f[1:] for f in frames]
    assert [f.seq for f in fr.FrameDecoder().feed(bare[0] + bare[1][:20] + bare[2] + bare[3])] == [0, 3]


def test_a_zero_free_flood_is_bounded_then_the_decoder_recovers():
    dec = fr.FrameDecoder()
    flood = bytes([0x55]) * (fr.MAX_ENCODED_BYTES * 3)
    assert dec.feed(flood) == []
    assert len(dec._buf) <= fr.MAX_ENCODED_BYTES  # bounded memory whatever the line does
    got = dec.feed(b"\x00" + fr.encode_frame(fr.HEARTBEAT, 5, fr.Heartbeat(1, 2).pack()))
    assert [f.seq for f in got] == [5]
    assert dec.counts.oversize == 1


def test_first_partial_frame_after_open_is_dropped_silently():
    dec = fr.FrameDecoder()
    dec.reset(mid_frame=True)
    wire = fr.encode_frame(fr.SAMPLES, 3, _samples(0, 5))
    assert dec.feed(wire[7:] + wire) == [fr.Frame(fr.SAMPLES, 3, _samples(0, 5))]  # stump: silently gone
    assert dec.counts.crc_failed == dec.counts.malformed == 0


def test_payload_layouts_round_trip_and_short_payloads_name_the_type():
    hello = fr.Hello(1, 1, 2, 250_000, 0.001, 0xDEADBEEF, "wrist-7")
    assert fr.Hello.unpack(hello.pack()) == fr.Hello(1, 1, 2, 250_000, np.float32(0.001).item(), 0xDEADBEEF, "wrist-7")
    assert hello.sample_rate_hz == 250.0
    ack = fr.HelloAck(1, fr.ACK_OK, 1000, 250, "normal\naf-like\npvc")
    assert fr.HelloAck.unpack(ack.pack()) == ack
    res = fr.ResultMsg(2**32 - 1, 1234, 2, fr.LATE_SOFT, 0.5)
    assert fr.ResultMsg.unpack(res.pack()) == res
    assert fr.ErrorMsg.unpack(fr.ErrorMsg(fr.E_NO_SESSION, 9, "send HELLO").pack()) == fr.ErrorMsg(1, 9, "send HELLO")
    assert fr.Heartbeat.unpack(fr.Heartbeat(2**33 + 5, 7).pack()) == fr.Heartbeat(5, 7)  # u32 wraps
    with pytest.raises(ValueError, match="HELLO payload is 3 bytes; expected at least 16"):
        fr.Hello.unpack(b"abc")
    with pytest.raises(ValueError, match="at most 1024"):
        fr.encode_frame(fr.SAMPLES, 0, bytes(fr.MAX_PAYLOAD_BYTES + 1))


# --- windows --------------------------------------------------------------------------


def _chunk(first: int, n: int) -> np.ndarray:
    return (np.arange(first, first + n, dtype=np.float32) % 1000)[:, None]


def test_windows_every_hop_from_contiguous_chunks():
    w = Windower(window=100, hop=25, channels=1)
    out = []
    for i in range(0, 400, 30):  # chunk size deliberately not a divisor of hop or window
        out += w.push(i, _chunk(i, 30), arrival_ns=i)
    assert [x.end_index for x in out] == list(range(100, 421, 25))
    assert all(np.array_equal(x.samples[:, 0], np.arange(x.end_index - 100, x.end_index)) for x in out)
    assert out[0].arrival_ns == 90  # the chunk that completed it
    assert w.gaps == 0


def test_a_gap_restarts_the_window_and_is_counted():
    w = Windower(window=50, hop=50, channels=1)
    out = w.push(0, _chunk(0, 40), 0) + w.push(60, _chunk(60, 60), 1)
    assert [x.end_index for x in out] == [110]  # never a window with a hole in it
    assert (w.gaps, w.samples_lost) == (1, 20)


def test_repeated_samples_are_skipped_and_the_u32_index_wraps():
    w = Windower(window=10, hop=10, channels=1)
    start = 2**32 - 5
    out = w.push(start, _chunk(0, 8), 0) + w.push(start + 4, _chunk(4, 8) * 0 + 7, 1)
    assert w.samples_overlapping == 4 and w.gaps == 0
    assert [x.end_index for x in out] == [(start + 10) % 2**32]


def test_drop_oldest_queue_is_bounded_and_counts():
    q = BoundedQueue(3, "drop-oldest")
    for i in range(10):
        q.put(Window(np.zeros((1, 1)), i, 0, 0))
    assert (len(q), q.dropped, q.high_water) == (3, 7, 3)
    assert [q.get(0).end_index for _ in range(3)] == [7, 8, 9]
    assert q.get(0.01) is None


def test_block_queue_waits_for_the_consumer():
    q = BoundedQueue(1, "block")
    q.put(Window(np.zeros((1, 1)), 0, 0, 0))
    threading.Timer(0.2, lambda: q.get(0)).start()
    t0 = time.monotonic()
    q.put(Window(np.zeros((1, 1)), 1, 0, 0))
    assert time.monotonic() - t0 >= 0.15
    assert q.dropped == 0 and q.blocked_ns >= 150_000_000


def test_queue_rejects_an_unknown_policy():
    with pytest.raises(ValueError, match="expected one of drop-oldest, block"):
        BoundedQueue(2, "drop-newest")


# --- handshake ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hello", "status", "reason"),
    [
        (fr.Hello(1, 1, 1, 250_000, 0.001, 1), fr.ACK_OK, None),
        (fr.Hello(2, 1, 1, 250_000, 0.001, 1), fr.ACK_BAD_VERSION, "protocol version 2 unsupported"),
        (fr.Hello(1, 9, 1, 250_000, 0.001, 1), fr.ACK_BAD_FORMAT, "sample_type 9 unknown"),
        (fr.Hello(1, 1, 3, 250_000, 0.001, 1), fr.ACK_BAD_FORMAT, "3 channels, but the model takes 1"),
        (fr.Hello(1, 1, 1, 500_000, 0.001, 1), fr.ACK_BAD_FORMAT, "device streams 500 Hz, the model was trained"),
        (fr.Hello(1, 1, 1, 250_000, 0.0, 1), fr.ACK_BAD_FORMAT, "finite non-zero scale"),
    ],
)
def test_handshake_check(hello, status, reason):
    why, got = check_hello(hello, model_channels=1, model_rate_hz=250.0)
    assert got == status
    assert (why is None) if reason is None else (reason in why)


# --- ECG simulator --------------------------------------------------------------------


def _r_peaks(x: np.ndarray, fs: float) -> np.ndarray:
    """Crude R detection: local maxima of |x - median| above 60% of the top, 250 ms apart."""
    y = np.abs(x - np.median(x))
    thr = 0.6 * np.percentile(y, 99.5)
    peaks: list[int] = []
    for i in np.flatnonzero((y[1:-1] > thr) & (y[1:-1] >= y[:-2]) & (y[1:-1] >= y[2:])) + 1:
        if not peaks or i - peaks[-1] > 0.25 * fs:
            peaks.append(int(i))
    return np.asarray(peaks)


def test_simulator_is_seeded_and_its_rhythms_differ_the_way_they_should():
    assert np.array_equal(simulate_window("normal", 4, 250, 3), simulate_window("normal", 4, 250, 3))
    assert not np.array_equal(simulate_window("normal", 4, 250, 3), simulate_window("normal", 4, 250, 4))
    cv = {}
    for rhythm in RHYTHMS:
        rr_cv = []
        for seed in range(8):
            rr = np.diff(_r_peaks(simulate_window(rhythm, 20, 250, seed), 250.0))
            rr_cv.append(rr.std() / rr.mean())
        cv[rhythm] = float(np.median(rr_cv))
    assert cv["normal"] < 0.08  # sinus: small heart-rate variability
    assert cv["af-like"] > 0.12  # irregularly irregular
    assert cv["pvc"] > 0.12  # early beats and compensatory pauses


def test_stream_continues_across_reads_and_rhythm_changes_label_the_samples():
    a = EcgStream("normal", 250.0, seed=1)
    b = EcgStream("normal", 250.0, seed=1)
    whole = a.read(1000)[0]
    parts = np.concatenate([b.read(300)[0], b.read(700)[0]])
    assert np.allclose(whole, parts, atol=0.2)  # same beats; only the noise draws differ
    b.set_rhythm("af-like")
    _, labels = b.read(2500)
    assert labels[0] == RHYTHMS.index("normal") and labels[-1] == RHYTHMS.index("af-like")
    with pytest.raises(ValueError, match="expected one of normal, af-like, pvc"):
        b.set_rhythm("vfib")
