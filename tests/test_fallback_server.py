"""The reference server's request boundary, over real HTTP on loopback: every bad request is a clean JSON error.

A raw client (httpx2) sends what no well-behaved client would; each answer must be the
documented status with an ``{"error": ...}`` body, and the server must not have crashed
on the way (no 500, no traceback logged by uvicorn, ``stats.internal_errors`` still 0).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import zlib

import httpx2
import numpy as np
import pytest
from test_fallback_helpers import FP32, FP32_NAME

from edgerun.serve.request import MAX_JSON_DEPTH, json_depth
from edgerun.serve.server import ReferenceServer, serve_in_thread

INFER = f"/v2/models/{FP32_NAME}/infer"
X = np.random.default_rng(3).random((1, 1, 64, 64), dtype=np.float32)
GOOD = {
    "id": "r1",
    "inputs": [{"name": "input", "shape": [1, 1, 64, 64], "datatype": "FP32", "data": X.ravel().tolist()}],
}


@pytest.fixture(scope="module")
def served():
    srv = ReferenceServer([FP32], threads=1)
    with serve_in_thread(srv) as url, httpx2.Client(base_url=url, timeout=60) as http:
        yield srv, http


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server(served):
    """The served app and a client; afterwards, proof that nothing crashed in the server."""
    srv, http = served
    # uvicorn logs "Exception in ASGI application" with the traceback on this logger. Attached
    # here, after uvicorn configured its logging (which drops handlers on its loggers).
    log = logging.getLogger("uvicorn.error")
    records = _Records()
    log.addHandler(records)
    before = srv.stats.internal_errors
    try:
        yield srv, http
    finally:
        log.removeHandler(records)
    assert srv.stats.internal_errors == before
    assert not [r for r in records.records if r.exc_info], [r.getMessage() for r in records.records]


def local_logits(x: np.ndarray) -> np.ndarray:
    return ReferenceServer([FP32], threads=1).models[FP32_NAME].runtime.pipeline.session.run([x])[0]


def with_(**changes):
    return {**GOOD, **changes}


def input_(**changes):
    return [{**GOOD["inputs"][0], **changes}]


def deep(levels: int) -> list:
    nested: list = [0.0]
    for _ in range(levels):
        nested = [nested]
    return nested


def error_of(response: httpx2.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return body["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (with_(parameters="x"), "parameters must be an object"),
        (with_(parameters={"binary_data_output": "yes"}), "must be true or false"),
        (with_(parameters={"nested": {"a": 1}}), "string, number or boolean"),
        (with_(outputs=[{"name": "logits", "parameters": []}]), "output 'logits': parameters must be an object"),
        (with_(outputs=[{"name": "logits", "parameters": {"binary_data": 1}}]), "must be true or false"),
        (with_(outputs="logits"), "'outputs' must be a list"),
        (with_(outputs=[{"name": "logits"}, {"name": "logits"}]), "duplicate output name 'logits'"),
        (with_(outputs=[{"name": "probs"}]), "requested outputs ['probs']"),
        (with_(outputs=[{"parameters": {}}]), "outputs[0] must be an object with a string 'name'"),
        (with_(id=7), "'id' must be a string"),
        (with_(inputs=GOOD["inputs"] * 2), "duplicate input name 'input'"),
        (with_(inputs={"input": 1}), "'inputs' must be a list"),
        (with_(inputs=[["input"]]), "inputs[0] must be an object"),
        (with_(inputs=input_(shape=[1, 1, 64, True])), "non-negative integers"),
        (with_(inputs=input_(shape="1x64")), "non-negative integers"),
        (with_(inputs=input_(shape=[1, 1, -64, -64])), "non-negative integers"),
        (with_(inputs=input_(datatype="FP8")), "datatype must be one of"),
        (with_(inputs=input_(datatype=["FP32"])), "datatype must be one of"),
        (with_(inputs=input_(parameters=["binary_data_size"])), "input 'input': parameters must be an object"),
        (with_(inputs=input_(parameters={"binary_data_size": 4})), "both 'data' and parameters.binary_data_size"),
        (with_(inputs=input_(data="0.0")), "data must be a list"),
        (with_(inputs=input_(data=deep(MAX_JSON_DEPTH))), "JSON nests"),
        (with_(inputs=input_(data=[[0.0] * 4096] * 2)), "needs 4096 elements"),
    ],
)
def test_malformed_requests_are_400_with_a_json_error(server, body, message):
    _, http = server
    assert message in error_of(http.post(INFER, content=json.dumps(body)), 400)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 10_000 + b"]" * 10_000,
        b'{"inputs": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
        b'{"inputs": [{"name": "input", "data": ' + b'[{"a": ' * 5_000 + b"1" + b"}]" * 5_000 + b"}]}",
        b"[" * 100_000,  # invalid too: it would still recurse before the parser found the missing end
    ],
)
def test_deep_json_is_refused_before_the_parser_recurses(server, body):
    _, http = server
    assert "JSON nests" in error_of(http.post(INFER, content=body), 400)


def test_brackets_in_strings_are_not_nesting(server):
    srv, http = server
    request_id = '[[[[{"\\\\' + "[" * 1000 + '\\"'
    answer = http.post(INFER, content=json.dumps(with_(id=request_id)))
    assert answer.status_code == 200 and answer.json()["id"] == request_id


def _random_json(rng: random.Random, depth: int):
    kind = rng.choice("lods" if depth < 12 else "s")
    if kind == "l":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if kind == "o":
        return {_random_text(rng): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return _random_text(rng) if kind == "s" else rng.random()


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice('[]{}"\\ab\n/') for _ in range(rng.randint(0, 8)))


def _depth(value) -> int:
    children = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else None
    return 0 if children is None else 1 + max(map(_depth, children), default=0)


def test_json_depth_is_exact_on_random_documents_full_of_brackets_quotes_and_backslashes():
    rng = random.Random(11)
    for _ in range(2000):
        doc = _random_json(rng, 0)
        assert json_depth(json.dumps(doc).encode()) == _depth(doc), json.dumps(doc)


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        ({"Inference-Header-Content-Length": "ten"}, json.dumps(GOOD), 400, "invalid literal"),
        ({}, b'{"inputs": [', 400, "not valid JSON"),
        ({"Content-Encoding": "br"}, json.dumps(GOOD), 415, "unsupported Content-Encoding 'br'"),
        ({"Content-Encoding": "gzip"}, json.dumps(GOOD).encode(), 400, "not valid gzip data"),
        ({"Content-Encoding": "gzip"}, gzip.compress(json.dumps(GOOD).encode())[:-12], 400, "truncated gzip"),
        ({"Content-Encoding": "gzip"}, gzip.compress(b"{}") + b"extra", 400, "after the end of the gzip"),
        ({"Content-Encoding": "deflate"}, gzip.compress(json.dumps(GOOD).encode()), 400, "not valid deflate"),
    ],
)
def test_bad_bodies_and_encodings(server, headers, body, status, message):
    _, http = server
    answer = http.post(INFER, content=body, headers=headers)
    assert message in error_of(answer, status)
    if status == 415:
        assert answer.headers["accept-encoding"] == "gzip, deflate"


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_requests_are_answered_like_plain_ones(server, encoding):
    _, http = server
    pack = gzip.compress if encoding == "gzip" else zlib.compress
    answer = http.post(INFER, content=pack(json.dumps(GOOD).encode()), headers={"Content-Encoding": encoding})
    assert answer.status_code == 200, answer.text
    (out,) = answer.json()["outputs"]
    np.testing.assert_array_equal(np.array(out["data"], np.float32).reshape(out["shape"]), local_logits(X))


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip stream of ``inflated_mib`` MiB of zeros, built in a few ms: one flushed 1 MiB block, repeated.

    Z_FULL_FLUSH ends each block on a byte boundary with a fresh dictionary, so the block's
    bytes can be repeated as they are. No trailer: the server must stop long before it.
    """
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + block * (inflated_mib - 1)


