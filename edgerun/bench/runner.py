"""The benchmark loop for one artifact: cold start, warm-up, steady state.

Stop rule (MLPerf LoadGen style): the steady-state phase runs until it has at
least ``min_runs`` inferences AND at least ``min_seconds`` of wall time, or
until ``max_seconds`` (a safety cap; hitting it is recorded). Warm-up runs by
count and by seconds the same way. Cold start, artifact verification plus
session creation and the first inference, is timed apart from steady state.

Inputs: edgerun.bench.inputs (the artifact's bundled samples, else seeded random
tensors that match the raw input spec).
"""

from __future__ import annotations

import gc
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from edgerun.bench.config import MAX_COUNT, MAX_SECONDS, BenchConfig, BenchConfigError  # noqa: F401 (re-exported)
from edgerun.bench.inputs import sample_inputs  # noqa: F401 (re-exported: its home before it had its own module)
from edgerun.runtime import Runtime, load

# progress(phase, fraction_done) where phase is "load", "first" (the first inference), "warmup",
# "measure", "energy" or "done". The bench worker turns them into the phase it reports before each
# step, so that a crash names the step it happened in.
Progress = Callable[[str, float], None]
# after_warmup(runs, ns, first_ns): the warm-up's count and duration and the first inference's
# total, told before the steady state starts (edgerun.bench.forecast turns them into a forecast)
AfterWarmup = Callable[[int, int, int], None]


@dataclass
class Measurement:
    """Raw material of one benchmark: everything timed, nothing summarised yet."""

    runtime: Runtime
    input_source: str
    first_ns: tuple[int, int, int]
    warmup_runs: int
    warmup_ns: int
    start_ns: np.ndarray  # each steady-state inference's start, ns after the loop began
    pre_ns: np.ndarray
    infer_ns: np.ndarray
    post_ns: np.ndarray
    steady_ns: int
    hit_max_seconds: bool
    memory: Any = None  # edgerun.measure.memory.MemoryReport
    energy: Any = None  # edgerun.power.energy.EnergyReport
    thermal_before: Any = None  # edgerun.measure.thermal.ThermalState
    thermal_after: Any = None
    node_placement: dict[str, Any] | None = None  # onnxruntime: which provider ran each node (first inference)


def _loop(
    rt: Runtime, inputs: list[Any], min_runs: int, min_ns: int, max_ns: int, progress: Callable[[float], None] | None
) -> tuple[np.ndarray, int, bool]:
    """Run until min_runs and min_ns are both met (or max_ns passes).

    Returns (n x 4 array: start offset from the loop's start, pre, infer, post, all ns;
    elapsed ns; whether max_ns cut it short). Times go into array.array buffers: unlike
    a list of tuples they are not tracked by the garbage collector, so the loop does not
    grow GC pauses.
    """
    call = rt.pipeline
    starts, pre, infer, post = array("q"), array("q"), array("q"), array("q")
    n_inputs = len(inputs)
    gc.collect()
    start = perf_counter_ns()
    next_report = start
    i = 0
    while True:
        now = perf_counter_ns()
        elapsed = now - start
        if (i >= min_runs and elapsed >= min_ns) or elapsed >= max_ns:
            break
        if progress is not None and now >= next_report:
            progress(min(1.0, max(i / min_runs, elapsed / max(min_ns, 1))))
            next_report = now + 100_000_000
        _, _, st = call(inputs[i % n_inputs])
        starts.append(now - start)
        pre.append(st.pre_ns)
        infer.append(st.infer_ns)
        post.append(st.post_ns)
        i += 1
    times = np.stack(
        [np.frombuffer(a, dtype=np.int64) if len(a) else np.zeros(0, np.int64) for a in (starts, pre, infer, post)],
        axis=1,
    )
    return times, perf_counter_ns() - start, elapsed >= max_ns and (i < min_runs or elapsed < min_ns)


