"""edgerun.telemetry.otel: the real OTLP/HTTP exporter pushing to a receiver on loopback.

No OpenTelemetry Collector is pip-installable (it is a Go binary), so the receiver is a stdlib HTTP server
that decodes each POST with the protocol's own generated classes (opentelemetry-proto's
ExportMetricsServiceRequest): the bytes on the wire are the SDK's, parsed by the specification's schema,
not by anything of ours.
"""

from __future__ import annotations

import gzip
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

import edgerun
from edgerun.demo import DEMO_DIR
from edgerun.errors import InputError, UsageError

try:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
except ImportError:  # pragma: no cover - the otel extra is in `test`
    if os.environ.get("CI"):
        raise
    pytest.skip("the otel extra (opentelemetry-sdk, OTLP/HTTP exporter) is not installed", allow_module_level=True)

from edgerun.telemetry import instrument
from edgerun.telemetry.otel import otlp_metrics_url

DEMO = DEMO_DIR / "digits-fp32.onnx"


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((self.path, self.headers.get("Content-Type"), request))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _metrics(received: list) -> dict[str, Any]:
    return {
        m.name: m
        for _, _, request in received
        for rm in request.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }


def test_an_otlp_export_carries_the_stage_histograms_errors_and_model(receiver):
    rt = edgerun.load(DEMO)
    from edgerun.bench.inputs import sample_inputs

    xs = sample_inputs(rt.artifact, seed=0)[0][:7]
    url = f"http://127.0.0.1:{receiver.server_port}"
    tele = instrument(rt, otlp_endpoint=url, otlp_interval_s=3600, thermal=False)  # exported at close only
    results = [rt.run(x) for x in xs]
    with pytest.raises(InputError):
        rt.run(np.zeros((1, 1), dtype=np.float32))
    tele.close()  # shutdown: one last export
    assert receiver.received, "nothing was exported"
    path, content_type, _ = receiver.received[-1]
    assert path == "/v1/metrics" and content_type == "application/x-protobuf"
    metrics = _metrics(receiver.received)
    hist = metrics["edgerun.inference.latency"]
    assert hist.unit == "s"
    points = {p.attributes[0].value.string_value: p for p in hist.histogram.data_points}
    assert set(points) == {"pre", "infer", "post", "total"}
    for i, stage in enumerate(("pre", "infer", "post")):
        assert points[stage].count == len(results)
        assert points[stage].sum == pytest.approx(sum(r.times[i] for r in results) / 1e9, rel=1e-9)
        assert list(points[stage].explicit_bounds) == pytest.approx([b / 1e9 for b in tele.recorder.bounds_ns])
        assert points[stage].min == pytest.approx(min(r.times[i] for r in results) / 1e9)
        assert points[stage].max == pytest.approx(max(r.times[i] for r in results) / 1e9)
    assert rt.observers == []  # the exporter reads the recorder's totals; it is not an observer
    errors = metrics["edgerun.errors"].sum.data_points
    assert [(p.attributes[0].value.string_value, p.as_int) for p in errors] == [("InputError", 1)]
    (info,) = metrics["edgerun.model.info"].gauge.data_points
    labels = {a.key: a.value.string_value for a in info.attributes}
    assert labels["name"] == rt.artifact.name and labels["sha256"] == rt.artifact.sha256 and "version" in labels


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/metrics"),
        ("https://otel.example:4318/", "https://otel.example:4318/v1/metrics"),
        ("https://otel.example/custom/path", "https://otel.example/custom/path"),
    ],
)
def test_the_standard_path_is_added_to_a_bare_endpoint(endpoint: str, expected: str):
    assert otlp_metrics_url(endpoint) == expected


@pytest.mark.parametrize("endpoint", ["ftp://h:4318", "127.0.0.1:4318", "https://user:pw@h:4318", "http://h/x?a=1"])
def test_a_bad_endpoint_is_one_clear_error(endpoint: str):
    with pytest.raises(UsageError, match="OTLP endpoint"):
        otlp_metrics_url(endpoint)


def test_exports_repeat_every_interval_while_running(receiver):
    from waiting import wait_for

    rt = edgerun.load(DEMO)
    tele = instrument(rt, otlp_endpoint=f"http://127.0.0.1:{receiver.server_port}", otlp_interval_s=0.1)
    try:
        wait_for(lambda: len(receiver.received) >= 2, "two periodic exports")
    finally:
        tele.close()
    assert tele.otel.last_result.name == "SUCCESS"


def test_thermal_gauges_come_from_the_state_read():
    from pathlib import Path

    from edgerun.measure.thermal import read_thermal
    from edgerun.telemetry.otel import build_metrics
    from edgerun.telemetry.recorder import Recorder

    root = Path(__file__).resolve().parent / "fixtures" / "thermal" / "rpi5"
    state = read_thermal(root, run=lambda argv: "throttled=0x50000\n" if argv[0] == "vcgencmd" else None)
    metrics = {m.name: m for m in build_metrics(Recorder(100.0, 10.0), {"name": "m"}, state)}
    temps = {p.attributes["zone"]: p.value for p in metrics["edgerun.thermal.zone.temperature"].data.data_points}
    assert temps == state.temps_c() and temps
    (flag,) = metrics["edgerun.throttle.state"].data.data_points
    assert flag.value == 0 and flag.attributes == {"raw": "0x50000"}  # bits 16-19: occurred, not now
    assert "edgerun.inference.latency" not in metrics  # no inference yet: no empty histogram point
