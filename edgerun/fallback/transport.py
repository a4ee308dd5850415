"""The HTTP layer: the one module that imports the HTTP client library.

httpx2 (pydantic's maintained fork of httpx, same API): an ``AsyncClient`` with
our own ``ssl.SSLContext`` (verification always on, TLS >= 1.2, optional CA
bundle and client certificate for mTLS), no redirects (a redirect could carry a
bearer token somewhere else), no proxies or certificates from the environment
(``trust_env=False``: where medical inputs go is the policy's decision alone),
and a connection pool no larger than the concurrency cap.

httpx timeouts are per phase, not per call (encode/httpx#1450), so callers bound
each request with ``asyncio.wait_for`` as well; ``classify`` turns the library's
exceptions into the outcome words that the audit record and the breaker use.

A reply is streamed and abandoned as soon as it passes ``max_bytes`` (the caller's
bound, from the local output signature): a server cannot make us buffer, or parse,
more than the model can answer.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx

from edgerun.errors import PolicyError, ProtocolError

__all__ = [
    "MAX_RESPONSE_BYTES",
    "Reply",
    "TLSRefused",
    "classify",
    "describe",
    "error_text",
    "make_client",
    "request",
    "retry_after_s",
    "ssl_context",
]

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # the bound when the caller has none tighter
# httpx's connect timer and our deadline are both float seconds on one clock: a connect cut by
# the deadline may fire this much before the integer-ns deadline.
_TIMER_SLACK_NS = 1_000_000


class TLSRefused(httpx.TransportError):
    """The server closed a connection right after its TLS handshake, before any answer.

    In TLS 1.3 the server checks the client certificate after the client has finished
    its side of the handshake, so a refused (or missing) certificate reaches the client
    only as a broken connection on its first request; the handshake trace tells it apart.
    An httpx.TransportError on purpose, so that ``classify`` meets it among httpx's own errors;
    it never leaves edgerun.fallback: the client and discovery classify it ("tls-error") and raise
    a RemoteError naming the cause.
    """


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def ssl_context(ca_bundle: str | None, client_cert: str | None, client_key: str | None) -> ssl.SSLContext:
    """Verification on, hostname checked, TLS 1.2 or newer (NIST SP 800-52r2)."""
    try:
        ctx = ssl.create_default_context(cafile=ca_bundle)
        if client_cert is not None:
            ctx.load_cert_chain(client_cert, client_key)
    except (OSError, ssl.SSLError) as exc:
        raise PolicyError(
            f"fallback policy: cannot load TLS files (ca_bundle={ca_bundle!r}, client_cert={client_cert!r}, "
            f"client_key={client_key!r}): {exc}; expected PEM files"
        ) from exc
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def make_client(ctx: ssl.SSLContext, max_connections: int, user_agent: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=ctx,
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        headers={"User-Agent": user_agent},
    )


async def request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    timeout_s: float,
    connect_timeout_s: float,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Reply:
    """One HTTP exchange; the response body is read whole, but never past ``max_bytes``."""
    timeout = httpx.Timeout(timeout_s, connect=min(connect_timeout_s, timeout_s))
    seen: set[str] = set()

    async def trace(event: str, info: Any) -> None:
        seen.add(event)

    extensions = {"trace": trace}
    req = client.build_request(method, url, content=body, headers=headers, timeout=timeout, extensions=extensions)
    try:
        resp = await client.send(req, stream=True)
    except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
        answered = any(e.endswith("receive_response_headers.complete") for e in seen)
        if "connection.start_tls.complete" in seen and not answered:
            raise TLSRefused(
                f"the server closed the connection right after the TLS handshake, before any answer "
                f"({describe(exc)}): it refused the client certificate (mTLS: set client_cert and client_key "
                "to one its CA signed)"
            ) from exc
        raise
    try:
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:  # refused before a byte of it is read
            raise ProtocolError(f"{url} announced a {declared}-byte answer; {_over(max_bytes)}")
        chunks, size = [], 0
        async for chunk in resp.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise ProtocolError(f"the answer from {url} passed {size} bytes; {_over(max_bytes)}")
            chunks.append(chunk)
        return Reply(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, b"".join(chunks))
    finally:
        await resp.aclose()


def _over(max_bytes: int) -> str:
    return f"the most this model's outputs can take is {max_bytes} bytes, so it was cut off (a wrong model or server)"


def _tls_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__


def classify(exc: Exception, deadline_ns: int | None = None) -> str | None:
    """Outcome word for a library exception, or None when it is not an HTTP-layer error.

    connect-error: retryable (the request never left). tls-error: a certificate or
    handshake failure, or a server that dropped us right after the handshake (mTLS),
    never retried. deadline: a timeout, which here means the call's budget ran out;
    a connect timeout is one too when it ended at the call's ``deadline_ns`` (the
    connect timer is cut to the time left, and on a starved I/O thread it fires
    first). transport-error: the connection broke mid-exchange.
    """
    if not isinstance(exc, httpx.HTTPError):
        return None
    if isinstance(exc, TLSRefused):
        return "tls-error"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) and _tls_failure(exc):
        return "tls-error"
    cut = deadline_ns is not None and time.perf_counter_ns() >= deadline_ns - _TIMER_SLACK_NS
    if isinstance(exc, httpx.ConnectTimeout) and cut:
        return "deadline"
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return "connect-error"
    if isinstance(exc, httpx.TimeoutException):
        return "deadline"
    return "transport-error"


def describe(exc: Any) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def error_text(body: bytes) -> str:
    """The server's {"error": ...} message, shortened; never more than 200 characters of anything."""
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError):
        message = None
    text = str(message) if message is not None else body[:200].decode("utf-8", "replace")
    return text[:200] or "(empty body)"


def retry_after_s(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: a clock skew could make it anything)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
