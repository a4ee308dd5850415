"""Real parts for the fallback tests: models, a silent listener, a refused port, a TLS CA, a clock.

No test functions here; the fallback test modules import these helpers.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO = Path(__file__).resolve().parent.parent / "edgerun" / "demo"
FP32 = DEMO / "digits-fp32.onnx"
INT8 = DEMO / "digits-int8.onnx"
FP32_NAME = "digits-cnn-fp32-onnx"

# Time in these tests: a call whose subject is not time gets a deadline (and a connect
# timeout) that no loaded machine comes near, and a passing test never waits for it: the
# call returns when it is answered. (The policy's 50 ms connect timeout can pass before a
# busy event loop sees a loopback connect complete, which would turn into a retry.)
LONG_MS = 30_000
# A call with a deadline of tens of ms that returned within FAR_NS of it obeyed the deadline:
# a silent or held server would keep it for ever, and no scheduling delay comes near 10 s.
FAR_NS = 10_000_000_000
# The client sets its timers in float seconds: it may fire a hair (far under 1 ms) before an
# integer-ns deadline, so "not before the deadline" is checked to this tolerance.
ROUNDING_NS = 1_000_000

# numpy dtype name -> ONNX TensorProto type, for every Open Inference Protocol datatype
ONNX_TYPES = {
    "bool": 9,
    "uint8": 2,
    "uint16": 4,
    "uint32": 12,
    "uint64": 13,
    "int8": 3,
    "int16": 5,
    "int32": 6,
    "int64": 7,
    "float16": 10,
    "float32": 1,
    "float64": 11,
    "str": 8,
}


def identity_model(path: Path) -> Path:
    """One Identity per datatype: inputs x_<dtype> [2,3] -> outputs y_<dtype>."""
    from onnx import helper, save

    ins, outs, nodes = [], [], []
    for name, onnx_type in ONNX_TYPES.items():
        ins.append(helper.make_tensor_value_info(f"x_{name}", onnx_type, [2, 3]))
        outs.append(helper.make_tensor_value_info(f"y_{name}", onnx_type, [2, 3]))
        nodes.append(helper.make_node("Identity", [f"x_{name}"], [f"y_{name}"]))
    model = helper.make_model(helper.make_graph(nodes, "ids", ins, outs), opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def identity_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for name in ONNX_TYPES:
        if name == "str":
            feeds[f"x_{name}"] = np.array([["a", "bé", ""], ["ü", "x" * 70, "z"]], dtype=object)
        elif name == "bool":
            feeds[f"x_{name}"] = rng.integers(0, 2, (2, 3)).astype(bool)
        elif name.startswith("float"):
            feeds[f"x_{name}"] = rng.standard_normal((2, 3)).astype(name)
        else:
            info = np.iinfo(name)
            feeds[f"x_{name}"] = np.array([[info.min, info.max, 0], [1, info.max - 1, info.min + 1]], dtype=name)
    return feeds


def flaky_model(path: Path) -> Path:
    """The demo model's signature (input [1,1,64,64] -> logits [1,10]) that fails on real images.

    It gathers row int(max(x) * 1e6) of a 1000-row table: an all-zero input works, a real
    digit makes onnxruntime raise "indices element out of data bounds" at run time.
    """
    from onnx import TensorProto, helper, numpy_helper, save

    table = numpy_helper.from_array(np.linspace(0, 1, 10000, dtype=np.float32).reshape(1000, 10), "table")
    scale = numpy_helper.from_array(np.array(1e6, dtype=np.float32), "scale")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "shape1")
    nodes = [
        helper.make_node("ReduceMax", ["input"], ["mx"], keepdims=0),
        helper.make_node("Mul", ["mx", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["idx0"], to=TensorProto.INT64),
        helper.make_node("Reshape", ["idx0", "shape1"], ["idx"]),
        helper.make_node("Gather", ["table", "idx"], ["logits"], axis=0),
    ]
    graph = helper.make_graph(
        nodes,
        "flaky",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [table, scale, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


@dataclass
class Listener:
    url: str
    accepted: int = 0


@contextmanager
def silent_listener() -> Iterator[Listener]:
    """A real TCP socket that accepts connections and never answers (counts the accepts)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.05)
    listener = Listener(f"http://127.0.0.1:{sock.getsockname()[1]}")
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            listener.accepted += 1
            held.append(conn)  # keep it open, say nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.setblocking(False)
        while True:  # count the connections still queued: a busy accept thread may lag the clients
            try:
                conn, _ = sock.accept()
            except OSError:
                break
            listener.accepted += 1
            held.append(conn)
        for conn in held:
            conn.close()
        sock.close()


def refused_url() -> str:
    """A loopback port with nothing listening (connections are refused at once)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def make_tls(tmp: Path, server_names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> TLSFiles:
    """A throwaway CA, a server certificate for ``server_names`` and a client certificate, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool, sans=(), usage=None):  # noqa: ANN001, ANN202
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            alt = [x509.IPAddress(ipaddress.ip_address(s)) if s[0].isdigit() else x509.DNSName(s) for s in sans]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem_key(key) -> bytes:  # noqa: ANN001
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    ca_key, srv_key, cli_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert("edgerun test CA", ca_key, "edgerun test CA", ca_key, True)
    srv = cert("server", srv_key, "edgerun test CA", ca_key, False, server_names, ExtendedKeyUsageOID.SERVER_AUTH)
    cli = cert("device-1", cli_key, "edgerun test CA", ca_key, False, (), ExtendedKeyUsageOID.CLIENT_AUTH)
    files = TLSFiles(tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem", tmp / "client.pem", tmp / "client.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(pem_key(srv_key))
    files.client_cert.write_bytes(cli.public_bytes(serialization.Encoding.PEM))
    files.client_key.write_bytes(pem_key(cli_key))
    return files


def deadline_in(ms: float) -> int:
    return time.perf_counter_ns() + int(ms * 1e6)


class ManualClock:
    """A monotonic clock (ns) that moves only when the test moves it: breaker timing without sleeps."""

    def __init__(self, start_ns: int = 10**12) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, ns: int) -> None:
        self.now_ns += ns


def chain_model(path: Path, matmuls: int, width: int = 64) -> Path:
    """input [1,1,64,64] -> ``matmuls`` chained width x width MatMuls -> logits [1,10]: as slow as you like.

    The same signature as the demo model, so the demo can stand in for it on a server.
    A width over 64 tiles the input up (a multiple of 64): more work per node, few nodes.
    """
    from onnx import TensorProto, helper, numpy_helper, save

    weight = numpy_helper.from_array((np.eye(width, dtype=np.float32) * 0.999), "w")
    shape = numpy_helper.from_array(np.array([64, 64], dtype=np.int64), "hw")
    repeats = numpy_helper.from_array(np.array([width // 64, width // 64], dtype=np.int64), "repeats")
    out_shape = numpy_helper.from_array(np.array([1, 10], dtype=np.int64), "out_shape")
    starts = numpy_helper.from_array(np.array([0, 0], dtype=np.int64), "starts")
    ends = numpy_helper.from_array(np.array([1, 10], dtype=np.int64), "ends")
    nodes = [helper.make_node("Reshape", ["input", "hw"], ["square"])]
    nodes.append(helper.make_node("Tile", ["square", "repeats"], ["h0"]))
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "w"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Slice", [f"h{matmuls}", "starts", "ends"], ["cut"]))
    nodes.append(helper.make_node("Reshape", ["cut", "out_shape"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [weight, shape, repeats, out_shape, starts, ends],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path
