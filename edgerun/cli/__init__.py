"""The ``edgerun`` command line: one package, one module per command, one exit-code table.

This package is the only place in edgerun that prints for humans or ends the process: ``main``
parses the command line, runs the command and turns its errors into exit codes from the one table
in ``edgerun/exitcodes.py`` (0 pass, 1 fail or an EdgerunError, 2 usage, 3 not valid). The library
below it raises the ``edgerun.errors`` tree and returns results. The map:

    edgerun/cli/__init__.py   main, the parser, the helpers commands share
    edgerun/cli/__main__.py   ``python -m edgerun.cli`` (what ``bench --target`` runs on a device)
    edgerun/cli/types.py      argparse value types: numbers in range, ports, existing files
    edgerun/cli/bench.py      edgerun bench [ARTIFACT...]  benchmark (default: the bundled demo artifacts)
    edgerun/cli/info.py       edgerun info ARTIFACT        what an artifact is: format, precision, IO, ops
    edgerun/cli/run.py        edgerun run ARTIFACT         one inference; optional cloud fallback
    edgerun/cli/run_plain.py  ``run ARTIFACT [--json]`` read without argparse (~3.5 ms of start-up)
    edgerun/cli/machine.py    edgerun profiles, doctor     device profiles; what this machine offers
    edgerun/cli/compress.py   edgerun compress RECIPE      distill, prune, quantize, export, gate
    edgerun/cli/serve.py      edgerun serve                Open Inference Protocol server (fallback stand-in)
    edgerun/cli/serial.py     edgerun serial host|tiny     wearable firmware over a serial port
    edgerun/cli/target.py     edgerun target ...           prepare and inspect ssh/adb devices
    edgerun/cli/lab.py        edgerun lab run|report|...   device-lab plans and their reports
    edgerun/cli/mcu.py        edgerun mcu ...              TFLite Micro checks before flashing
    edgerun/cli/publish.py    edgerun publish ARTIFACT     sign model releases into a TUF update repository
    edgerun/cli/update.py     edgerun update|rollback|models  model updates on the device: accept, switch, roll back
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from edgerun.cli.run_plain import plain_run_args
from edgerun.errors import EdgerunError
from edgerun.exitcodes import EXIT_FAIL, EXIT_NOT_VALID, EXIT_PASS, EXIT_USAGE, exit_code  # noqa: F401 (re-exported)

if TYPE_CHECKING:  # imported where a parser is built: `edgerun run ARTIFACT` needs none (cli/run_plain.py)
    import argparse

# Command name -> (module that registers it, the one-line help `edgerun --help` shows). With it,
# `edgerun --help` and `edgerun CMD ...` import no command module but the one given: importing
# all of them cost ~0.1 s of CPU per start (the compress recipe parser, the fallback policy, the
# targets' specs), paid by every `edgerun run`. The help must equal the module's own ``help=``
# (tests/test_startup.py checks both ways).
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("edgerun.cli.bench", "benchmark artifacts (default: the bundled demo)"),
    "info": ("edgerun.cli.info", "describe an artifact"),
    "run": ("edgerun.cli.run", "one inference"),
    "profiles": ("edgerun.cli.machine", "list device profiles"),
    "doctor": ("edgerun.cli.machine", "what this machine offers: engines, providers, probes, thermal"),
    "compress": (
        "edgerun.cli.compress",
        "run a compression recipe: distill, prune, quantize, export, gate, Pareto report",
    ),
    "serve": ("edgerun.cli.serve", "serve artifacts over the Open Inference Protocol (cloud-fallback stand-in)"),
    "serial": ("edgerun.cli.serial", "wearable firmware over a serial port: stream host, MLPerf Tiny DUT runner"),
    "target": ("edgerun.cli.target", "prepare and inspect devices (ssh, adb) that `bench --target` and `lab` drive"),
    "lab": ("edgerun.cli.lab", "run a device-lab plan, report on it, compare two runs"),
    "mcu": ("edgerun.cli.mcu", "microcontroller checks with TFLite Micro (ops, arena, flash) before flashing"),
    "publish": ("edgerun.cli.publish", "sign model releases into a TUF update repository (build host)"),
    "update": (
        "edgerun.cli.update",
        "fetch a signed model release (TUF), accept it on this device, then switch to it",
    ),
    "rollback": ("edgerun.cli.update", "make the previous model version current again"),
    "models": ("edgerun.cli.update", "list the model store: versions, current and previous"),
}


# Every command module, each once, in the order `edgerun --help` lists its commands. Each has
# ``register(subparsers)`` and imports nothing heavy at module level (its command functions import
# lazily); ``build_parser`` imports only the module of the command given.
COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(module for module, _ in COMMANDS.values()))


def _err(msg: str) -> None:
    print(f"edgerun: error: {msg}", file=sys.stderr)


def profile_and_budget(args: argparse.Namespace) -> tuple[Any, str, Any]:
    """The profile (--profile, else detected), why it was chosen, and the budget with --soft-ms etc. applied."""
    from edgerun.budget import Budget
    from edgerun.detection import detect
    from edgerun.profiles import load_profile

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


def command_in(argv: list[str]) -> str | None:
    """The command a command line names: its first word that is not an option.

    The top-level parser has no option that takes a value (only --help and --version), so
    the first non-option word is the one argparse will take as COMMAND; after ``--`` every
    word is one.
    """
    for i, word in enumerate(argv):
        if word == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: the command it names gets its module's full parser, every other
    command a stub with only its name and help (enough for ``edgerun --help`` and for "invalid
    choice" errors). ``argv=None`` registers every command's full parser (tests, documentation).
    """
    import argparse

    from edgerun import __version__

    chosen = command_in(argv) if argv is not None else None
    # `edgerun CMD ...` with CMD first: every later word is CMD's, so the top-level help and its
    # "invalid choice" error, all the stubs are for, cannot come up (~1 ms of parsers saved per start).
    alone = argv is not None and len(argv) > 0 and argv[0] == chosen and chosen in COMMANDS
    parser = argparse.ArgumentParser(
        prog="edgerun",
        description="edgerun: on-device inference runtime and benchmark harness for edge medical AI.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `edgerun COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"edgerun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        names = [name for name, (mod, _) in COMMANDS.items() if mod == module]
        if argv is None or chosen in names:
            importlib.import_module(module).register(sub)
            continue
        if alone:
            continue
        for name in names:
            # add_help=False: a stub is never the parser that runs (its module's replaces it when
            # the command is given); it only has to list the command under its help.
            sub.add_parser(name, help=COMMANDS[name][1], add_help=False)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but an unknown option is reported with its command's usage, not the top level's."""
    import argparse

    args, extra = parser.parse_known_args(argv)
    if extra:
        innermost = parser  # walk down `edgerun lab report ...` to the parser of the command given
        while True:
            subs = [a for a in innermost._actions if isinstance(a, argparse._SubParsersAction)]
            chosen = getattr(args, subs[0].dest, None) if subs and subs[0].dest != argparse.SUPPRESS else None
            if chosen not in (subs[0].choices if subs else {}):
                break
            innermost = subs[0].choices[chosen]
        innermost.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    plain = plain_run_args(argv)  # `run ARTIFACT [--json]`; None for every other command line
    args = plain if plain is not None else _parse(build_parser(argv), argv)
    try:
        return int(args.func(args))
    except EdgerunError as exc:  # a UsageError or PolicyError is exit 2, the rest 1: edgerun/exitcodes.py
        _err(str(exc))
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        _err("interrupted")
        return exit_code(exc)
    except BrokenPipeError:  # `edgerun info ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return EXIT_PASS
    except Exception as exc:  # not an EdgerunError: a bug in edgerun, never the user's fault
        if os.environ.get("EDGERUN_DEBUG"):
            raise
        from edgerun import __version__

        _err(
            f"internal error in edgerun {__version__}: {type(exc).__name__}: {exc}; this is a bug, please "
            "report it with the command line (EDGERUN_DEBUG=1 shows the traceback)"
        )
        return EXIT_FAIL
