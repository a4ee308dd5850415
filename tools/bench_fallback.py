"""What the fallback client adds over a bare HTTP request, and what the reference server sustains.

    python tools/bench_fallback.py [--requests 1000] [--seconds 3] [--concurrency 8] [--binary always|never]
                                   [--huge-mb 50] [--huge-deadline-ms 2000] [--loop auto|asyncio|uvloop]
                                   [--http auto|h11|httptools]
    python tools/bench_fallback.py --mlserver PATH [--rounds 7] [--seconds 3] [--concurrency 8]

Starts the reference server (``ReferenceServer`` + ``uvicorn_server``, what ``edgerun serve``
runs; ``--loop``/``--http`` pick uvicorn's event loop and HTTP parser, default: uvicorn's
choice, uvloop and httptools when installed) on the bundled FP32 demo model in a
subprocess on loopback, with one onnxruntime thread, then:

1. overhead: the same inference request, alternately as a bare ``httpx2.Client``
   POST of pre-encoded bytes (nothing else) and as ``RemoteClient.infer`` (encode,
   request id, breaker, bulkhead, deadline, event-loop hand-off, decode, validation
   against the local signature, audit record), ``--requests`` of each, interleaved so
   that drift hits both alike. Prints median and p99 of each and of the difference.
2. throughput: ``--concurrency`` async connections posting pre-encoded requests for
   ``--seconds``; prints requests per second and the latency the server gave them.
3. huge reply: a reference server whose every answer is ``--huge-mb`` MB of JSON
   (``Faults.huge_reply_bytes``, streamed, no Content-Length) in a process of its own;
   five ``RemoteClient.infer`` calls with a ``--huge-deadline-ms`` deadline. Prints
   how each ended and when, relative to the deadline, the client's peak Python
   allocations (tracemalloc) against a normal call's and the reply bound, the
   process's RSS growth, and that a normal call still goes out afterwards.

Side by side (``--mlserver PATH``, or EDGERUN_MLSERVER set), instead of the above: a Seldon
MLServer (tools/mlserver_launch.py, same model, one thread) beside the reference server;
``--rounds`` rounds of edgerun JSON, MLServer JSON and edgerun binary in rotating order.
Prints req/s, p50/p99 and server CPU per request, and edgerun over MLServer JSON as the
median of per-round ratios with the spread (docs/fallback.md, "Speed").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgerun.artifact import load_artifact  # noqa: E402
from edgerun.fallback import FallbackPolicy, exchange, oip  # noqa: E402
from edgerun.fallback.client import RemoteClient  # noqa: E402

FP32 = ROOT / "edgerun" / "demo" / "digits-fp32.onnx"
MODEL = "digits-cnn-fp32-onnx"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(np.ceil(q / 100 * len(ordered))) - 1)]


SERVER = """
import sys
from edgerun.serve.server import ReferenceServer, bind, uvicorn_server
srv = ReferenceServer([sys.argv[1]], threads=1)
sock = bind("127.0.0.1", 0)
announce = lambda: print(f"at http://127.0.0.1:{sock.getsockname()[1]}/", flush=True)
uvicorn_server(srv.app, on_started=announce, loop=sys.argv[2], http=sys.argv[3]).run(sockets=[sock])
"""


def start_server(loop: str = "auto", http: str = "auto") -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(FP32), loop, http], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return proc, match.group(1)


def wait_ready(url: str) -> None:
    import httpx2

    for _ in range(200):
        try:
            if httpx2.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            time.sleep(0.05)
    raise SystemExit("server never became ready")


def request_bytes(x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    outputs = [{"name": "logits", "parameters": {"binary_data": True}}] if binary else None
    head = {"id": "bench", **({"outputs": outputs} if outputs else {})}
    body, header_length = oip.encode_body(head, {"input": x}, "inputs", binary)
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if header_length is not None:
        headers[oip.HEADER_LENGTH] = str(header_length)
    return body, headers


def overhead(url: str, x: np.ndarray, n: int, binary: bool) -> dict[str, list[float]]:
    import httpx2

    art = load_artifact(ROOT / "edgerun" / "demo" / "digits-int8.onnx")
    policy = FallbackPolicy(
        mode="remote-only",
        endpoint=url,
        model_name=MODEL,
        binary_data="always" if binary else "never",
        audit_sink=lambda record: None,
        deadline_ms=5000,
    )
    body, headers = request_bytes(x, binary)
    infer_url = f"{url}/v2/models/{MODEL}/infer"
    times: dict[str, list[float]] = {"bare": [], "client": []}
    with httpx2.Client(trust_env=False) as bare, RemoteClient(policy, art.inputs, art.outputs) as client:
        for _ in range(20):  # warm both connections and the server's session
            bare.post(infer_url, content=body, headers=headers).read()
            client.infer({"input": x}, time.perf_counter_ns() + int(5e9), "bench")
        for i in range(2 * n):
            t0 = time.perf_counter_ns()
            if i % 2 == 0:
                response = bare.post(infer_url, content=body, headers=headers)
                response.read()
                assert response.status_code == 200
            else:
                client.infer({"input": x}, time.perf_counter_ns() + int(5e9), "bench")
            times["bare" if i % 2 == 0 else "client"].append((time.perf_counter_ns() - t0) / 1e6)
    return times


async def throughput(
    url: str, x: np.ndarray, seconds: float, concurrency: int, binary: bool, client: str = "raw"
) -> tuple[int, list[float]]:
    """``concurrency`` keep-alive connections posting one pre-encoded request for ``seconds``: (count, latencies ms).

    "raw": HTTP/1.1 on asyncio streams (~50 us of CPU a request), so the load generator takes little of
    the CPUs the server runs on; "httpx2": an httpx2.AsyncClient (~460 us a request on the 2-core VM).
    """
    body, headers = request_bytes(x, binary)
    path = f"/v2/models/{MODEL}/infer"
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    if client == "httpx2":
        import httpx2

        limits = httpx2.Limits(max_connections=concurrency)
        async with httpx2.AsyncClient(limits=limits, trust_env=False, timeout=10) as http:

            async def worker() -> None:
                while time.perf_counter() < end:
                    t0 = time.perf_counter_ns()
                    response = await http.post(url + path, content=body, headers=headers)
                    assert response.status_code == 200, response.text[:200]
                    latencies.append((time.perf_counter_ns() - t0) / 1e6)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(latencies), latencies
    host, port = url.removeprefix("http://").rsplit(":", 1)
    fields = {"Host": f"{host}:{port}", "Content-Length": str(len(body)), **headers}
    request = f"POST {path} HTTP/1.1\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in fields.items())
    request += b"\r\n" + body

    async def raw_worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))  # TCP_NODELAY is asyncio's default
        try:
            while time.perf_counter() < end:
                t0 = time.perf_counter_ns()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _CONTENT_LENGTH.search(head)
                # Both servers answer with a Content-Length; anything else is not what this measures.
                assert head.startswith(b"HTTP/1.1 200 ") and length, head[:200]
                await reader.readexactly(int(length.group(1)))
                latencies.append((time.perf_counter_ns() - t0) / 1e6)
        finally:
            writer.close()

    await asyncio.gather(*(raw_worker() for _ in range(concurrency)))
    return len(latencies), latencies


_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)\r\n")


FAULT_SERVER = """
import sys
from edgerun.serve.server import Faults, ReferenceServer, serve_in_thread
srv = ReferenceServer([sys.argv[1]], threads=1)
with serve_in_thread(srv) as url:
    print(url, flush=True)
    for line in sys.stdin:
        srv.faults = Faults(huge_reply_bytes=int(line))
        print("ok", flush=True)
