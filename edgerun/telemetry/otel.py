"""OpenTelemetry metrics over OTLP/HTTP (the ``otel`` extra: opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-http).

The same series as the Prometheus page (docs/telemetry.md), in OpenTelemetry's naming: the
counters and gauges are *observable* instruments whose callbacks read ``Recorder.snapshot()``
at each export, so they cost nothing per inference. The stage latencies are the exception:
the OpenTelemetry API has no asynchronous histogram, so this exporter is also a Runtime
observer that records each stage into a synchronous Histogram (bucket bounds = the
recorder's). That is the cost tools/bench_telemetry.py measures in its ``otel`` column.

A ``PeriodicExportingMetricReader`` pushes every ``interval_s`` to ``endpoint`` (an OTLP/HTTP
URL; a bare ``http://host:4318`` gets the standard ``/v1/metrics`` path). Tests pass their own
``reader`` (the SDK's InMemoryMetricReader, or a periodic reader to a loopback receiver).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from edgerun.errors import UsageError
from edgerun.telemetry.recorder import STAGES, Recorder

__all__ = ["OtelExporter", "otlp_metrics_url"]

EXTRA_HINT = 'OpenTelemetry export needs the otel extra: pip install "edgerun[otel]"'


def otlp_metrics_url(endpoint: str) -> str:
    """``endpoint`` checked (http or https, a host) with ``/v1/metrics`` added when it has no path."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"OTLP endpoint {endpoint!r}: expected an http(s) URL such as http://127.0.0.1:4318")
    if parts.username or parts.password or parts.query:
        raise UsageError(f"OTLP endpoint {endpoint!r}: no credentials or query in the URL (use headers)")
    return endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + "/v1/metrics"


class OtelExporter:
    """A MeterProvider of its own (not the global one) with edgerun's instruments on it."""

    def __init__(
        self,
        recorder: Recorder,
        info: dict[str, str],
        endpoint: str | None,
        *,
        interval_s: float = 15.0,
        thermal: bool = True,
        reader: Any = None,
    ) -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
            from opentelemetry.sdk.resources import Resource
        except ImportError as exc:
            raise UsageError(EXTRA_HINT) from exc
        if reader is None:
            reader = _periodic_reader(otlp_metrics_url(str(endpoint)), interval_s)
        self.recorder, self.info = recorder, info
        bounds_s = [b / 1e9 for b in recorder.bounds_ns]
        view = View(
            instrument_name="edgerun.inference.latency",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=bounds_s),
        )
        resource = Resource.create({"service.name": "edgerun", "edgerun.model.name": info["name"]})
        self.provider = MeterProvider(metric_readers=[reader], resource=resource, views=[view])
        meter = self.provider.get_meter("edgerun.telemetry")
        self._record = meter.create_histogram(
            "edgerun.inference.latency", unit="s", description="Latency of each stage of Runtime.run"
        ).record
        self._attrs = [{"stage": stage} for stage in STAGES]
        self._observables(meter, thermal)

    def __call__(self, result: Any, error: Exception | None) -> None:
        """Runtime.observers signature: record the four stage latencies (errors are the recorder's)."""
        if result is None:
            return
        pre, infer, post = result.times
        rec, a = self._record, self._attrs
        rec(pre / 1e9, a[0])
        rec(infer / 1e9, a[1])
        rec(post / 1e9, a[2])
        rec((pre + infer + post) / 1e9, a[3])

    def _observables(self, meter: Any, thermal: bool) -> None:
        from opentelemetry.metrics import Observation

        rec = self.recorder

        def misses(_: Any) -> Iterable[Any]:
            snap = rec.snapshot()
            limits = {"soft": rec.soft_ns, "hard": rec.hard_ns}
            return [Observation(n, {"budget": k}) for k, n in snap.misses.items() if limits[k] is not None]

        def routes(_: Any) -> Iterable[Any]:
            return [Observation(n, {"route": r, "reason": c}) for (r, c), n in rec.snapshot().routes.items()]

        def errors(_: Any) -> Iterable[Any]:
            return [Observation(n, {"type": t}) for t, n in rec.snapshot().errors.items()]

        def model(_: Any) -> Iterable[Any]:
            return [Observation(1, dict(self.info))]

        meter.create_observable_counter("edgerun.budget.misses", [misses], unit="{inference}")
        meter.create_observable_counter("edgerun.fallback.routes", [routes], unit="{result}")
        meter.create_observable_counter("edgerun.errors", [errors], unit="{call}")
        meter.create_observable_gauge("edgerun.model.info", [model], description="1, with the model's labels")
        if thermal:
            from edgerun.telemetry.metrics import ThermalCache

            cache = ThermalCache()

            def temps(_: Any) -> Iterable[Any]:
                return [Observation(c, {"zone": z}) for z, c in cache.get().temps_c().items()]

            def throttled(_: Any) -> Iterable[Any]:
                bits = cache.get().throttled
                return [] if bits is None else [Observation(1 if bits.now else 0, {"raw": f"{bits.raw:#x}"})]

            meter.create_observable_gauge("edgerun.thermal.zone.temperature", [temps], unit="Cel")
            meter.create_observable_gauge("edgerun.throttle.state", [throttled], unit="1")

    def close(self) -> None:
        self.provider.shutdown()


def _periodic_reader(url: str, interval_s: float) -> Any:
    if not 0.1 <= interval_s <= 86400:
        raise UsageError(f"OTLP export interval {interval_s} s: expected 0.1 .. 86400 s")
    try:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    except ImportError as exc:
        raise UsageError(EXTRA_HINT) from exc
    return PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=url), export_interval_millis=interval_s * 1000)
