"""``edgerun serial host`` and ``edgerun serial tiny``: registered through edgerun.cli.COMMAND_MODULES.

Nothing heavy at import: the commands import the host, pyserial and the
engines when they run. Exit codes as ``edgerun bench``: 0 every verdict
passed, 1 one failed (or the session errored), 3 nothing failed but a verdict
was not valid (too few windows for the percentile).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from edgerun.cli.types import cpu_threads, existing_dir, finite_float, name_or_path, positive_int, whole_int
from edgerun.exitcodes import EXIT_FAIL, verdict_exit_code

_MS = finite_float(0, 3_600_000, low_open=True)  # a budget past an hour is a typo
_SECONDS = finite_float(0, 30 * 86_400, low_open=True)
_BAUD = whole_int(1, 100_000_000)

_NET = "or a port served by ser2net (a labgrid NetworkSerialPort): rfc2217://HOST:PORT or socket://HOST:PORT (raw)"


def register(sub: Any) -> None:
    s = sub.add_parser(
        "serial",
        help="wearable firmware over a serial port: stream host, MLPerf Tiny DUT runner",
        description="Talk to firmware over a serial port. `host`: the board streams sensor frames "
        "(docs/serial-protocol.md) and edgerun decides each window. `tiny`: the board runs the model itself "
        "and edgerun benchmarks it over the EEMBC EnergyRunner / MLPerf Tiny protocol.",
    )
    modes = s.add_subparsers(dest="serial_command", metavar="MODE", required=True)
    _host_parser(modes)
    _tiny_parser(modes)


def _budget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", type=name_or_path, help="device profile name or TOML path (default: detected)")
    p.add_argument("--soft-ms", type=_MS, help="soft budget in ms (default: the profile's)")
    p.add_argument("--hard-ms", type=_MS, help="hard budget in ms (default: the profile's)")
    p.add_argument(
        "--percentile",
        type=finite_float(0, 100, low_open=True, high_open=True),
        help="percentile judged against the soft budget (default 99)",
    )
    p.add_argument("--json", metavar="FILE", help="write the JSON result to FILE ('-' for stdout: text to stderr)")
    p.add_argument("--force", action="store_true", help="let --json replace an existing file")
    p.add_argument("-q", "--quiet", action="store_true", help="no live status on stderr")


def _host_parser(modes: Any) -> None:
    h = modes.add_parser(
        "host",
        help="be the wearable's brain: windows of its sensor stream through a model, results back",
        description="Read sensor frames from the firmware, cut windows (--window/--hop samples), run each "
        "through ARTIFACT and send a RESULT frame back. Decision latency (last sample in -> result out) is "
        "judged against the budgets. Survives noise, bad frames, device resets and unplugs. Ctrl-C ends it "
        "and prints the summary.",
    )
    h.add_argument("artifact", nargs="?", metavar="ARTIFACT", help="model (default: the bundled ECG demo)")
    h.add_argument("--port", required=True, help=f"serial port, e.g. /dev/ttyACM0 or /dev/serial/by-id/...; {_NET}")
    h.add_argument("--baud", type=_BAUD, default=921600, help="baud rate (default 921600)")
    h.add_argument("--window", type=positive_int, help="samples per window (default: the model's input length)")
    h.add_argument("--hop", type=positive_int, help="samples between windows (default: a quarter window)")
    h.add_argument(
        "--queue", type=whole_int(1, 1_000_000), default=8, help="windows waiting for inference, at most (default 8)"
    )
    h.add_argument(
        "--policy",
        choices=("drop-oldest", "block"),
        default="drop-oldest",
        help="when the queue is full: drop the oldest window and count it (default), or stop reading "
        "(safe only with flow control)",
    )
    h.add_argument(
        "--threads", type=cpu_threads, default=1, help="intra-op threads (default 1: the reader needs a core)"
    )
    h.add_argument("--duration", type=_SECONDS, help="stop after this many seconds (default: until Ctrl-C)")
    h.add_argument("--give-up-after", type=_SECONDS, help="after an unplug, stop retrying after S seconds")
    _budget_args(h)
    h.set_defaults(func=cmd_host)


def _tiny_parser(modes: Any) -> None:
    t = modes.add_parser(
        "tiny",
        help="benchmark a model running on the firmware (EEMBC EnergyRunner / MLPerf Tiny protocol)",
        description="Discover the DUT (name%%, profile%%), then for the first --perf-files inputs load them "
        "(db load / db) and run `infer N W`: latency = (T1 - T0) / N from the DUT's own m-lap-us timer. "
        "Then every input once, with results%%, for accuracy. DIR holds y_labels.csv (file, classes, class) "
        "and the input files, or a folder per model named as the DUT's m-model-[...] reply.",
    )
    t.add_argument("--port", required=True, help=f"the DUT's serial port; {_NET}")
    t.add_argument("--dataset", required=True, metavar="DIR", type=existing_dir, help="EEMBC dataset folder")
    t.add_argument("--baud", type=_BAUD, default=115200, help="baud rate (default 115200, EEMBC performance mode)")
    t.add_argument(
        "--iterations", type=whole_int(1, 10_000_000), default=100, help="inferences per performance run (default 100)"
    )
    t.add_argument(
        "--warmups",
        type=whole_int(0, 10_000_000),
        default=10,
        help="warm-up inferences per performance run (default 10)",
    )
    t.add_argument("--perf-files", type=positive_int, default=5, help="performance runs, one per input (default 5)")
    t.add_argument("--limit", type=positive_int, help="use only the first N inputs")
    t.add_argument("--timeout", type=_SECONDS, default=2.0, help="seconds to wait for m-ready (default 2)")
    t.add_argument(
        "--sync-timeout", type=float, default=10.0, help="retry name%% this long for a booting DUT (default 10)"
    )
    t.add_argument(
        "--reset-wait",
        type=float,
        default=0.0,
        metavar="S",
        help="after opening, wait up to S s for the boot banner of a board that resets on open (ends at m-ready)",
    )
    t.add_argument(
        "--no-dtr", action="store_true", help="open with DTR/RTS low, so a DTR auto-reset board does not reboot"
    )
    _budget_args(t)
    t.set_defaults(func=cmd_tiny)


def _budget(args: argparse.Namespace) -> Any:
    from edgerun.cli import profile_and_budget

    return profile_and_budget(args)


def _check_json(args: argparse.Namespace, *inputs: str | None) -> None:
    """Before the port is opened: a bad --json path must not cost (and then lose) the session."""
    from edgerun.outputs import check_outputs, input_files

    port = [args.port] if args.port else []  # `--json /dev/ttyACM0` is the port, not a place for JSON
    check_outputs([args.json], inputs=[*input_files([*inputs, args.profile]), *port], force=args.force)


def _summary_stream(args: argparse.Namespace) -> Any:
    """With ``--json -`` the JSON owns stdout, so that it stays parseable: the text summary goes to stderr."""
    return sys.stderr if args.json == "-" else sys.stdout


def _write_json(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    from edgerun.outputs import write_atomic

    target = args.json
    if not target:
        return
    text = json.dumps(doc, indent=1)
    if target == "-":
        print(text)
    else:
        write_atomic(target, text + "\n", force=args.force)
        print(f"wrote {target}", file=sys.stderr)


# --- host -------------------------------------------------------------------------------


class _StatusLine:
    """Redrawn in place on a terminal; every 5 s as a plain line otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_s = -5.0

    def __call__(self, st: Any) -> None:
        p50 = f"{st.p50_ms:.2f}" if st.p50_ms is not None else "-"
        p99 = f"{st.p99_ms:.2f}" if st.p99_ms is not None else "-"
        line = (
            f"{st.elapsed_s:6.1f}s link {st.link:<6} {st.device} | windows {st.windows_decided} "
            f"dropped {st.windows_dropped} late {st.late_soft}/{st.late_hard} | p50 {p50} p99 {p99} ms | "
            f"crc {st.crc_failed} lost {st.frames_lost} ooo {st.out_of_order} | q {st.queue_depth} | {st.last_label}"
        )
        if self.tty:
            print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
        elif st.elapsed_s - self.last_s >= 5.0:
            self.last_s = st.elapsed_s
            print(line, file=sys.stderr, flush=True)


