"""Prometheus exposition of a Recorder: a private registry, a local HTTP port or a node-exporter textfile.

Needs the ``telemetry`` extra (``prometheus-client``). The collector builds every metric family
from ``Recorder.snapshot()`` when it is scraped (prometheus_client's custom-collector pattern,
github.com/prometheus/client_python README "Custom Collectors"), so an inference never calls
into prometheus_client. Names, labels and units: docs/telemetry.md. Thermal readings
(edgerun.measure.thermal) are taken at scrape time, at most once per ``thermal_interval_s``.

The registry is private (not prometheus_client's global REGISTRY): two instrumented runtimes in
one process keep their own series, and nothing else in the process leaks into the page. The HTTP
server binds 127.0.0.1 unless asked otherwise: the page names the model and the device state.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from edgerun.errors import UsageError
from edgerun.telemetry.recorder import STAGES, Recorder

__all__ = ["PrometheusServer", "TextfileWriter", "ThermalCache", "make_registry"]

EXTRA_HINT = 'Prometheus telemetry needs the telemetry extra: pip install "edgerun[telemetry]"'


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise UsageError(EXTRA_HINT) from exc
    return prometheus_client


class ThermalCache:
    """edgerun.measure.thermal.read_thermal(), re-read at most once per ``interval_s`` (a scrape storm
    must not fork vcgencmd / dumpsys per request)."""

    def __init__(self, interval_s: float = 5.0, read: Callable[[], Any] | None = None) -> None:
        if read is None:
            from edgerun.measure.thermal import read_thermal

            read = read_thermal
        self._read = read
        self.interval_s = interval_s
        self._state: Any = None
        self._at = -float("inf")
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            now = time.monotonic()
            if now - self._at >= self.interval_s:
                self._state, self._at = self._read(), now
            return self._state


class _Collector:
    def __init__(self, recorder: Recorder, info: dict[str, str], thermal: ThermalCache | None) -> None:
        self.recorder, self.info, self.thermal = recorder, info, thermal

    def collect(self) -> Iterator[Any]:
        from prometheus_client import core
        from prometheus_client.utils import floatToGoString

        snap = self.recorder.snapshot()
        yield core.InfoMetricFamily(
            "edgerun_model", "The model this runtime serves (version from the store)", self.info
        )
        hist = core.HistogramMetricFamily(
            "edgerun_inference_latency_seconds",
            "Latency of each stage of Runtime.run (total = pre + infer + post; infer is the whole call when remote)",
            labels=["stage"],
        )
        les = [floatToGoString(b / 1e9) for b in snap.bounds_ns] + ["+Inf"]
        for stage in STAGES:
            cumulative, running = [], 0
            for le, n in zip(les, snap.buckets[stage]):
                running += n
                cumulative.append((le, running))
            hist.add_metric([stage], cumulative, snap.sums_ns[stage] / 1e9)
        yield hist
        yield from self._budgets(core, snap)
        routes = core.CounterMetricFamily(
            "edgerun_fallback_routes", "Results by route and reason code (only under a fallback policy)",
            labels=["route", "reason"],
        )  # fmt: skip
        for (route, reason), n in sorted(snap.routes.items()):
            routes.add_metric([route, reason], n)
        yield routes
        errors = core.CounterMetricFamily(
            "edgerun_errors", "Runtime.run calls that raised, by error class", labels=["type"]
        )
        for name, n in sorted(snap.errors.items()):
            errors.add_metric([name], n)
        yield errors
        if self.thermal is not None:
            yield from _thermal_families(core, self.thermal.get())

    def _budgets(self, core: Any, snap: Any) -> Iterator[Any]:
        limits = {"soft": self.recorder.soft_ns, "hard": self.recorder.hard_ns}
        budget = core.GaugeMetricFamily(
            "edgerun_budget_seconds", "The latency budgets misses are counted against", labels=["budget"]
        )
        misses = core.CounterMetricFamily(
            "edgerun_budget_misses", "Inferences whose total latency was at or over the budget", labels=["budget"]
        )
        for kind, limit in limits.items():
            if limit is not None:
                budget.add_metric([kind], limit / 1e9)
                misses.add_metric([kind], snap.misses[kind])
        yield budget
        yield misses


def _thermal_families(core: Any, state: Any) -> Iterator[Any]:
    """Gauges from an edgerun.measure.thermal.ThermalState; sources this device lacks give no series."""
    zones = core.GaugeMetricFamily(
        "edgerun_thermal_zone_celsius", "Thermal zone temperature (sysfs, HAL)", labels=["zone"]
    )
    for zone, c in sorted(state.temps_c().items()):
        zones.add_metric([zone], c)
    yield zones
    freq = core.GaugeMetricFamily("edgerun_cpu_frequency_hertz", "CPU clock (cpufreq scaling_cur_freq)", labels=["cpu"])
    for cpu, khz in sorted(state.cpu_freq_khz.items()):
        freq.add_metric([str(cpu)], khz * 1e3)
    yield freq
    throttle = core.GaugeMetricFamily(
        "edgerun_throttle_state",
        "1 while the condition holds now, 0 otherwise (Raspberry Pi vcgencmd get_throttled bits 0-3)",
        labels=["condition"],
    )
    if state.throttled is not None:
        from edgerun.measure.thermal import THROTTLE_BITS

        now = set(state.throttled.now)
        for name in THROTTLE_BITS:
            throttle.add_metric([name], 1.0 if name in now else 0.0)
    yield throttle
    if state.android_status is not None:
        yield core.GaugeMetricFamily(
            "edgerun_android_thermal_status",
            "Android thermal status 0 (none) .. 6 (shutdown)",
            value=state.android_status,
        )


def make_registry(recorder: Recorder, info: dict[str, str], thermal: ThermalCache | None) -> Any:
    """A private CollectorRegistry holding this recorder's collector."""
    prom = _prometheus()
    registry = prom.CollectorRegistry(auto_describe=False)
    registry.register(_Collector(recorder, info, thermal))
    return registry