"""


def huge_reply(x: np.ndarray, size: int, deadline_ms: float, binary: bool) -> None:
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-c", FAULT_SERVER, str(FP32)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # it logs every write to a connection the client dropped
        text=True,
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None
    url = proc.stdout.readline().strip()

    def fault(n: int) -> None:
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        proc.stdout.readline()

    art = load_artifact(ROOT / "edgerun" / "demo" / "digits-int8.onnx")
    policy = FallbackPolicy(
        mode="remote-only",
        endpoint=url,
        model_name=MODEL,
        binary_data="always" if binary else "never",
        audit_sink=lambda record: None,
        deadline_ms=max(deadline_ms, 100.0),
        max_attempts=1,
        breaker_failure_threshold=10,  # five protocol errors would open the circuit before the last call
    )
    me = psutil.Process()
    bound = exchange.reply_bound(art.outputs, binary)

    def call(client: RemoteClient, ms: float) -> tuple[str, float, int]:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter_ns()
        try:
            client.infer({"input": x}, t0 + int(ms * 1e6), "bench")
            outcome = "ok"
        except Exception as exc:
            outcome = type(exc).__name__
        took = (time.perf_counter_ns() - t0) / 1e6
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        return outcome, took, peak

    try:
        with RemoteClient(policy, art.inputs, art.outputs) as client:
            fault(0)
            call(client, 5000)
            _, normal_ms, normal_peak = call(client, 5000)
            fault(size)
            rss0 = me.memory_info().rss
            print(
                f"huge reply: {size / 2**20:g} MB answers, deadline {deadline_ms:g} ms, reply bound {bound} bytes "
                f"({'binary' if binary else 'JSON'}); normal call {normal_ms:.1f} ms, peak {normal_peak / 1e3:.0f} kB"
            )
            for i in range(5):
                outcome, took, peak = call(client, deadline_ms)
                print(
                    f"  call {i + 1}: {outcome:<16} after {took:8.1f} ms ({took - deadline_ms:+8.1f} ms vs deadline)  "
                    f"peak {peak / 1e3:8.0f} kB ({(peak - normal_peak) / bound:+.2f} x bound over a normal call)"
                )
            rss = me.memory_info().rss - rss0
            fault(0)
            outcome, took, _ = call(client, 5000)
            print(
                f"  RSS growth over the five: {rss / 2**20:.1f} MiB; the next normal call: {outcome} in {took:.1f} ms"
            )
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def cpu_seconds(proc: Any) -> float:
    """User + system CPU seconds of a psutil.Process and its children."""
    total = sum(proc.cpu_times()[:2])
    for child in proc.children(recursive=True):
        with contextlib.suppress(Exception):  # a child gone between listing and reading
            total += sum(child.cpu_times()[:2])
    return total


def side_by_side(mlserver_exe: str, x: np.ndarray, rounds: int, seconds: float, concurrency: int, client: str) -> None:
    """edgerun JSON, MLServer JSON and edgerun binary, ``rounds`` times in rotating order (module docstring)."""
    import tempfile

    import psutil

    sys.path.insert(0, str(ROOT / "tools"))
    import mlserver_launch

    slots = [("edgerun JSON", False, False), ("MLServer JSON", True, False), ("edgerun binary", False, True)]
    rates: dict[str, list[float]] = {name: [] for name, _, _ in slots}
    counts = dict.fromkeys(rates, 0)
    cpu = dict.fromkeys(rates, 0.0)  # the server process's CPU seconds (user + system, children too)
    lat: dict[str, list[float]] = {name: [] for name in rates}
    proc, url = start_server()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-mlserver-") as tmp,
            mlserver_launch.mlserver(FP32, Path(tmp), MODEL, [mlserver_exe], threads=1) as (ml_url, ml_proc),
        ):
            wait_ready(url)
            procs = {False: psutil.Process(proc.pid), True: psutil.Process(ml_proc.pid)}
            print(
                f"side by side on loopback, model {MODEL} (1 onnxruntime thread each): edgerun {url}, "
                f"MLServer {ml_url}; {rounds} rounds x {seconds:g} s per server, {concurrency} connections, "
                f"{client} client"
            )
            for _, is_ml, binary in slots:  # warm each: connections, sessions, first-call paths
                asyncio.run(throughput(ml_url if is_ml else url, x, 0.5, concurrency, binary, client))
            for r in range(rounds):
                order = slots[r % 3 :] + slots[: r % 3]  # rotate, so no server always runs first or last
                for name, is_ml, binary in order:
                    cpu[name] -= cpu_seconds(procs[is_ml])
                    n, latencies = asyncio.run(
                        throughput(ml_url if is_ml else url, x, seconds, concurrency, binary, client)
                    )
                    cpu[name] += cpu_seconds(procs[is_ml])
                    rates[name].append(n / seconds)
                    counts[name] += n
                    lat[name].extend(latencies)
                ml = rates["MLServer JSON"][-1]
                print(
                    f"  round {r + 1}: " + ", ".join(f"{name} {rates[name][-1]:6.1f}" for name, _, _ in slots)
                    + f" req/s; JSON ratio {rates['edgerun JSON'][-1] / ml:.2f}, "
                    f"binary/MLServer-JSON {rates['edgerun binary'][-1] / ml:.2f}"
                )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print("per server, all rounds pooled:")
    for name in rates:
        print(
            f"  {name:<15} {statistics.median(rates[name]):7.1f} req/s (median of rounds)  n={counts[name]:6d}  "
            f"latency p50 {pct(lat[name], 50):6.2f} ms  p99 {pct(lat[name], 99):6.2f} ms  "
            f"server CPU {cpu[name] / counts[name] * 1e6:5.0f} us/request"
        )
    print(f"ratios over MLServer JSON (median of {rounds} rounds [min, max]):")
    binary_ml = "n/a (MLServer has no binary tensor extension)"
    for name in ("edgerun JSON", "edgerun binary"):
        ratio = [a / b for a, b in zip(rates[name], rates["MLServer JSON"])]
        print(
            f"  {name:<15} {statistics.median(ratio):5.2f}x [{min(ratio):.2f}, {max(ratio):.2f}]  "
            f"(p99 {pct(lat[name], 99):.2f} vs {pct(lat['MLServer JSON'], 99):.2f} ms)"
        )
    print(f"  MLServer binary {binary_ml}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000, help="requests per side for the overhead (default 1000)")
    ap.add_argument("--seconds", type=float, default=3.0, help="throughput run length (default 3 s)")
    ap.add_argument("--concurrency", type=int, default=8, help="throughput connections (default 8)")
    ap.add_argument("--binary", choices=("always", "never"), default="always", help="tensor encoding")
    ap.add_argument("--huge-mb", type=float, default=50.0, help="huge-reply size in MB (default 50; 0 skips it)")
    ap.add_argument("--huge-deadline-ms", type=float, default=2000.0, help="huge-reply call deadline (default 2000)")
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="uvicorn event loop")
    ap.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto", help="uvicorn HTTP parser")
    ap.add_argument(
        "--mlserver",
        default=os.environ.get("EDGERUN_MLSERVER"),
        help="mlserver executable: run side by side against it instead (default: EDGERUN_MLSERVER)",
    )
    ap.add_argument("--rounds", type=int, default=7, help="side-by-side rounds (default 7)")
    ap.add_argument(
        "--client", choices=("raw", "httpx2"), default="raw", help="throughput load generator (default raw)"
    )
    args = ap.parse_args()
    binary = args.binary == "always"
    x = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
    if args.mlserver:
        side_by_side(args.mlserver, x, args.rounds, args.seconds, args.concurrency, args.client)
        return
    proc, url = start_server(args.loop, args.http)
    try:
        wait_ready(url)
        times = overhead(url, x, args.requests, binary)
        diff = [c - b for b, c in zip(times["bare"], times["client"])]
        print(f"loopback {url}, model {MODEL}, {'binary' if binary else 'JSON'} tensors, n={args.requests} each")
        for name, values in (("bare httpx2 POST", times["bare"]), ("RemoteClient.infer", times["client"])):
            print(f"  {name:<20} median {statistics.median(values):7.3f} ms   p99 {pct(values, 99):7.3f} ms")
        overhead_p99 = pct(times["client"], 99) - pct(times["bare"], 99)
        print(
            f"  {'client overhead':<20} median {statistics.median(diff):7.3f} ms   "
            f"p99 {overhead_p99:7.3f} ms  (median of paired differences; difference of p99s)"
        )
        count, lat = asyncio.run(throughput(url, x, args.seconds, args.concurrency, binary, args.client))
        print(
            f"server throughput     {count / args.seconds:7.1f} req/s with {args.concurrency} connections "
            f"({args.client} client) for {args.seconds:g} s "
            f"(latency median {statistics.median(lat):.2f} ms, p99 {pct(lat, 99):.2f} ms)"
        )
        if args.huge_mb > 0:
            huge_reply(x, int(args.huge_mb * 2**20), args.huge_deadline_ms, binary=False)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
