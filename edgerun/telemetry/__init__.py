"""Runtime telemetry: the one call a long-running application adds.

    import edgerun
    from edgerun.telemetry import instrument

    rt = edgerun.load("digits@current", profile="raspberry-pi-5")
    tele = instrument(rt, prometheus_port=9464, event_log="/var/log/edgerun/events.jsonl")
    while True:
        rt.run(next_frame())          # unchanged: every run is counted
    # tele.close() detaches it and stops the exporters

``instrument`` attaches a Recorder (recorder.py) to ``Runtime.observers``: per inference it
files the stage latencies into histogram buckets, counts budget misses against the profile's
budgets (edgerun's defaults without a profile) and the fallback routes and reasons; errors are
counted by class. The exporters read its totals when asked: Prometheus on a local port
(127.0.0.1 unless ``prometheus_addr`` says otherwise) and/or a node-exporter textfile
(metrics.py, ``telemetry`` extra), OpenTelemetry over OTLP/HTTP (otel.py, ``otel`` extra).
``event_log`` configures the process's JSON-lines event log (events.py): a ``model-loaded``
event is written now, budget breaches and fallbacks as they happen, and the update store's
update/rollback events go to the same file. Metric names and event kinds: docs/telemetry.md.

Nothing here is imported by ``import edgerun``; prometheus_client and OpenTelemetry are imported
only when their exporter is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from edgerun.telemetry import events
from edgerun.telemetry.recorder import DEFAULT_BUCKETS_S, Recorder, audit_tee

__all__ = ["Telemetry", "instrument"]


@dataclass
class Telemetry:
    """What ``instrument`` attached; ``close()`` (or ``with``) detaches it and stops its exporters."""

    runtime: Any
    recorder: Recorder
    info: dict[str, str]
    registry: Any = None  # prometheus_client CollectorRegistry, when Prometheus output was asked for
    server: Any = None  # metrics.PrometheusServer
    textfile: Any = None  # metrics.TextfileWriter
    otel: Any = None  # otel.OtelExporter
    event_log: events.EventLog | None = None
    _untee: Any = field(default=None, repr=False)  # puts the fallback client's own audit sink back
    _closed: bool = field(default=False, repr=False)

    @property
    def url(self) -> str | None:
        """The scrape URL, when serving on a port."""
        return self.server.url if self.server is not None else None

    def render(self) -> str:
        """The Prometheus text exposition, as a scrape would get it now (needs the telemetry extra)."""
        from edgerun.telemetry.metrics import _prometheus, make_registry

        if self.registry is None:  # no port or textfile was asked for: a registry just for this
            self.registry = make_registry(self.recorder, self.info, None)
        return _prometheus().generate_latest(self.registry).decode("utf-8")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.recorder in self.runtime.observers:
            self.runtime.observers.remove(self.recorder)
        if self._untee is not None:
            self._untee()
        for part in (self.server, self.textfile, self.otel):
            if part is not None:
                part.close()
        if self.event_log is not None:
            events.disable(self.event_log)

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def instrument(
    runtime: Any,
    *,
    prometheus_port: int | None = None,
    prometheus_addr: str = "127.0.0.1",
    textfile: str | os.PathLike[str] | None = None,
    textfile_interval_s: float = 15.0,
    otlp_endpoint: str | None = None,
    otlp_interval_s: float = 15.0,
    event_log: str | os.PathLike[str] | None = None,
    event_log_max_bytes: int = events.DEFAULT_MAX_BYTES,
    event_log_backups: int = events.DEFAULT_BACKUPS,
    thermal: bool = True,
    buckets_s: tuple[float, ...] = DEFAULT_BUCKETS_S,
    breach_interval_s: float = 60.0,
) -> Telemetry:
    """Attach telemetry to ``runtime`` (an edgerun Runtime) and start the exporters asked for.

    ``prometheus_port``: serve the exposition on ``prometheus_addr:port`` (0 picks a free port;
    ``Telemetry.url`` says which). ``textfile``: write it to this ``.prom`` file every
    ``textfile_interval_s`` seconds. ``otlp_endpoint``: push OpenTelemetry metrics to this
    OTLP/HTTP URL every ``otlp_interval_s`` seconds. ``event_log``: JSON-lines event file, rotated
    at ``event_log_max_bytes`` with ``event_log_backups`` old files. ``thermal``: export the
    thermal/throttle state read at scrape time. ``breach_interval_s``: least seconds between two
    budget-breach events of one kind. With none of the outputs, the totals are still kept
    (``Telemetry.recorder.snapshot()``).
    """
    budget = runtime.profile.budget if runtime.profile is not None else _default_budget()
    li = runtime.load_info
    version = str(getattr(li, "model_version", "") or "")  # the update store sets it; "" for a plain file
    info = {
        "name": runtime.artifact.name,
        "version": version,
        "sha256": runtime.artifact.sha256,
        "engine": f"{li.engine} {li.engine_version}",
        "profile": runtime.profile.name if runtime.profile is not None else "",
    }
    recorder = Recorder(
        budget.soft_ms,
        budget.hard_ms,
        buckets_s=buckets_s,
        model=info["name"],
        version=version,
        breach_interval_s=breach_interval_s,
    )
    tele = Telemetry(runtime, recorder, info)
    try:
        _start(
            tele,
            prometheus_port,
            prometheus_addr,
            textfile,
            textfile_interval_s,
            otlp_endpoint,
            otlp_interval_s,
            thermal,
        )
        if event_log is not None:
            tele.event_log = events.configure(event_log, max_bytes=event_log_max_bytes, backups=event_log_backups)
    except BaseException:
        tele.close()
        raise
    events.log_event(
        "model-loaded",
        name=info["name"],
        version=version,
        sha256=info["sha256"],
        engine=info["engine"],
        profile=info["profile"],
        load_ms=round((li.artifact_ns + li.session_ns) / 1e6, 3),
    )
    tele._untee = _tee_fallback_audit(runtime, info["name"], version)
    runtime.observers.append(recorder)
    return tele


def _start(
    tele: Telemetry,
    port: int | None,
    addr: str,
    textfile: Any,
    textfile_interval_s: float,
    otlp_endpoint: str | None,
    otlp_interval_s: float,
    thermal: bool,
) -> None:
    if port is not None or textfile is not None:
        from edgerun.telemetry.metrics import PrometheusServer, TextfileWriter, ThermalCache, make_registry

        tele.registry = make_registry(tele.recorder, tele.info, ThermalCache() if thermal else None)
        if port is not None:
            tele.server = PrometheusServer(tele.registry, port, addr)
        if textfile is not None:
            tele.textfile = TextfileWriter(tele.registry, os.fspath(textfile), textfile_interval_s)
    if otlp_endpoint is not None:
        from edgerun.telemetry.otel import OtelExporter

        tele.otel = OtelExporter(tele.recorder, tele.info, otlp_endpoint, interval_s=otlp_interval_s, thermal=thermal)


def _default_budget() -> Any:
    from edgerun.budget import Budget

    return Budget()


def _tee_fallback_audit(runtime: Any, model: str, version: str) -> Any:
    """Under a fallback policy with a remote, log a ``fallback-used`` event per remote attempt (with its
    request id) beside the policy's own audit sink. Only when an event log is configured. Returns
    the function that undoes it (None when nothing was done)."""
    client = getattr(runtime.fallback, "client", None)
    if client is None or events.current() is None:
        return None
    own = client.policy
    teed = replace(own, audit_sink=audit_tee(own.audit_sink, model, version))
    client.policy = teed

    def untee() -> None:
        if client.policy is teed:
            client.policy = own

    return untee
