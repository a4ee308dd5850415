"""``edgerun bench``: registered through ``edgerun.cli.COMMAND_MODULES``.

Each artifact is benchmarked in a crash-isolated worker (edgerun.bench.worker), or on a
device with ``--target`` (edgerun.cli.target). Nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgerun.cli import _err, profile_and_budget
from edgerun.cli.types import finite_float, integer, name_or_path, number
from edgerun.exitcodes import EXIT_USAGE, verdict_exit_code
from edgerun.outputs import check_outputs, input_files, write_atomic

__all__ = ["register"]

# Ranges of the options no library object checks before work starts (the ones that fill a
# BenchConfig are plain numbers: BenchConfig's own check is the rule, mapped to the option).
# Budget checks --soft-ms/--hard-ms/--percentile too, but only after the profile is read.
_MS = finite_float(0, 3_600_000, low_open=True)  # a budget past an hour is a typo
_PERCENTILE = finite_float(0, 100, low_open=True, high_open=True)  # p100 is the max, never "valid"
_CELSIUS = finite_float(-50, 150)  # what a thermal zone can read; outside, the wait never ends or starts
_WAIT_S = finite_float(0, 86_400)
_TIMEOUT_S = finite_float(0, 30 * 86_400, low_open=True)

# BenchOptions field (the flag's name) or BenchConfig field -> the option that sets it
_OPTION_OF = {
    "runs": "--runs",
    "min_seconds": "--min-seconds",
    "max_seconds": "--max-seconds",
    "warmup": "--warmup",
    "warmup_seconds": "--warmup-seconds",
    "threads": "--threads",
    "energy_windows": "--energy-windows",
    "energy_window_seconds": "--energy-window-seconds",
    "sustained": "--sustained",
}


def register(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser(
        "bench",
        help="benchmark artifacts (default: the bundled demo)",
        description="Time every stage of every inference and judge the latencies against the "
        "profile's real-time budgets. Several artifacts print side by side.",
    )
    b.add_argument("artifacts", nargs="*", metavar="ARTIFACT", help="model file, manifest or bundle folder")
    b.add_argument("--profile", type=name_or_path, help="device profile name or TOML path (default: detected)")
    b.add_argument(
        "--runs", type=integer, default=1000, help="minimum steady-state inferences (default 1000; p99 needs 662)"
    )
    b.add_argument("--min-seconds", type=number, default=1.0, help="minimum steady-state seconds (default 1)")
    b.add_argument(
        "--max-seconds",
        type=number,
        default=60.0,
        help="stop the steady state after this many seconds (default 60); after the warm-up a warning says "
        "when this (or --runs) is too short for a valid soft verdict at the measured rate, and how long it would take",
    )
    b.add_argument("--warmup", type=integer, default=10, help="minimum warm-up inferences (default 10)")
    b.add_argument("--warmup-seconds", type=number, default=0.5, help="minimum warm-up seconds (default 0.5)")
    b.add_argument(
        "--threads", type=integer, help="intra-op threads (default: the profile's; capped at the usable CPUs)"
    )
    b.add_argument(
        "--providers",
        help="comma-separated providers, e.g. XNNPACK,CPU or CUDA (must exist); TensorRT takes options: "
        "tensorrt:fp16:int8:cache=DIR,cuda,cpu. Given, the result records which provider ran each node",
    )
    b.add_argument("--engine", choices=("onnx", "litert", "executorch"), help="force an engine (default: by format)")
    b.add_argument(
        "--graph-opt",
        default="all",
        choices=("disable", "basic", "extended", "all"),
        help="onnxruntime graph optimisation level (default all)",
    )
    b.add_argument(
        "--inputs",
        metavar="FILE.npz",
        help="feed these raw inputs instead of the bundled samples or random data: an .npz (numpy.savez) with "
        "'x', one input per index on axis 0, as a manifest's samples; each is checked against the model first",
    )
    b.add_argument("--soft-ms", type=_MS, help="soft budget in ms (default: the profile's)")
    b.add_argument("--hard-ms", type=_MS, help="hard budget in ms (default: the profile's)")
    b.add_argument("--percentile", type=_PERCENTILE, help="percentile judged against the soft budget (default 99)")
    b.add_argument(
        "--json", metavar="FILE", help="write the versioned JSON result to FILE ('-': stdout, table to stderr)"
    )
    b.add_argument("--force", action="store_true", help="let --json replace an existing file")
    b.add_argument("--probe", help="power probe by name (must exist; default: the best one here, else an estimate)")
    b.add_argument("--no-energy", action="store_true", help="skip the energy windows")
    b.add_argument("--energy-windows", type=integer, default=3, help="energy windows per artifact (default 3)")
    b.add_argument("--energy-window-seconds", type=number, default=0.5, help="seconds per energy window (default 0.5)")
    b.add_argument("--no-memory", action="store_true", help="skip memory snapshots")
    b.add_argument("--no-thermal", action="store_true", help="skip thermal readings")
    b.add_argument(
        "--cooldown-c", type=_CELSIUS, help="between artifacts, wait until the hottest zone is below this (C)"
    )
    b.add_argument("--cooldown-s", type=_WAIT_S, help="between artifacts, pause this many seconds")
    b.add_argument("--cooldown-max-s", type=_WAIT_S, default=300, help="give up cooling down after this (default 300)")
    b.add_argument(
        "--sustained",
        type=number,
        metavar="MINUTES",
        help="run the steady state this long and report drift between the first and last minute",
    )
    b.add_argument(
        "--timeout", type=_TIMEOUT_S, help="kill a worker after this many seconds (default 2*max-seconds+120)"
    )
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
    # the parser comes along so that a BenchConfig error is reported as a usage error of its option
    b.set_defaults(func=cmd_bench, bench_parser=b)


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

    def notice(self, text: str) -> None:
        """A warning that arrives mid-run, on a line of its own (not drawn over by the bar)."""
        end_bar = "\n" if self.tty and self.last_phase else ""  # a bar is drawn: end its line first
        print(f"{end_bar}edgerun: warning: {self.label}: {text}", file=sys.stderr)

    def done(self, status: str) -> None:
        if self.tty:
            print(f"\r{self.label:<28} {status:<50}", file=sys.stderr)
        else:
            print(f"{self.label}: {status}", file=sys.stderr)


def _bench_config(args: argparse.Namespace) -> Any:
    """The BenchConfig the options ask for, through BenchOptions (the model --target and lab plans use too);
    BenchConfig's check is the rule, reported as a usage error of the option it names."""
    from edgerun.errors import BenchConfigError
    from edgerun.targets.options import BenchOptions

    try:
        config = BenchOptions.from_namespace(args).config()
    except BenchConfigError as exc:
        args.bench_parser.error(f"argument {_OPTION_OF.get(exc.field, exc.field)}: {exc.detail}")
    if args.inputs is None:
        return config
    if args.target:  # a path on this machine; a device reads its bundled samples
        args.bench_parser.error(
            "argument --inputs: a file on this machine, not the device's; with --target, give the "
            "artifact a manifest whose samples are these inputs"
        )
    import dataclasses

    from edgerun.errors import ArtifactError
    from edgerun.schema.files import check_samples

    inputs = Path(args.inputs).absolute()  # the worker process reads it
    try:
        check_samples(inputs)  # now: a bad file is a usage error, not a failure after the load
    except ArtifactError as exc:
        args.bench_parser.error(f"argument --inputs: {exc}")
    return dataclasses.replace(config, inputs=str(inputs))


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
    config = _bench_config(args)  # before anything else: a bad value is a usage error, not a late failure
    # before any measuring: a bad --json path must not cost (and then lose) the whole benchmark
    check_outputs([args.json], inputs=input_files([*paths, args.profile, args.inputs]), force=args.force)
    if args.target:  # on a device: its own edgerun (or native binaries) makes the results
        from edgerun.cli.target import bench_on_target_cli, results_table

        return _report_bench(args, bench_on_target_cli(args, paths), results_table)
    profile, reason, budget = profile_and_budget(args)
    for warning in config.warnings:  # now, not only after a run that may take minutes
        print(f"edgerun: warning: {warning}", file=sys.stderr)
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
        # said as it arrives (after the warm-up), not only after a run that may take minutes; -q too
        notice = progress.notice if progress is not None else _ProgressLine(path.name).notice
        if args.in_process:
            results.append(bench_one(str(path), config, profile, budget, reason, progress, notice))  # no isolation
        else:
            request = WorkerRequest(
                str(path), config.to_dict(), budget.__dict__, str(profile.source or profile.name), reason
            )
            results.append(run_in_worker(request, config.worker_timeout_s(args.timeout), progress, notice=notice))
        results[-1].setdefault("warnings", []).extend(config.warnings)  # in the result file too
        if progress is not None:
            progress.done(results[-1]["overall"].upper())
    return _report_bench(args, results)


def _report_bench(args: argparse.Namespace, results: list[dict[str, Any]], table: Any = None) -> int:
    """Print the side-by-side table (or ``table(results)``) and warnings, write --json, pick the exit code."""
    from edgerun.bench.report import side_by_side

    # with --json - the JSON owns stdout, so that it stays parseable: the table goes to stderr
    print((table or side_by_side)(results), file=sys.stderr if args.json == "-" else sys.stdout)
    for r in results:
        for warning in r.get("warnings", []):
            print(f"warning: {r['artifact'].get('name', r['artifact']['path'])}: {warning}", file=sys.stderr)
    _write_json(args.json, results, args.force)
    return verdict_exit_code(r["overall"] for r in results)


def _write_json(target: str | None, results: list[dict[str, Any]], force: bool) -> None:
    from edgerun.bench.result import result_file

    if not target:
        return
    text = json.dumps(result_file(results), indent=1)
    if target == "-":
        print(text)
    else:
        write_atomic(target, text + "\n", force=force)
        print(f"wrote {target}", file=sys.stderr)
