"""``edgerun serve``: registered through ``edgerun.cli.COMMAND_MODULES``.

Nothing heavy at import: the server module (starlette, uvicorn, the engines) is
imported inside the command.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from edgerun.cli.types import cpu_threads, existing_file, host, port, whole_int
from edgerun.exitcodes import EXIT_FAIL, EXIT_PASS, EXIT_USAGE

# uvicorn's own names (uvicorn.config.LOG_LEVELS), written out: uvicorn is imported only when serving
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def register(sub: Any) -> None:
    s = sub.add_parser(
        "serve",
        help="serve artifacts over the Open Inference Protocol (cloud-fallback stand-in)",
        description="Serve edgerun artifacts over the Open Inference Protocol (KServe V2 REST): JSON and "
        "binary tensors, bearer-token auth, TLS. The development stand-in for Triton / KServe / MLServer / "
        "OVMS and the target of `edgerun run --fallback-url`. Needs the serve extra: pip install 'edgerun[serve]'.",
    )
    s.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="model file, manifest or bundle folder")
    s.add_argument(
        "--host", type=host, default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    s.add_argument("--port", type=port, default=8000, help="TCP port 1-65535 (default 8000; 0 picks a free one)")
    s.add_argument("--token", help="require this bearer token (visible in `ps`: prefer --token-file)")
    s.add_argument("--token-file", type=existing_file, help="read the required bearer token from this file")
    s.add_argument("--tls-cert", type=existing_file, help="PEM certificate chain: serve https")
    s.add_argument("--tls-key", type=existing_file, help="PEM private key for --tls-cert")
    s.add_argument(
        "--tls-client-ca", type=existing_file, help="PEM CA bundle: require client certificates signed by it (mTLS)"
    )
    s.add_argument(
        "--max-request-bytes",
        type=whole_int(1, 2**40),
        default=16 * 1024 * 1024,
        help="refuse larger requests with 413 (16 MiB)",
    )
    s.add_argument("--threads", type=cpu_threads, help="intra-op threads per model (capped at the usable CPUs)")
    s.add_argument("--log-level", default="warning", choices=LOG_LEVELS, help="uvicorn log level (default warning)")
    s.set_defaults(func=cmd_serve)


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        return Path(args.token_file).read_text(encoding="utf-8").strip()
    return args.token or os.environ.get("EDGERUN_SERVE_TOKEN")


def cmd_serve(args: argparse.Namespace) -> int:
    if bool(args.tls_cert) != bool(args.tls_key):
        print("edgerun: error: --tls-cert and --tls-key go together", file=sys.stderr)
        return EXIT_USAGE
    import importlib.util

    # The server module imports starlette and uvicorn lazily, inside the functions that build the app:
    # look for them here so a missing extra is one line, not a traceback once a model is loaded.
    missing = [m for m in ("starlette", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"edgerun: error: edgerun serve needs the serve extra (missing: {', '.join(missing)}): "
            "pip install 'edgerun[serve]'",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from edgerun.serve.server import ReferenceServer, bind, uvicorn_server

    try:  # before the models load: a bad host or a taken port costs nothing and is one line
        sock = bind(args.host, args.port)
    except OSError as exc:  # socket.gaierror included (a host that does not resolve)
        print(
            f"edgerun: error: cannot listen on {args.host} port {args.port}: {exc.strerror or exc}; "
            "give an address of this machine (--host) and a free port (--port, 0 for any)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    try:
        server = ReferenceServer(args.artifacts, _token(args), args.max_request_bytes, args.threads)
    except BaseException:
        sock.close()
        raise
    tls = None
    if args.tls_cert:
        tls = {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key, "ssl_ca_certs": args.tls_client_ca}
    scheme = "https" if tls else "http"
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"{scheme}://{host}:{sock.getsockname()[1]}"

    def announce() -> None:
        # Called by uvicorn once the socket accepts: a script that waits for this line and
        # connects is never refused (printed before the run, it could be).
        for name in server.models:
            print(f"serving {name} at {base}/v2/models/{name}", flush=True)

    if tls is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print("edgerun: warning: plain http on a non-loopback address; clients will refuse it", file=sys.stderr)
    uvicorn_server(server.app, tls, args.log_level, on_started=announce).run(sockets=[sock])
    return EXIT_PASS
