"""``edgerun bench`` options as data: built from the command line or a lab plan, sent to a device as flags.

The device runs its own ``edgerun bench`` with these flags, so a remote result is made
by exactly the code that makes a local one. Field names are the flags' names
(``min_seconds`` is ``--min-seconds``); units are in the names as on the command line.
The settings' model and policy is ``edgerun.bench.config.BenchConfig``: ``config()`` builds it,
and a BenchOptions is checked by building one (so a lab plan's ``[bench]`` table is refused
with the same rule and words as the command line, naming the flag).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgerun.errors import UsageError

if TYPE_CHECKING:
    from edgerun.bench.config import BenchConfig

__all__ = ["BenchOptions"]

# Flags whose value is passed on; booleans are the --no-* switches, on when True.
_VALUE_FLAGS = (
    "runs", "min_seconds", "max_seconds", "warmup", "warmup_seconds", "threads", "providers", "engine",
    "graph_opt", "profile", "soft_ms", "hard_ms", "percentile", "probe", "energy_windows",
    "energy_window_seconds", "sustained", "timeout",
)  # fmt: skip
_SWITCHES = ("no_energy", "no_memory", "no_thermal", "in_process")
# BenchConfig field -> the option (BenchOptions field, flag name) that sets it
_FLAG_OF = {
    "min_runs": "runs", "warmup_runs": "warmup", "sustained_minutes": "sustained", "graph_optimization": "graph_opt",
}  # fmt: skip


@dataclass(frozen=True)
class BenchOptions:
    """What ``edgerun bench`` is asked to do; None = the device's own default (e.g. its profile)."""

    runs: int = 1000
    min_seconds: float = 1.0
    max_seconds: float = 60.0
    warmup: int = 10
    warmup_seconds: float = 0.5
    threads: int | None = None
    providers: str | None = None  # comma-separated, as on the command line
    engine: str | None = None
    graph_opt: str = "all"
    profile: str | None = None
    soft_ms: float | None = None
    hard_ms: float | None = None
    percentile: float | None = None
    probe: str | None = None
    energy_windows: int = 3
    energy_window_seconds: float = 0.5
    sustained: float | None = None
    no_energy: bool = False
    no_memory: bool = False
    no_thermal: bool = False
    in_process: bool = False
    timeout: float | None = None  # seconds for one artifact; None: 2 * max_seconds + 120, as locally

    def __post_init__(self) -> None:
        # The rule is BenchConfig's; its error is a UsageError naming the flag. Threads are checked
        # without the cap at this machine's CPUs: the options may be for a device with more.
        from edgerun.bench.config import BenchConfigError

        if self.threads is not None and (type(self.threads) is not int or self.threads < 1):
            expected = "a whole number >= 1 (or None: the profile's)"
            raise BenchConfigError("threads", f"must be {expected}, got {self.threads!r}")
        try:
            self.config(here=False)
        except BenchConfigError as exc:
            raise BenchConfigError(_FLAG_OF.get(exc.field, exc.field), exc.detail) from None

    def config(self, here: bool = True) -> BenchConfig:
        """The BenchConfig these options ask for. ``here``: for a run on this machine (threads are
        capped at its usable CPUs, with a warning); else threads are left to the device."""
        from edgerun.bench.config import BenchConfig

        return BenchConfig(
            min_runs=self.runs,
            min_seconds=self.min_seconds,
            max_seconds=self.max_seconds,
            sustained_minutes=self.sustained,
            warmup_runs=self.warmup,
            warmup_seconds=self.warmup_seconds,
            threads=self.threads if here else None,
            providers=tuple(p for p in (self.providers or "").split(",") if p),
            engine=self.engine,
            graph_optimization=self.graph_opt,
            memory=not self.no_memory,
            thermal=not self.no_thermal,
            energy=not self.no_energy,
            probe=self.probe,
            energy_windows=self.energy_windows,
            energy_window_seconds=self.energy_window_seconds,
        )

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> BenchOptions:
        """From ``edgerun bench``'s parsed arguments (the names match)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str) -> BenchOptions:
        """From a lab plan's ``[bench]`` table; unknown keys are errors naming the known ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise UsageError(f"{where}: unknown bench option(s) {unknown}; known: {', '.join(sorted(names))}")
        return cls(**dict(values))

    def replace(self, **changes: Any) -> BenchOptions:
        return dataclasses.replace(self, **changes)

    def argv(self) -> list[str]:
        """The ``edgerun bench`` flags for these options (defaults included: the device's may differ)."""
        out: list[str] = []
        for name in _VALUE_FLAGS:
            value = getattr(self, name)
            if value is not None:
                out += [f"--{name.replace('_', '-')}", str(value)]
        return out + [f"--{name.replace('_', '-')}" for name in _SWITCHES if getattr(self, name)]

    def job_timeout_s(self) -> float:
        """Seconds one artifact may take on the device before the job is failed.

        The device's own worker timeout (``--timeout``, else 2 * max-seconds + 120 as
        locally) plus a minute for starting Python and writing the result there.
        """
        return self.config(here=False).worker_timeout_s(self.timeout) + 60.0
