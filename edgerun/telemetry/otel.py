"""OpenTelemetry metrics over OTLP/HTTP (the ``otel`` extra: opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-http).

The same series as the Prometheus page (docs/telemetry.md), in OpenTelemetry's naming, built
from ``Recorder.snapshot()`` at each export: a thread calls the SDK's own ``OTLPMetricExporter``
every ``interval_s`` with the SDK's data model (``MetricsData``: cumulative histograms and sums
since the recorder started, gauges), so nothing runs per inference. The first version recorded
each stage into an SDK ``Histogram`` from a Runtime observer (the OpenTelemetry API has no
asynchronous histogram); that cost 25 us per inference on the 2-core CI VM, eight percent of a
demo inference, against ~0 now (tools/bench_telemetry.py).

``endpoint`` is an OTLP/HTTP URL; a bare ``http://host:4318`` gets the standard ``/v1/metrics``
path. Only aggregates leave the device (latency buckets, counts, the model's name, version and
sha256, temperatures), never an input.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

from edgerun.errors import UsageError
from edgerun.telemetry.recorder import STAGES, Recorder

__all__ = ["OtelExporter", "otlp_metrics_url"]

EXTRA_HINT = 'OpenTelemetry export needs the otel extra: pip install "edgerun[otel]"'
SCOPE = "edgerun.telemetry"


def otlp_metrics_url(endpoint: str) -> str:
    """``endpoint`` checked (http or https, a host) with ``/v1/metrics`` added when it has no path."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"OTLP endpoint {endpoint!r}: expected an http(s) URL such as http://127.0.0.1:4318")
    if parts.username or parts.password or parts.query:
        raise UsageError(f"OTLP endpoint {endpoint!r}: no credentials or query in the URL (use headers)")
    return endpoint if parts.path not in ("", "/") else endpoint.rstrip("/") + "/v1/metrics"


class OtelExporter:
    """Exports a Recorder's totals every ``interval_s`` from a daemon thread, and once more at close."""

    def __init__(
        self,
        recorder: Recorder,
        info: dict[str, str],
        endpoint: str,
        *,
        interval_s: float = 15.0,
        thermal: bool = True,
        exporter: Any = None,
    ) -> None:
        if not 0.1 <= interval_s <= 86400:
            raise UsageError(f"OTLP export interval {interval_s} s: expected 0.1 .. 86400 s")
        url = otlp_metrics_url(endpoint)
        try:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.resources import Resource
        except ImportError as exc:
            raise UsageError(EXTRA_HINT) from exc
        self.recorder, self.info, self.interval_s = recorder, info, interval_s
        self.exporter = exporter if exporter is not None else OTLPMetricExporter(endpoint=url)
        self.resource = Resource.create({"service.name": "edgerun", "edgerun.model.name": info["name"]})
        self.thermal = None
        if thermal:
            from edgerun.telemetry.metrics import ThermalCache

            self.thermal = ThermalCache()
        self.last_result: Any = None  # the SDK's MetricExportResult of the last export
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgerun-otlp", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.export()

    def export(self) -> Any:
        """Send the totals now; returns the SDK's MetricExportResult (failures are the SDK's to log)."""
        from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        metrics = build_metrics(self.recorder, self.info, self.thermal.get() if self.thermal else None)
        scope = ScopeMetrics(InstrumentationScope(SCOPE), metrics, "")
        data = MetricsData([ResourceMetrics(self.resource, [scope], "")])
        self.last_result = self.exporter.export(data)
        return self.last_result

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 10)
        self.export()
        self.exporter.shutdown()


def build_metrics(recorder: Recorder, info: dict[str, str], thermal: Any) -> list[Any]:
    """The SDK Metric objects for one export: cumulative since the recorder started."""
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        NumberDataPoint,
        Sum,
    )

    snap = recorder.snapshot()
    start, now = snap.start_unix_ns, time.time_ns()
    cumulative = AggregationTemporality.CUMULATIVE
    bounds_s = [b / 1e9 for b in snap.bounds_ns]

    def point(value: float, attributes: dict[str, Any]) -> Any:
        return NumberDataPoint(attributes, start, now, value)

    def counter(name: str, unit: str, points: list[Any]) -> Any:
        return Metric(name, None, unit, Sum(points, cumulative, is_monotonic=True))

    latency = []
    for stage in STAGES:
        low, high = snap.min_ns[stage], snap.max_ns[stage]
        if low is None or high is None:
            continue  # no inference yet
        buckets, sum_s = list(snap.buckets[stage]), snap.sums_ns[stage] / 1e9
        attributes = {"stage": stage}
        latency.append(
            HistogramDataPoint(attributes, start, now, sum(buckets), sum_s, buckets, bounds_s, low / 1e9, high / 1e9)
        )
    limits = {"soft": recorder.soft_ns, "hard": recorder.hard_ns}
    misses = [point(n, {"budget": k}) for k, n in snap.misses.items() if limits[k] is not None]
    routes = [point(n, {"route": r, "reason": c}) for (r, c), n in snap.routes.items()]
    errors = [point(n, {"type": t}) for t, n in snap.errors.items()]
    metrics = [
        Metric("edgerun.model.info", "1, with the model's attributes", "1", Gauge([point(1, dict(info))])),
        Metric(
            "edgerun.inference.latency", "Latency of each stage of Runtime.run", "s", Histogram(latency, cumulative)
        ),
        counter("edgerun.budget.misses", "{inference}", misses),
        counter("edgerun.fallback.routes", "{result}", routes),
        counter("edgerun.errors", "{call}", errors),
    ]
    if thermal is not None:
        temps = [point(c, {"zone": z}) for z, c in thermal.temps_c().items()]
        metrics.append(Metric("edgerun.thermal.zone.temperature", None, "Cel", Gauge(temps)))
        if thermal.throttled is not None:
            flag = point(1 if thermal.throttled.now else 0, {"raw": f"{thermal.throttled.raw:#x}"})
            metrics.append(Metric("edgerun.throttle.state", None, "1", Gauge([flag])))
    return [m for m in metrics if m.data.data_points]
