"""``edgerun serve``: a reference Open Inference Protocol server for edgerun artifacts.

The development stand-in for Triton / KServe / MLServer / OVMS, and the target of
the fallback tests. Starlette + uvicorn (the ``serve`` extra). It serves the
*model* (the engine session: inputs and outputs as the model file has them), not
the manifest's pre/post-processing, exactly as a serving engine hosting the same
ONNX or TFLite file would; the client pre- and post-processes on the device.

Endpoints (OIP REST): ``GET v2/health/live``, ``GET v2/health/ready``, ``GET v2``,
``GET v2/models/{m}[/versions/{v}]``, ``GET .../ready``, ``POST .../infer``, and
Triton's ``POST v2/repository/index`` so a client can find the one model served.
JSON and binary tensors both ways, gzip/deflate request bodies; ``{"error": ...}``
bodies with 400 (bad request: checked against the OIP schema at the boundary, in
``edgerun.serve.request``), 401 (token), 404 (unknown model or path), 405 (method), 413
(too large, before or after decompression), 415 (other Content-Encoding), 500 (the
engine failed); bearer-token auth on everything but health; TLS and mTLS through
uvicorn. Requests run concurrently; inference runs in worker threads.

Speed: JSON through orjson (``oip``), uvloop and httptools when installed, inference
handed to the loop's default executor; ``tools/bench_fallback.py --mlserver`` measures
it against Seldon MLServer (docs/fallback.md, "Speed").

``faults`` is a test hook (``edgerun.serve.hooks``) set from Python (never from a request): delay, a hold
(requests wait at the server until the test releases them), status, and corrupt
answers (wrong shape, dtype, name or id, bad JSON, wrong binary header length).
``stats`` counts requests and the most in flight at once, and keeps the last
requests' ids, input names and body hashes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgerun.errors import EdgerunError
from edgerun.fallback import oip
from edgerun.serve.hooks import Faults, Hold, ServerStats
from edgerun.serve.request import HTTPError as _HTTPError
from edgerun.serve.request import parse_infer, read_body

__all__ = ["Faults", "Hold", "ReferenceServer", "ServerStats", "serve_in_thread"]

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Model:
    name: str
    version: str
    platform: str
    runtime: Any  # edgerun.runtime.Runtime: its session runs the model

    def metadata(self) -> dict[str, Any]:
        def spec(t: Any) -> dict[str, Any]:
            return {
                "name": t.name,
                "datatype": oip.datatype_of(t.dtype),
                "shape": [-1 if d is None else d for d in t.shape],
            }

        art = self.runtime.artifact
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [spec(t) for t in art.inputs],
            "outputs": [spec(t) for t in art.outputs],
        }


class ReferenceServer:
    """Loads artifacts and builds the ASGI app (``self.app``)."""

    def __init__(
        self,
        artifacts: Sequence[str | Path],
        token: str | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        threads: int | None = None,
    ) -> None:
        from edgerun import __version__
        from edgerun.runtime import load

        self.version = __version__
        self.models: dict[str, _Model] = {}
        for path in artifacts:
            rt = load(path, threads=threads)
            platform = "onnxruntime_onnx" if rt.artifact.format == "onnx" else "litert_tflite"
            self.models[rt.artifact.name] = _Model(rt.artifact.name, "1", platform, rt)
        self.token = token
        self.max_request_bytes = max_request_bytes
        self.faults = Faults()
        self.stats = ServerStats()
        self.app = self._build_app()

    # --- app -------------------------------------------------------------------------------

    def _build_app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        m, v = "/v2/models/{model}", "/v2/models/{model}/versions/{version}"
        # Infer first: Starlette tries routes in order, and no two of these patterns match one path.
        routes = [Route(prefix + "/infer", self._wrap(self._infer), methods=["POST"]) for prefix in (m, v)]
        routes += [
            Route("/v2/health/live", self._wrap(self._live, auth=False)),
            Route("/v2/health/ready", self._wrap(self._live, auth=False)),
            Route("/v2", self._wrap(self._server_meta)),
            Route("/v2/repository/index", self._wrap(self._index), methods=["POST"]),
        ]
        for prefix in (m, v):
            routes += [
                Route(prefix, self._wrap(self._model_meta)),
                Route(prefix + "/ready", self._wrap(self._model_ready)),
            ]

        async def no_route(request: Any, exc: HTTPException) -> Any:
            # Starlette's own 404 (no such path) and 405 (wrong method) answer in plain text; OIP
            # clients (tritonclient's get_model_config among them) decode {"error"} from every non-200.
            where = f"{request.method} {request.url.path}"
            if exc.status_code == 404:
                message = f"not found: {where} is not an endpoint of this server"
            elif exc.status_code == 405:
                message = f"method not allowed: {where}; allowed: {(exc.headers or {}).get('Allow', '')}"
            else:
                message = f"{exc.detail}: {where}"
            return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)

        async def crashed(request: Any, exc: Exception) -> Any:
            # A bug, not a bad request: counted, answered in the documented shape, and the traceback
            # still logged (Starlette re-raises after this answer).
            self.stats.internal_errors += 1
            return JSONResponse({"error": f"internal server error: {type(exc).__name__}"}, 500)

        handlers = {HTTPException: no_route, Exception: crashed}
        return Starlette(routes=routes, exception_handlers=handlers)  # type: ignore[arg-type]

    def _wrap(self, handler: Any, auth: bool = True) -> Any:
        from starlette.responses import JSONResponse

        async def endpoint(request: Any) -> Any:
            self.stats.requests += 1
            try:
                if auth:
                    self._authorize(request.headers.get("authorization"))
                return await handler(request)
            except _HTTPError as exc:
                return JSONResponse({"error": str(exc)}, exc.status, headers=exc.headers)

        return endpoint

    def _authorize(self, header: str | None) -> None:
        self.stats.auth_headers_seen.append("present" if header else "absent")
        if self.token is None:
            return
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.token.encode()):
            raise _HTTPError(401, "missing or invalid bearer token", {"WWW-Authenticate": 'Bearer realm="edgerun"'})

    def _model(self, request: Any) -> _Model:
        name, version = request.path_params["model"], request.path_params.get("version")
        model = self.models.get(name)
        if model is None or version not in (None, model.version):
            raise _HTTPError(404, f"unknown model {name!r} version {version!r}; served: {sorted(self.models)}")
        return model

    async def _live(self, request: Any) -> Any:
        from starlette.responses import Response

        return Response(status_code=200)

    async def _server_meta(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(
            {"name": "edgerun", "version": self.version, "extensions": ["binary_tensor_data", "model_repository"]}
        )

    async def _index(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse([{"name": m.name, "version": m.version, "state": "READY"} for m in self.models.values()])

    async def _model_meta(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(self._model(request).metadata())

    async def _model_ready(self, request: Any) -> Any:
        from starlette.responses import Response

        self._model(request)
        return Response(status_code=200)

    # --- infer -----------------------------------------------------------------------------

    async def _infer(self, request: Any) -> Any:
        model = self._model(request)
        self.stats.infer_requests += 1
        self.stats.in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
        try:
            faults = self.faults
            if faults.hold is not None:
                await faults.hold.enter()
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            if faults.status is not None:
                extra = {} if faults.retry_after_s is None else {"Retry-After": f"{faults.retry_after_s:g}"}
                raise _HTTPError(faults.status, f"injected fault: status {faults.status}", extra)
            body = await read_body(request, self.max_request_bytes)
            self.stats.body_sha256.append(hashlib.sha256(body).hexdigest())
            head, feeds, binary_out = parse_infer(model, body, request.headers.get(oip.HEADER_LENGTH), self.stats)
            outputs = await _run(model, feeds)
            if faults.huge_reply_bytes:
                return _huge_reply(model, head.get("id"), faults.huge_reply_bytes)
            return _answer(model, head.get("id"), outputs, binary_out, faults.corrupt)
        finally:
            self.stats.in_flight -= 1


async def _run(model: _Model, feeds: list[Any]) -> dict[str, np.ndarray]:
    session = model.runtime.pipeline.session
    try:
        # A worker thread (onnxruntime releases the GIL), so the loop parses the next request meanwhile:
        # +30% binary throughput over running it inline on the 2-core machine. The loop's default
        # executor, not starlette's run_in_threadpool: anyio's limiter and cancel scope measured ~5%
        # more server CPU per request for nothing this call needs.
        outs = await asyncio.get_running_loop().run_in_executor(None, session.run, feeds)
    except EdgerunError as exc:
        raise _HTTPError(500, f"inference failed: {exc}") from exc
    return {t.name: np.asarray(o) for t, o in zip(session.outputs, outs)}


def _answer(model: _Model, request_id: Any, outputs: dict[str, np.ndarray], binary: bool, corrupt: str | None) -> Any:
    from starlette.responses import Response

    if corrupt == "shape":
        outputs = {k: v.reshape(1, *v.shape) for k, v in outputs.items()}
    elif corrupt == "dtype":
        outputs = {k: v.astype(np.float64) if v.dtype.kind == "f" else v.astype(np.int64) for k, v in outputs.items()}
    elif corrupt == "name":
        outputs = {f"{k}_renamed": v for k, v in outputs.items()}
    head: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request_id is not None:
        head["id"] = request_id
    if corrupt == "id":  # an answer to some other request (a proxy mixing up replies)
        head["id"] = f"not-{request_id}"
    body, header_length = oip.encode_body(head, outputs, "outputs", binary)
    headers = {}
    if header_length is not None:
        headers[oip.HEADER_LENGTH] = str(header_length + (3 if corrupt == "header-length" else 0))
    if corrupt == "json":
        body = b'{"model_name": "' + body[:20]
    media = "application/octet-stream" if binary else "application/json"
    return Response(body, 200, headers=headers, media_type=media)


def _huge_reply(model: _Model, request_id: Any, size: int) -> Any:
    """A well-formed OIP answer of ``size`` bytes (one output with far too many numbers), streamed in
    64 KiB pieces with no Content-Length, so only the client's reading can stop it."""
    from starlette.responses import StreamingResponse

    name = model.runtime.artifact.outputs[0].name
    head = json.dumps({"model_name": model.name, "id": request_id}, separators=(",", ":"))
    start = (head[:-1] + f',"outputs":[{{"name":"{name}","datatype":"FP32","shape":[1],"data":[').encode()
    end, piece = b"0]}]}", b"0," * 32768

    async def body() -> Any:
        yield start
        left = size - len(start) - len(end)
        while left > 0:
            yield piece[: min(left, len(piece))]
            left -= len(piece)
        yield end

    return StreamingResponse(body(), 200, media_type="application/json")


