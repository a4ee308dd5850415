"""Run a command on this machine and keep its stdout: the one helper that device detection,
thermal sensors and power probes share (``getprop``, ``nvpmodel -q``, ``dumpsys``).

Standard library only, so the measuring and probing modules that use it sit below
``edgerun.detection`` (which imports the device profiles) instead of importing it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Sequence

__all__ = ["CommandRunner", "no_commands", "run_local"]

CommandRunner = Callable[[Sequence[str]], "str | None"]


def run_local(argv: Sequence[str], timeout_s: float = 5.0) -> str | None:
    """Run argv on this machine; its stdout, or None when missing, failing or too slow."""
    if not argv or shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def no_commands(argv: Sequence[str]) -> str | None:
    """The runner for a root that is not this machine (a fixture tree): no command answers."""
    return None
