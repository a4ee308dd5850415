"""``edgerun run ARTIFACT`` (optionally ``--json``), the plainest command line, read without argparse.

Importing argparse (with gettext and locale, which its messages pull in) and building ``run``'s
parser with its ~40 options cost ~3.5 ms of CPU per start, ~2% of a whole ``edgerun run`` of the
demo model (issue 13's start-up goal; ``python tools/bench_startup.py``). Only two exact forms are
read here:

    edgerun run ARTIFACT
    edgerun run ARTIFACT --json

where ARTIFACT does not start with ``-``. Every other command line (another option, ``--help``, an
abbreviation, a second word, ``--``) returns None and goes through argparse, so the help and every
usage error are argparse's, exactly as before. The namespace holds every option of ``run``'s parser
at its default (``RUN_DEFAULTS``); tests/test_startup_plain_run.py compares it with argparse's for
the same command line, so an option added to ``register`` and not here fails that test.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

__all__ = ["RUN_DEFAULTS", "plain_run_args"]

# What argparse sets for `edgerun run ARTIFACT` (edgerun/cli/run.py register), option by option.
RUN_DEFAULTS: dict[str, Any] = {
    "input": None,
    "sample": 0,
    "profile": None,
    "threads": None,
    "json": False,
    "repeat": 1,
    # cloud fallback
    "fallback_url": None,
    "mode": None,
    "fallback_config": None,
    "fallback_model": None,
    "fallback_version": None,
    "soft_ms": None,
    "hard_ms": None,
    "deadline_ms": None,
    "connect_timeout_ms": None,
    "fallback_on": None,
    "hedge_ms": None,
    "max_attempts": None,
    "binary": None,
    "max_payload_bytes": None,
    "allow_input": None,
    "variant": None,
    "token_env": None,
    "token_file": None,
    "ca_bundle": None,
    "client_cert": None,
    "client_key": None,
    "audit": None,
    "warmup": None,
    "probe_timeout_s": 2.0,
    "stats": False,
    "stats_json": None,
    # telemetry
    "metrics_port": None,
    "metrics_addr": "127.0.0.1",
    "metrics_textfile": None,
    "otlp_endpoint": None,
    "event_log": None,
}


def plain_run_args(argv: list[str]) -> SimpleNamespace | None:
    """The parsed arguments of ``run ARTIFACT`` / ``run ARTIFACT --json``, as argparse would set them
    (attributes only: a ``SimpleNamespace``); None for any other command line."""
    if len(argv) not in (2, 3) or argv[0] != "run" or argv[2:] not in ([], ["--json"]):
        return None
    artifact = argv[1]
    if artifact.startswith("-"):  # an option (or "--"): argparse's to read or refuse
        return None
    from edgerun.cli.run import cmd_run

    return SimpleNamespace(command="run", artifact=artifact, **{**RUN_DEFAULTS, "json": len(argv) == 3}, func=cmd_run)
