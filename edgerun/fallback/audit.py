"""One audit record per remote attempt (HIPAA 164.312(b) audit controls).

A record says when, where, which model, which request id, why, what happened,
how many bytes left the device and the SHA-256 of exactly those bytes. It never
holds the payload, the token or any header. Sinks are plain callables
``sink(record)``; two are provided: ``JsonLinesAudit`` (append one JSON object
per line, flushed per record) and ``MemoryAudit`` (a list, for tests and apps
that forward records themselves).
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
    """Append records to a JSON-lines file (created 0600: audit trails are sensitive too)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def __call__(self, record: AuditRecord) -> None:
        line = json.dumps(record.to_dict(), separators=(",", ":")) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)


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
