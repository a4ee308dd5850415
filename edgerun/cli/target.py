"""``edgerun target setup|info`` and the ``--target`` path of ``edgerun bench``.

Registered through ``edgerun.cli.COMMAND_MODULES``; nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgerun.cli.types import existing_dir
from edgerun.exitcodes import EXIT_PASS

__all__ = ["bench_on_target_cli", "register", "results_table"]


def _note(args: argparse.Namespace, line: str) -> None:
    if not getattr(args, "quiet", False):
        print(line, file=sys.stderr)


def _open(url: str, python: str | None = None) -> Any:
    from edgerun.targets import open_target, parse_target

    return open_target(parse_target(url).with_options(python=python))


def cmd_setup(args: argparse.Namespace) -> int:
    from edgerun.targets.setup import setup_target

    target = _open(args.url)
    report = setup_target(
        target,
        base_python=args.base_python,
        wheelhouse=Path(args.wheelhouse) if args.wheelhouse else None,
        system_site_packages=args.system_site_packages,
        say=lambda line: _note(args, f"{target.spec.label}: {line}"),
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(
            f"{report.url}: edgerun {report.edgerun_version} ready at {report.venv_python} "
            f"(Python {report.python_version})"
        )
    return EXIT_PASS


def cmd_info(args: argparse.Namespace) -> int:
    from edgerun.targets.identity import identify
    from edgerun.targets.thermal import read_target_thermal

    target = _open(args.url, args.remote_python)
    info: dict[str, Any] = {"identity": identify(target).to_dict()}
    info["thermal"] = read_target_thermal(target).to_dict()
    if target.spec.kind == "adb":
        from edgerun.targets.android import charging_state

        info["charging"] = charging_state(target)
    if args.json:
        print(json.dumps(info, indent=1))
        return EXIT_PASS
    for key, value in info["identity"].items():
        print(f"{key:<16} {value}")
    thermal = info["thermal"]
    print(f"{'hottest (C)':<16} {thermal['hottest_c']}")
    print(f"{'thermal sources':<16} {'; '.join(thermal['sources']) or '(none)'}")
    if "charging" in info:
        print(f"{'charging':<16} {info['charging']['sources'] or 'no'}")
    return EXIT_PASS


def _cooldown(args: argparse.Namespace, target: Any) -> None:
    if args.cooldown_c is None and args.cooldown_s is None:
        return
    from edgerun.targets.thermal import target_cooldown

    done = target_cooldown(target, args.cooldown_c, args.cooldown_s, args.cooldown_max_s)
    _note(args, f"cooldown on {target.spec.label}: {done.reason}")


def bench_on_target_cli(args: argparse.Namespace, paths: list[Path]) -> list[dict[str, Any]]:
    """``edgerun bench --target URL``: every artifact on the device, one result each (ok or error)."""
    from edgerun.errors import EdgerunError
    from edgerun.targets.bench import bench_on_target, target_error_result, uses_native_runner
    from edgerun.targets.identity import identify, require_edgerun
    from edgerun.targets.options import BenchOptions

    target = _open(args.target, args.remote_python)
    options = BenchOptions.from_namespace(args)
    identity = identify(target)  # unreachable or refused: one clear error for the whole command
    if not uses_native_runner(target):
        require_edgerun(target, identity)
    runner = "native binaries" if uses_native_runner(target) else f"edgerun {identity.edgerun_version}"
    _note(
        args,
        f"target: {target.spec.label}: {identity.model or identity.hostname or '?'} ({identity.os or '?'}), {runner}"
        + (f"; EMULATED: {identity.emulation}" if identity.emulation else ""),
    )
    results = []
    for i, path in enumerate(paths):
        if i:
            _cooldown(args, target)
        _note(args, f"{path.name}: on {target.spec.label}...")
        try:
            result = bench_on_target(target, path, options, identity)
        except EdgerunError as exc:  # this artifact's job failed; the others still run
            result = target_error_result(path, exc, identity, target.spec.label)
        _note(args, f"{path.name}: {result['overall'].upper()}")
        results.append(result)
    return results


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.3f}"


def _native_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    stats, v = r["stats"]["total"], r["verdicts"]
    pct = {k: p["value_ns"] for k, p in stats["percentiles"].items()}
    energy = r.get("energy") or {}
    return [
        ("tool", r["runner"]["tool"]),
        ("runs", str(stats["n"])),
        ("session create (ms)", _ms(r["cold_start"]["session_create_ns"])),
        ("first inference (ms)", _ms(r["cold_start"]["first_inference"]["infer_ns"])),
        ("mean / std (ms)", f"{_ms(stats['mean_ns'])} / {_ms(stats['std_ns'])}"),
        ("min / max (ms)", f"{_ms(stats['min_ns'])} / {_ms(stats['max_ns'])}"),
        ("p50 / p99 / p99.9 (ms)", " / ".join(_ms(pct.get(k)) for k in ("p50", "p99", "p99.9"))),
        ("hard / soft / size", " / ".join(v[k]["status"].upper() for k in ("hard", "soft", "model_size"))),
        (
            "energy mJ/inf",
            f"{energy['gross_mj_per_inference']:.3f} gross" if energy.get("gross_mj_per_inference") else "-",
        ),
        ("charging", ",".join(r["charging"]["sources"]) or "no"),
        ("overall", r["overall"].upper()),
    ]


def results_table(results: list[dict[str, Any]]) -> str:
    """edgerun results side by side as locally; native-binary results in their own, shorter table."""
    from edgerun.bench.report import side_by_side

    native = [r for r in results if r.get("status") == "ok" and r.get("runner", {}).get("kind") == "native"]
    parts = [side_by_side([r for r in results if r not in native])] if len(native) < len(results) else []
    for r in native:
        rows = [("artifact", r["artifact"]["name"]), *_native_rows(r)]
        parts.append("\n".join(f"{k:<24} {v}" for k, v in rows))
        parts.append("not given by the binary: " + ", ".join(r["runner"]["unavailable"]))
    return "\n\n".join(parts)


def register(subparsers: Any) -> None:
    t = subparsers.add_parser(
        "target",
        help="prepare and inspect devices (ssh, adb) that `bench --target` and `lab` drive",
        description="Targets are local://, ssh://[user@]host[:port] and adb://[serial], with options "
        "as a query string (?python=...&workdir=...); see docs/lab.md.",
    )
    sub = t.add_subparsers(dest="target_command", metavar="SUBCOMMAND", required=True)
    s = sub.add_parser(
        "setup",
        help="create a virtual environment on the device and install this edgerun in it",
        description="Create <workdir>/venv on the device and install the edgerun running here. With "
        "--wheelhouse the dependencies come from that folder (offline, pip --no-index).",
    )
    s.add_argument("url", metavar="URL", help="ssh://[user@]host[:port][?workdir=...]")
    s.add_argument(
        "--wheelhouse",
        metavar="DIR",
        type=existing_dir,
        help="wheels for the device's platform and Python (offline install)",
    )
    s.add_argument("--base-python", default="python3", help="the device's Python to create the venv with")
    s.add_argument(
        "--system-site-packages", action="store_true", help="let the venv see system packages (Jetson onnxruntime-gpu)"
    )
    s.add_argument("--json", action="store_true", help="machine-readable report")
    s.add_argument("-q", "--quiet", action="store_true", help="no step-by-step lines on stderr")
    s.set_defaults(func=cmd_setup)
    i = sub.add_parser("info", help="who the device is: model, OS, kernel, Python, edgerun, temperatures")
    i.add_argument("url", metavar="URL")
    i.add_argument("--remote-python", help="the device's interpreter with edgerun (default: the setup venv)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)
