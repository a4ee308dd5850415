"""The one way edgerun reads a JSON document a user hands it (manifests, bench result files).

Python's ``json`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON
(RFC 8259) and which no number in an edgerun document may be: a ``"factor": NaN`` in a
manifest loaded, and turned every prediction into one class at 98.8% confidence.
``read_json`` refuses them and says where they are (``preprocess[2].factor``). It
also caps the document's size before and while reading it (a FIFO or ``/dev/zero``
reports size 0), and turns every failure into the caller's error class, naming the
file and what was expected, without echoing the file's bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MiB = 1 << 20
#: A manifest is a few KiB; 16 MiB leaves room for thousands of labels.
MANIFEST_MAX_BYTES = 16 * MiB
#: A bench result file keeps every raw latency sample; hours of sub-millisecond runs stay under this.
RESULT_MAX_BYTES = 1024 * MiB


class _NonFinite:
    """Stands in for a NaN/Infinity token until the document is walked to say where it was."""

    def __init__(self, token: str) -> None:
        self.token = token


def _locate(value: Any, where: str = "") -> tuple[str, str] | None:
    """(token, path like ``preprocess[2].factor``) of the first non-finite constant, or None."""
    if isinstance(value, _NonFinite):
        return value.token, where or "the top level"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))
        found = _locate(item, inner)
        if found:
            return found
    return None


def _read_capped(path: Path, what: str, error: type[Exception], max_bytes: int) -> bytes:
    limit = f"expected at most {max_bytes} bytes ({max_bytes // MiB} MiB)"
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: {what} is {size} bytes; {limit}")
        with open(path, "rb") as fh:
            raw = fh.read(max_bytes + 1)  # bounded: a FIFO or device reports size 0, a file may grow
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from exc
    if len(raw) > max_bytes:
        raise error(f"{path}: {what} is longer than {max_bytes} bytes; {limit}")
    return raw


def read_json(path: str | Path, *, what: str, error: type[Exception], max_bytes: int) -> Any:
    """Parse the JSON document at ``path``; any failure is ``error("<path>: <what> ...")``."""
    path = Path(path)
    return parse_json(_read_capped(path, what, error, max_bytes), path, what=what, error=error)


def read_capped(path: str | Path, *, what: str, error: type[Exception], max_bytes: int) -> bytes:
    """The bytes of the file at ``path``, at most ``max_bytes`` (for a caller that also hashes them)."""
    return _read_capped(Path(path), what, error, max_bytes)


def parse_json(raw: bytes, path: str | Path, *, what: str, error: type[Exception]) -> Any:
    """Parse JSON bytes read from ``path`` (``read_json``'s checks and errors)."""
    seen: list[str] = []

    def non_finite(token: str) -> _NonFinite:
        seen.append(token)
        return _NonFinite(token)

    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=non_finite)
    except UnicodeDecodeError as exc:  # its str() quotes the offending byte
        raise error(f"{path}: {what} is not UTF-8 text (bad byte at offset {exc.start}); expected JSON") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{path}: {what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:  # an integer past Python's digit limit, absurd nesting
        raise error(f"{path}: {what} is not a JSON document edgerun can read ({type(exc).__name__})") from exc
    if seen:
        try:
            token, where = _locate(data) or (seen[0], "?")
        except RecursionError:  # nested as deep as the parser allows: say what, not where
            token, where = seen[0], "?"
        raise error(f"{path}: {what} has {token} at {where}; expected a finite number (NaN and Infinity are not JSON)")
    return data
