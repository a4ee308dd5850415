"""``edgerun bench`` options as data: built from the command line or a lab plan, sent to a device as flags.

The device runs its own ``edgerun bench`` with these flags, so a remote result is made
by exactly the code that makes a local one. Field names are the flags' names
(``min_seconds`` is ``--min-seconds``); units are in the names as on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edgerun.errors import UsageError

__all__ = ["BenchOptions"]

# Flags whose value is passed on; booleans are the --no-* switches, on when True.
_VALUE_FLAGS = (
    "runs", "min_seconds", "max_seconds", "warmup", "warmup_seconds", "threads", "providers", "engine",
    "graph_opt", "profile", "soft_ms", "hard_ms", "percentile", "probe", "energy_windows",
    "energy_window_seconds", "sustained", "timeout",
)  # fmt: skip
_SWITCHES = ("no_energy", "no_memory", "no_thermal", "in_process")


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
        if self.runs < 1 or self.warmup < 0 or self.max_seconds <= 0 or self.min_seconds < 0:
            raise UsageError(
                f"bench options: need runs >= 1, warmup >= 0, min_seconds >= 0, max_seconds > 0; got "
                f"{self.runs}, {self.warmup}, {self.min_seconds}, {self.max_seconds}"
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
        worker_s = self.timeout or 2 * max(self.max_seconds, (self.sustained or 0) * 60 * 1.5 + 10) + 120
        return worker_s + 60.0
