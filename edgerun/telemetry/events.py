"""The event log: one JSON object per line, for the events a clinical deployment must keep.

    from edgerun.telemetry import events
    events.configure("/var/log/edgerun/events.jsonl")          # or instrument(rt, event_log=...)
    events.log_event("update-accepted", name="digits", version="2", verdicts=[...])

``log_event`` is a no-op until ``configure`` is called, so library code (the update store, the
telemetry recorder) calls it unconditionally. Each line is ``{"ts": <UTC ISO 8601>, "kind": ...,
**fields}``. Kinds written by edgerun (docs/telemetry.md): ``model-loaded``, ``update-accepted``,
``update-refused``, ``rollback``, ``fallback-used``, ``budget-breach``.

Bounded size: ``logging.handlers.RotatingFileHandler`` rolls the file over at ``max_bytes`` and
keeps ``backups`` old ones, so the log never takes more than ``max_bytes * (backups + 1)`` bytes
(plus one line). Files are created 0600.

Never patient data: a field value may only be None, a bool, an int, a finite float, a string
(cut at ``MAX_TEXT_CHARS``), or a short list / str-keyed dict of those (``MAX_ITEMS``). An array,
bytes or any other object is refused with a UsageError naming the field, so an input tensor
cannot reach the log by accident; fallback events carry the request id, never the payload.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgerun.errors import UsageError

__all__ = ["EventLog", "check", "configure", "current", "disable", "log_event"]

MAX_TEXT_CHARS = 512  # a reason or a path; anything longer is cut and says so
MAX_ITEMS = 32  # list items / dict keys per value: verdicts fit, a tensor does not
MAX_DEPTH = 3
DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_BACKUPS = 3
_KIND = re.compile(r"[a-z][a-z0-9-]{0,39}")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")
_RESERVED = frozenset({"ts", "kind"})


class _PrivateRotatingHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler whose files (the first and each after a rollover) are created 0600."""

    def _open(self) -> Any:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")


class EventLog:
    """A JSON-lines file with rotation. Thread-safe (the handler locks around each write)."""

    def __init__(
        self, path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
    ) -> None:
        if not 1024 <= max_bytes <= 2**34:
            raise UsageError(f"event log max_bytes {max_bytes}: expected 1024 .. 2**34 bytes")
        if not 1 <= backups <= 100:
            raise UsageError(f"event log backups {backups}: expected 1 .. 100 rotated files")
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"event log {self.path}: is a folder; expected a file path (created if missing)")
        try:
            handler = _PrivateRotatingHandler(self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"event log {self.path}: cannot be opened for writing ({exc.strerror})") from exc
        handler.setFormatter(logging.Formatter("%(message)s"))
        # a Logger of its own, not in logging's tree: nothing propagates to the root logger's handlers
        self._logger = logging.Logger(f"edgerun.events.{id(self):x}")
        self._logger.propagate = False
        self._logger.addHandler(handler)
        self._handler = handler
        self.max_bytes = max_bytes
        self.backups = backups

    def log(self, kind: str, **fields: Any) -> None:
        """Write one event. Raises UsageError for a malformed kind or a field that may not be logged."""
        record: dict[str, Any] = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "kind": kind}
        record.update(check(kind, **fields))
        self._logger.info(json.dumps(record, ensure_ascii=False, separators=(",", ":")))

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()


def check(kind: str, **fields: Any) -> dict[str, Any]:
    """The fields as they would be logged, or the UsageError ``log_event`` would raise, whether or
    not a log is configured: a caller about to act (switch a model) checks its event first."""
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise UsageError(f"event kind {kind!r}: expected lower-case words joined by '-', e.g. 'model-loaded'")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name in _RESERVED or not _FIELD.fullmatch(name):
            raise UsageError(f"event {kind}: field name {name!r} is reserved or not an identifier")
        out[name] = _clean(value, f"{kind}.{name}", 0)
    return out


def _clean(value: Any, where: str, depth: int) -> Any:
    """The value as JSON-ready data, or UsageError when it could carry an input (an array, bytes, ...)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return (
            value
            if len(value) <= MAX_TEXT_CHARS
            else f"{value[:MAX_TEXT_CHARS]}...(+{len(value) - MAX_TEXT_CHARS} chars)"
        )
    if isinstance(value, Path):
        return _clean(str(value), where, depth)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # a numpy scalar, not an array
        return _clean(value.item(), where, depth)
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)) and len(value) <= MAX_ITEMS:
        return [_clean(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    small = depth < MAX_DEPTH and isinstance(value, dict) and len(value) <= MAX_ITEMS
    if small and all(isinstance(k, str) for k in value):
        return {k: _clean(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    what = type(value).__name__ + (f" of {len(value)} items" if hasattr(value, "__len__") else "")
    raise UsageError(
        f"event field {where}: a {what} may not be logged; expected None, bool, int, float, str or a list/dict "
        f"of at most {MAX_ITEMS} of those, {MAX_DEPTH} deep (input data never goes into the event log)"
    )


_lock = threading.Lock()
_active: EventLog | None = None


def configure(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS
) -> EventLog:
    """Send this process's events to ``path`` (replacing any log configured before) and return the log."""
    global _active
    log = EventLog(path, max_bytes=max_bytes, backups=backups)
    with _lock:
        old, _active = _active, log
    if old is not None:
        old.close()
    return log


def disable(log: EventLog | None = None) -> None:
    """Stop logging events (only if ``log`` is still the active one, when given) and close the file."""
    global _active
    with _lock:
        if _active is None or (log is not None and _active is not log):
            return
        old, _active = _active, None
    old.close()


def current() -> EventLog | None:
    """The configured event log, or None."""
    return _active


def log_event(kind: str, **fields: Any) -> None:
    """Write one event to the configured log; does nothing when none is configured."""
    log = _active
    if log is not None:
        log.log(kind, **fields)
