"""The one way edgerun reads a TOML file a user hands it (recipes, lab plans, device profiles).

TOML allows what no edgerun setting means: ``nan`` and ``inf`` are valid floats (NaN passes
every ``<`` check a validator makes), integers have no size limit (``seed = 2**70`` overflows
numpy and torch far from the recipe), and ``a = [[[[...]]]]`` nested a thousand deep makes
``tomllib`` raise RecursionError. ``read_toml`` refuses all three in one place, naming the
file and the key (``step[2].lr``), caps the file's size before and while reading (a FIFO
or ``/dev/zero`` reports size 0), and raises only the caller's error class.
"""

from __future__ import annotations

import math
import stat
import sys
from pathlib import Path
from typing import Any

from edgerun._jsonio import MiB, _read_capped

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["MAX_DEPTH", "TOML_MAX_BYTES", "read_toml", "read_toml_bytes"]

#: Recipes, plans and profiles are a few KiB; a megabyte more is not a settings file.
TOML_MAX_BYTES = 1 * MiB
#: Tables and arrays nested deeper than this are not an edgerun setting (the deepest used is 3).
MAX_DEPTH = 16
#: Integers must fit the 64-bit integers that numpy, torch, sqlite and the engines take.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _problem(data: dict[str, Any]) -> tuple[str, str] | None:
    """(dotted key, what is wrong) for the first value edgerun cannot use, walked without recursion."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return where, f"is nested {depth} levels deep; expected at most {MAX_DEPTH}"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            children = []
            for key, item in items:
                inner = f"{where}[{key}]" if isinstance(key, int) else (f"{where}.{key}" if where else str(key))
                children.append((item, inner, depth + 1))
            stack.extend(reversed(children))  # reversed: the first problem in file order is reported
        elif isinstance(value, bool):
            continue
        elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            return where, f"is an integer of {value.bit_length()} bits; expected one that fits 64 bits"
        elif isinstance(value, float) and not math.isfinite(value):
            return where, f"is {value}; expected a finite number"
    return None


def read_toml(path: str | Path, error_cls: type[Exception], max_bytes: int = TOML_MAX_BYTES, *, what: str) -> Any:
    """Parse the TOML file at ``path``; every failure is ``error_cls("<path>: <what> ...")``, one line."""
    return read_toml_bytes(path, error_cls, max_bytes, what=what)[0]


def read_toml_bytes(
    path: str | Path, error_cls: type[Exception], max_bytes: int = TOML_MAX_BYTES, *, what: str
) -> tuple[Any, bytes]:
    """``read_toml`` and the bytes it parsed (one read: a hash of them describes the same file)."""
    path = Path(path)
    try:  # stat first: opening a FIFO would wait for a writer forever
        mode = path.stat().st_mode
    except OSError as exc:
        raise error_cls(f"{path}: cannot read the {what} ({exc.strerror or type(exc).__name__})") from exc
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise error_cls(f"{path}: the {what} is {kind}; expected a TOML file")
    raw = _read_capped(path, what, error_cls, max_bytes)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:  # its str() quotes the offending byte
        raise error_cls(f"{path}: {what} is not UTF-8 text (bad byte at offset {exc.start}); expected TOML") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error_cls(f"{path}: {what} is not valid TOML ({exc})") from exc
    except RecursionError as exc:  # arrays or inline tables nested ~1000 deep
        raise error_cls(
            f"{path}: {what} nests arrays or inline tables too deeply to read; expected at most {MAX_DEPTH} levels"
        ) from exc
    found = _problem(data)
    if found:
        where, problem = found
        raise error_cls(f"{path}: {what} key '{where}' {problem}")
    return data, raw
