"""Router: per call, the local pipeline or the remote endpoint, as the policy allows.

The pre- and post-processing always run here, on the device: the remote serves the
*model* (the same signature as the local one) and its answer is post-processed
exactly like a local one. What the router decides is where the model runs:

- local-only: here; with ``hard_budget_ms``, a miss runs the next smaller
  ``local_variants`` artifact (and later calls start there) or raises
  ``DeadlineExceeded``. Never the network.
- prefer-local: here, unless its recent p99 already breaks the soft budget
  (predictive); a local failure (an engine error) goes remote; an optional hedge
  starts the remote after ``hedge_after_ms`` while the local run goes on.
- prefer-remote: remote first; a remote failure, or a remote that may not be
  tried (circuit open, credentials latched off, too little budget), runs here.
- remote-only: remote or an error.

The remote is tried only while the breaker lets it, the credentials were not
refused, and the time left to the call's deadline covers its recent p95 plus
``min_remote_headroom_ms``. Every result says its route and why.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from edgerun.errors import DeadlineExceeded, EngineError, PolicyError, RemoteError
from edgerun.fallback.metrics import FallbackMetrics, LatencyWindow
from edgerun.fallback.policy import FallbackPolicy
from edgerun.pipeline import Pipeline, Result, StageTimes

if TYPE_CHECKING:
    from edgerun.runtime import Runtime

__all__ = ["Router"]


class Router:
    """Holds the policy, the latency windows, the metrics and (when remote is allowed) the client."""

    def __init__(
        self, runtime: Runtime, policy: FallbackPolicy, load_variant: Callable[[str | Path], Runtime] | None = None
    ) -> None:
        """``load_variant`` opens one of ``policy.local_variants`` (``edgerun.load`` with the runtime's
        settings; the runtime passes it, so this module does not import the runtime)."""
        if policy.local_variants and policy.hard_budget_ms is None:
            raise PolicyError("fallback policy: local_variants are for hard-budget misses; set hard_budget_ms too")
        self.policy = policy
        self.metrics = FallbackMetrics()
        self.name = runtime.artifact.name
        self.pipes: list[tuple[str, Pipeline]] = [(runtime.artifact.name, runtime.pipeline)]
        if policy.local_variants and load_variant is None:
            raise PolicyError("fallback policy: local_variants given, but no way to load them (use edgerun.load)")
        for variant in map(load_variant, policy.local_variants) if load_variant else ():
            self.pipes.append((variant.artifact.name, variant.pipeline))
        self.level = 0  # index into pipes: where local calls start (moves down after hard misses)
        self.local = LatencyWindow(policy.latency_window, policy.latency_max_age_s)
        self.client: Any = None
        if policy.remote_enabled:
            from edgerun.fallback.client import RemoteClient

            art = runtime.artifact
            self.client = RemoteClient(policy, art.inputs, art.outputs, self.metrics)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "edgerun-hedge") if policy.hedge_after_ms else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    # --- the call -------------------------------------------------------------------------

    def run(self, x: Any) -> Result:
        t0 = perf_counter_ns()
        deadline_ns = t0 + int(self.policy.effective_deadline_ms * 1e6)
        mode = self.policy.mode
        if mode == "local-only":
            return self._local_only(x)
        pipe = self.pipes[0][1]
        feeds = pipe.preprocess(x)
        t_pre = perf_counter_ns()
        if mode == "remote-only":
            return self._remote(pipe, feeds, t0, t_pre, deadline_ns, "remote-only", "the policy allows no local run")
        if mode == "prefer-remote":
            return self._prefer_remote(pipe, feeds, t0, t_pre, deadline_ns)
        return self._prefer_local(pipe, feeds, t0, t_pre, deadline_ns)

    def _local_only(self, x: Any) -> Result:
        hard_ns = None if self.policy.hard_budget_ms is None else int(self.policy.hard_budget_ms * 1e6)
        missed = ""
        for level in range(self.level, len(self.pipes)):
            name, pipe = self.pipes[level]
            outputs, top, times = pipe(x)
            self._record_local(times)
            if hard_ns is None or times.total_ns < hard_ns:
                if level == 0:
                    return self._result(outputs, top, times, "local", "local-only", "the policy keeps inputs here")
                detail = f"{missed}ran smaller variant {name} ({times.total_ns / 1e6:.3f} ms)"
                return self._result(outputs, top, times, "local-variant", "hard-budget-miss", detail)
            self.metrics.count("hard_budget_misses")
            missed += f"{name} took {times.total_ns / 1e6:.3f} ms, hard budget {self.policy.hard_budget_ms:g} ms; "
            self.level = min(level + 1, len(self.pipes) - 1)  # later calls start at the smaller variant
        raise DeadlineExceeded(f"hard budget missed: {missed}no smaller local variant left")

    def _prefer_local(self, pipe: Pipeline, feeds: list[Any], t0: int, t_pre: int, deadline_ns: int) -> Result:
        p99 = self.local.quantile_ns(0.99)
        soft_ns = self.policy.soft_budget_ms * 1e6
        if "soft-budget-miss" in self.policy.fallback_on and p99 is not None and p99 > soft_ns:
            detail = (
                f"local p99 {p99 / 1e6:.3f} ms > soft budget {self.policy.soft_budget_ms:g} ms "
                f"(last {self.local.count()} local runs)"
            )
            why_not = self._remote_blocked(deadline_ns)
            if why_not is None:
                try:
                    return self._remote(pipe, feeds, t0, t_pre, deadline_ns, "soft-budget-miss", detail)
                except (RemoteError, DeadlineExceeded) as exc:
                    why_not = f"remote failed: {exc}"  # a late local answer beats none
            return self._local(pipe, feeds, t0, t_pre, "remote-failed", f"{detail}; {why_not}; ran here")
        if self._pool is not None and self._remote_blocked(deadline_ns) is None:
            return self._hedged(pipe, feeds, t0, t_pre, deadline_ns)
        try:
            return self._local(pipe, feeds, t0, t_pre, "local", "preferred, and within the soft budget so far")
        except EngineError as exc:
            return self._after_local_error(pipe, feeds, t0, t_pre, deadline_ns, exc)

    def _after_local_error(
        self, pipe: Pipeline, feeds: list[Any], t0: int, t_pre: int, deadline_ns: int, exc: EngineError
    ) -> Result:
        if "local-error" not in self.policy.fallback_on:
            raise exc
        why_not = self._remote_blocked(deadline_ns)
        if why_not is not None:
            raise type(exc)(f"{exc} (no remote fallback: {why_not})") from exc
        try:
            return self._remote(pipe, feeds, t0, t_pre, deadline_ns, "local-error", f"local failed: {exc}")
        except (RemoteError, DeadlineExceeded) as remote_exc:
            raise type(remote_exc)(f"{remote_exc} (after the local run failed: {exc})") from remote_exc

    def _prefer_remote(self, pipe: Pipeline, feeds: list[Any], t0: int, t_pre: int, deadline_ns: int) -> Result:
        why_not = self._remote_blocked(deadline_ns)
        if why_not is None:
            try:
                return self._remote(pipe, feeds, t0, t_pre, deadline_ns, "prefer-remote", "the policy prefers it")
            except (RemoteError, DeadlineExceeded) as exc:
                why_not = f"remote failed: {exc}"
        return self._local(pipe, feeds, t0, t_pre, "remote-failed", f"{why_not}; ran here")

    def _hedged(self, pipe: Pipeline, feeds: list[Any], t0: int, t_pre: int, deadline_ns: int) -> Result:
        """Local on a worker thread; the remote starts after hedge_after_ms unless local has answered."""
        assert self._pool is not None and self.policy.hedge_after_ms is not None
        remote = self.client.start(self._named(feeds), deadline_ns, "hedge", self.policy.hedge_after_ms / 1e3)
        local = self._pool.submit(pipe.timed_infer, feeds)
        pending: set[concurrent.futures.Future[Any]] = {local, remote}
        failed: dict[concurrent.futures.Future[Any], BaseException] = {}
        while pending:
            left_s = max(0.0, (deadline_ns - perf_counter_ns()) / 1e9)
            done, pending = concurrent.futures.wait(pending, left_s, concurrent.futures.FIRST_COMPLETED)
            if not done:
                break
            for fut in done:
                error = fut.exception()
                if error is not None:
                    failed[fut] = error
                elif fut is local:
                    sent = not remote.cancel()  # cancel() is False once the remote request has finished
                    outs, infer_ns = local.result()
                    detail = f"answered before the hedge ({'remote also answered' if sent else 'hedge cancelled'})"
                    return self._finish_local(pipe, outs, infer_ns, t0, t_pre, "local", detail)
                else:
                    code, detail = "hedge", f"no local answer after {self.policy.hedge_after_ms:g} ms"
                    if local in failed:
                        code, detail = "local-error", f"local failed: {failed[local]}"
                    self.metrics.count("hedges")
                    return self._finish_remote(pipe, remote.result(), t0, t_pre, code, detail)
        remote.cancel()
        if local in failed:
            raise failed[local]
        raise DeadlineExceeded("neither the local run nor the hedged remote call answered within the deadline")

    # --- the two routes ------------------------------------------------------------------

    def _local(self, pipe: Pipeline, feeds: list[Any], t0: int, t_pre: int, code: str, detail: str) -> Result:
        outs, infer_ns = pipe.timed_infer(feeds)
        return self._finish_local(pipe, outs, infer_ns, t0, t_pre, code, detail)

    def _finish_local(
        self, pipe: Pipeline, outs: list[Any], infer_ns: int, t0: int, t_pre: int, code: str, detail: str
    ) -> Result:
        t_post = perf_counter_ns()
        outputs, top = pipe.postprocess(outs)
        times = StageTimes(t_pre - t0, infer_ns, perf_counter_ns() - t_post)
        self._record_local(times)
        if times.total_ns >= self.policy.soft_budget_ms * 1e6:
            self.metrics.count("soft_budget_misses")
            detail += f"; missed the soft budget ({times.total_ns / 1e6:.3f} ms)"
        return self._result(outputs, top, times, "local", code, detail)

    def _remote(
        self, pipe: Pipeline, feeds: list[Any], t0: int, t_pre: int, deadline_ns: int, code: str, detail: str
    ) -> Result:
        if self.client is None:
            raise PolicyError(f"fallback policy mode {self.policy.mode!r} has no remote endpoint")
        outputs = self.client.infer(self._named(feeds), deadline_ns, code)
        return self._finish_remote(pipe, outputs, t0, t_pre, code, detail)

    def _finish_remote(
        self, pipe: Pipeline, outputs: dict[str, Any], t0: int, t_pre: int, code: str, detail: str
    ) -> Result:
        t_post = perf_counter_ns()
        outs = [outputs[t.name] for t in pipe.artifact.outputs]
        post_outputs, top = pipe.postprocess(outs)
        times = StageTimes(t_pre - t0, t_post - t_pre, perf_counter_ns() - t_post)
        self.metrics.latency("remote", times.infer_ns)
        return self._result(post_outputs, top, times, "remote", code, detail)

    # --- helpers -------------------------------------------------------------------------

    def _named(self, feeds: list[Any]) -> dict[str, Any]:
        return {t.name: f for t, f in zip(self.pipes[0][1].artifact.inputs, feeds)}

    def _remote_blocked(self, deadline_ns: int) -> str | None:
        """Why the remote may not be tried for this call, or None."""
        if self.client is None:
            return "no remote endpoint"
        why = self.client.unavailable()
        if why is not None:
            return why
        left_ns = deadline_ns - perf_counter_ns()
        need_ns = self.client.expected_ns() + self.policy.min_remote_headroom_ms * 1e6
        if left_ns < need_ns:
            return f"{left_ns / 1e6:.3f} ms left < remote p95 + headroom ({need_ns / 1e6:.3f} ms)"
        return None

    def _record_local(self, times: StageTimes) -> None:
        self.local.add(times.total_ns)
        self.metrics.latency("local", times.total_ns)

    def warm_up(self, x: Any, runs: int = 1) -> None:
        """Run locally ``runs`` times (results dropped) so routing knows this device's latency."""
        for _ in range(runs):
            _, _, times = self.pipes[self.level][1](x)
            self._record_local(times)

    def _result(self, outputs: Any, top: Any, times: StageTimes, route: str, code: str, detail: str) -> Result:
        self.metrics.route(route, code)
        return Result(outputs, top, times, route, f"{code}: {detail}")