def cmd_host(args: argparse.Namespace) -> int:
    from edgerun.runtime import load
    from edgerun.serialhost import ECG_DEMO_DIR
    from edgerun.serialhost.host import GaveUp, HostConfig, SerialHost

    _check_json(args, args.artifact)
    profile, _, budget = _budget(args)
    rt = load(args.artifact or ECG_DEMO_DIR / "ecg-int8.tflite", profile, threads=args.threads)
    config = HostConfig(
        port=args.port,
        baud=args.baud,
        window=args.window,
        hop=args.hop,
        queue_size=args.queue,
        policy=args.policy,
        budget=budget,
        give_up_s=args.give_up_after,
    )
    status = None if args.quiet else _StatusLine()
    host = SerialHost(rt, config, on_status=status)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    gave_up = None
    try:
        summary = host.run(stop, args.duration)
    except GaveUp as exc:  # the session's counts up to the give-up are still its result
        gave_up, summary = exc, exc.summary
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status is not None and status.tty:
        print(file=sys.stderr)
    print(host_text(summary), file=_summary_stream(args))
    _write_json(args, summary)
    if gave_up is not None:
        print(f"edgerun: error: {gave_up}", file=sys.stderr)
        return EXIT_FAIL
    return verdict_exit_code([summary["overall"]])


