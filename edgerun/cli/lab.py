"""``edgerun lab run|report|compare|places|merge``. Registered through ``edgerun.cli.COMMAND_MODULES``.

Exit codes: ``run`` 0 when every job of the plan is done, 1 when some are left (failed
or unreachable device: run it again to resume); ``compare`` 0 no regression, 1 a
regression, 3 nothing comparable; 2 usage errors everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path
from typing import Any

from edgerun.cli.types import existing_file, finite_float
from edgerun.exitcodes import EXIT_FAIL, EXIT_NOT_VALID, EXIT_PASS

__all__ = ["register"]


def _progress(quiet: bool) -> Any:
    lock = threading.Lock()

    def say(target: str, line: str) -> None:
        if not quiet:
            with lock:
                print(f"[{target}] {line}", file=sys.stderr, flush=True)

    return say


def cmd_run(args: argparse.Namespace) -> int:
    from edgerun.lab.plan import load_plan
    from edgerun.lab.scheduler import run_plan
    from edgerun.lab.store import LabStore

    plan = load_plan(args.plan, args.db)
    store = LabStore(plan.database)
    try:
        summary = run_plan(plan, store, _progress(args.quiet))
    finally:
        store.close()
    left = sum(t.todo - t.done for t in summary.targets.values())
    print(
        f"{plan.name}: {summary.total} jobs, {summary.skipped} already done, "
        f"{summary.total - summary.skipped - left} run now, {left} left; results in {plan.database}"
    )
    for name, t in summary.targets.items():
        if t.stopped:
            print(f"  {name}: {t.stopped}")
        if t.power_cycles:
            print(f"  {name}: {t.power_cycles} board(s) power-cycled and the job retried (the results' power_cycles)")
    return EXIT_PASS if left == 0 else EXIT_FAIL


def _database(args: argparse.Namespace) -> Path:
    if args.db:
        return Path(args.db)
    if args.plan:
        from edgerun.lab.plan import load_plan

        return load_plan(args.plan).database
    return Path("lab.sqlite")


def cmd_report(args: argparse.Namespace) -> int:
    from edgerun.lab.report import write_report
    from edgerun.lab.store import LabStore
    from edgerun.outputs import check_outputs

    database = _database(args)
    out = Path(args.output)
    md = Path(args.markdown) if args.markdown else out.with_suffix(".md")
    # before the database is opened: `report DB -o DB` must leave DB as it was
    journals = [Path(f"{database}{suffix}") for suffix in ("-wal", "-shm", "-journal")]
    check_outputs([out, md], inputs=[database, *journals, *([args.plan] if args.plan else [])], force=args.force)
    store = LabStore(database, create=False)
    try:
        write_report(store, out, md, args.plan_name, force=args.force)
    finally:
        store.close()
    print(f"wrote {out} and {md}")
    return EXIT_PASS


def _compare_table(rows: list[Any]) -> str:
    head = f"{'artifact':<26} {'device':<16} {'options':<12} {'p50 base/cand ms':>18} {'p50 %':>7} {'p99 base/cand ms':>18} {'p99 %':>7}  verdict"  # noqa: E501
    lines = [head, "-" * len(head)]
    for c in rows:
        cells = []
        for m in c.metrics:
            flag = "*" if not m.valid else ""
            cells += [f"{m.baseline_ns / 1e6:.3f}/{m.candidate_ns / 1e6:.3f}{flag}", f"{m.change_pct:+.1f}"]
        cells += ["-", "-", "-", "-"][len(cells) :]
        lines.append(
            f"{c.artifact:<26} {c.target:<16} {c.options or '-':<12} {cells[0]:>18} {cells[1]:>7} {cells[2]:>18} "
            f"{cells[3]:>7}  {c.verdict.upper()}: {c.reason}"
        )
    return "\n".join(lines)


def cmd_compare(args: argparse.Namespace) -> int:
    from edgerun.lab.compare import compare_files

    rows = compare_files(args.baseline, args.candidate, args.threshold_pct, args.alpha)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
    else:
        print(_compare_table(rows) if rows else "nothing to compare: no artifact/device/options on both sides")
        print("* not valid: too few samples for that percentile; never gated on", file=sys.stderr)
    if any(r.verdict == "regression" for r in rows):
        return EXIT_FAIL
    return EXIT_NOT_VALID if not any(r.verdict != "not comparable" for r in rows) else EXIT_PASS


def cmd_places(args: argparse.Namespace) -> int:
    from edgerun.lab.places import describe_places, places_table
    from edgerun.targets.labgrid_client import coordinator_address

    plan = None
    if args.plan:
        from edgerun.lab.plan import load_plan

        plan = load_plan(args.plan)
    address = coordinator_address(args.coordinator or (plan.coordinator if plan else None))
    view = describe_places(address, plan)
    print(json.dumps(view, indent=1) if args.json else places_table(view))
    return EXIT_PASS


def cmd_merge(args: argparse.Namespace) -> int:
    from edgerun.lab.merge import merge_databases

    summary = merge_databases(Path(args.output), [Path(p) for p in args.databases])
    print(f"wrote {args.output}: {summary.runs} run(s), {summary.results} result(s), {summary.failures} failure(s)")
    for name, count in summary.duplicates.items():
        print(f"  {name}: {count} job(s) already in an earlier input, kept from there", file=sys.stderr)
    return EXIT_PASS


def register(subparsers: Any) -> None:
    lab = subparsers.add_parser(
        "lab",
        help="run a device-lab plan, report on it, compare two runs",
        description="A plan (TOML) of artifacts x targets x options x repetitions, run into one SQLite file; "
        "see docs/lab.md.",
    )
    sub = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", required=True)
    r = sub.add_parser("run", help="run the plan's jobs that are not done yet (resumable)")
    r.add_argument("plan", metavar="PLAN.toml", type=existing_file)
    r.add_argument("--db", help="database file (default: the plan's [lab] database, next to the plan)")
    r.add_argument("-q", "--quiet", action="store_true", help="no per-device progress on stderr")
    r.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="static HTML report (plots embedded) and a Markdown summary")
    rep.add_argument(
        "db", nargs="?", metavar="DB", type=existing_file, help="lab database (default: --plan's, else lab.sqlite)"
    )
    rep.add_argument("--plan", type=existing_file, help="take the database from this plan")
    rep.add_argument("--plan-name", help="only this plan's results (a database can hold several)")
    rep.add_argument("-o", "--output", default="lab-report.html", help="HTML file (default lab-report.html)")
    rep.add_argument("--markdown", help="Markdown summary file (default: the HTML name with .md)")
    rep.add_argument("--force", action="store_true", help="replace existing report files")
    rep.set_defaults(func=cmd_report)
    c = sub.add_parser(
        "compare",
        help="p50/p99 changes with a statistical test; exit 1 on a regression",
        description="Compare two lab databases or `edgerun bench --json` files per artifact, device and options.",
    )
    c.add_argument("baseline", metavar="BASELINE", type=existing_file)
    c.add_argument("candidate", metavar="CANDIDATE", type=existing_file)
    c.add_argument(
        "--threshold-pct", type=finite_float(0, 1000), default=5.0, help="smallest change that counts (default 5%%)"
    )
    c.add_argument(
        "--alpha",
        type=finite_float(0, 1, low_open=True, high_open=True),
        default=0.01,
        help="significance level of the U test (default 0.01)",
    )
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(func=cmd_compare)
    pl = sub.add_parser(
        "places",
        help="the labgrid places a coordinator offers, and which a plan would use",
        description="List the coordinator's places (tags, who holds them, their NetworkService) and, given a "
        "plan, which places each labgrid target matches. The coordinator: --coordinator, else the plan's "
        "[lab] coordinator, else LG_COORDINATOR. See docs/lab.md, 'From one host to a lab'.",
    )
    pl.add_argument("plan", nargs="?", metavar="PLAN.toml", type=existing_file, help="show which places it uses")
    pl.add_argument("--coordinator", metavar="HOST:PORT", help="labgrid coordinator (default: plan, LG_COORDINATOR)")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(func=cmd_places)
    m = sub.add_parser(
        "merge",
        help="merge lab databases (several lab hosts) into a new one for one report",
        description="Copy every run, result and failure of the inputs into a new database OUT; a job in more "
        "than one input is kept once (from the first). The inputs are read-only; OUT must not exist.",
    )
    m.add_argument("output", metavar="OUT.sqlite", help="the new database")
    m.add_argument("databases", metavar="DB", nargs="+", type=existing_file, help="lab databases to merge (2+)")
    m.set_defaults(func=cmd_merge)