class PrometheusServer:
    """prometheus_client.start_http_server on ``addr:port`` (port 0: a free one; ``port`` says which)."""

    def __init__(self, registry: Any, port: int, addr: str = "127.0.0.1") -> None:
        if not 0 <= port <= 65535:
            raise UsageError(f"metrics port {port}: expected 0 (any free port) .. 65535")
        try:
            self._server, self._thread = _prometheus().start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            raise UsageError(f"metrics port {addr}:{port}: cannot listen ({exc.strerror}); choose another") from exc
        self.addr, self.port = addr, self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.addr}]" if ":" in self.addr else self.addr
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class TextfileWriter:
    """write_to_textfile every ``interval_s`` from a daemon thread, and once more at close.

    prometheus_client writes a temporary file and renames it over ``path``, so node-exporter's
    textfile collector never reads half a file. The file name must end in ``.prom``."""

    def __init__(self, registry: Any, path: str, interval_s: float = 15.0) -> None:
        if not str(path).endswith(".prom"):
            raise UsageError(
                f"metrics textfile {path}: expected a name ending in .prom (node-exporter reads only those)"
            )
        if not 0.1 <= interval_s <= 86400:
            raise UsageError(f"metrics textfile interval {interval_s} s: expected 0.1 .. 86400 s")
        self.registry, self.path, self.interval_s = registry, str(path), interval_s
        self.write()  # a path that cannot be written is known now, not in a thread
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgerun-textfile", daemon=True)
        self._thread.start()

    def write(self) -> None:
        try:
            _prometheus().write_to_textfile(self.path, self.registry)
        except OSError as exc:
            raise UsageError(f"metrics textfile {self.path}: cannot be written ({exc.strerror})") from exc

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(UsageError):  # a full disk now and then must not end the thread
                self.write()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.write()
