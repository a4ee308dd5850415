"""FallbackPolicy: when a call may leave the device, and how.

A frozen dataclass, validated at construction (``PolicyError`` names the field and
what was expected). The default sends nothing anywhere: ``mode="local-only"``.
Settable from Python, a TOML file (``from_toml``), a device profile
(``from_profile``: the soft budget comes from its ``[budget]`` table) and the CLI
(``edgerun run --mode ... --fallback-url ...``). Field reference: docs/fallback.md.

Two budgets and one bound:

- ``soft_budget_ms`` is the latency *target*: a local p99 above it routes the call
  to the remote (predictive), and a local result later than it counts as a soft miss.
- ``hard_budget_ms`` (off by default) is for hard real-time calls: no network can
  meet it, so a policy with one never calls the remote; a miss raises
  ``DeadlineExceeded`` or runs the next smaller ``local_variants`` artifact.
- ``deadline_ms`` bounds the whole call, remote attempts, retries and waits
  included. By default the larger of 250 ms and the soft budget: a soft budget
  is judged on a percentile, so one call may exceed it, but never this bound.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edgerun.errors import PolicyError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["MODES", "TRIGGERS", "FallbackPolicy", "is_loopback_url"]

MODES = ("local-only", "prefer-local", "prefer-remote", "remote-only")
TRIGGERS = ("local-error", "soft-budget-miss")
BINARY_DATA = ("auto", "always", "never")
DEFAULT_DEADLINE_FLOOR_MS = 250.0
_REMOTE_MODES = ("prefer-local", "prefer-remote", "remote-only")


def _canon(value: str) -> str:
    """``prefer_local`` and ``PREFER-LOCAL`` both mean ``prefer-local`` (TOML and CLI spellings differ)."""
    return value.strip().lower().replace("_", "-")


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is this machine: localhost, 127.0.0.0/8 or ::1 (no DNS lookup)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class FallbackPolicy:
    """When and how an inference may leave the device. Defaults: nothing leaves it."""

    mode: str = "local-only"
    endpoint: str | None = None
    model_name: str | None = None  # None: the one model the server serves (asked once, at startup)
    model_version: str | None = None
    soft_budget_ms: float = 100.0
    hard_budget_ms: float | None = None
    deadline_ms: float | None = None  # None: max(250 ms, soft budget)
    fallback_on: frozenset[str] = frozenset(TRIGGERS)
    local_variants: tuple[str, ...] = ()  # smaller artifacts for hard misses, cheapest last
    min_remote_headroom_ms: float = 5.0
    connect_timeout_ms: float = 50.0
    max_attempts: int = 2
    backoff_base_ms: float = 5.0
    backoff_cap_ms: float = 50.0
    breaker_failure_threshold: int = 5
    breaker_reset_s: float = 30.0
    max_concurrent_remote: int = 4
    hedge_after_ms: float | None = None
    binary_data: str = "auto"
    allowed_inputs: tuple[str, ...] | None = None  # None: every model input
    max_payload_bytes: int = 4 * 1024 * 1024
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    latency_window: int = 256
    latency_max_age_s: float = 60.0
    # Callables: not settable from TOML or the CLI, and never printed (repr=False).
    token_provider: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    redactor: Callable[[str, Any], Any] | None = field(default=None, repr=False, compare=False)
    audit_sink: Callable[[Any], None] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", _canon(str(self.mode)))
        object.__setattr__(self, "binary_data", _canon(str(self.binary_data)))
        object.__setattr__(self, "fallback_on", frozenset(_canon(t) for t in self.fallback_on))
        object.__setattr__(self, "local_variants", tuple(str(v) for v in self.local_variants))
        if self.allowed_inputs is not None:
            object.__setattr__(self, "allowed_inputs", tuple(self.allowed_inputs))
        self._check_choices()
        self._check_numbers()
        self._check_remote()

    # --- validation ----------------------------------------------------------------

    def _fail(self, name: str, expected: str) -> PolicyError:
        return PolicyError(f"fallback policy: {name} must be {expected}, got {getattr(self, name)!r}")

    def _check_choices(self) -> None:
        if self.mode not in MODES:
            raise self._fail("mode", "one of " + ", ".join(MODES))
        if self.binary_data not in BINARY_DATA:
            raise self._fail("binary_data", "one of " + ", ".join(BINARY_DATA))
        if not self.fallback_on <= set(TRIGGERS):
            raise self._fail("fallback_on", "a subset of " + ", ".join(TRIGGERS))

    def _check_numbers(self) -> None:
        for name in ("soft_budget_ms", "connect_timeout_ms", "breaker_reset_s", "latency_max_age_s"):
            if not getattr(self, name) > 0:
                raise self._fail(name, "a number > 0")
        for name in ("min_remote_headroom_ms", "backoff_base_ms", "backoff_cap_ms"):
            if not getattr(self, name) >= 0:
                raise self._fail(name, "a number >= 0")
        for name in ("hard_budget_ms", "deadline_ms", "hedge_after_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise self._fail(name, "a number > 0, or None")
        for name in ("max_attempts", "breaker_failure_threshold", "max_concurrent_remote", "latency_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self._fail(name, "an integer >= 1")
        if isinstance(self.max_payload_bytes, bool) or not isinstance(self.max_payload_bytes, int):
            raise self._fail("max_payload_bytes", "an integer number of bytes")
        if self.max_payload_bytes < 1:
            raise self._fail("max_payload_bytes", "an integer >= 1")
        if self.deadline_ms is not None and self.deadline_ms < self.soft_budget_ms:
            raise self._fail("deadline_ms", f"at least soft_budget_ms ({self.soft_budget_ms:g})")

    def _check_remote(self) -> None:
        if self.mode not in _REMOTE_MODES:
            return
        if self.hard_budget_ms is not None:
            raise PolicyError(
                f"fallback policy: mode {self.mode!r} with hard_budget_ms={self.hard_budget_ms:g}: a hard budget "
                "cannot be met over a network, so a hard-budget policy is local only. Use mode 'local-only' "
                "(with local_variants for misses) or drop hard_budget_ms to allow the remote route."
            )
        if not self.endpoint:
            raise self._fail("endpoint", f"an https:// URL when mode is {self.mode!r}")
        self._check_endpoint(self.endpoint)
        if self.audit_sink is None:
            raise PolicyError(
                f"fallback policy: mode {self.mode!r} sends inputs off the device, so audit_sink is required "
                "(e.g. edgerun.fallback.JsonLinesAudit('fallback-audit.jsonl')); got None"
            )
        if self.hedge_after_ms is not None and self.mode != "prefer-local":
            raise self._fail("hedge_after_ms", "None unless mode is 'prefer-local' (a hedge races the local run)")
        if self.client_key is not None and self.client_cert is None:
            raise self._fail("client_key", "None unless client_cert is set (mTLS needs the certificate too)")

    def _check_endpoint(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise self._fail("endpoint", "an https:// URL with a host (http:// only for loopback)")
        if parts.scheme == "http" and not is_loopback_url(url):
            raise PolicyError(
                f"fallback policy: endpoint {url!r} is plain http to a host that is not this machine; "
                "medical inputs and bearer tokens travel only over https (http:// is for 127.0.0.1/localhost)"
            )
        if parts.username or parts.password:
            raise self._fail("endpoint", "a URL without user:password (use token_provider)")
        if parts.query or parts.fragment:
            raise self._fail("endpoint", "a base URL without ?query or #fragment (nothing may ride in URLs)")

    # --- derived values --------------------------------------------------------------

    @property
    def remote_enabled(self) -> bool:
        return self.mode in _REMOTE_MODES

    @property
    def effective_deadline_ms(self) -> float:
        """The bound on a whole call, in milliseconds."""
        if self.deadline_ms is not None:
            return self.deadline_ms
        return max(DEFAULT_DEADLINE_FLOOR_MS, self.soft_budget_ms)

    # --- other sources ---------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "fallback policy") -> FallbackPolicy:
        """Build from plain data (TOML, JSON): the keys are the field names; callables are not allowed."""
        settable = {f.name for f in fields(cls)} - {"token_provider", "redactor", "audit_sink"}
        unknown = sorted(set(data) - settable)
        if unknown:
            raise PolicyError(f"{where}: unknown key {unknown[0]!r} (known keys: {', '.join(sorted(settable))})")
        values = dict(data)
        for key in ("fallback_on", "local_variants", "allowed_inputs"):
            if key in values and not isinstance(values[key], (list, tuple)):
                raise PolicyError(f"{where}: {key} must be a list of strings, got {values[key]!r}")
        if "fallback_on" in values:
            values["fallback_on"] = frozenset(values["fallback_on"])
        try:
            return cls(**values)
        except TypeError as exc:  # a wrongly typed value that the checks compare
            raise PolicyError(f"{where}: {exc}") from exc

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> FallbackPolicy:
        """Read a ``[fallback]`` table (or top-level keys) from a TOML file; ``overrides`` win."""
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise PolicyError(f"{path}: cannot read the fallback policy TOML: {exc}") from exc
        table = data.get("fallback", data)
        if not isinstance(table, dict):
            raise PolicyError(f"{path}: [fallback] must be a table, got {table!r}")
        base = cls.from_mapping(table, str(path))
        return replace(base, **overrides) if overrides else base

    @classmethod
    def from_profile(cls, profile: Any, **overrides: Any) -> FallbackPolicy:
        """The profile's soft budget; the profile's hard budget is *not* taken (it would forbid the remote)."""
        values: dict[str, Any] = {"soft_budget_ms": float(profile.budget.soft_ms)}
        values.update(overrides)
        return cls(**values)
