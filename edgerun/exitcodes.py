"""The exit codes of every ``edgerun`` command, in one table.

    0  EXIT_PASS         the command did what was asked; every verdict passed
    1  EXIT_FAIL         a verdict failed, or an EdgerunError stopped the command (the table below)
    2  EXIT_USAGE        a usage error: argparse's own (an unknown option, a value its type refused),
                         or an error that names an option or setting the user must change
    3  EXIT_NOT_VALID    nothing failed, but some verdict was not valid (too few samples behind a
                         percentile), or nothing could be compared
    130 EXIT_INTERRUPTED Ctrl-C (128 + SIGINT, the shell's convention)

``edgerun.cli.main`` prints an ``EdgerunError`` as one line and returns ``exit_code(exc)``; every
command module (``edgerun/cli/<command>.py``) imports its codes from here and defines none of
its own. Any other exception is a bug in edgerun: ``main`` says so, exit 1.

Every class in ``edgerun.errors.__all__`` is a key of ``ERROR_EXIT_CODES`` (tests/test_exit_codes.py
checks), so a new error class needs a decision here.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgerun import errors as E

__all__ = [
    "ERROR_EXIT_CODES",
    "EXIT_FAIL",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_VALID",
    "EXIT_PASS",
    "EXIT_USAGE",
    "exit_code",
    "verdict_exit_code",
]

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_NOT_VALID = 3
EXIT_INTERRUPTED = 130

#: Each error class's exit code. Usage: the user must change the command line or a setting
#: (an option value, a fallback policy); everything else is a failure of the run (exit 1).
ERROR_EXIT_CODES: dict[type[E.EdgerunError], int] = {
    E.EdgerunError: EXIT_FAIL,
    E.UsageError: EXIT_USAGE,
    E.PolicyError: EXIT_USAGE,
    E.ArtifactError: EXIT_FAIL,
    E.IntegrityError: EXIT_FAIL,
    E.FormatError: EXIT_FAIL,
    E.InputError: EXIT_FAIL,
    E.EngineError: EXIT_FAIL,
    E.EngineUnavailable: EXIT_FAIL,
    E.ProviderUnavailable: EXIT_FAIL,
    E.InferenceError: EXIT_FAIL,
    E.ProfileError: EXIT_FAIL,
    E.ProbeError: EXIT_FAIL,
    E.ProbeUnavailable: EXIT_FAIL,
    E.MeasurementError: EXIT_FAIL,
    E.BenchError: EXIT_FAIL,
    E.BenchConfigError: EXIT_USAGE,
    E.SerialError: EXIT_FAIL,
    E.PortUnavailable: EXIT_FAIL,
    E.HandshakeError: EXIT_FAIL,
    E.DutError: EXIT_FAIL,
    E.DutTimeout: EXIT_FAIL,
    E.FrameError: EXIT_FAIL,
    E.DeadlineExceeded: EXIT_FAIL,
    E.RemoteError: EXIT_FAIL,
    E.RemoteUnavailable: EXIT_FAIL,
    E.RemoteAuthError: EXIT_FAIL,
    E.ProtocolError: EXIT_FAIL,
    E.TargetError: EXIT_FAIL,
    E.TargetUnreachable: EXIT_FAIL,
    E.TargetAuthError: EXIT_FAIL,
    E.TargetTimeout: EXIT_FAIL,
    E.TargetSetupError: EXIT_FAIL,
    E.LabError: EXIT_FAIL,
    E.OutputError: EXIT_FAIL,
    E.UpdateRefused: EXIT_FAIL,
    E.CompressError: EXIT_FAIL,
    E.RecipeError: EXIT_FAIL,
    E.AccuracyGateError: EXIT_FAIL,
}


def exit_code(exc: BaseException) -> int:
    """The exit code for an exception that ended a command: its class's (or its nearest base's) entry;
    Ctrl-C 130; anything else that is not an EdgerunError is a bug, exit 1."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    for cls in type(exc).__mro__:
        if cls in ERROR_EXIT_CODES:
            return ERROR_EXIT_CODES[cls]
    return EXIT_FAIL


def verdict_exit_code(overalls: Iterable[str]) -> int:
    """The exit code for results' ``overall`` verdicts: any "fail" or "error" (or a verdict this table
    does not know) 1, else any "not-valid" 3, else 0 (all "pass", or no result)."""
    seen = set(overalls)
    if seen - {"pass", "not-valid"}:
        return EXIT_FAIL
    return EXIT_NOT_VALID if "not-valid" in seen else EXIT_PASS
