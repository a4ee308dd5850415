"""``BenchConfig``: what one benchmark does, and the policy that turns a request into a run.

The one model of the benchmark's settings: ``edgerun bench`` builds it from its options,
``edgerun.targets.options.BenchOptions`` (the same settings as device-side flags, used by
``--target`` and lab plans) builds it to check them and to size job timeouts, and
``edgerun.bench.runner.measure()`` runs it. The checks and the derived values (a sustained run's
length, threads capped at the usable CPUs, the worker's timeout) live here, nowhere else.
Imports nothing heavy: a lab plan checks its options without numpy or an engine.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgerun.errors import BenchConfigError  # defined there, with the error tree; re-exported here

#: Past a week a benchmark duration is a typo (and seconds * 1e9 must stay a finite integer).
MAX_SECONDS = 7 * 24 * 3600.0
#: Inference and window counts; larger is a typo, not a plan.
MAX_COUNT = 2**62


@dataclass(frozen=True)
class BenchConfig:
    min_runs: int = 1000
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    warmup_runs: int = 10
    warmup_seconds: float = 0.5
    threads: int | None = None
    providers: tuple[str, ...] = ()
    engine: str | None = None
    graph_optimization: str = "all"
    seed: int = 0
    # an .npz of raw inputs (numpy.savez, 'x' stacked on axis 0, as a manifest's samples) fed instead
    # of the bundled samples or random data; a path on the machine that runs the benchmark
    inputs: str | None = None
    # a steady state of at least these minutes (min_seconds and max_seconds stretched to fit), and the
    # latency drift between its first and last minute
    sustained_minutes: float | None = None
    memory: bool = True  # RSS/USS per phase, steady-state peak
    thermal: bool = True  # thermal state before and after
    energy: bool = True  # energy per inference (a measured probe if one exists, else a labelled estimate)
    probe: str | None = None  # a named power probe: must exist (ProbeUnavailable otherwise)
    energy_windows: int = 3
    energy_window_seconds: float = 0.5
    idle_seconds: float = 0.5

    # Things the caller asked for that were adjusted (threads capped); the bench command adds
    # them to each result's warnings. Not an option: filled in by __post_init__.
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """The one check of a benchmark's settings; the CLI maps a BenchConfigError to the option named."""

        def need(ok: bool, field: str, expected: str) -> None:
            if not ok:
                raise BenchConfigError(field, f"must be {expected}, got {getattr(self, field)!r}")

        def count(field: str, low: int) -> None:
            value = getattr(self, field)
            need(isinstance(value, int) and not isinstance(value, bool), field, "a whole number")
            need(value >= low, field, f"a whole number >= {low}")
            need(value <= MAX_COUNT, field, f"at most {MAX_COUNT}")

        def seconds(field: str, low: float, open_low: bool, high: float = MAX_SECONDS) -> None:
            value = getattr(self, field)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            need(ok and (value > low if open_low else value >= low), field, f"{'>' if open_low else '>='} {low:g}")
            need(value <= high, field, f"at most {high:g} (a week)")

        if self.sustained_minutes is not None:  # first: the bench command derives the seconds from it
            seconds("sustained_minutes", 0, True, MAX_SECONDS / 60)
        count("min_runs", 1)
        count("warmup_runs", 0)
        count("energy_windows", 1)
        seconds("min_seconds", 0, False)
        seconds("warmup_seconds", 0, False)
        seconds("max_seconds", 0, True)
        seconds("energy_window_seconds", 0, True)
        seconds("idle_seconds", 0, True)
        object.__setattr__(self, "warnings", tuple(self.warnings))
        need(self.inputs is None or (isinstance(self.inputs, str) and self.inputs != ""), "inputs", "a file path")
        if self.sustained_minutes:
            # A sustained run is a steady state at least that long, with room to finish: the policy
            # lives here so that the CLI, measure() and a lab plan get the same run (idempotent,
            # so dataclasses.replace keeps it).
            min_s = max(self.min_seconds, self.sustained_minutes * 60)
            object.__setattr__(self, "min_seconds", min_s)
            object.__setattr__(self, "max_seconds", min(MAX_SECONDS, max(self.max_seconds, min_s * 1.5 + 10)))
        if self.threads is not None:
            need(isinstance(self.threads, int) and not isinstance(self.threads, bool), "threads", "a whole number")
            need(self.threads >= 1, "threads", "a whole number >= 1 (or None: the profile's)")
            from edgerun.threads import usable_cpus

            usable = usable_cpus()
            if self.threads > usable:
                # more intra-op threads than usable cores only measures oversubscription (and a typo
                # like 100000 spawns that many threads): run with the cores there are, and say so
                note = f"threads {self.threads} capped at {usable}, the CPUs this process may use"
                object.__setattr__(self, "threads", usable)
                object.__setattr__(self, "warnings", (*self.warnings, note))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def worker_timeout_s(self, timeout: float | None = None) -> float:
        """Seconds one artifact's worker may run before it is killed: ``timeout``, else 2 * max_seconds + 120."""
        return timeout or 2 * self.max_seconds + 120