def _run_for(rt: Runtime, inputs: list[Any]) -> Callable[[float], int]:
    """A run_for(seconds) -> inferences callable for the energy windows."""

    def run_for(seconds: float) -> int:
        end = perf_counter_ns() + int(seconds * 1e9)
        i = 0
        while perf_counter_ns() < end:
            rt.pipeline(inputs[i % len(inputs)])
            i += 1
        return i

    return run_for


def measure(
    path: str | Path,
    config: BenchConfig,
    profile: Any = None,
    progress: Progress | None = None,
    after_warmup: AfterWarmup | None = None,
) -> Measurement:
    """Load the artifact and time it: cold start, warm-up, the steady-state loop, then energy.

    Memory snapshots bracket each phase; the thermal state is read before loading and after
    the last window. The energy windows come after the latency loop so that a sampling
    thread never perturbs the latency figures.
    """
    from edgerun.measure.memory import PeakTracker
    from edgerun.measure.thermal import read_thermal

    def report(phase: str) -> Callable[[float], None] | None:
        return None if progress is None else (lambda f: progress(phase, f))

    probe = _select_probe(config, profile)  # fail fast on a named probe that is missing
    if progress:
        progress("load", 0.0)
    thermal_before = read_thermal() if config.thermal else None
    mem = PeakTracker() if config.memory else None
    if mem:
        mem.before_load()
    rt = load(
        path,
        profile,
        engine=config.engine,
        threads=config.threads,
        providers=config.providers,
        graph_optimization=config.graph_optimization,
        record_placement=bool(config.providers),  # which provider ran each node, when providers were asked for
    )
    if mem:
        # The verified model file's size, known once the artifact is resolved: `path` may be a
        # manifest or a bundle folder, whose own size is not the model's.
        mem.model_file_bytes = rt.artifact.size_bytes
        mem.after_session()
    inputs, source = sample_inputs(rt.artifact, config.seed, config.inputs)
    if progress:
        progress("first", 0.0)
    _, _, first = rt.pipeline(inputs[0])
    if mem:
        mem.after_first_inference()
    placement = getattr(rt.pipeline.session, "node_placement", lambda: None)()  # stops the profiler
    warm, warm_ns, _ = _loop(
        rt,
        inputs,
        config.warmup_runs,
        int(config.warmup_seconds * 1e9),
        int(config.max_seconds * 1e9),
        report("warmup"),
    )
    if after_warmup is not None:
        after_warmup(len(warm), warm_ns, first.pre_ns + first.infer_ns + first.post_ns)
    if mem:
        mem.start_steady_state()
    steady, steady_ns, capped = _loop(
        rt, inputs, config.min_runs, int(config.min_seconds * 1e9), int(config.max_seconds * 1e9), report("measure")
    )
    memory = mem.report() if mem else None
    energy = None
    if probe is not None:
        from edgerun.power import measure_energy

        if progress:
            progress("energy", 0.0)
        energy = measure_energy(
            probe,
            _run_for(rt, inputs),
            windows=config.energy_windows,
            window_s=config.energy_window_seconds,
            idle_s=config.idle_seconds,
        )
    if progress:
        progress("done", 1.0)
    return Measurement(
        runtime=rt,
        input_source=source,
        first_ns=(first.pre_ns, first.infer_ns, first.post_ns),
        warmup_runs=len(warm),
        warmup_ns=warm_ns,
        start_ns=steady[:, 0].copy(),
        pre_ns=steady[:, 1].copy(),
        infer_ns=steady[:, 2].copy(),
        post_ns=steady[:, 3].copy(),
        steady_ns=steady_ns,
        hit_max_seconds=capped,
        memory=memory,
        energy=energy,
        thermal_before=thermal_before,
        thermal_after=read_thermal() if config.thermal else None,
        node_placement=placement,
    )


def _select_probe(config: BenchConfig, profile: Any) -> Any:
    if not config.energy:
        return None
    from edgerun.power import select_probe

    return select_probe(config.probe, profile=profile)