# --- running it ------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it
    # Nagle plus delayed ACKs add 40 ms to every keep-alive response on Linux.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def uvicorn_server(
    app: Any,
    tls: dict[str, Any] | None = None,
    log_level: str = "warning",
    on_started: Any = None,
    loop: str = "auto",
    http: str = "auto",
) -> Any:
    """A uvicorn server for ``app``; ``on_started()`` runs once its sockets accept connections.

    ``loop``/``http``: uvicorn's choices; "auto" takes uvloop and httptools when installed (the
    serve extra installs them where they have wheels), the stdlib loop and h11 otherwise.
    """
    import ssl

    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            # uvicorn listens at the end of startup (a lifespan hook runs before that): a caller
            # told "started" from here can connect at once and is never refused.
            await super().startup(sockets=sockets)
            if self.started and on_started is not None:
                on_started()

    tls = dict(tls or {})
    if tls.get("ssl_ca_certs"):
        tls["ssl_cert_reqs"] = ssl.CERT_REQUIRED  # mTLS: a client without a certificate is refused
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        loop=loop,
        http=http,
        **tls,
    )
    return Server(config)


@contextmanager
def serve_in_thread(
    server: ReferenceServer, host: str = "127.0.0.1", port: int = 0, tls: dict[str, Any] | None = None
) -> Iterator[str]:
    """Run the server on a thread for the ``with`` block; yields its base URL."""
    sock = bind(host, port)
    started = threading.Event()
    srv = uvicorn_server(server.app, tls, on_started=started.set)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, name="edgerun-serve", daemon=True)
    thread.start()
    t_end = time.monotonic() + 10
    # Woken by the start itself; the short wait only notices a thread that died in startup.
    while not started.wait(0.05) and thread.is_alive() and time.monotonic() < t_end:
        pass
    if not started.is_set():
        raise EdgerunError("the reference server did not start within 10 s")
    scheme = "https" if tls else "http"
    where = f"[{host}]" if ":" in host else host
    try:
        yield f"{scheme}://{where}:{sock.getsockname()[1]}"
    finally:
        if server.faults.hold is not None:
            server.faults.hold.release()  # a test that failed mid-hold must not stall the shutdown
        server.faults = Faults()
        srv.should_exit = True
        thread.join(timeout=5)
        sock.close()


def metadata_json(server: ReferenceServer) -> str:
    return json.dumps({name: m.metadata() for name, m in server.models.items()}, indent=1)
