"""edgerun.telemetry: real scrapes of the Prometheus endpoint, parsed with prometheus_client's own parser.

The demo model runs on the real onnxruntime engine; the endpoint is prometheus_client's real HTTP server on
loopback, read over HTTP with urllib. Expected values come from the Results run() returned (their StageTimes)
or from budgets chosen so that the outcome cannot depend on this machine's speed: a 1 us hard budget that no
inference of a CNN meets, and a one-hour one that every inference meets.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from waiting import wait_for

import edgerun
from edgerun.budget import Budget
from edgerun.demo import DEMO_DIR
from edgerun.errors import InputError, UsageError
from edgerun.pipeline import Result, StageTimes
from edgerun.profiles import load_profile
from edgerun.telemetry.recorder import Recorder

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:  # pragma: no cover - the telemetry extra is in `test`
    if os.environ.get("CI"):
        raise
    pytest.skip("prometheus-client (the telemetry extra) is not installed", allow_module_level=True)

from edgerun.telemetry import instrument

REPO = Path(__file__).resolve().parent.parent
DEMO = DEMO_DIR / "digits-fp32.onnx"
THERMAL_RPI5 = REPO / "tests" / "fixtures" / "thermal" / "rpi5"


def _profile(soft_ms: float, hard_ms: float):
    base = load_profile("generic-x86_64-linux")
    return dataclasses.replace(base, budget=Budget(soft_ms=soft_ms, hard_ms=hard_ms))


def _profile_toml(tmp_path: Path, soft_ms: float, hard_ms: float) -> Path:
    text = (REPO / "device_profiles" / "generic-x86_64-linux.toml").read_text(encoding="utf-8")
    text = text.replace("soft_ms = 100", f"soft_ms = {soft_ms}").replace("hard_ms = 10", f"hard_ms = {hard_ms}")
    path = tmp_path / "tiny-budget.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (sample name, its labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(url: str) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(url, timeout=30) as reply:
        assert reply.status == 200
        return _samples(reply.read().decode("utf-8"))


def _count(samples: dict, stage: str = "total") -> float:
    return samples[("edgerun_inference_latency_seconds_count", frozenset({("stage", stage)}))]


def _misses(samples: dict, kind: str) -> float:
    return samples[("edgerun_budget_misses_total", frozenset({("budget", kind)}))]


def _inputs(rt):
    from edgerun.bench.inputs import sample_inputs

    return sample_inputs(rt.artifact, seed=0)[0]


def _store(root: Path, version: str) -> Path:
    """A model store holding the demo as an accepted ``digits`` version, laid out as edgerun.update.store
    leaves it (edgerun/modelstore.py reads it): versions/<v>/ with acceptance.json, current -> it."""
    folder = root / "digits" / "versions" / version
    folder.mkdir(parents=True)
    for f in DEMO_DIR.iterdir():
        if f.name.startswith(DEMO.name) or f.suffix == ".npz":
            shutil.copy(f, folder / f.name)
    sha = json.loads(next(folder.glob("*.edgerun.json")).read_text())["sha256"]
    verdict = {"status": "pass", "reason": "written by this test"}  # the schema: edgerun/schema/acceptance.py
    doc = {"schema": "edgerun.acceptance", "schema_version": 1, "name": "digits", "version": version, "sha256": sha}
    record = {**doc, "passed": True, "summary": {}, "verdicts": {"hard": verdict}}
    (folder / "acceptance.json").write_text(json.dumps(record), encoding="utf-8")
    os.symlink(f"versions/{version}", root / "digits" / "current")
    return root


def test_a_scrape_during_edgerun_run_repeat_shows_histograms_misses_and_the_model(tmp_path: Path):
    """The issue's acceptance: `edgerun run digits@current --repeat N --metrics-port 0` scraped twice while it runs."""
    profile = _profile_toml(tmp_path, soft_ms=3_600_000, hard_ms=0.001)  # every inference misses 1 us
    env = {**os.environ, "EDGERUN_MODELS": str(_store(tmp_path / "models", "2026.12.1"))}
    argv = [sys.executable, "-m", "edgerun.cli", "run", "digits@current", "--repeat", "1000000"]
    argv += ["--profile", str(profile), "--metrics-port", "0"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        lines = iter(proc.stderr.readline, "")  # the URL is printed before the first inference
        line = next((ln for ln in lines if ln.startswith("edgerun: metrics at ")), "(exited before the URL)")
        assert line.startswith("edgerun: metrics at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].strip()
        first = wait_for(lambda: s if _count(s := _scrape(url)) > 0 else None, "a first counted inference")
        second = wait_for(lambda: s if _count(s := _scrape(url)) > _count(first) else None, "the count to move")
    finally:
        proc.kill()
        proc.wait()
    for samples in (first, second):
        n = _count(samples)
        assert n - 1 <= _misses(samples, "hard") <= n  # a miss is filed just after its histogram entry
        assert _misses(samples, "soft") == 0
        for stage in ("pre", "infer", "post"):
            assert _count(samples, stage) == n
        assert (
            samples[("edgerun_inference_latency_seconds_bucket", frozenset({("stage", "total"), ("le", "+Inf")}))] == n
        )
    assert _misses(second, "hard") > _misses(first, "hard")
    info = next(labels for (name, labels) in second if name == "edgerun_model_info")
    assert dict(info)["name"] == "digits-cnn-fp32-onnx" and dict(info)["version"] == "2026.12.1"
    assert dict(info)["sha256"] == edgerun.load(DEMO).artifact.sha256
    assert second[("edgerun_budget_seconds", frozenset({("budget", "hard")}))] == pytest.approx(1e-6)


def test_histograms_hold_exactly_the_results_run_returned():
    rt = edgerun.load(DEMO, profile=_profile(3_600_000, 3_600_000))
    with instrument(rt, prometheus_port=0, thermal=False) as tele:
        assert tele.url.startswith("http://127.0.0.1:")  # loopback unless asked otherwise
        results = [rt.run(x) for x in _inputs(rt)[:25]]
        samples = _scrape(tele.url)
    bounds = tele.recorder.bounds_ns
    for i, stage in enumerate(("pre", "infer", "post", "total")):
        values = [r.times[i] if i < 3 else r.times.total_ns for r in results]
        assert _count(samples, stage) == len(results)
        sum_s = samples[("edgerun_inference_latency_seconds_sum", frozenset({("stage", stage)}))]
        assert sum_s == pytest.approx(sum(values) / 1e9, rel=1e-9)
        for bound in bounds:  # Prometheus' le: a value equal to the bound is in the bucket
            le = next(le for (name, labels) in samples for k, le in labels if k == "le" and float(le) == bound / 1e9)
            key = ("edgerun_inference_latency_seconds_bucket", frozenset({("stage", stage), ("le", le)}))
            assert samples[key] == sum(v <= bound for v in values)
    assert _misses(samples, "hard") == 0 and _misses(samples, "soft") == 0


def test_errors_are_counted_by_class_and_still_raised():
    rt = edgerun.load(DEMO)
    with instrument(rt, thermal=False) as tele:  # no port: render() builds the page all the same
        with pytest.raises(InputError):
            rt.run(np.zeros((2, 2), dtype=np.float32))
        rt.run(_inputs(rt)[0])
        samples = _samples(tele.render())
    assert samples[("edgerun_errors_total", frozenset({("type", "InputError")}))] == 1
    assert _count(samples) == 1


def test_close_detaches_the_observer_and_frees_the_port():
    rt = edgerun.load(DEMO)
    tele = instrument(rt, prometheus_port=0, thermal=False)
    url, x = tele.url, _inputs(rt)[0]
    rt.run(x)
    tele.close()
    assert rt.observers == []
    rt.run(x)
    assert tele.recorder.snapshot().count == 1
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)


def test_the_model_version_label_comes_from_load_info():
    rt = edgerun.load(DEMO)
    rt.load_info = rt.load_info.replace(model_version="2026.12.1")  # as load("name@current") sets it
    with instrument(rt, thermal=False, prometheus_port=0) as tele:
        samples = _scrape(tele.url)
    info = dict(next(labels for (name, labels) in samples if name == "edgerun_model_info"))
    assert info["version"] == "2026.12.1" and info["engine"].startswith("onnx ")


def test_fallback_routes_and_reasons_are_counted():
    from edgerun.fallback import FallbackPolicy

    rt = edgerun.load(DEMO, fallback=FallbackPolicy())  # local-only: every result says so
    with instrument(rt, thermal=False, prometheus_port=0) as tele:
        for x in _inputs(rt)[:3]:
            rt.run(x)
        samples = _samples(tele.render())
    assert samples[("edgerun_fallback_routes_total", frozenset({("route", "local"), ("reason", "local-only")}))] == 3


def test_budget_misses_follow_the_strict_rule():
    """At the limit is a miss ("under" is strictly less, edgerun.budget); one under it is not."""
    rec = Recorder(soft_ms=2.0, hard_ms=1.0)

    def run(total_ns: int) -> None:
        rec(Result({}, (), StageTimes(0, total_ns, 0)), None)

    for total in (999_999, 1_000_000, 1_999_999, 2_000_000, 5_000_000):
        run(total)
    snap = rec.snapshot()
    assert snap.misses == {"hard": 4, "soft": 2}
    assert snap.count == 5
    assert 1_000_000 in snap.bounds_ns and 2_000_000 in snap.bounds_ns  # a bucket edge on each budget


def test_textfile_is_a_parsable_exposition(tmp_path: Path):
    rt = edgerun.load(DEMO)
    path = tmp_path / "edgerun.prom"
    with instrument(rt, textfile=path, thermal=False):
        for x in _inputs(rt)[:4]:
            rt.run(x)
    assert _count(_samples(path.read_text(encoding="utf-8"))) == 4  # the write at close
    with pytest.raises(UsageError, match=r"ending in \.prom"):
        instrument(rt, textfile=tmp_path / "metrics.txt")
    assert rt.observers == []  # a refused instrument() leaves nothing attached


def test_thermal_state_is_exported_from_the_sysfs_tree():
    from edgerun.measure.thermal import read_thermal
    from edgerun.telemetry.metrics import ThermalCache, make_registry

    def read():
        return read_thermal(THERMAL_RPI5, run=lambda argv: "throttled=0x50005\n" if argv[0] == "vcgencmd" else None)

    rec = Recorder(100.0, 10.0)
    from prometheus_client import generate_latest

    samples = _samples(generate_latest(make_registry(rec, {"name": "m"}, ThermalCache(read=read))).decode())
    state = read()
    for zone, c in state.temps_c().items():
        assert samples[("edgerun_thermal_zone_celsius", frozenset({("zone", zone)}))] == c
    for cpu, khz in state.cpu_freq_khz.items():
        assert samples[("edgerun_cpu_frequency_hertz", frozenset({("cpu", str(cpu))}))] == khz * 1e3
    throttle = {dict(k[1])["condition"]: v for k, v in samples.items() if k[0] == "edgerun_throttle_state"}
    assert throttle == {"under-voltage": 1, "arm-frequency-capped": 0, "throttled": 1, "soft-temperature-limit": 0}


def test_folded_buckets_equal_a_bisect_of_every_inference():
    """Past FOLD_AT inferences the buffer is folded with numpy; the buckets equal filing each one by bisect."""
    from bisect import bisect_left

    from edgerun.telemetry.recorder import FOLD_AT

    rng = np.random.default_rng(0)
    times = rng.integers(0, 20_000_000_000, size=(3 * FOLD_AT + 17, 3))
    times[:40] = 10_000_000  # exactly on a bound: in that bucket (le)
    rec = Recorder(100.0, 10.0)
    for pre, infer, post in times.tolist():
        rec(Result({}, (), StageTimes(pre, infer, post)), None)
    snap = rec.snapshot()
    columns = [times[:, 0], times[:, 1], times[:, 2], times.sum(axis=1)]
    for stage, values in zip(("pre", "infer", "post", "total"), columns):
        expected = [0] * (len(snap.bounds_ns) + 1)
        for v in values.tolist():
            expected[bisect_left(snap.bounds_ns, v)] += 1
        assert list(snap.buckets[stage]) == expected
        assert snap.sums_ns[stage] == int(values.sum())
    assert snap.count == len(times)
    assert snap.misses["hard"] == int((times.sum(axis=1) >= 10_000_000).sum())


def test_threads_running_at_once_lose_no_inference():
    """Appends take no lock; a fold deletes only what it read, so what others append meanwhile stays."""
    import threading

    from edgerun.telemetry.recorder import FOLD_AT

    rec = Recorder(100.0, 10.0)
    res = Result({}, (), StageTimes(1_000, 2_000, 3_000))
    per_thread, start = FOLD_AT + 1000, threading.Barrier(4)

    def worker() -> None:
        start.wait()
        for _ in range(per_thread):
            rec(res, None)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = rec.snapshot()
    assert snap.count == 4 * per_thread and snap.sums_ns["total"] == 4 * per_thread * 6_000


def test_telemetry_imports_its_exporters_only_when_asked():
    """`import edgerun` never loads edgerun.telemetry; instrument() without outputs loads neither exporter."""
    code = (
        "import sys, edgerun\n"
        "assert 'edgerun.telemetry' not in sys.modules\n"
        f"rt = edgerun.load({str(DEMO)!r})\n"
        "from edgerun.telemetry import instrument\n"
        "tele = instrument(rt)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prometheus_client', 'opentelemetry')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_sigterm_ends_a_long_repeat_with_a_last_textfile_write(tmp_path: Path):
    import signal

    prom = tmp_path / "edgerun.prom"
    argv = [sys.executable, "-m", "edgerun.cli", "run", str(DEMO), "--repeat", "1000000", "--json"]
    argv += ["--metrics-port", "0", "--metrics-textfile", str(prom)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = next((ln for ln in iter(proc.stderr.readline, "") if ln.startswith("edgerun: metrics at ")), "")
        url = line.split(" at ", 1)[1].strip()
        seen = wait_for(lambda: s if _count(s := _scrape(url)) > 0 else None, "a counted inference")
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert '"route": "local"' in out  # the last result is printed
    assert _count(_samples(prom.read_text(encoding="utf-8"))) >= _count(seen)  # written at close


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"breach_interval_s": -1.0}, "breach_interval_s"), ({"buckets_s": (0.001, float("nan"))}, "buckets_s")],
)
def test_bad_settings_are_one_clear_error(kwargs: dict, match: str):
    rt = edgerun.load(DEMO)
    with pytest.raises(UsageError, match=match):
        instrument(rt, **kwargs)
    with pytest.raises(UsageError, match="metrics port 70000"):
        instrument(rt, prometheus_port=70000)
    assert rt.observers == []
