"""The one exception tree of edgerun.

Every failure that crosses a public edgerun API is one of these. Foreign
exceptions (onnxruntime's, LiteRT's, OSError, json) are translated once, at the
boundary where they happen, with ``raise OurError(...) from exc`` so the cause
is kept for debugging.

    EdgerunError
    ├── ArtifactError          the model file or manifest is unusable
    │   ├── IntegrityError     the model file's sha256 does not match the manifest
    │   └── FormatError        a model file's bytes do not parse as its format (edgerun.formats readers)
    ├── InputError             a wrong input: shape, dtype, NaN/Inf, missing name
    ├── EngineError            an inference engine failed
    │   ├── EngineUnavailable  the engine's Python package is not installed
    │   ├── ProviderUnavailable  a requested execution provider / delegate is missing
    │   └── InferenceError     the engine raised while running a model
    ├── ProfileError           an unknown or malformed device profile
    ├── ProbeError             a power probe failed or was misused (stopped before it started, started twice)
    │   └── ProbeUnavailable   a power probe the user named cannot be used here (says why)
    ├── UsageError             an argument, option or setting is out of range, of the wrong kind or unknown
    │   └── BenchConfigError   a benchmark setting is out of range (also a BenchError); ``field`` names it
    ├── MeasurementError       samples, a power trace or a tool's output cannot give the figure asked for
    ├── BenchError             a benchmark could not produce a result, or a result file is unreadable
    ├── SerialError            a serial-attached device (wearable firmware, MLPerf Tiny DUT) failed us
    │   ├── PortUnavailable    the serial port is missing, busy or not permitted (says which and what to do)
    │   ├── HandshakeError     the firmware's handshake is missing or incompatible (version, sample format)
    │   ├── DutError           a DUT's reply was malformed, an ``e-[...]`` error, or never came
    │   │   └── DutTimeout     the DUT stopped answering (a hung board: a power cycle may bring it back)
    │   └── FrameError         a host-mode frame's payload does not fit its type (too short, partial samples)
    ├── PolicyError            a fallback policy is invalid: names the field and what was expected
    ├── DeadlineExceeded       a call ran out of budget: a hard-budget miss, or the remote cut at the deadline
    ├── RemoteError            the remote (cloud) route failed: error status, transport error
    │   ├── RemoteUnavailable  no request was sent: circuit open, auth latched off, no slot or budget left
    │   ├── RemoteAuthError    the server refused the credentials (401/403); remote stays off until reconfigured
    │   └── ProtocolError      the server's answer broke the protocol or the local model's output signature
    ├── TargetError            a device target (local, ssh, adb) failed a job
    │   ├── TargetUnreachable  cannot connect, or the link dropped mid-call (host down, cable out)
    │   ├── TargetAuthError    connected, but refused: wrong key, unknown or changed host key
    │   ├── TargetTimeout      a remote call ran past its timeout and was stopped
    │   └── TargetSetupError   the device lacks what the job needs (Python, edgerun, a binary)
    ├── LabError               a lab plan or result database is unusable
    ├── OutputError            an output path would replace an input, a database or (without --force) a file
    ├── UpdateRefused          a model update was refused: TUF caught an attack, or on-device acceptance failed
    └── CompressError          a compression run failed (edgerun.compress)
        ├── RecipeError        a recipe is malformed: names the bad key and what was expected
        └── AccuracyGateError  an exported variant lost more accuracy than the recipe's gate allows

Builtin exceptions are not raised on purpose (tests/test_errors_raised.py scans every ``raise``),
except where a Python protocol asks for one: ``AttributeError`` from a module's ``__getattr__``,
``KeyError`` from ``__getitem__``, ``TypeError`` from a ``json`` ``default=`` hook,
``NotImplementedError`` in an abstract method, ``ValueError`` in a pydantic validator (pydantic
turns it into its ValidationError, which the schema layer translates), ``SystemExit`` from a
signal handler, and a bare ``raise`` that re-raises.

Some classes are also builtin exceptions, so that callers written against the builtin convention
keep working: ``InputError``, ``UsageError``, ``MeasurementError``, ``FormatError``, ``FrameError``
and ``PolicyError`` are ``ValueError`` (numpy's and the standard library's "bad value" convention;
``except ValueError`` in older callers still catches them), ``DeadlineExceeded`` is a ``TimeoutError``.

Each class has one exit code in the command line: ``edgerun.exitcodes.ERROR_EXIT_CODES``.
"""

from __future__ import annotations

__all__ = [
    "AccuracyGateError",
    "ArtifactError",
    "BenchConfigError",
    "BenchError",
    "CompressError",
    "DeadlineExceeded",
    "DutError",
    "DutTimeout",
    "EdgerunError",
    "EngineError",
    "EngineUnavailable",
    "FormatError",
    "FrameError",
    "HandshakeError",
    "InferenceError",
    "InputError",
    "IntegrityError",
    "LabError",
    "MeasurementError",
    "OutputError",
    "PolicyError",
    "PortUnavailable",
    "ProbeError",
    "ProbeUnavailable",
    "ProfileError",
    "ProtocolError",
    "ProviderUnavailable",
    "RecipeError",
    "RemoteAuthError",
    "RemoteError",
    "RemoteUnavailable",
    "SerialError",
    "TargetAuthError",
    "TargetError",
    "TargetSetupError",
    "TargetTimeout",
    "TargetUnreachable",
    "UpdateRefused",
    "UsageError",
]


