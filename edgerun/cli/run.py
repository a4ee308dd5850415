"""``edgerun run``: one inference, registered through ``edgerun.cli.COMMAND_MODULES``.

Local by default; the cloud-fallback options (docs/fallback.md) build a FallbackPolicy for
edgerun.fallback. Nothing heavy (numpy, the engines, httpx) is imported at module level, and not
argparse either: ``cmd_run`` also runs from edgerun/cli/run_plain.py, which reads the plainest
command lines without it; ``register`` imports the option types (and so argparse) when called.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgerun.exitcodes import EXIT_PASS

if TYPE_CHECKING:
    import argparse

__all__ = ["register"]

_MS_MAX = 3_600_000.0  # a budget or deadline past an hour is a typo


def register(sub: argparse._SubParsersAction) -> None:
    from edgerun.cli.types import cpu_threads, name_or_path, nonneg_int, whole_int

    r = sub.add_parser(
        "run",
        help="one inference",
        description="Run one inference and print the top classes "
        "and stage times. Input: --input FILE.npy, else a bundled sample (or random data).",
    )
    r.add_argument("artifact", metavar="ARTIFACT")
    r.add_argument("--input", help=".npy file with one raw input")
    r.add_argument("--sample", type=nonneg_int, default=0, help="which bundled sample to use (default 0)")
    r.add_argument("--profile", type=name_or_path, help="device profile name or TOML path")
    r.add_argument("--threads", type=cpu_threads, help="intra-op threads (capped at the usable CPUs)")
    r.add_argument("--json", action="store_true", help="machine-readable output")
    r.add_argument(
        "--repeat", type=whole_int(1, 1_000_000), default=1, help="calls to make; the last one is printed (default 1)"
    )
    _add_fallback_options(r)
    _add_telemetry_options(r)
    r.set_defaults(func=cmd_run)


def _add_fallback_options(r: argparse.ArgumentParser) -> None:
    """`edgerun run` cloud-fallback options (docs/fallback.md). Without them nothing leaves the device."""
    from edgerun.cli.types import existing_file, finite_float, whole_int

    ms = finite_float(0, _MS_MAX, low_open=True)  # milliseconds: a budget or deadline
    g = r.add_argument_group("cloud fallback (off unless --mode asks for it; see docs/fallback.md)")
    g.add_argument("--fallback-url", metavar="URL", help="Open Inference Protocol endpoint (https; http for loopback)")
    g.add_argument(
        "--mode",
        choices=("local-only", "prefer-local", "prefer-remote", "remote-only"),
        help="where inferences may run (default local-only: nothing leaves the device)",
    )
    g.add_argument(
        "--fallback-config", metavar="TOML", type=existing_file, help="policy from a TOML file ([fallback] table)"
    )
    g.add_argument("--fallback-model", metavar="NAME", help="remote model name (default: the one the server serves)")
    g.add_argument("--fallback-version", metavar="V", help="remote model version")
    g.add_argument("--soft-ms", type=ms, help="soft budget: local p99 over it routes remote (default 100)")
    g.add_argument("--hard-ms", type=ms, help="hard budget: local only; a miss is an error or --variant")
    g.add_argument("--deadline-ms", type=ms, help="bound on the whole call (default max(250, soft))")
    g.add_argument(
        "--connect-timeout-ms",
        type=ms,
        help="TCP+TLS connect bound per attempt (default 50: a LAN or a near region; raise it on a cellular link)",
    )
    g.add_argument("--fallback-on", metavar="TRIGGERS", help="comma list: local-error,soft-budget-miss (default both)")
    g.add_argument(
        "--hedge-ms", type=finite_float(0, _MS_MAX), help="start the remote this long into a local run (default off)"
    )
    g.add_argument("--max-attempts", type=whole_int(1, 100), help="remote tries, retries included (default 2)")
    g.add_argument("--binary", choices=("auto", "always", "never"), help="binary tensors (default auto)")
    g.add_argument("--max-payload-bytes", type=whole_int(1, 2**40), help="refuse to send more (default 4 MiB)")
    g.add_argument("--allow-input", action="append", metavar="NAME", help="send only these model inputs")
    g.add_argument("--variant", action="append", metavar="ARTIFACT", help="smaller local artifact for hard misses")
    g.add_argument("--token-env", metavar="VAR", help="bearer token from this environment variable")
    g.add_argument(
        "--token-file", metavar="FILE", type=existing_file, help="bearer token from this file (read per call)"
    )
    g.add_argument(
        "--ca-bundle", metavar="PEM", type=existing_file, help="trust these CAs for the server's certificate"
    )
    g.add_argument("--client-cert", metavar="PEM", type=existing_file, help="client certificate for mTLS")
    g.add_argument("--client-key", metavar="PEM", type=existing_file, help="client key for mTLS")
    g.add_argument("--audit", metavar="FILE", help="append audit records to FILE (default '-': stderr)")
    g.add_argument(
        "--warmup", type=whole_int(0, 1_000_000), help="local runs before the call, to learn local latency (default 1)"
    )
    g.add_argument(
        "--probe-timeout-s",
        type=finite_float(0, 3600, low_open=True),
        default=2.0,
        help="startup question to the server (default 2 s)",
    )
    g.add_argument("--stats", action="store_true", help="print fallback metrics: routes, latencies, retries, breaker")
    g.add_argument("--stats-json", metavar="FILE", help="write fallback metrics as JSON ('-' for stdout)")


def _add_telemetry_options(r: argparse.ArgumentParser) -> None:
    """Runtime telemetry for the calls of this run (edgerun.telemetry, docs/telemetry.md), with --repeat."""
    from edgerun.cli.types import host, port

    g = r.add_argument_group("telemetry (off unless asked for; see docs/telemetry.md)")
    g.add_argument(
        "--metrics-port", type=port, metavar="PORT", help="serve Prometheus metrics on this port (0: any free one)"
    )
    g.add_argument(
        "--metrics-addr",
        type=host,
        metavar="ADDR",
        default="127.0.0.1",
        help="address to serve them on (default 127.0.0.1)",
    )
    g.add_argument(
        "--metrics-textfile",
        metavar="FILE.prom",
        help="write them to a node-exporter textfile (every 15 s and at the end)",
    )
    g.add_argument("--otlp-endpoint", metavar="URL", help="push OpenTelemetry metrics to this OTLP/HTTP endpoint")
    g.add_argument("--event-log", metavar="FILE", help="JSON-lines event log (model loaded, budget breaches, ...)")


MAX_INPUT_BYTES = 256 * 1024 * 1024  # one raw input; a bigger file is a wrong path, not a sensor frame


def _read_input(path: str) -> Any:
    """``--input FILE.npy``: one array, no pickles (numpy's own error would suggest allow_pickle)."""
    import numpy as np

    from edgerun.errors import InputError

    p = Path(path)
    if not p.is_file():
        what = "is a folder" if p.is_dir() else "does not exist" if not p.exists() else "is not a regular file"
        raise InputError(f"--input {path}: {what}; expected a .npy file holding one raw input (numpy.save)")
    size = p.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InputError(f"--input {path}: {size} bytes, more than the {MAX_INPUT_BYTES} a raw input may have")
    try:
        x = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(
            f"--input {path}: not a readable .npy array ({type(exc).__name__}); expected a file written by "
            "numpy.save of a numeric array (object arrays and pickles are refused)"
        ) from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise InputError(f"--input {path}: an .npz archive; expected a .npy file holding one array")
    return x


def cmd_run(args: argparse.Namespace) -> int:
    from edgerun.bench.inputs import sample_inputs  # not bench.runner: the loop and its settings cost start-up
    from edgerun.errors import InferenceError
    from edgerun.runtime import load

    policy = _fallback_policy(args)  # a PolicyError is a usage error, exit 2 (edgerun/exitcodes.py)
    given = _read_input(args.input) if args.input else None  # before the model loads: a typo costs nothing
    rt = load(args.artifact, args.profile, threads=args.threads, fallback=policy)
    tele = None
    try:
        tele = _instrument(rt, args)
        if given is not None:
            x, source = given, args.input
        else:
            inputs, source = sample_inputs(rt.artifact, seed=0)
            x = inputs[args.sample % len(inputs)]
        try:
            res = _run_with_fallback(rt, x, args) if policy is not None else _repeat(rt, x, args.repeat)
        except InferenceError as exc:
            if not source.startswith("random"):
                raise
            # an index, shape or token input can fail on values no real input has: say where they came from
            raise InferenceError(
                f"{exc} (the input was random data: the model has no bundled samples; give a real one "
                "with --input FILE.npy)"
            ) from exc
        _print_run(rt, res, source, args)
        if rt.fallback is not None:
            _print_stats(rt.fallback.metrics, args)
    finally:
        if tele is not None:
            tele.close()  # a last textfile write, the port closed
        rt.close()
    return EXIT_PASS


def _repeat(rt: Any, x: Any, n: int) -> Any:
    """``n`` calls, fewer when SIGTERM comes (a service manager stopping a long ``--repeat`` with
    telemetry): the last result is printed, the textfile written once more, the port closed.

    One plain local call (no telemetry, no fallback) has nothing to cut short or to write at the
    end: SIGTERM keeps its default there (the process ends), and ``signal`` is not imported, ~0.5 ms
    of every ``edgerun run``'s start-up (issue 13)."""
    if n == 1 and not rt.observers and rt.fallback is None:
        return rt.run(x)
    stop = threading.Event()
    with _sigterm_sets(stop):
        res = rt.run(x)
        for _ in range(n - 1):
            if stop.is_set():
                break
            res = rt.run(x)
    return res


@contextlib.contextmanager
def _sigterm_sets(stop: threading.Event) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    import signal

    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _instrument(rt: Any, args: argparse.Namespace) -> Any:
    """edgerun.telemetry.instrument(rt, ...) when a telemetry option was given; the scrape URL on stderr."""
    if args.metrics_port is None and not (args.metrics_textfile or args.otlp_endpoint or args.event_log):
        return None
    from edgerun.telemetry import instrument

    tele = instrument(
        rt,
        prometheus_port=args.metrics_port,
        prometheus_addr=args.metrics_addr,
        textfile=args.metrics_textfile,
        otlp_endpoint=args.otlp_endpoint,
        event_log=args.event_log,
    )
    if tele.url:
        print(f"edgerun: metrics at {tele.url}", file=sys.stderr, flush=True)
    return tele


def _print_run(rt: Any, res: Any, source: str, args: argparse.Namespace) -> None:
    import numpy as np

    report = {
        "input": source,
        "model_version": rt.load_info.model_version or None,  # set for a store reference, name@current
        "route": res.route,
        "top": [{"index": p.index, "label": p.label, "score": p.score} for p in res.top],
        "times_ns": {"pre": res.times.pre_ns, "infer": res.times.infer_ns, "post": res.times.post_ns},
        "threads": rt.load_info.threads,  # edgerun.threads: explicit > profile > usable CPUs, capped
        "threads_source": rt.load_info.threads_detail,
        "outputs": {k: np.asarray(v).tolist() for k, v in res.outputs.items()} if not res.top else None,
    }
    if rt.fallback is not None:
        report["reason"] = res.reason
    if args.json:
        print(json.dumps(report, indent=1))
        return
    version = f"  version={rt.load_info.model_version}" if rt.load_info.model_version else ""  # name@current
    print(f"{rt.artifact.name}{version}  route={res.route}  input={source}  threads={rt.load_info.threads}")
    if res.reason:
        print(f"  reason: {res.reason}")
    for p in res.top:
        print(f"  {p.label:>8}  {p.score:.4f}")
    if not res.top:
        for name, value in res.outputs.items():
            print(f"  {name}: {np.array2string(np.asarray(value), precision=4, threshold=20)}")
    t = res.times
    middle = "remote" if res.route == "remote" else "infer"
    print(
        f"  pre {t.pre_ns / 1e6:.3f} ms  {middle} {t.infer_ns / 1e6:.3f} ms  post {t.post_ns / 1e6:.3f} ms  "
        "(one cold-ish call; use `edgerun bench` for statistics)"
    )


def _fallback_policy(args: argparse.Namespace) -> Any:
    """A FallbackPolicy from --fallback-config / --profile and the run options; None when none was asked for."""
    asked = (args.fallback_url, args.mode, args.fallback_config, args.soft_ms, args.hard_ms, args.variant)
    if not any(v is not None for v in asked):
        return None  # before the imports: a plain local run needs no policy (tomllib, audit, ...)
    from edgerun.errors import PolicyError
    from edgerun.fallback import FallbackPolicy, JsonLinesAudit, StreamAudit

    if args.fallback_config:
        base = FallbackPolicy.from_toml(args.fallback_config)
    elif args.profile:
        from edgerun.profiles import load_profile

        base = FallbackPolicy.from_profile(load_profile(args.profile))
    else:
        base = FallbackPolicy()
    overrides: dict[str, Any] = {}
    for option, name in _RUN_POLICY_OPTIONS:
        value = getattr(args, option)
        if value is not None:
            overrides[name] = value
    if args.fallback_on is not None:
        overrides["fallback_on"] = frozenset(t for t in args.fallback_on.split(",") if t)
    if args.token_env or args.token_file:
        overrides["token_provider"] = _token_provider(args.token_env, args.token_file)
    overrides["audit_sink"] = JsonLinesAudit(args.audit) if args.audit not in (None, "-") else StreamAudit()
    fields = {k: v for k, v in base.__dict__.items() if k not in overrides}
    policy = FallbackPolicy(**fields, **overrides)
    if policy.endpoint and not policy.remote_enabled:
        # name where each came from: a URL in a TOML file is not something the user typed here
        url_from = "--fallback-url" if args.fallback_url else f"endpoint in {args.fallback_config}"
        mode_from = (
            "--mode"
            if args.mode
            else f"{args.fallback_config} or the default"
            if args.fallback_config
            else "the default"
        )
        raise PolicyError(
            f"{url_from} sets {policy.endpoint} but the mode is {policy.mode!r} (from {mode_from}), so nothing "
            "would be sent; add --mode prefer-local (or prefer-remote, remote-only), or mode = ... in [fallback]"
        )
    return policy


# (run option, FallbackPolicy field) pairs copied when given on the command line
_RUN_POLICY_OPTIONS = (
    ("mode", "mode"),
    ("fallback_url", "endpoint"),
    ("fallback_model", "model_name"),
    ("fallback_version", "model_version"),
    ("soft_ms", "soft_budget_ms"),
    ("hard_ms", "hard_budget_ms"),
    ("deadline_ms", "deadline_ms"),
    ("connect_timeout_ms", "connect_timeout_ms"),
    ("hedge_ms", "hedge_after_ms"),
    ("max_attempts", "max_attempts"),
    ("binary", "binary_data"),
    ("max_payload_bytes", "max_payload_bytes"),
    ("ca_bundle", "ca_bundle"),
    ("client_cert", "client_cert"),
    ("client_key", "client_key"),
    ("allow_input", "allowed_inputs"),
    ("variant", "local_variants"),
)


def _token_provider(env: str | None, path: str | None) -> Any:
    """Read the token at each call (so a rotated token is picked up); the value is never printed."""
    import os

    def provider() -> str:
        if env:
            value = os.environ.get(env)
            if not value:
                from edgerun.errors import UsageError

                raise UsageError(f"--token-env {env}: the environment variable is not set or empty")
            return value
        return Path(str(path)).read_text(encoding="utf-8").strip()

    return provider


def _run_with_fallback(rt: Any, x: Any, args: argparse.Namespace) -> Any:
    from edgerun.errors import DeadlineExceeded, RemoteError

    router = rt.fallback
    if router.client is not None:
        try:  # at startup, not in the request path: binary tensors? which model? does it match?
            router.client.probe(timeout_s=args.probe_timeout_s)
        except (RemoteError, DeadlineExceeded) as exc:
            print(f"edgerun: warning: fallback server not usable yet: {exc}", file=sys.stderr)
    warmup = args.warmup if args.warmup is not None else 1
    router.warm_up(x, warmup)  # routing needs this device's local latency, as an app learns it at startup
    return _repeat(rt, x, max(1, args.repeat))


def _print_stats(metrics: Any, args: argparse.Namespace) -> None:
    if args.stats:
        print(metrics.render())
    if args.stats_json:
        text = json.dumps(metrics.to_dict(), indent=1)
        if args.stats_json == "-":
            print(text)
        else:
            Path(args.stats_json).write_text(text + "\n", encoding="utf-8")
