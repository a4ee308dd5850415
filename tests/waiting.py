"""``wait_for``: the one bounded poll the tests use for conditions that another process or thread brings about.

A run that works meets each condition long before the bound; only a broken one reaches it, and then fails
naming the condition. The bound is patience, not a timing assertion: a loaded machine only waits longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str, timeout_s: float = 60.0, poll_s: float = 0.01) -> T:
    """Poll ``predicate`` every ``poll_s`` until it returns something truthy, and return that; AssertionError
    naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout_s:g} s for {what}")
        time.sleep(poll_s)
    return value