class EdgerunError(Exception):
    """Base class of every error edgerun raises on purpose."""


class ArtifactError(EdgerunError):
    """The model file or its manifest cannot be used (missing, corrupt, inconsistent)."""


class IntegrityError(ArtifactError):
    """The model file's sha256 differs from the one its manifest records."""


class FormatError(ArtifactError, ValueError):
    """A model file's bytes do not parse as its format (truncated, garbled, out-of-range fields).

    Raised by the readers in ``edgerun.formats`` without the file's path; the caller that knows
    the path re-raises it as an ArtifactError naming the file."""


class InputError(EdgerunError, ValueError):
    """An input does not match what the artifact expects (name, shape, dtype, finite values)."""


class EngineError(EdgerunError):
    """An inference engine failed."""


class EngineUnavailable(EngineError):
    """The engine's Python package is not installed on this machine."""


class ProviderUnavailable(EngineError):
    """A requested execution provider or delegate is not available in this build."""


class InferenceError(EngineError):
    """The engine raised while running the model."""


class ProfileError(EdgerunError):
    """A device profile is unknown or malformed."""


class ProbeError(EdgerunError):
    """A power probe failed or was misused (stopped before it started, started twice)."""


class ProbeUnavailable(ProbeError):
    """A power probe that was asked for by name cannot be used here; the message says why and what to do."""


class UsageError(EdgerunError, ValueError):
    """An argument, option or setting is out of range, of the wrong kind or unknown: the caller's
    mistake, not the model's or the device's. The message names it and what was expected."""


class MeasurementError(EdgerunError, ValueError):
    """Samples, a power trace or a benchmark tool's output cannot give the figure asked for
    (an empty sample set, a trace that does not cover the window, a summary line missing)."""


class BenchError(EdgerunError):
    """A benchmark could not produce a result, or a result file cannot be read (not a result, unknown schema)."""


class BenchConfigError(UsageError, BenchError):
    """A benchmark setting (``edgerun.bench.config.BenchConfig``) is out of range; ``field`` names it
    so a command can name its option. A UsageError (so a ValueError): the settings are the caller's mistake."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"bench config: {field} {detail}")
        self.field, self.detail = field, detail


class PolicyError(EdgerunError, ValueError):
    """A fallback policy is invalid; the message names the field and what was expected."""


class DeadlineExceeded(EdgerunError, TimeoutError):
    """A call ran out of budget: a hard-budget miss, or a remote call cut at the call's deadline."""


class RemoteError(EdgerunError):
    """The remote (cloud) route failed. ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RemoteUnavailable(RemoteError):
    """No request was sent: circuit open, auth latched off, no concurrency slot or budget left."""


class RemoteAuthError(RemoteError):
    """The server refused the credentials (401/403); the remote route stays off until reconfigured."""


class ProtocolError(RemoteError):
    """The server's answer broke the Open Inference Protocol or the local model's output signature."""


class SerialError(EdgerunError):
    """A serial-attached device (wearable firmware in host mode, an MLPerf Tiny DUT) failed us."""


class PortUnavailable(SerialError):
    """A serial port would not open: missing, busy, not permitted or not a tty; the message says what to do."""


class HandshakeError(SerialError):
    """The firmware's version handshake is missing or incompatible with the host or the model."""


class DutError(SerialError):
    """An EEMBC / MLPerf Tiny DUT replied malformed, answered ``e-[...]``, or did not answer in time."""


class DutTimeout(DutError):
    """The DUT did not answer within the timeout: it may have hung (a power cycle may bring it back)."""


class FrameError(SerialError, ValueError):
    """A host-mode frame's payload does not fit its type (shorter than its header, partial samples)."""


class UpdateRefused(EdgerunError):
    """A model update was refused and nothing was installed: the update repository's metadata or files
    failed TUF's checks (expired, rolled back, a bad hash, too few valid signatures: the message names the
    attack TUF detected), or the new model failed its on-device acceptance (the message names the verdicts)."""


class CompressError(EdgerunError):
    """A compression run (``edgerun compress``) failed."""


class RecipeError(CompressError):
    """A compression recipe is malformed; the message names the bad key and what was expected."""


class AccuracyGateError(CompressError):
    """An exported variant lost more accuracy than the recipe's gate allows."""


class TargetError(EdgerunError):
    """A device target failed a job; the message names the target and what to check."""


class TargetUnreachable(TargetError):
    """The target cannot be reached, or the link dropped in the middle of a call."""


class TargetAuthError(TargetError):
    """The target answered but refused us: a wrong key, or a host key that is unknown or changed."""


class TargetTimeout(TargetError):
    """A remote call ran past its timeout; it was stopped so the job fails instead of hanging."""


class TargetSetupError(TargetError):
    """The device lacks what the job needs (Python, edgerun, a benchmark binary); the message says how to fix it."""


class LabError(EdgerunError):
    """A lab plan or a lab result database cannot be used (malformed, or from an unknown schema)."""


class OutputError(EdgerunError):
    """An output path cannot be written: it is an input, a database, a folder, in a missing or
    read-only folder, or an existing file and ``--force`` was not given; checked before any work."""
