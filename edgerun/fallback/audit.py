"""One audit record per remote attempt (HIPAA 164.312(b) audit controls).

A record says when, where, which model, which request id, why, what happened,
how many bytes left the device and the SHA-256 of exactly those bytes. It never
holds the payload, the token or any header. Sinks are plain callables
``sink(record)``; three are provided: ``JsonLinesAudit`` (append one JSON object
per line, written, flushed and fsynced per record), ``StreamAudit`` (a text
stream, the CLI's default stderr) and ``MemoryAudit`` (a list, for tests and
apps that forward records themselves).

A sink that raises has not recorded the attempt, so the client turns the remote
off (``RemoteUnavailable`` naming the sink and the error; prefer-* modes run
here). A sink may also have ``check()``, which raises ``OSError`` when it could
not record: the client calls it when it is built and before every attempt, so a
path that cannot be written stops the call before any byte leaves the device.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = ["AuditRecord", "JsonLinesAudit", "MemoryAudit", "StreamAudit"]


@dataclass(frozen=True)
class AuditRecord:
    time_utc: str  # ISO 8601, when the attempt started
    endpoint: str  # base URL, no path, query or credentials
    model: str
    model_version: str | None
    request_id: str  # random UUID4 hex, also the OIP request "id"
    reason: str  # why the call went remote (route reason code)
    attempt: int  # 1-based
    outcome: str  # ok | http-<status> | connect-error | deadline | protocol-error | transport-error | cancelled
    status: int | None
    bytes_sent: int  # request body bytes (0 when the connection never opened)
    payload_sha256: str
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class JsonLinesAudit:
    """Append records to a JSON-lines file (created 0600: audit trails are sensitive too).

    The file is opened (and created) here, so a path that cannot be written is known
    before anything is sent; ``check()`` raises that error. Each record is opened with
    O_APPEND (a rotated file is followed), written whole, fsynced and closed: a record
    the call returned after is on disk.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._error: OSError | None = None
        try:
            os.close(self._open())
        except OSError as exc:  # kept, not raised: the client refuses remote calls with it
            self._error = exc

    def __repr__(self) -> str:
        return f"JsonLinesAudit({str(self.path)!r})"

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)

    def check(self) -> None:
        """Raise the OSError that stops this sink from recording (opening the file, or the last write)."""
        if self._error is not None:
            raise self._error

    def __call__(self, record: AuditRecord) -> None:
        data = (json.dumps(record.to_dict(), separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            try:
                fd = self._open()
                try:
                    view = memoryview(data)
                    while view:  # os.write may write part of it (a full disk, a signal)
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self._error = exc  # a sink that failed once stays failed: a record may be missing
                raise


class StreamAudit:
    """Write records as JSON lines to a text stream (the CLI's default: stderr)."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "audit: ") -> None:
        self.stream = stream
        self.prefix = prefix

    def __call__(self, record: AuditRecord) -> None:
        stream = self.stream or sys.stderr
        print(self.prefix + json.dumps(record.to_dict(), separators=(",", ":")), file=stream, flush=True)


class MemoryAudit(list):  # type: ignore[type-arg]
    """Keep records in memory (a list of AuditRecord)."""

    def __call__(self, record: AuditRecord) -> None:
        self.append(record)
