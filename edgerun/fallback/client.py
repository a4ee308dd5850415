"""RemoteClient: Open Inference Protocol (KServe V2) REST client for one model on one endpoint.

Works against Triton, KServe, Seldon MLServer, OpenVINO Model Server and
``edgerun serve``. JSON tensors always; Triton's binary tensors when the server
lists ``binary_tensor_data`` in ``GET v2`` (policy ``binary_data="auto"``). Every
answer is checked against the local model's output signature before anyone sees it.

Deadlines: the caller passes an absolute deadline (``time.perf_counter_ns``); every
wait (a concurrency slot, a connection, the exchange, a backoff) is bounded by
what is left of it, so a call never runs past it, however the server misbehaves.

Retries: only connect errors, 502/503/504 and 429 (Retry-After honoured), at most
``max_attempts`` tries, full-jitter backoff capped at ``backoff_cap_ms``, and only
when the time left after the pause still covers the remote's recent p95 plus the
headroom. In house: the stop rule is about the caller's deadline and the measured
remote latency, which is most of what a retry library would be configured with.

The I/O runs on one event-loop thread per client; the sync methods hand work to
it and wait at most the time left. 401/403 latch the remote off until
``reconfigure``/a new client: retrying bad credentials only leaks attempts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from time import perf_counter_ns
from typing import Any

import numpy as np

from edgerun.artifact import TensorSpec
from edgerun.errors import DeadlineExceeded, InputError, ProtocolError, RemoteAuthError, RemoteError, RemoteUnavailable
from edgerun.fallback import exchange, oip, transport
from edgerun.fallback.audit import AuditRecord
from edgerun.fallback.breaker import CircuitBreaker
from edgerun.fallback.discovery import ServerInfo, discover
from edgerun.fallback.metrics import FallbackMetrics, LatencyWindow
from edgerun.fallback.policy import FallbackPolicy, is_loopback_url

__all__ = ["RemoteClient"]

_RETRY_STATUS = (429, 502, 503, 504)
_OUTER_GRACE_S = 0.05  # the loop thread enforces the deadline; this only guards a starved loop
_DECODE_INLINE_BYTES = 256 * 1024  # a few ms of JSON parsing; larger answers are decoded off the I/O thread


class _Retry(RemoteError):
    """A failed attempt that may be tried again: ``error`` is what the caller gets when none is left."""

    def __init__(self, error: RemoteError, retry_after_s: float | None = None) -> None:
        super().__init__(str(error), error.status)
        self.error, self.retry_after_s = error, retry_after_s


class RemoteClient:
    """Thread-safe; owns an event-loop thread and a connection pool. ``close()`` when done."""

    def __init__(
        self,
        policy: FallbackPolicy,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        metrics: FallbackMetrics | None = None,
        *,
        clock_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """``clock_ns`` times the breaker's reset and the latency window's age; a test injects its own."""
        if not policy.remote_enabled or policy.endpoint is None:
            raise RemoteUnavailable(f"fallback policy mode {policy.mode!r} allows no remote calls")
        self.policy = policy
        self.endpoint = policy.endpoint.rstrip("/")
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        known = {t.name for t in self.inputs}
        unknown = sorted(set(policy.allowed_inputs or ()) - known)
        if unknown:
            raise InputError(f"allowed_inputs names {unknown}, which the model lacks; its inputs are {sorted(known)}")
        self.metrics = metrics or FallbackMetrics()
        self.breaker = CircuitBreaker(policy.breaker_failure_threshold, policy.breaker_reset_s, clock_ns)
        self.metrics.breaker_state = lambda: self.breaker.state
        self.latency = LatencyWindow(policy.latency_window, policy.latency_max_age_s, clock_ns)
        self.latched: str | None = None  # why the remote is off until reconfigured
        self.info: ServerInfo | None = None
        self._ssl = transport.ssl_context(policy.ca_bundle, policy.client_cert, policy.client_key)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="edgerun-fallback-io", daemon=True)
        self._thread.start()
        self._submit(self._open()).result(timeout=10)
        self._check_sink()  # before anything is sent: a path that cannot be written turns the remote off

    def _check_sink(self) -> None:
        """Latch the remote off when the audit sink says it cannot record (its optional ``check()``)."""
        check = getattr(self.policy.audit_sink, "check", None)
        if self.latched is None and check is not None:
            try:
                check()
            except Exception as exc:
                self._sink_failed(exc, "cannot record attempts")

    def _sink_failed(self, exc: BaseException, what: str) -> str:
        self.latched = (
            f"audit sink {self.policy.audit_sink!r} {what} ({type(exc).__name__}: {exc}); "
            "no call may leave unaudited: fix the sink (e.g. the --audit path) and start again"
        )
        return self.latched

    async def _open(self) -> None:
        from edgerun import __version__

        cap = self.policy.max_concurrent_remote
        self._http = transport.make_client(self._ssl, cap, f"edgerun/{__version__}")
        self._slots = asyncio.Semaphore(cap)

    def _submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._submit(self._http.aclose()).result(timeout=2)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=2)

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- what the router asks before it tries ------------------------------------------

    def unavailable(self) -> str | None:
        """Why no request may go out now (latched off, audit sink failing, circuit open), or None."""
        self._check_sink()
        if self.latched:
            return f"remote off: {self.latched}"
        if self.breaker.state == "open":
            return f"circuit open (retry in {self.breaker.retry_in_s():.1f} s)"
        return None

    def expected_ns(self) -> int:
        """The remote's recent p95 round trip (0 when nothing is known yet)."""
        return self.latency.quantile_ns(0.95) or 0

    # --- sync API ------------------------------------------------------------------------

    def probe(self, timeout_s: float = 2.0) -> ServerInfo:
        """Ask the server once, outside the request path: extensions, the model's name and signature."""
        deadline_ns = perf_counter_ns() + int(timeout_s * 1e9)
        return self._wait(self._ensure_info(deadline_ns), deadline_ns, "probe")

    def infer(self, feeds: Mapping[str, np.ndarray], deadline_ns: int, reason: str) -> dict[str, np.ndarray]:
        """Send the model inputs; return the outputs, validated against the local signature."""
        why = self.unavailable()
        if why is not None:  # before encoding anything: an open circuit answers at once
            raise RemoteUnavailable(f"not sent: {why}")
        return self._wait(self._call(feeds, deadline_ns, reason, 0.0), deadline_ns, "infer")

    def start(
        self, feeds: Mapping[str, np.ndarray], deadline_ns: int, reason: str, delay_s: float = 0.0
    ) -> concurrent.futures.Future[dict[str, np.ndarray]]:
        """Like infer, but returns a future at once; the request leaves after ``delay_s`` (a hedge)."""
        return self._submit(self._call(feeds, deadline_ns, reason, delay_s))

    def _wait(self, coro: Any, deadline_ns: int, what: str) -> Any:
        fut = self._submit(coro)
        remaining_s = max(0.0, (deadline_ns - perf_counter_ns()) / 1e9)
        try:
            return fut.result(timeout=remaining_s + _OUTER_GRACE_S)
        except DeadlineExceeded:  # the I/O thread's own verdict (a TimeoutError too): its words stand
            raise
        except concurrent.futures.TimeoutError:
            if fut.done():  # decided while this thread was waking up: that result is the outcome
                return fut.result()
            # A starved I/O thread: the caller gets its answer now, but the attempt is not
            # cancelled; it ends at the deadline on the I/O thread, which audits and counts it.
            raise DeadlineExceeded(
                f"remote {what} to {self.endpoint} still running at the deadline (the I/O thread is "
                f"{_OUTER_GRACE_S * 1e3:.0f} ms behind; it records the attempt's outcome itself)"
            ) from None

    # --- the call ----------------------------------------------------------------------

    async def _call(self, feeds: Mapping[str, np.ndarray], deadline_ns: int, reason: str, delay_s: float) -> Any:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        info = await self._ensure_info(deadline_ns)
        req = exchange.encode(self.policy, self.inputs, self.outputs, feeds, info.binary, reason)
        t0 = perf_counter_ns()
        outputs = await self._attempts(req, info, deadline_ns)
        self.latency.add(perf_counter_ns() - t0)
        return outputs

    async def _ensure_info(self, deadline_ns: int) -> ServerInfo:
        if self.latched:
            raise RemoteUnavailable(f"remote off: {self.latched}")
        if self.info is None:
            try:
                self.info = await discover(self, deadline_ns)
            except RemoteAuthError as exc:
                self.latched = f"the server refused the credentials ({exc})"
                raise
        return self.info

    async def _attempts(self, req: exchange.Request, info: ServerInfo, deadline_ns: int) -> dict[str, np.ndarray]:
        last: _Retry | None = None
        for attempt in range(1, self.policy.max_attempts + 1):
            if last is not None:
                pause_s = self._backoff_s(attempt, last.retry_after_s)
                left_ns = deadline_ns - perf_counter_ns() - int(pause_s * 1e9)
                if left_ns < self.expected_ns() + self.policy.min_remote_headroom_ms * 1e6:
                    break  # a retry could not finish in time: never past the deadline
                self.metrics.count("retries")
                await asyncio.sleep(pause_s)
            headers = self.headers()
            self._check_sink()
            if self.latched:  # checked per attempt: a retry must not leave unaudited either
                raise RemoteUnavailable(f"not sent: remote off: {self.latched}")
            await self._take_slot(deadline_ns)
            try:
                if not self.breaker.allow():
                    if last is not None:
                        break
                    raise RemoteUnavailable(f"not sent: {self.unavailable() or 'circuit half-open, probe in flight'}")
                return await self._attempt(req, info, attempt, headers, deadline_ns)
            except _Retry as exc:
                last = exc
            finally:
                self._slots.release()
        assert last is not None
        raise last.error

    async def _take_slot(self, deadline_ns: int) -> None:
        """The bulkhead: wait for one of max_concurrent_remote slots, never past the deadline."""
        left_s = (deadline_ns - perf_counter_ns()) / 1e9
        try:
            if left_s <= 0:
                raise asyncio.TimeoutError
            await asyncio.wait_for(self._slots.acquire(), left_s)
        except asyncio.TimeoutError:
            self.metrics.attempt("no-slot", 0)
            raise RemoteUnavailable(
                f"not sent: all {self.policy.max_concurrent_remote} remote slots stayed busy until the deadline"
            ) from None

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        cap_ms = min(self.policy.backoff_cap_ms, self.policy.backoff_base_ms * 2 ** (attempt - 2))
        pause_s = random.uniform(0, cap_ms) / 1e3  # full jitter (AWS Builders' Library)
        return max(pause_s, retry_after_s or 0.0)

    async def _attempt(
        self, req: exchange.Request, info: ServerInfo, attempt: int, headers: dict[str, str], deadline_ns: int
    ) -> dict[str, np.ndarray]:
        t0, stamp = perf_counter_ns(), datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        outcome, status, sent = "transport-error", None, 0
        try:
            reply = await self._exchange(req, info, headers, deadline_ns)
            sent, status = len(req.body), reply.status
            outcome = "ok" if status == 200 else f"http-{status}"
            outputs = await self._judge(reply, req, deadline_ns)
            self.breaker.success()
            return outputs
        except ProtocolError:
            outcome = "protocol-error"
            self.breaker.failure()
            raise
        except (_Retry, RemoteError):
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            self.breaker.release()
            raise
        except (asyncio.TimeoutError, TimeoutError) as exc:
            outcome, sent = "deadline", len(req.body)
            self.breaker.failure()
            what = "answer not decoded" if status == 200 else "no answer"
            raise DeadlineExceeded(
                f"remote call to {self.endpoint} cut at the deadline: {what} (attempt {attempt})"
            ) from exc
        except Exception as exc:
            outcome = transport.classify(exc, deadline_ns) or "transport-error"
            raise self._transport_failure(outcome, exc, attempt) from exc
        finally:
            self._audit(req, info, attempt, outcome, status, sent, stamp, t0)

    def _transport_failure(self, outcome: str, exc: Exception, attempt: int) -> Exception:
        self.breaker.failure()
        if outcome == "deadline":
            return DeadlineExceeded(
                f"remote call to {self.endpoint} cut at the deadline: {transport.describe(exc)} (attempt {attempt})"
            )
        error = RemoteError(f"{outcome} talking to {self.endpoint}: {transport.describe(exc)}")
        return _Retry(error) if outcome == "connect-error" else error

    async def _exchange(
        self, req: exchange.Request, info: ServerInfo, headers: dict[str, str], deadline_ns: int
    ) -> transport.Reply:
        left_s = (deadline_ns - perf_counter_ns()) / 1e9
        if left_s <= 0:
            raise asyncio.TimeoutError
        headers = dict(headers)
        if req.header_length is None:
            headers["Content-Type"] = "application/json"
        else:
            headers["Content-Type"] = "application/octet-stream"
            headers[oip.HEADER_LENGTH] = str(req.header_length)
        coro = transport.request(
            self._http,
            "POST",
            info.infer_url,
            body=req.body,
            headers=headers,
            timeout_s=left_s,
            connect_timeout_s=self.policy.connect_timeout_ms / 1e3,
            max_bytes=exchange.reply_bound(self.outputs, info.binary),
        )
        return await asyncio.wait_for(coro, left_s)

    def headers(self) -> dict[str, str]:
        """Request headers: the bearer token only over https or to this machine; nothing else identifying."""
        headers: dict[str, str] = {}
        provider = self.policy.token_provider
        if provider is not None and (self.endpoint.startswith("https://") or is_loopback_url(self.endpoint)):
            try:
                token = provider()
            except Exception as exc:  # the provider is the integrator's code; never echo what it said
                raise RemoteUnavailable(f"not sent: the token provider raised {type(exc).__name__}") from None
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _judge(self, reply: transport.Reply, req: exchange.Request, deadline_ns: int) -> dict[str, np.ndarray]:
        status = reply.status
        if status == 200:
            if len(reply.body) <= _DECODE_INLINE_BYTES:
                return exchange.decode(reply, req, self.outputs)
            # A large answer is decoded on a worker thread, within the time left: parsing on the
            # I/O thread would hold every other call (and this one's deadline) until it finished.
            left_s = max(0.0, (deadline_ns - perf_counter_ns()) / 1e9)
            return await asyncio.wait_for(asyncio.to_thread(exchange.decode, reply, req, self.outputs), left_s)
        message = f"{self.endpoint} answered {status}: {transport.error_text(reply.body)}"
        if status in (401, 403):
            self.breaker.release()
            self.latched = f"the server refused the credentials ({status}); reconfigure to retry"
            raise RemoteAuthError(message, status)
        if status >= 500:
            self.breaker.failure()
        else:
            self.breaker.release()  # a client error says nothing about the server's health
        if status in _RETRY_STATUS:
            raise _Retry(RemoteError(message, status), transport.retry_after_s(reply.headers.get("retry-after")))
        raise RemoteError(message, status)

    def _audit(
        self,
        req: exchange.Request,
        info: ServerInfo,
        attempt: int,
        outcome: str,
        status: int | None,
        sent: int,
        stamp: str,
        t0: int,
    ) -> None:
        self.metrics.attempt(outcome, sent)
        sink = self.policy.audit_sink
        if sink is None:
            return
        record = AuditRecord(
            time_utc=stamp,
            endpoint=self.endpoint,
            model=info.model,
            model_version=self.policy.model_version,
            request_id=req.request_id,
            reason=req.reason,
            attempt=attempt,
            outcome=outcome,
            status=status,
            bytes_sent=sent,
            payload_sha256=req.sha256,
            duration_ms=round((perf_counter_ns() - t0) / 1e6, 3),
        )
        try:
            sink(record)
        except Exception as exc:  # raised over the attempt's own outcome: an unaudited answer is not used
            why = self._sink_failed(exc, f"failed to record attempt {attempt} ({outcome})")
            raise RemoteUnavailable(f"remote off: {why}") from exc
