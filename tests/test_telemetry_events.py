"""edgerun.telemetry.events: the JSON-lines event log: what it writes, its bounded size, and what it never writes.

The sentinel test runs the real demo model on an input whose values are a recognisable pattern, with every
event that the runtime side writes (model loaded, budget breaches under a 1 us budget, errors), then looks for
the pattern in every file the log wrote, as text and as raw bytes.
"""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.budget import Budget
from edgerun.demo import DEMO_DIR
from edgerun.errors import InputError, UsageError
from edgerun.pipeline import Result, StageTimes
from edgerun.profiles import load_profile
from edgerun.telemetry import events, instrument
from edgerun.telemetry.recorder import Recorder

DEMO = DEMO_DIR / "digits-fp32.onnx"
SENTINEL = 86421.97  # "86421.9" cannot appear by chance: no latency is a day long, and sha256 is hex (no dot)


@pytest.fixture(autouse=True)
def _no_log_left():
    yield
    events.disable()  # a test that failed half-way must not leave the process logging


def _lines(folder: Path) -> list[dict]:
    files = sorted(folder.glob("events.jsonl*"))
    return [json.loads(line) for f in files for line in f.read_text(encoding="utf-8").splitlines()]


def test_no_input_value_reaches_the_log(tmp_path: Path):
    profile = dataclasses.replace(load_profile("generic-x86_64-linux"), budget=Budget(soft_ms=0.002, hard_ms=0.001))
    rt = edgerun.load(DEMO, profile=profile)
    spec = rt.inputs[0]
    shape = tuple(d or 1 for d in spec.shape)
    x = np.full(shape, SENTINEL, dtype=np.float32)
    log_path = tmp_path / "events.jsonl"
    with instrument(rt, event_log=log_path, breach_interval_s=0.0, thermal=False, prometheus_port=0) as tele:
        for _ in range(5):
            rt.run(x)
        bad = x.copy()
        bad.flat[0] = np.nan
        with pytest.raises(InputError):
            rt.run(bad)
        page = tele.render()
    records = _lines(tmp_path)
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "model-loaded" and kinds.count("budget-breach") == 10  # every miss, soft and hard
    assert records[0]["sha256"] == rt.artifact.sha256
    patterns = {"86421.9", "8.64219"}  # as printed and in e-notation (no dot-less form: sha256 hex could hold it)
    raw = {np.float32(SENTINEL).tobytes(), np.float64(SENTINEL).tobytes()}
    for f in tmp_path.iterdir():
        data = f.read_bytes()
        assert not any(p.encode() in data for p in patterns), f.name
        assert not any(r in data for r in raw), f.name
    assert not any(p in page for p in patterns)


def test_arrays_bytes_and_long_lists_are_refused_by_name(tmp_path: Path):
    log = events.configure(tmp_path / "events.jsonl")
    for value, what in [
        (np.zeros(3, dtype=np.float32), "ndarray"),
        (b"\x00\x01", "bytes"),
        (list(range(events.MAX_ITEMS + 1)), "list"),
        ({"a": {"b": {"c": [1]}}}, "list"),  # deeper than MAX_DEPTH
    ]:
        with pytest.raises(UsageError, match=rf"event field update-refused\.\S+: a {what}"):
            events.log_event("update-refused", name="digits", detail=value)
    with pytest.raises(UsageError, match="event kind"):
        events.log_event("Update Refused!")
    with pytest.raises(UsageError, match="reserved"):
        events.log_event("rollback", ts="yesterday")
    events.log_event("rollback", name="digits", to_version=np.int64(3), why="x" * 2000, nan=float("nan"))
    log.close()
    (record,) = _lines(tmp_path)
    assert record["to_version"] == 3 and record["nan"] == "nan"
    assert record["why"].startswith("x" * events.MAX_TEXT_CHARS) and record["why"].endswith("(+1488 chars)")


def test_rotation_bounds_the_size_and_keeps_whole_lines(tmp_path: Path):
    max_bytes, backups = 2048, 2
    log = events.configure(tmp_path / "events.jsonl", max_bytes=max_bytes, backups=backups)
    for i in range(500):
        events.log_event("budget-breach", budget="hard", n=i)
    log.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["events.jsonl", "events.jsonl.1", "events.jsonl.2"]
    longest = max(len(line) + 1 for f in files for line in f.read_text(encoding="utf-8").splitlines())
    for f in files:
        assert f.stat().st_size <= max_bytes + longest  # RotatingFileHandler rolls over before the line that would pass
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    kept = [r["n"] for r in _lines(tmp_path)]
    assert sorted(kept)[-1] == 499 and len(kept) < 500  # the oldest went, the newest stayed


def test_log_event_without_a_log_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert events.current() is None
    events.log_event("rollback", name="digits")
    assert list(tmp_path.iterdir()) == []


def test_breach_events_are_rate_limited_with_the_count_between(tmp_path: Path):
    now = [100.0]
    rec = Recorder(soft_ms=None, hard_ms=1.0, breach_interval_s=60.0, clock=lambda: now[0])
    slow = Result({}, (), StageTimes(0, 5_000_000, 0))
    events.configure(tmp_path / "events.jsonl")
    for t in (100.0, 101.0, 159.9, 160.0, 161.0, 230.0):
        now[0] = t
        rec(slow, None)
    events.disable()
    breaches = [r for r in _lines(tmp_path) if r["kind"] == "budget-breach"]
    assert [b["misses_since_last_event"] for b in breaches] == [1, 3, 2]  # at 100, 160 and 230
    assert rec.snapshot().misses["hard"] == 6


def test_a_folder_is_refused_as_the_log(tmp_path: Path):
    with pytest.raises(UsageError, match="is a folder"):
        events.configure(tmp_path)
    assert events.current() is None


def test_a_remote_fallback_is_logged_with_its_request_id_and_without_the_input(tmp_path: Path, capsys):
    """`edgerun run` through the reference server on loopback: the event names the request the audit names."""
    from edgerun import cli
    from edgerun.serve.server import ReferenceServer, serve_in_thread

    sentinel = tmp_path / "sentinel.npy"
    np.save(sentinel, np.full((8, 8), SENTINEL, dtype=np.float32))
    audit, log, prom = tmp_path / "audit.jsonl", tmp_path / "events.jsonl", tmp_path / "m.prom"
    with serve_in_thread(ReferenceServer([DEMO], threads=1)) as url:
        argv = ["run", str(DEMO_DIR / "digits-int8.onnx"), "--input", str(sentinel), "--fallback-url", url]
        argv += ["--mode", "prefer-local", "--soft-ms", "0.001", "--audit", str(audit)]
        assert cli.main([*argv, "--event-log", str(log), "--metrics-textfile", str(prom)]) == 0
    assert "route=remote" in capsys.readouterr().out
    (attempt,) = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    (used,) = [r for r in _lines(tmp_path) if r["kind"] == "fallback-used"]
    assert used["request_id"] == attempt["request_id"] and used["route"] == "remote"
    assert used["reason"] == "soft-budget-miss" and used["outcome"] == "ok"
    for f in (log, prom):
        assert b"86421.9" not in f.read_bytes() and b"8.64219" not in f.read_bytes()
    assert 'edgerun_fallback_routes_total{reason="soft-budget-miss",route="remote"} 1.0' in prom.read_text()
