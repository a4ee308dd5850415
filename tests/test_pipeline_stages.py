"""Which engine calls each timed stage wraps (docs/bench-result.md), on real sessions, with an injected clock.

The clock is ``edgerun.pipeline.perf_counter_ns`` replaced by a counter that only the engine calls
advance, each by its own power of ten; a stage's time then says exactly which calls ran inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgerun
import edgerun.pipeline as pipeline_mod
from edgerun.demo import DEMO_DIR

FEED, INVOKE, FETCH, RUN = 1_000, 10, 100_000, 10


class _Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def _tick(clock: _Clock, fn: Any, step: int) -> Any:
    def wrapped(*args: Any) -> Any:
        out = fn(*args)
        clock.now += step
        return out

    return wrapped


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    c = _Clock()
    monkeypatch.setattr(pipeline_mod, "perf_counter_ns", c)
    return c


def _load_with_ticks(path: Path, clock: _Clock) -> Any:
    rt = edgerun.load(path, threads=1)
    session = rt.pipeline.session
    if session.engine == "litert":
        session.feed = _tick(clock, session.feed, FEED)
        session.invoke = _tick(clock, session.invoke, INVOKE)
        session.fetch = _tick(clock, session.fetch, FETCH)
    else:
        session.run = _tick(clock, session.run, RUN)
    return edgerun.runtime.Runtime(rt.artifact, pipeline_mod.Pipeline(rt.artifact, session), None, rt.load_info)


def test_litert_infer_is_invoke_alone_and_the_copies_are_pre_and_post(clock: _Clock) -> None:
    rt = _load_with_ticks(DEMO_DIR / "digits-int8.tflite", clock)
    x = np.random.default_rng(0).uniform(0, 16, (8, 8)).astype(np.float32)
    res = rt.run(x)
    assert (res.times.pre_ns, res.times.infer_ns, res.times.post_ns) == (FEED, INVOKE, FETCH)
    assert len(res.top) == 3 and res.outputs[rt.outputs[0].name].dtype == np.float32  # the real outputs
    feeds = rt.pipeline.preprocess(x)
    _, infer_ns = rt.pipeline.timed_infer(feeds)  # the overhead tool's view of the same stage
    assert infer_ns == INVOKE


def test_onnx_infer_is_the_run_call(clock: _Clock) -> None:
    rt = _load_with_ticks(DEMO_DIR / "digits-fp32.onnx", clock)
    res = rt.run(np.random.default_rng(1).uniform(0, 16, (8, 8)).astype(np.float32))
    assert (res.times.pre_ns, res.times.infer_ns, res.times.post_ns) == (0, RUN, 0)


def test_the_staged_and_the_one_call_paths_give_the_same_outputs() -> None:
    rt = edgerun.load(DEMO_DIR / "digits-int8.tflite", threads=1)
    x = np.random.default_rng(2).uniform(0, 16, (8, 8)).astype(np.float32)
    staged = rt.run(x)
    direct = rt.pipeline.session.run(rt.pipeline.preprocess(x))
    name = rt.outputs[0].name
    np.testing.assert_array_equal(staged.outputs[name], rt.pipeline.postprocess(direct)[0][name])


def test_a_litert_session_serves_concurrent_callers() -> None:
    # The reference server runs session.run in executor threads; without the session's lock LiteRT
    # refused the second caller's invoke ("at least 1 reference to internal data") or read its input mid-run.
    from concurrent.futures import ThreadPoolExecutor

    rt = edgerun.load(DEMO_DIR / "digits-fp32.tflite", threads=1)
    rng = np.random.default_rng(3)
    raw = [rng.uniform(0, 16, (8, 8)).astype(np.float32) for _ in range(32)]
    feeds = [rt.pipeline.preprocess(x) for x in raw]
    expected = [rt.pipeline.session.run(f)[0].copy() for f in feeds]
    name = rt.outputs[0].name
    with ThreadPoolExecutor(8) as pool:
        for _ in range(5):
            got = list(pool.map(lambda f: rt.pipeline.session.run(f)[0], feeds))
            assert all(np.array_equal(g, e) for g, e in zip(got, expected))
            results = list(pool.map(rt.run, raw))
            probs = [rt.pipeline.postprocess([e])[0][name] for e in expected]
            assert all(np.array_equal(r.outputs[name], p) for r, p in zip(results, probs))
