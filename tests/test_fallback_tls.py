"""TLS against the reference server with a CA and certificates made here: trust, hostnames, mTLS, tokens."""

from __future__ import annotations

import numpy as np
import pytest
from test_fallback_helpers import FP32, FP32_NAME, INT8, LONG_MS, deadline_in, make_tls

from edgerun.artifact import load_artifact
from edgerun.errors import PolicyError, RemoteError
from edgerun.fallback import FallbackPolicy, MemoryAudit
from edgerun.fallback.client import RemoteClient
from edgerun.serve.server import ReferenceServer, serve_in_thread

X = {"input": np.zeros((1, 1, 64, 64), np.float32)}


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def https(tls):
    srv = ReferenceServer([FP32], token="t0ken", threads=1)
    with serve_in_thread(srv, tls={"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)}) as url:
        srv.url = url
        yield srv


def call(url: str, **kw):
    art = load_artifact(INT8)
    kw.setdefault("token_provider", lambda: "t0ken")
    kw.setdefault("connect_timeout_ms", LONG_MS)  # a TLS handshake on a loaded machine: not what is tested
    policy = FallbackPolicy(
        mode="remote-only", endpoint=url, audit_sink=MemoryAudit(), model_name=FP32_NAME, binary_data="always", **kw
    )
    with RemoteClient(policy, art.inputs, art.outputs) as c:
        return c.infer(X, deadline_in(LONG_MS), "test"), policy.audit_sink


def test_trusted_test_ca_is_accepted_and_the_token_goes_over_https(https, tls):
    before = https.stats.auth_headers_seen.count("present")
    out, audit = call(https.url, ca_bundle=str(tls.ca))
    assert out["logits"].shape == (1, 10) and audit[0].outcome == "ok"
    assert https.stats.auth_headers_seen.count("present") == before + 1


def test_untrusted_certificate_is_rejected(https):
    with pytest.raises(RemoteError, match="tls-error") as err:
        call(https.url)  # the system trust store does not know our test CA
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_hostname_mismatch_is_rejected(tmp_path, tls):
    other = make_tls(tmp_path, server_names=("fallback.example.org",))
    srv = ReferenceServer([FP32], threads=1)
    with serve_in_thread(srv, tls={"ssl_certfile": str(other.cert), "ssl_keyfile": str(other.key)}) as url:
        with pytest.raises(RemoteError, match="tls-error") as err:
            call(url, ca_bundle=str(other.ca))
        assert srv.stats.requests == 0
    assert "mismatch" in str(err.value).lower() or "not valid for" in str(err.value).lower()


def test_mtls_needs_the_client_certificate(tls):
    srv = ReferenceServer([FP32], threads=1)
    options = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key), "ssl_ca_certs": str(tls.ca)}
    with serve_in_thread(srv, tls=options) as url:
        with pytest.raises(RemoteError):
            call(url, ca_bundle=str(tls.ca))
        assert srv.stats.requests == 0
        out, _ = call(url, ca_bundle=str(tls.ca), client_cert=str(tls.client_cert), client_key=str(tls.client_key))
    assert out["logits"].shape == (1, 10)


def test_no_token_over_plain_http_to_another_host():
    # Refused at construction, before any socket exists (".invalid" never resolves anyway).
    with pytest.raises(PolicyError, match="plain http"):
        FallbackPolicy(
            mode="prefer-local",
            endpoint="http://fallback.example.invalid:8000",
            token_provider=lambda: "secret",
            audit_sink=MemoryAudit(),
        )
    with pytest.raises(PolicyError, match="plain http"):
        FallbackPolicy(mode="prefer-local", endpoint="http://10.1.2.3", audit_sink=MemoryAudit())


def test_token_is_never_in_repr_or_audit(https, tls):
    policy = FallbackPolicy(
        mode="remote-only", endpoint=https.url, audit_sink=MemoryAudit(), token_provider=lambda: "t0ken"
    )
    assert "t0ken" not in repr(policy)
    _, audit = call(https.url, ca_bundle=str(tls.ca))
    assert "t0ken" not in repr(audit[0].to_dict())


def test_bad_ca_bundle_is_a_policy_error(tmp_path):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(PolicyError, match="cannot load TLS files"):
        call("https://127.0.0.1:1", ca_bundle=str(bogus))
