"""``edgerun profiles`` and ``edgerun doctor``: this machine's device profile and what it offers.

Registered through ``edgerun.cli.COMMAND_MODULES``; nothing heavy is imported at module level.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgerun.exitcodes import EXIT_PASS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
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
        "sources, memory-peak support and the detected device profile. Each engine is probed in a "
        "child process: one that crashes on import is listed as unavailable, with the signal and "
        "the phase. Exits 0 whenever the report is printed, engines missing or crashed included.",
    )
    d.add_argument("--json", action="store_true", help="machine-readable output")
    d.set_defaults(func=cmd_doctor)


def cmd_profiles(args: argparse.Namespace) -> int:
    from edgerun.detection import detect
    from edgerun.profiles import list_profiles

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

    # EXIT_PASS even when an engine is missing or crashed: that is a finding the report shows,
    # not a failure of the doctor (scripts read "engines[].available" from --json).
    report = diagnose()
    print(json.dumps(report, indent=1) if args.json else render(report))
    return EXIT_PASS