def test_a_gzip_bomb_hits_the_size_cap_after_decompression_without_inflating_it_all(server):
    srv, http = server
    bomb = gzip_bomb(2048)  # 2 GiB inflated, about 2 MB on the wire: under the cap before decompression
    assert len(bomb) < srv.max_request_bytes
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the server runs in this process
    answer = http.post(INFER, content=bomb, headers={"Content-Encoding": "gzip"})
    assert "after gzip decompression" in error_of(answer, 413)
    # Inflating it all would raise this process's peak by 2 GiB; the cap allows 16 MiB and a copy.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_kib < 512 * 1024


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", f"/v2/models/{FP32_NAME}/config", 404, f"GET /v2/models/{FP32_NAME}/config is not an endpoint"),
        ("POST", "/v2/models/x/unload", 404, "POST /v2/models/x/unload is not an endpoint"),
        ("GET", "/", 404, "not an endpoint"),
        ("GET", INFER, 405, "allowed: POST"),
        ("DELETE", "/v2", 405, "method not allowed: DELETE /v2"),
        ("PUT", "/v2/repository/index", 405, "allowed: POST"),
        ("GET", "/v2/models/nope", 404, "unknown model 'nope'"),
    ],
)
def test_unknown_paths_and_methods_answer_json(server, method, path, status, message):
    _, http = server
    answer = http.request(method, path)
    assert message in error_of(answer, status)
    if status == 405:
        assert answer.headers["allow"]


def test_edgerun_serve_prints_its_url_only_once_it_accepts_connections():
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgerun.cli", "serve", str(FP32), "--port", "0", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"at http://127\.0\.0\.1:(\d+)/v2/models/", line).group(1))
        # At once and only once: the line's promise is that this connect is not refused.
        with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
            conn.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert conn.makefile("rb").readline().startswith(b"HTTP/1.1 200")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
