"""The ``edgerun`` command line. The only module that prints for humans or exits.

    edgerun bench [ARTIFACT...]     benchmark (default: the bundled demo artifacts)
    edgerun info ARTIFACT           what an artifact is: format, precision, IO, ops, provenance
    edgerun run ARTIFACT            one inference on an input file (or a bundled sample)
    edgerun profiles                list device profiles; --detect says which one this machine is
    edgerun doctor                  what this machine offers: engines, providers, probes, thermal

Exit codes: 0 every verdict passed; 1 a verdict failed or an artifact errored;
2 usage error; 3 nothing failed but some verdict was not valid (too few samples).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from edgerun.errors import EdgerunError

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_NOT_VALID = 0, 1, 2, 3

# Subsystems that add their own subcommands: each module has ``register(subparsers)``
# and imports nothing heavy at module level (its command functions import lazily).
COMMAND_MODULES: tuple[str, ...] = (
    "edgerun.compress.cli",
    "edgerun.fallback.cli",
    "edgerun.serialhost.cli",
    "edgerun.targets.cli",
    "edgerun.lab.cli",
)


def _err(msg: str) -> None:
    print(f"edgerun: error: {msg}", file=sys.stderr)


# --- bench ------------------------------------------------------------------------------


class _ProgressLine:
    """A one-line progress bar on stderr (redrawn in place on a terminal, sparse otherwise)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last_phase = ""

    def __call__(self, phase: str, fraction: float) -> None:
        if self.tty:
            filled = int(fraction * 24)
            bar = "#" * filled + "." * (24 - filled)
            print(f"\r{self.label:<28} {phase:<8} [{bar}] {fraction * 100:5.1f}%", end="", file=sys.stderr)
        elif phase != self.last_phase:
            print(f"{self.label}: {phase}...", file=sys.stderr)
        self.last_phase = phase

    def done(self, status: str) -> None:
        if self.tty:
            print(f"\r{self.label:<28} {status:<50}", file=sys.stderr)
        else:
            print(f"{self.label}: {status}", file=sys.stderr)


def profile_and_budget(args: argparse.Namespace) -> tuple[Any, str, Any]:
    """The profile (--profile, else detected), why it was chosen, and the budget with --soft-ms etc. applied."""
    from edgerun.budget import Budget
    from edgerun.profiles import detect, load_profile

    if args.profile:
        profile, reason = load_profile(args.profile), f"chosen with --profile {args.profile}"
    else:
        found = detect()
        profile, reason = found.profile, found.reason
    base = profile.budget
    budget = Budget(
        soft_ms=args.soft_ms if args.soft_ms is not None else base.soft_ms,
        hard_ms=args.hard_ms if args.hard_ms is not None else base.hard_ms,
        percentile=args.percentile if args.percentile is not None else base.percentile,
    )
    return profile, reason, budget


def _bench_config(args: argparse.Namespace) -> Any:
    from edgerun.bench.runner import BenchConfig

    min_seconds, max_seconds = args.min_seconds, args.max_seconds
    if args.sustained:
        min_seconds = max(min_seconds, args.sustained * 60)
        max_seconds = max(max_seconds, min_seconds * 1.5 + 10)
    return BenchConfig(
        min_runs=args.runs,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        sustained_minutes=args.sustained,
        warmup_runs=args.warmup,
        warmup_seconds=args.warmup_seconds,
        threads=args.threads,
        providers=tuple(p for p in (args.providers or "").split(",") if p),
        engine=args.engine,
        graph_optimization=args.graph_opt,
        memory=not args.no_memory,
        thermal=not args.no_thermal,
        energy=not args.no_energy,
        probe=args.probe,
        energy_windows=args.energy_windows,
        energy_window_seconds=args.energy_window_seconds,
    )


