"""Argparse ``type=`` functions shared by every ``edgerun`` command.

An option value that cannot be right (``--runs 0``, ``--timeout -1``, ``--sustained nan``,
``--port 70000``, a ``--token-file`` that is a folder) is refused while the command line
is parsed: exit 2 with the command's own usage and one line naming the option, before
anything is loaded or measured. Each function raises ``argparse.ArgumentTypeError``, whose
message argparse prints as ``argument --runs: expected ...``.

``float("nan")``, ``float("inf")`` and ``float("1e999")`` all parse, so every float here is
finite: no edgerun option means anything at infinity, and NaN passes every ``<`` check.
Where a library config object (``BenchConfig``, ``Budget``) owns a rule, the option uses
the plain form (``number``, ``integer``) and the command maps the object's error to the option.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
from collections.abc import Callable

__all__ = [
    "cpu_threads",
    "existing_dir",
    "existing_file",
    "finite_float",
    "host",
    "integer",
    "name_or_path",
    "nonneg_int",
    "number",
    "port",
    "positive_int",
    "whole_int",
]

# Python refuses int() of strings past 4300 digits with a ValueError; far below that, a count
# this large is a typo (and overflows every C int the engines take).
_MAX_INT = 2**63 - 1


def _bound(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:.12g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:.12g}")
    return " and ".join(parts)


def _shown(text: str) -> str:
    """The value as an error message quotes it: at most 30 characters."""
    return repr(text if len(text) <= 30 else f"{text[:27]}...")


def whole_int(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high] (either end may be None: unbounded up to 2**63-1)."""
    what = "a whole number" + (f" {_bound(low, high, False, False)}" if low is not None or high is not None else "")

    def parse(text: str) -> int:
        value = int(text.strip(), 10)  # a ValueError: argparse's own "invalid int value: 'x'"
        if abs(value) > _MAX_INT or (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {_shown(text)}")
        return value

    parse.__name__ = "int"  # argparse's message for a non-number names the type: "invalid int value"
    return parse


def finite_float(
    low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """A finite number in [low, high]; ``low_open``/``high_open`` exclude that end (``> 0``, ``< 100``)."""
    bound = _bound(low, high, low_open, high_open)
    what = "a finite number" + (f" {bound}" if bound else "")

    def parse(text: str) -> float:
        value = float(text)  # a ValueError: argparse's own "invalid float value: 'x'"
        bad = not math.isfinite(value)
        if low is not None and not bad:
            bad = value <= low if low_open else value < low
        if high is not None and not bad:
            bad = value >= high if high_open else value > high
        if bad:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = "float"
    return parse


#: The plain forms, for options whose range a library object checks (the command maps its error).
integer = whole_int()
number = finite_float()
positive_int = whole_int(1)
nonneg_int = whole_int(0)


def cpu_threads(text: str) -> int:
    """Intra-op threads: a whole number >= 1, capped at the CPUs this process may use, with a warning.

    For commands without a config object that owns the rule (``bench``'s BenchConfig caps the
    same way): more threads than usable cores only measures oversubscription, and a typo such
    as 100000 has the engine start that many threads.
    """
    from edgerun.threads import usable_cpus  # the rule the runtime and the bench cap with

    value = positive_int(text)
    usable = usable_cpus()
    if value > usable:
        print(f"edgerun: warning: threads {value} capped at {usable}, the CPUs this process may use", file=sys.stderr)
        return usable
    return value


def port(text: str) -> int:
    """A TCP port: 1-65535, or 0 for "any free port"."""
    try:
        return whole_int(0, 65535)(text)
    except (argparse.ArgumentTypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"expected a TCP port 1-65535 (or 0: any free one), got {text[:30]!r}"
        ) from None


def host(text: str) -> str:
    """A host name or address to listen on or connect to: not empty, no spaces, at most 253 characters.

    Whether it resolves and can be bound is up to the command (``serve`` binds before loading models).
    """
    if not text or len(text) > 253 or any(c.isspace() or not c.isprintable() for c in text):
        raise argparse.ArgumentTypeError(f"expected a host name or IP address, got {_shown(text)}")
    return text


def name_or_path(text: str) -> str:
    """A name (``raspberry-pi-4``) or a path: not empty, no NUL byte, no part longer than the OS allows.

    Whether it names something is up to the command; this only keeps names that no file system
    can hold (``File name too long``, ``embedded null byte``) from reaching ``os.stat``.
    """
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError(f"expected a name or a path, got {text[:30]!r}")
    if len(os.fsencode(text)) > 4096 or any(len(os.fsencode(part)) > 255 for part in text.split("/")):
        raise argparse.ArgumentTypeError(f"expected a name or a path, got {len(text)} characters: {text[:27]!r}...")
    return text


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _mode(text: str, what: str) -> int:
    """``os.stat(text).st_mode``, or the one-line refusal of a ``what`` ("file", "folder") path."""
    if not text:
        raise argparse.ArgumentTypeError(f"expected a {what} path, got an empty string")
    try:
        return os.stat(text).st_mode
    except FileNotFoundError:
        raise argparse.ArgumentTypeError(f"{text}: no such {what}") from None
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        raise argparse.ArgumentTypeError(
            f"{text[:60]!r}: cannot be read ({getattr(exc, 'strerror', None) or exc})"
        ) from None


def existing_file(text: str) -> str:
    """A path to a regular file this process may read (returned as given).

    Checked with stat, never opened: opening a FIFO would block until a writer comes.
    """
    mode = _mode(text, "file")
    if not stat.S_ISREG(mode):
        raise argparse.ArgumentTypeError(f"{text}: is {_kind(mode)}; expected a file")
    if not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable by this user (check its permissions)")
    return text


def existing_dir(text: str) -> str:
    """A path to a folder that exists (returned as given)."""
    mode = _mode(text, "folder")
    if not stat.S_ISDIR(mode):
        raise argparse.ArgumentTypeError(f"{text}: is {_kind(mode)}; expected a folder")
    return text
