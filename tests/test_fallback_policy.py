"""FallbackPolicy validation and sources; the breaker and latency window on a fake clock."""

from __future__ import annotations

import pytest

from edgerun.errors import PolicyError
from edgerun.fallback import FallbackPolicy, MemoryAudit
from edgerun.fallback.breaker import CircuitBreaker
from edgerun.fallback.metrics import FallbackMetrics, LatencyWindow
from edgerun.profiles import load_profile

REMOTE = {"mode": "prefer-local", "endpoint": "https://infer.example.org", "audit_sink": MemoryAudit()}


def test_defaults_keep_everything_on_the_device():
    p = FallbackPolicy()
    assert p.mode == "local-only" and not p.remote_enabled and p.endpoint is None
    assert p.soft_budget_ms == 100 and p.hard_budget_ms is None and p.effective_deadline_ms == 250
    assert p.fallback_on == {"local-error", "soft-budget-miss"} and p.hedge_after_ms is None
    assert p.max_attempts == 2 and p.max_concurrent_remote == 4 and p.max_payload_bytes == 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "sometimes"}, "mode must be one of"),
        ({"endpoint": None}, "endpoint must be an https"),
        ({"endpoint": "ftp://x"}, "endpoint must be an https"),
        ({"endpoint": "https://user:pw@x"}, "without user:password"),
        ({"endpoint": "https://x/?patient=1"}, "without \\?query"),
        ({"audit_sink": None}, "audit_sink is required"),
        ({"hard_budget_ms": 10}, "cannot be met over a network"),
        ({"soft_budget_ms": 0}, "soft_budget_ms must be a number > 0"),
        ({"deadline_ms": 50}, "deadline_ms must be at least soft_budget_ms"),
        ({"max_attempts": 0}, "max_attempts must be an integer >= 1"),
        ({"fallback_on": frozenset({"always"})}, "fallback_on must be a subset"),
        ({"binary_data": "sometimes"}, "binary_data must be one of"),
        ({"mode": "prefer-remote", "hedge_after_ms": 5}, "hedge_after_ms must be None unless"),
        ({"client_key": "k.pem"}, "client_key must be None unless client_cert"),
    ],
)
def test_bad_fields_name_themselves_and_what_was_expected(changes, message):
    with pytest.raises(PolicyError, match=message):
        FallbackPolicy(**{**REMOTE, **changes})


def test_loopback_http_is_allowed_and_spellings_are_normalised():
    p = FallbackPolicy(**{**REMOTE, "endpoint": "http://127.0.0.1:8000", "mode": "PREFER_LOCAL"})
    assert p.mode == "prefer-local"
    assert FallbackPolicy(**{**REMOTE, "endpoint": "http://[::1]:8000"}).remote_enabled
    assert FallbackPolicy(**{**REMOTE, "endpoint": "http://localhost:8000"}).remote_enabled


def test_from_toml_and_from_profile(tmp_path):
    path = tmp_path / "fallback.toml"
    path.write_text('[fallback]\nmode = "local_only"\nsoft_budget_ms = 40\nfallback_on = ["local-error"]\n')
    p = FallbackPolicy.from_toml(path, max_attempts=3)
    assert (p.mode, p.soft_budget_ms, p.fallback_on, p.max_attempts) == ("local-only", 40, {"local-error"}, 3)
    path.write_text("[fallback]\nsoft_budget = 40\n")
    with pytest.raises(PolicyError, match="unknown key 'soft_budget'"):
        FallbackPolicy.from_toml(path)
    prof = load_profile("raspberry-pi-5")
    assert FallbackPolicy.from_profile(prof).soft_budget_ms == prof.budget.soft_ms
    assert FallbackPolicy.from_profile(prof).hard_budget_ms is None  # the profile's hard budget would forbid remote


def test_policy_is_frozen():
    with pytest.raises(AttributeError):
        FallbackPolicy().mode = "remote-only"  # type: ignore[misc]


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_breaker_closed_open_half_open_closed():
    clock = Clock()
    b = CircuitBreaker(failure_threshold=2, reset_s=1.0, clock_ns=clock)
    b.failure()
    assert b.state == "closed" and b.allow()
    b.success()
    b.failure()
    b.failure()
    assert b.state == "open" and not b.allow() and b.retry_in_s() == 1.0
    clock.ns = int(1e9)
    assert b.state == "half-open"
    assert b.allow() and not b.allow()  # one probe only
    b.failure()
    assert b.state == "open" and b.opened_total == 2
    clock.ns = int(2e9)
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


def test_breaker_release_frees_the_probe_without_a_verdict():
    clock = Clock()
    b = CircuitBreaker(1, 1.0, clock)
    b.failure()
    clock.ns = int(1e9)
    assert b.allow() and not b.allow()
    b.release()
    assert b.allow()


def test_latency_window_quantiles_forget_old_samples():
    clock = Clock()
    w = LatencyWindow(size=100, max_age_s=10, clock_ns=clock)
    assert w.quantile_ns(0.99) is None
    for v in range(1, 101):
        w.add(v)
    assert w.quantile_ns(0.5) == 50 and w.quantile_ns(0.99) == 99 and w.quantile_ns(1.0) == 100
    clock.ns = int(11e9)
    assert w.quantile_ns(0.99) is None and w.count() == 0


def test_metrics_export():
    m = FallbackMetrics()
    m.route("remote", "soft-budget-miss")
    m.latency("remote", 3_000_000)
    m.attempt("ok", 100)
    d = m.to_dict()
    assert d["routes"] == {"remote": 1} and d["route_reasons"] == {"remote:soft-budget-miss": 1}
    assert d["remote_bytes_sent"] == 100 and d["remote_latency_ms"]["buckets_le_ms"]["5"] == 1
    assert "remote:soft-budget-miss" in m.render()
