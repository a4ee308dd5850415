"""The soft-verdict forecast: said after the warm-up, before the steady state, when the run cannot
reach the samples a valid soft verdict needs (edgerun.bench.forecast).

The rate comes from an injected clock (``edgerun.bench.runner.perf_counter_ns`` replaced by one
that advances a fixed step per read), so a "slow model" is slow by construction, not by chance.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import edgerun.bench.runner as runner_mod
from edgerun.bench.forecast import seconds_per_inference, soft_forecast
from edgerun.bench.result import bench_one
from edgerun.bench.runner import BenchConfig
from edgerun.bench.worker import WorkerRequest, run_in_worker
from edgerun.budget import Budget
from edgerun.cli import main
from edgerun.measure.stats import min_samples

QUIET = {"energy": False, "memory": False, "thermal": False}


def test_the_cap_message_names_samples_time_and_the_cap():
    text = soft_forecast(0.48, "warm-up mean, n = 10", BenchConfig(), 99.0)
    assert text == (
        "p99 needs 662 samples; at 0.48 s per inference (warm-up mean, n = 10) that is ~5.3 min "
        "but --max-seconds is 60: the soft verdict will be not valid unless misses make it certain"
    )


def test_no_forecast_when_the_cap_and_the_stop_rule_reach_the_minimum():
    needed = min_samples(99.0)
    # exactly the minimum inside the cap: 662 inferences in 60 s
    assert soft_forecast(60 / needed, "x", BenchConfig(min_runs=needed, min_seconds=0), 99.0) is None
    assert soft_forecast(0.001, "x", BenchConfig(), 99.0) is None
    assert soft_forecast(0.0, "x", BenchConfig(), 99.0) is None  # no rate measured: nothing to say


def test_a_short_cap_is_blamed_before_a_low_runs():
    # 0.2 s per inference, 60 s cap: 300 samples at most, whatever --runs says
    text = soft_forecast(0.2, "x", BenchConfig(min_runs=50, min_seconds=1), 99.0)
    assert text is not None and "~2.21 min but --max-seconds is 60" in text


def test_low_runs_is_named_when_the_cap_would_do():
    text = soft_forecast(0.01, "x", BenchConfig(min_runs=50, min_seconds=1), 99.0)
    assert text is not None
    assert "--runs 50 and --min-seconds 1 stop the steady state at about 100" in text
    assert text.endswith("(pass --runs 662)")


def test_the_rate_falls_back_to_the_first_inference_without_warm_up():
    assert seconds_per_inference(10, 5_000_000_000, 9) == (0.5, "warm-up mean, n = 10")
    per, basis = seconds_per_inference(0, 0, 700_000_000)
    assert per == 0.7 and "first inference" in basis


class _SteppingClock:
    """perf_counter_ns that moves ``step_ns`` forward on every read."""

    def __init__(self, step_ns: int) -> None:
        self.step_ns, self.now = step_ns, 0

    def __call__(self) -> int:
        self.now += self.step_ns
        return self.now


@pytest.mark.parametrize("step_s, said", [(0.48, True), (1e-6, False)])
def test_bench_says_it_after_the_warm_up_and_keeps_it_in_the_warnings(
    tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch, step_s: float, said: bool
):
    monkeypatch.setattr(runner_mod, "perf_counter_ns", _SteppingClock(int(step_s * 1e9)))
    config = BenchConfig(min_runs=1000, min_seconds=0, max_seconds=60, warmup_runs=5, warmup_seconds=0, **QUIET)
    events: list[tuple[str, str]] = []
    res = bench_one(
        str(tiny_onnx),
        config,
        None,
        Budget(),
        "test",
        progress=lambda phase, _f: events.append(("phase", phase)),
        notice=lambda text: events.append(("notice", text)),
    )
    assert res["status"] == "ok"
    notices = [text for kind, text in events if kind == "notice"]
    expected = soft_forecast(
        *seconds_per_inference(res["warmup"]["runs"], res["warmup"]["duration_ns"], 0), config, 99.0
    )
    if not said:
        assert notices == [] and expected is None
        return
    assert notices == [expected] and expected in res["warnings"]
    assert "--max-seconds is 60" in expected
    kinds = [e[1] if e[0] == "phase" else "NOTICE" for e in events]
    assert kinds.index("NOTICE") > max(i for i, k in enumerate(kinds) if k == "warmup")
    assert kinds.index("NOTICE") < kinds.index("measure")  # before the steady state, not after the run


def test_the_worker_pipe_carries_notices_to_the_parent_as_they_come():
    request = WorkerRequest("m.onnx", {}, {}, None, "test")
    result = {"status": "ok", "overall": "pass"}
    code = (
        "import json, os\n"
        "os.write(fd, (json.dumps({'type': 'notice', 'text': 'p99 needs 662 samples'}) + '\\n').encode())\n"
        f"os.write(fd, (json.dumps({{'type': 'result', 'result': {result!r}}}) + '\\n').encode())\n"
    )
    heard: list[str] = []
    res = run_in_worker(request, 30, argv=lambda fd: [sys.executable, "-c", f"fd = {fd}\n{code}"], notice=heard.append)
    assert res == result and heard == ["p99 needs 662 samples"]


def test_the_cli_prints_it_on_stderr_before_the_steady_state_and_writes_it_to_json(
    tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """A real worker and a cap no machine can meet: p99.999 needs 664,000+ samples, and a 1 ms cap
    would need them at under 2 ns each (one Python call takes longer)."""
    out = tmp_path / "r.json"
    argv = ["bench", str(tiny_onnx), "--percentile", "99.999", "--max-seconds", "0.001", "--runs", "1"]
    argv += ["--min-seconds", "0", "--warmup", "1", "--warmup-seconds", "0", "--no-energy", "--json", str(out)]
    main(argv)
    err = capsys.readouterr().err.splitlines()
    res = json.loads(out.read_text())["results"][0]
    forecast = [w for w in res["warnings"] if w.startswith("p99.999 needs")]
    assert len(forecast) == 1 and "but --max-seconds is 0.001" in forecast[0]
    live = [i for i, line in enumerate(err) if line.endswith(forecast[0]) and line.startswith("edgerun: warning")]
    steady = [i for i, line in enumerate(err) if line.endswith(": measure...")]
    assert live and steady and live[0] < steady[0]