def _cooldown(args: argparse.Namespace) -> None:
    if args.cooldown_c is None and args.cooldown_s is None:
        return
    from edgerun.measure.thermal import cooldown

    done = cooldown(until_c=args.cooldown_c, pause_s=args.cooldown_s, max_wait_s=args.cooldown_max_s)
    if not args.quiet:
        print(f"cooldown: {done.reason}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    from edgerun.bench.result import bench_one
    from edgerun.bench.worker import WorkerRequest, run_in_worker
    from edgerun.demo import demo_artifacts

    paths = [Path(p) for p in args.artifacts] or demo_artifacts()
    if not paths:
        _err("no artifact given and the bundled demo artifacts are missing (run tools/build_demo.py)")
        return EXIT_USAGE
    if args.target:  # on a device: its own edgerun (or native binaries) makes the results
        from edgerun.targets.cli import bench_on_target_cli, results_table

        return _report_bench(args, bench_on_target_cli(args, paths), results_table)
    profile, reason, budget = profile_and_budget(args)
    config = _bench_config(args)
    if config.energy and config.probe:
        from edgerun.power import select_probe

        select_probe(config.probe, profile=profile)  # a named probe that is not here: one loud error
    if not args.quiet:
        print(f"profile: {profile.name} ({reason})", file=sys.stderr)
    results = []
    for i, path in enumerate(paths):
        if i:
            _cooldown(args)
        progress = None if args.quiet else _ProgressLine(path.name)
        if args.in_process:
            results.append(bench_one(str(path), config, profile, budget, reason, progress))  # no crash isolation
        else:
            request = WorkerRequest(
                str(path), config.to_dict(), budget.__dict__, str(profile.source or profile.name), reason
            )
            results.append(run_in_worker(request, args.timeout or 2 * config.max_seconds + 120, progress))
        if progress is not None:
            progress.done(results[-1]["overall"].upper())
    return _report_bench(args, results)


def _report_bench(args: argparse.Namespace, results: list[dict[str, Any]], table: Any = None) -> int:
    """Print the side-by-side table (or ``table(results)``) and warnings, write --json, pick the exit code."""
    from edgerun.bench.report import side_by_side

    print((table or side_by_side)(results))
    for r in results:
        for warning in r.get("warnings", []):
            print(f"warning: {r['artifact'].get('name', r['artifact']['path'])}: {warning}", file=sys.stderr)
    _write_json(args.json, results)
    verdicts = {r["overall"] for r in results}
    if verdicts & {"fail", "error"}:
        return EXIT_FAIL
    return EXIT_NOT_VALID if "not-valid" in verdicts else EXIT_PASS


def _write_json(target: str | None, results: list[dict[str, Any]]) -> None:
    from edgerun.bench.result import result_file

    if not target:
        return
    text = json.dumps(result_file(results), indent=1)
    if target == "-":
        print(text)
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {target}", file=sys.stderr)


# --- info -------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from edgerun.artifact import inspect_model, load_artifact

    art = load_artifact(args.artifact)
    info = inspect_model(art.path, art.format)
    data = {
        "name": art.name,
        "path": str(art.path),
        "manifest": str(art.manifest_path) if art.manifest_path else None,
        "format": art.format,
        "precision": art.precision,
        "precision_detected": info.precision,
        "sha256": art.sha256,
        "sha256_verified": art.manifest is not None,
        "size_bytes": art.size_bytes,
        "parameter_count": info.parameter_count,
        "parameter_dtypes": info.parameter_dtypes,
        "versions": info.versions,
        "inputs": [t.to_dict() for t in art.inputs],
        "outputs": [t.to_dict() for t in art.outputs],
        "raw_inputs": [t.to_dict() for t in art.raw_inputs],
        "preprocess": list(art.manifest.preprocess) if art.manifest else [],
        "postprocess": list(art.manifest.postprocess) if art.manifest else [],
        "op_histogram": info.op_histogram,
        "provenance": art.manifest.provenance if art.manifest else {},
    }
    if args.json:
        print(json.dumps(data, indent=1))
        return EXIT_PASS
    print(_info_text(art, info, data))
    return EXIT_PASS


def _info_text(art: Any, info: Any, data: dict[str, Any]) -> str:
    lines = [
        f"{art.name}",
        f"  file         {art.path} ({art.size_bytes / 1e6:.3f} MB)",
        f"  manifest     {art.manifest_path or '(none: specs read from the model)'}",
        f"  sha256       {art.sha256}" + ("  (verified against manifest)" if art.manifest else ""),
        f"  format       {art.format}   " + "  ".join(f"{k}={v}" for k, v in info.versions.items()),
        f"  precision    {art.precision} (detected from the model: {info.precision})",
        f"  parameters   {info.parameter_count:,}  "
        + ", ".join(f"{k}: {v:,}" for k, v in sorted(info.parameter_dtypes.items())),
        "  inputs       " + "; ".join(t.describe() for t in art.inputs),
        "  outputs      " + "; ".join(t.describe() for t in art.outputs),
    ]
    if art.manifest:
        lines.append("  raw input    " + "; ".join(t.describe() for t in art.raw_inputs))
        lines.append("  pre          " + " -> ".join(op.get("op", "?") for op in art.manifest.preprocess))
        lines.append("  post         " + " -> ".join(op.get("op", "?") for op in art.manifest.postprocess))
    lines.append("  ops          " + ", ".join(f"{k} x{v}" for k, v in info.op_histogram.items()))
    prov = data["provenance"]
    if prov:
        lines.append("  provenance")
        for key, value in prov.items():
            if key == "accuracy" and isinstance(value, dict):
                value = (
                    f"{value.get('metric', 'accuracy')} {value.get('value', 0) * 100:.2f}% on "
                    f"{value.get('reference_set', '?')} (n={value.get('n', '?')}, "
                    f"measured with {value.get('measured_with', '?')})"
                )
            lines.extend(_provenance_lines(key, value, indent=4))
    return "\n".join(lines)


def _provenance_lines(key: str, value: Any, indent: int) -> list[str]:
    """Nested provenance (metrics, gate, sensitivity tables) as indented key/value lines, not raw dicts."""
    pad = " " * indent
    if isinstance(value, dict) and value:
        out = [f"{pad}{key}"]
        for sub, subvalue in value.items():
            out.extend(_provenance_lines(str(sub), subvalue, indent + 2))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [f"{pad}{key:<20} ({len(value)} entries; `edgerun info --json` lists them)"]
    return [f"{pad}{key:<20} {value}"]


# --- run --------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from edgerun.bench.runner import sample_inputs
    from edgerun.errors import PolicyError
    from edgerun.runtime import load

    try:
        policy = _fallback_policy(args)
    except PolicyError as exc:
        _err(str(exc))
        return EXIT_USAGE
    rt = load(args.artifact, args.profile, threads=args.threads, fallback=policy)
    try:
        if args.input:
            x = np.load(args.input)
            source = args.input
        else:
            inputs, source = sample_inputs(rt.artifact, seed=0)
            x = inputs[args.sample % len(inputs)]
        res = _run_with_fallback(rt, x, args) if policy is not None else rt.run(x)
        _print_run(rt, res, source, args)
        if rt.fallback is not None:
            _print_stats(rt.fallback.metrics, args)
    finally:
        rt.close()
    return EXIT_PASS


def _print_run(rt: Any, res: Any, source: str, args: argparse.Namespace) -> None:
    import numpy as np

    report = {
        "input": source,
        "route": res.route,
        "top": [{"index": p.index, "label": p.label, "score": p.score} for p in res.top],
        "times_ns": {"pre": res.times.pre_ns, "infer": res.times.infer_ns, "post": res.times.post_ns},
        "outputs": {k: np.asarray(v).tolist() for k, v in res.outputs.items()} if not res.top else None,
    }
    if rt.fallback is not None:
        report["reason"] = res.reason
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{rt.artifact.name}  route={res.route}  input={source}")
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
    from edgerun.errors import PolicyError
    from edgerun.fallback import FallbackPolicy, JsonLinesAudit, StreamAudit

    asked = (args.fallback_url, args.mode, args.fallback_config, args.soft_ms, args.hard_ms, args.variant)
    if not any(v is not None for v in asked):
        return None
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
        raise PolicyError(
            f"--fallback-url is set but the mode is {policy.mode!r}, so nothing would be sent; "
            "add --mode prefer-local (or prefer-remote, remote-only)"
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
                raise KeyError(f"environment variable {env} is not set")
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
    res = None
    for _ in range(max(1, args.repeat)):
        res = rt.run(x)
    return res


def _print_stats(metrics: Any, args: argparse.Namespace) -> None:
    if args.stats:
        print(metrics.render())
    if args.stats_json:
        text = json.dumps(metrics.to_dict(), indent=1)
        if args.stats_json == "-":
            print(text)
        else:
            Path(args.stats_json).write_text(text + "\n", encoding="utf-8")


# --- profiles ---------------------------------------------------------------------------


def cmd_profiles(args: argparse.Namespace) -> int:
    from edgerun.profiles import detect, list_profiles

    if args.detect:
        found = detect()
        print(
            json.dumps({"profile": found.profile.name, "reason": found.reason})
            if args.json
            else f"{found.profile.name}: {found.reason}"
        )
        return EXIT_PASS
    profiles = list_profiles()
    if args.json:
        print(json.dumps([_profile_dict(p) for p in profiles], indent=1))
        return EXIT_PASS
    head = (
        f"{'name':<22} {'class':<9} {'arch':<8} {'cores':>5} {'RAM':>8}  {'soft/hard ms':>12}  "
        f"{'size limit':>10}  engine"
    )
    print(head)
    print("-" * len(head))
    for p in profiles:
        print(
            f"{p.name:<22} {p.device_class:<9} {p.architecture:<8} {p.cores:>5} {_mem(p.ram_bytes):>8}  "
            f"{p.budget.soft_ms:>5g}/{p.budget.hard_ms:<6g}  {p.limits.model_size_limit_bytes / 1e6:>7g} MB  "
            f"{p.engine.preferred} ({','.join(p.engine.providers)})"
        )
    return EXIT_PASS


def _mem(n: int) -> str:
    """RAM in binary units, as it is sold (model sizes are decimal MB, printed apart)."""
    return f"{n / 2**30:.0f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def _profile_dict(p: Any) -> dict[str, Any]:
    return {
        "name": p.name,
        "class": p.device_class,
        "architecture": p.architecture,
        "cores": p.cores,
        "ram_bytes": p.ram_bytes,
        "accelerators": list(p.accelerators),
        "engine": {"preferred": p.engine.preferred, "providers": list(p.engine.providers), "threads": p.engine.threads},
        "budget": {"soft_ms": p.budget.soft_ms, "hard_ms": p.budget.hard_ms, "percentile": p.budget.percentile},
        "model_size_limit_bytes": p.limits.model_size_limit_bytes,
        "model_size_ideal_bytes": p.limits.model_size_ideal_bytes,
    }


# --- doctor -----------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from edgerun.doctor import diagnose, render

    report = diagnose()
    print(json.dumps(report, indent=1) if args.json else render(report))
    return EXIT_PASS


# --- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from edgerun import __version__

    parser = argparse.ArgumentParser(
        prog="edgerun",
        description="edgerun: on-device inference runtime and benchmark harness for edge medical AI.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `edgerun COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"edgerun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    b = sub.add_parser(
        "bench",
        help="benchmark artifacts (default: the bundled demo)",
        description="Time every stage of every inference and judge the latencies against the "
        "profile's real-time budgets. Several artifacts print side by side.",
    )
    b.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help="model file, manifest or bundle folder")
    b.add_argument("--profile", help="device profile name or TOML path (default: detected)")
    b.add_argument(
        "--runs", type=int, default=1000, help="minimum steady-state inferences (default 1000; p99 needs 662)"
    )
    b.add_argument("--min-seconds", type=float, default=1.0, help="minimum steady-state seconds (default 1)")
    b.add_argument(
        "--max-seconds", type=float, default=60.0, help="stop the steady state after this many seconds (default 60)"
    )
    b.add_argument("--warmup", type=int, default=10, help="minimum warm-up inferences (default 10)")
    b.add_argument("--warmup-seconds", type=float, default=0.5, help="minimum warm-up seconds (default 0.5)")
    b.add_argument("--threads", type=int, help="intra-op threads (default: the profile's)")
    b.add_argument("--providers", help="comma-separated providers, e.g. XNNPACK,CPU or CUDA (must exist)")
    b.add_argument("--engine", choices=("onnx", "litert"), help="force an engine (default: by format)")
    b.add_argument(
        "--graph-opt",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="onnxruntime graph optimisation level (default all)",
    )
    b.add_argument("--soft-ms", type=float, help="soft budget in ms (default: the profile's)")
    b.add_argument("--hard-ms", type=float, help="hard budget in ms (default: the profile's)")
    b.add_argument("--percentile", type=float, help="percentile judged against the soft budget (default 99)")
    b.add_argument("--json", metavar="FILE", help="write the versioned JSON result to FILE ('-' for stdout)")
    b.add_argument("--probe", help="power probe by name (must exist; default: the best one here, else an estimate)")
    b.add_argument("--no-energy", action="store_true", help="skip the energy windows")
    b.add_argument("--energy-windows", type=int, default=3, help="energy windows per artifact (default 3)")
    b.add_argument("--energy-window-seconds", type=float, default=0.5, help="seconds per energy window (default 0.5)")
    b.add_argument("--no-memory", action="store_true", help="skip memory snapshots")
    b.add_argument("--no-thermal", action="store_true", help="skip thermal readings")
    b.add_argument("--cooldown-c", type=float, help="between artifacts, wait until the hottest zone is below this (C)")
    b.add_argument("--cooldown-s", type=float, help="between artifacts, pause this many seconds")
    b.add_argument("--cooldown-max-s", type=float, default=300, help="give up cooling down after this (default 300)")
    b.add_argument(
        "--sustained",
        type=float,
        metavar="MINUTES",
        help="run the steady state this long and report drift between the first and last minute",
    )
    b.add_argument("--timeout", type=float, help="kill a worker after this many seconds (default 2*max-seconds+120)")
    b.add_argument(
        "--in-process",
        action="store_true",
        help="benchmark in this process, not in a crash-isolated worker (for debugging)",
    )
    b.add_argument(
        "--target",
        metavar="URL",
        help="benchmark on a device: ssh://[user@]host[:port] or adb://[serial] (docs/lab.md); default: here",
    )
    b.add_argument(
        "--remote-python",
        metavar="PATH",
        help="with --target: the device's Python that has edgerun (default: the venv `target setup` made)",
    )
    b.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser(
        "info",
        help="describe an artifact",
        description="Format, precision, IO specs, size, "
        "parameter count, op histogram, opsets and the manifest's provenance.",
    )
    i.add_argument("artifact", metavar="ARTIFACT")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    r = sub.add_parser(
        "run",
        help="one inference",
        description="Run one inference and print the top classes "
        "and stage times. Input: --input FILE.npy, else a bundled sample (or random data).",
    )
    r.add_argument("artifact", metavar="ARTIFACT")
    r.add_argument("--input", help=".npy file with one raw input")
    r.add_argument("--sample", type=int, default=0, help="which bundled sample to use (default 0)")
    r.add_argument("--profile", help="device profile name or TOML path")
    r.add_argument("--threads", type=int)
    r.add_argument("--json", action="store_true", help="machine-readable output")
    _add_fallback_options(r)
    r.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "profiles",
        help="list device profiles",
        description="List the shipped device profiles, or say which one this machine is (--detect) and why.",
    )
    p.add_argument("--detect", action="store_true", help="detect this machine's profile")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_profiles)
    d = sub.add_parser(
        "doctor",
        help="what this machine offers: engines, providers, probes, thermal",
        description="List engines and providers, power probes (available or why not), thermal "
        "sources, memory-peak support and the detected device profile.",
    )
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_doctor)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def _add_fallback_options(r: argparse.ArgumentParser) -> None:
    """`edgerun run` cloud-fallback options (docs/fallback.md). Without them nothing leaves the device."""
    g = r.add_argument_group("cloud fallback (off unless --mode asks for it; see docs/fallback.md)")
    g.add_argument("--fallback-url", metavar="URL", help="Open Inference Protocol endpoint (https; http for loopback)")
    g.add_argument(
        "--mode",
        choices=("local-only", "prefer-local", "prefer-remote", "remote-only"),
        help="where inferences may run (default local-only: nothing leaves the device)",
    )
    g.add_argument("--fallback-config", metavar="TOML", help="policy from a TOML file ([fallback] table)")
    g.add_argument("--fallback-model", metavar="NAME", help="remote model name (default: the one the server serves)")
    g.add_argument("--fallback-version", metavar="V", help="remote model version")
    g.add_argument("--soft-ms", type=float, help="soft budget: local p99 over it routes remote (default 100)")
    g.add_argument("--hard-ms", type=float, help="hard budget: local only; a miss is an error or --variant")
    g.add_argument("--deadline-ms", type=float, help="bound on the whole call (default max(250, soft))")
    g.add_argument("--fallback-on", metavar="TRIGGERS", help="comma list: local-error,soft-budget-miss (default both)")
    g.add_argument("--hedge-ms", type=float, help="start the remote this long into a local run (default off)")
    g.add_argument("--max-attempts", type=int, help="remote tries, retries included (default 2)")
    g.add_argument("--binary", choices=("auto", "always", "never"), help="binary tensors (default auto)")
    g.add_argument("--max-payload-bytes", type=int, help="refuse to send more (default 4 MiB)")
    g.add_argument("--allow-input", action="append", metavar="NAME", help="send only these model inputs")
    g.add_argument("--variant", action="append", metavar="ARTIFACT", help="smaller local artifact for hard misses")
    g.add_argument("--token-env", metavar="VAR", help="bearer token from this environment variable")
    g.add_argument("--token-file", metavar="FILE", help="bearer token from this file (read per call)")
    g.add_argument("--ca-bundle", metavar="PEM", help="trust these CAs for the server's certificate")
    g.add_argument("--client-cert", metavar="PEM", help="client certificate for mTLS")
    g.add_argument("--client-key", metavar="PEM", help="client key for mTLS")
    g.add_argument("--audit", metavar="FILE", help="append audit records to FILE (default '-': stderr)")
    g.add_argument("--warmup", type=int, help="local runs before the call, to learn local latency (default 1)")
    g.add_argument("--repeat", type=int, default=1, help="calls to make; the last one is printed (default 1)")
    g.add_argument("--probe-timeout-s", type=float, default=2.0, help="startup question to the server (default 2 s)")
    g.add_argument("--stats", action="store_true", help="print fallback metrics: routes, latencies, retries, breaker")
    g.add_argument("--stats-json", metavar="FILE", help="write fallback metrics as JSON ('-' for stdout)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except EdgerunError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except ValueError as exc:  # bad option values caught by our dataclasses' validation
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except BrokenPipeError:  # `edgerun info ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_PASS


if __name__ == "__main__":
    sys.exit(main())