def host_text(s: dict[str, Any]) -> str:
    """The human summary of a host run."""
    w, f, v = s["windows"], s["frames"], s["verdicts"]
    dec = s["stats"]["decision"]
    lat = "no decisions"
    if dec:
        pct = dec["percentiles"]
        lat = f"p50 {pct['p50']['value_ns'] / 1e6:.3f} ms, p99 {pct['p99']['value_ns'] / 1e6:.3f} ms"
        lat += "" if pct["p99"]["valid"] else " (p99 not valid: too few windows)"
    lines = [
        f"{s['artifact']['name']} on {s['port']['path']} for {s['duration_ns'] / 1e9:.1f} s "
        f"(ended: {s['end']['reason']})",
        f"  windows     {w['made']} made, {w['decided']} decided, {w['dropped']} dropped, {w['stale']} stale, "
        f"late {w['late_soft']} soft / {w['late_hard']} hard",
        f"  decision    {lat}",
        f"  frames      {f['frames']} good, {f['crc_failed']} CRC failed, {f['malformed']} malformed, "
        f"{f['lost_by_seq']} lost, {f['out_of_order']} out of order",
        f"  sessions    {s['sessions']['handshakes']} handshakes, {s['sessions']['device_resets']} device resets, "
        f"{s['link']['port_lost']} unplugs",
    ]
    lines += [f"  {k:<11} {d['status'].upper()}: {d['reason']}" for k, d in v.items()]
    lines += [f"  warning     {text}" for text in s["warnings"]]
    lines.append(f"  overall     {s['overall'].upper()}")
    return "\n".join(lines)


# --- tiny -------------------------------------------------------------------------------


def cmd_tiny(args: argparse.Namespace) -> int:
    from edgerun.bench.environment import environment
    from edgerun.errors import SerialError
    from edgerun.serialhost.link import dtr_settable
    from edgerun.serialhost.tiny import TinyConfig, run_tiny
    from edgerun.serialhost.tinyresult import build_tiny_result, tiny_error_result, tiny_result_file

    _check_json(args, args.dataset)
    _, _, budget = _budget(args)
    if args.no_dtr and not dtr_settable(args.port):
        print(
            f"edgerun: warning: --no-dtr does nothing on {args.port}: raw TCP carries no DTR/RTS (the serving "
            "host's ser2net raises DTR as it opens the UART; use rfc2217:// to set the lines)",
            file=sys.stderr,
        )
    config = TinyConfig(
        port=args.port,
        baud=args.baud,
        iterations=args.iterations,
        warmups=args.warmups,
        perf_files=args.perf_files,
        limit=args.limit,
        timeout_s=args.timeout,
        budget=budget,
        sync_timeout_s=args.sync_timeout,
        reset_wait_s=args.reset_wait,
        no_dtr=args.no_dtr,
    )
    progress = None if args.quiet else _tiny_progress
    try:
        run = run_tiny(config, args.dataset, progress=progress)
    except SerialError as exc:
        _write_json(args, tiny_result_file([tiny_error_result(args.port, exc, environment())]))
        raise
    result = build_tiny_result(run, config, budget, environment())
    for text in result["warnings"]:  # on stderr too: the summary may be on stdout, or not read at all
        print(f"edgerun: warning: {text}", file=sys.stderr)
    print(tiny_text(result), file=_summary_stream(args))
    _write_json(args, tiny_result_file([result]))
    return verdict_exit_code([result["overall"]])


def _tiny_progress(phase: str, fraction: float) -> None:
    end = "\n" if fraction >= 1.0 or not sys.stderr.isatty() else ""
    if sys.stderr.isatty() or fraction >= 1.0:
        print(f"\r{phase:<12} {fraction * 100:5.1f}%", end=end, file=sys.stderr, flush=True)


def tiny_text(r: dict[str, Any]) -> str:
    perf, acc, single = r["performance"], r["accuracy"], r["stats"]["single"]
    median = perf["median_per_inference_ns"]
    lines = [
        f"{r['dut']['name']}  firmware {r['dut']['profile']!r}  model {r['dut']['model']}  "
        f"({r['dut']['timestamp_mode']} mode, {r['dut']['port']} @ {r['dut']['baud']})",
        f"  dataset     {r['dataset']['files']} inputs, {r['dataset']['classes']} classes ({r['dataset']['path']})",
        f"  latency     median {median / 1e6:.3f} ms per inference over {len(perf['runs'])} runs "
        f"of {r['config']['iterations']} (DUT timer)"
        if median is not None
        else "  latency     no performance runs",
    ]
    if single:
        p = single["percentiles"]
        lines.append(
            f"  single      p50 {p['p50']['value_ns'] / 1e6:.3f} ms, max {single['max_ns'] / 1e6:.3f} ms "
            f"(n={single['n']})"
        )
    lines.append(f"  accuracy    top-1 {acc['top1'] * 100:.1f}% ({acc['correct']}/{acc['n']}, results%)")
    lines += [f"  {k:<11} {d['status'].upper()}: {d['reason']}" for k, d in r["verdicts"].items()]
    lines += [f"  warning     {text}" for text in r["warnings"]]
    lines.append(f"  overall     {r['overall'].upper()}")
    return "\n".join(lines)
