"""RemoteClient against real loopback sockets: the reference server, a silent listener, a refused port."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time

import numpy as np
import pytest
from test_fallback_helpers import FP32, FP32_NAME, INT8, deadline_in, refused_url, silent_listener

from edgerun.artifact import load_artifact
from edgerun.errors import DeadlineExceeded, ProtocolError, RemoteAuthError, RemoteError, RemoteUnavailable
from edgerun.fallback import FallbackPolicy, MemoryAudit
from edgerun.fallback.client import RemoteClient
from edgerun.fallback.server import Faults, ReferenceServer, serve_in_thread

MARGIN_MS = 60  # scheduling slack on a busy 2-core machine; the budgets below are 40-80 ms
X = {"input": np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)}


@pytest.fixture(scope="module")
def server():
    srv = ReferenceServer([FP32], threads=1)
    with serve_in_thread(srv) as url:
        srv.url = url
        yield srv


@pytest.fixture
def fresh(server):
    server.faults = Faults()
    server.stats.__init__()
    return server


def client(url: str, **kw) -> RemoteClient:
    art = load_artifact(INT8)
    values = {"mode": "prefer-local", "endpoint": url, "audit_sink": MemoryAudit(), "model_name": FP32_NAME}
    values.update(kw)
    return RemoteClient(FallbackPolicy(**values), art.inputs, art.outputs)


def timed(fn, *args):
    t0 = time.perf_counter()
    try:
        fn(*args)
    except Exception as exc:
        return exc, (time.perf_counter() - t0) * 1e3
    return None, (time.perf_counter() - t0) * 1e3


def test_answer_matches_the_local_model_and_the_audit_matches_the_bytes(fresh):
    with client(fresh.url, binary_data="auto", model_name=None) as c:
        info = c.probe()
        assert info.binary and info.model == FP32_NAME
        out = c.infer(X, deadline_in(2000), "test")
    local = ReferenceServer([FP32], threads=1).models[FP32_NAME].runtime.pipeline.session.run([X["input"]])[0]
    np.testing.assert_allclose(out["logits"], local, rtol=1e-5)
    (record,) = c.policy.audit_sink
    assert record.outcome == "ok" and record.bytes_sent > 16384
    assert record.payload_sha256 == fresh.stats.body_sha256[-1]
    assert len(record.request_id) == 32 and record.request_id not in json.dumps(c.headers())


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_down_or_silent_server_returns_within_budget_and_opens_the_breaker(kind):
    with silent_listener() as listener:
        url = refused_url() if kind == "refused" else listener.url
        with client(url, binary_data="never", breaker_failure_threshold=3, breaker_reset_s=60) as c:
            for _ in range(3):
                exc, ms = timed(c.infer, X, deadline_in(60), "test")
                assert isinstance(exc, (RemoteError, DeadlineExceeded)), exc
                assert ms < 60 + MARGIN_MS
            assert c.breaker.state == "open"
            accepted = listener.accepted
            exc, ms = timed(c.infer, X, deadline_in(60), "test")
            assert isinstance(exc, RemoteUnavailable) and "circuit open" in str(exc)
            assert ms < 20
            assert listener.accepted == accepted  # nothing reached the server while open
    assert c.metrics.to_dict()["breaker_state_code"] == 1


def test_half_open_lets_one_probe_through_and_recovers(fresh):
    with client(fresh.url, binary_data="never", breaker_failure_threshold=2, breaker_reset_s=0.15) as c:
        fresh.faults = Faults(status=500)
        for _ in range(2):
            with pytest.raises(RemoteError):
                c.infer(X, deadline_in(500), "test")
        assert c.breaker.state == "open"
        seen = fresh.stats.infer_requests
        with pytest.raises(RemoteUnavailable):
            c.infer(X, deadline_in(500), "test")
        assert fresh.stats.infer_requests == seen
        time.sleep(0.2)
        assert c.breaker.state == "half-open"
        fresh.faults = Faults(delay_s=0.1)  # the probe is slow: a second caller must not get through
        probe = c.start(X, deadline_in(1000), "test")
        time.sleep(0.03)
        with pytest.raises(RemoteUnavailable):
            c.infer(X, deadline_in(500), "test")
        assert probe.result(timeout=2)["logits"].shape == (1, 10)
        assert c.breaker.state == "closed"
        assert fresh.stats.infer_requests == seen + 1


def test_slow_server_is_cut_at_the_deadline_with_no_late_retry(fresh):
    fresh.faults = Faults(delay_s=0.4)
    with client(fresh.url, binary_data="never", max_attempts=3) as c:
        exc, ms = timed(c.infer, X, deadline_in(80), "test")
        assert isinstance(exc, DeadlineExceeded)
        assert 75 < ms < 80 + MARGIN_MS
        time.sleep(0.5)  # a late retry would show up here
        assert fresh.stats.infer_requests == 1
        assert [r.outcome for r in c.policy.audit_sink] == ["deadline"]
        assert c.metrics.to_dict()["retries"] == 0


@pytest.mark.parametrize(("status", "tries", "breaker_failures"), [(503, 2, 2), (500, 1, 1), (429, 2, 0), (400, 1, 0)])
def test_which_statuses_are_retried_and_which_count_against_the_server(fresh, status, tries, breaker_failures):
    fresh.faults = Faults(status=status)
    with client(fresh.url, binary_data="never", max_attempts=2, breaker_failure_threshold=10) as c:
        with pytest.raises(RemoteError) as err:
            c.infer(X, deadline_in(1000), "test")
        assert err.value.status == status
        assert fresh.stats.infer_requests == tries
        assert c.breaker._failures == breaker_failures
        assert [r.outcome for r in c.policy.audit_sink] == [f"http-{status}"] * tries


def test_retry_after_longer_than_the_budget_is_not_waited_for(fresh):
    fresh.faults = Faults(status=429, retry_after_s=5)
    with client(fresh.url, binary_data="never", max_attempts=3) as c:
        exc, ms = timed(c.infer, X, deadline_in(200), "test")
    assert isinstance(exc, RemoteError) and exc.status == 429
    assert ms < 100 and fresh.stats.infer_requests == 1


BAD = [(c, b) for c in ("shape", "dtype", "name", "json") for b in ("always", "never")] + [("header-length", "always")]


@pytest.mark.parametrize(("corrupt", "binary"), BAD)
def test_bad_answers_are_caught_before_anyone_sees_them(fresh, corrupt, binary):
    fresh.faults = Faults(corrupt=corrupt)
    with client(fresh.url, binary_data=binary) as c:
        with pytest.raises(ProtocolError):
            c.infer(X, deadline_in(2000), "test")
        assert c.breaker._failures == 1
        assert c.policy.audit_sink[-1].outcome == "protocol-error"


def test_401_latches_the_remote_off_until_reconfigured():
    srv = ReferenceServer([FP32], token="s3cret", threads=1)
    with serve_in_thread(srv) as url:
        with client(url, binary_data="never", token_provider=lambda: "wrong") as c:
            with pytest.raises(RemoteAuthError) as err:
                c.infer(X, deadline_in(1000), "test")
            assert err.value.status == 401
            with pytest.raises(RemoteUnavailable, match="refused the credentials"):
                c.infer(X, deadline_in(1000), "test")
            assert srv.stats.requests == 1  # not retried, and nothing sent after the latch
            assert c.unavailable() is not None and c.breaker.state == "closed"
            assert [r.outcome for r in c.policy.audit_sink] == ["http-401"]
        with client(url, binary_data="never", token_provider=lambda: "s3cret") as c:
            assert c.infer(X, deadline_in(1000), "test")["logits"].shape == (1, 10)


def test_200_concurrent_calls_never_put_more_than_4_on_the_server(fresh):
    fresh.faults = Faults(delay_s=0.002)
    c = client(fresh.url, binary_data="always", max_concurrent_remote=4)
    with c, concurrent.futures.ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(c.infer, X, deadline_in(20_000), "load") for _ in range(200)]
        results = [f.result() for f in futures]
    assert len(results) == 200 and all(r["logits"].shape == (1, 10) for r in results)
    assert fresh.stats.infer_requests == 200
    assert 1 < fresh.stats.max_in_flight <= 4


def test_only_allow_listed_inputs_are_sent_and_the_redactor_sees_them(tmp_path):
    from test_fallback_helpers import identity_feeds, identity_model

    path = identity_model(tmp_path / "ids.onnx")
    art = load_artifact(path)
    srv = ReferenceServer([path], threads=1)
    seen = []

    def redactor(name, array):
        seen.append(name)
        return np.zeros_like(array) if name == "x_float32" else array

    with serve_in_thread(srv) as url:
        allowed = ("x_float32", "x_int8")
        policy = FallbackPolicy(
            mode="prefer-local", endpoint=url, model_name="ids", binary_data="never", audit_sink=MemoryAudit(),
            allowed_inputs=allowed, redactor=redactor,
        )  # fmt: skip
        c = RemoteClient(policy, art.inputs, art.outputs)
        with c, pytest.raises(RemoteError) as err:  # the model needs all 13 inputs: the server refuses
            c.infer(identity_feeds(), deadline_in(2000), "test")
    assert err.value.status == 400
    assert list(srv.stats.input_names) == [sorted(allowed)]
    assert seen == ["x_int8", "x_float32"] or sorted(seen) == sorted(allowed)
    record = policy.audit_sink[0]
    assert record.payload_sha256 == srv.stats.body_sha256[0]
    assert "data" not in json.dumps(record.to_dict()) and record.bytes_sent > 0


def test_payload_cap_refuses_to_send(fresh):
    c = client(fresh.url, binary_data="never", max_payload_bytes=1000)
    with c, pytest.raises(RemoteUnavailable, match="max_payload_bytes"):
        c.infer(X, deadline_in(1000), "test")
    assert fresh.stats.infer_requests == 0 and not c.policy.audit_sink


def test_request_ids_are_random_and_echoed(fresh):
    with client(fresh.url, binary_data="never") as c:
        for _ in range(3):
            c.infer(X, deadline_in(2000), "test")
    ids = {r.request_id for r in c.policy.audit_sink}
    assert len(ids) == 3
    assert all(hashlib.sha256(i.encode()).hexdigest() not in fresh.stats.body_sha256 for i in ids)
