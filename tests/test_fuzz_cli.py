"""Fuzz every command's options with odd values (issue 11, section 2).

Each case is ``edgerun CMD ... OPTION=VALUE`` run in this process. Whatever the value, the
answer is exit 2 with the command's usage and a line naming the option, or exit 1 (or 2 for
a library's ValueError, see edgerun.cli.main) with exactly one ``edgerun: error:`` line;
never a traceback, never the "internal error ... this is a bug" line, never a slow run.

Every base command line ends in something that fails fast after the options are parsed
(a missing artifact, profile or serial port), so an odd value that is accepted does not
start a real benchmark or server. Seeded (random.Random(11)): the same 320 cases on every run.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import string
from pathlib import Path

import pytest

from edgerun.cli import main
from edgerun.demo import DEMO_DIR

MODEL = str(DEMO_DIR / "digits-fp32.onnx")

NUMBERS = [
    "0", "-0", "-1", "-1e9", "1e308", "1e999", "-1e999", str(2**70), "9" * 5000, "nan", "NaN", "-nan",
    "inf", "-inf", "Infinity", "0.0", "1.5", "0x10", "1_000", " 3", "", " ", "abc", "1,5", "\x00", "é",
]  # fmt: skip
PATH_KINDS = ["<folder>", "<missing>", "<fifo>", "<empty-file>", "<garbage-file>", "<deep-toml>", "<nan-toml>"]


def _paths(root: Path) -> dict[str, str]:
    made = {
        "<folder>": root,
        "<missing>": root / "missing" / "x.toml",
        "<fifo>": root / "pipe",
        "<empty-file>": root / "empty.toml",
        "<garbage-file>": root / "garbage.toml",
        "<deep-toml>": root / "deep.toml",
        "<nan-toml>": root / "nan.toml",
    }
    if not made["<fifo>"].exists():
        os.mkfifo(made["<fifo>"])
        made["<empty-file>"].write_text("")
        made["<garbage-file>"].write_bytes(b"\xff\xfe[[[= \x00")
        made["<deep-toml>"].write_text("a = " + "[" * 3000 + "]" * 3000)
        made["<nan-toml>"].write_text(f"x = nan\nseed = {2**70}\n")
    return {k: str(v) for k, v in made.items()}


# (command words, base arguments, options to fuzz); in the base, MISSING is a path that does not exist
# and stops the command once its options are parsed. A positional is fuzzed as "@NAME" (its metavar).
COMMANDS = [
    (
        ["bench"],
        ["--in-process", "-q", "--profile", "MISSING.toml", MODEL],
        [
            "--runs",
            "--min-seconds",
            "--max-seconds",
            "--warmup",
            "--warmup-seconds",
            "--threads",
            "--soft-ms",
            "--hard-ms",
            "--percentile",
            "--energy-windows",
            "--energy-window-seconds",
            "--cooldown-c",
            "--cooldown-s",
            "--cooldown-max-s",
            "--sustained",
            "--timeout",
            "--providers",
            "--probe",
        ],
    ),
    (["bench"], ["--in-process", "-q", MODEL], ["--profile"]),
    (["info"], [], ["@ARTIFACT"]),
    (
        ["run"],
        ["MISSING.onnx"],
        [
            "--sample",
            "--threads",
            "--soft-ms",
            "--hard-ms",
            "--deadline-ms",
            "--hedge-ms",
            "--max-attempts",
            "--max-payload-bytes",
            "--warmup",
            "--repeat",
            "--probe-timeout-s",
            "--token-file",
            "--ca-bundle",
            "--client-cert",
            "--client-key",
            "--fallback-config",
            "--input",
            "--profile",
        ],
    ),
    (
        ["serve"],
        ["--host", "127.0.0.1", "--port", "0", "MISSING.onnx"],
        ["--port", "--token-file", "--tls-cert", "--tls-client-ca", "--max-request-bytes", "--threads", "--log-level"],
    ),
    (["compress"], ["--check"], ["@recipe"]),
    (
        ["serial", "host"],
        ["--port", "MISSING-tty", "--duration", "0.01", "-q", "--profile", "MISSING.toml", "MISSING.onnx"],
        [
            "--baud",
            "--window",
            "--hop",
            "--queue",
            "--threads",
            "--duration",
            "--give-up-after",
            "--soft-ms",
            "--percentile",
        ],
    ),  # fmt: skip
    (
        ["serial", "tiny"],
        ["--port", "MISSING-tty", "--dataset", "FOLDER", "-q", "--profile", "MISSING.toml"],
        ["--dataset", "--baud", "--iterations", "--warmups", "--perf-files", "--limit", "--timeout", "--hard-ms"],
    ),
    (["target", "setup"], ["bogus://device"], ["--wheelhouse"]),
    (["target", "info"], [], ["@URL"]),
    (["lab", "run"], [], ["@PLAN.toml"]),
    (["lab", "report"], ["-o", "OUT/r.html"], ["@DB", "--plan"]),
    (["lab", "compare"], ["EMPTY.json", "EMPTY.json"], ["--threshold-pct", "--alpha"]),
    (["lab", "compare"], [], ["@BASELINE"]),
    (["lab", "places"], ["EMPTY.json"], ["--coordinator"]),  # the plan is read (and refused) before connecting
    (["lab", "places"], [], ["@PLAN.toml"]),
    (["lab", "merge"], ["OUT/m.sqlite", "EMPTY.json"], ["@DB"]),
]
CASES = [(words, base, option) for words, base, options in COMMANDS for option in options]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return code, err.getvalue(), out.getvalue()


def _check(argv: list[str], option: str, code: int, err: str, out: str) -> None:
    shown = f"edgerun {' '.join(a[:40] for a in argv)}"
    # A refusal measures nothing: a case that ran for real printed its result (a mechanism, not a clock).
    assert out == "", f"{shown}: printed a result:\n{out[:300]}"
    assert "Traceback" not in err and "this is a bug" not in err, f"{shown}:\n{err[:600]}"
    errors = [line for line in err.splitlines() if "error:" in line]
    if code == 2 and err.startswith("usage: edgerun "):
        assert len(errors) == 1 and f"error: argument {option.lstrip('@')}" in errors[0], f"{shown}:\n{err}"
        return
    # a refusal after parsing: one line (exit 2 remains for a library ValueError, edgerun.cli.main)
    assert code in (1, 2), f"{shown}: exit {code}\n{err}"
    assert len(errors) == 1 and errors[0].startswith("edgerun: error: "), f"{shown}:\n{err}"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice(string.printable + "é\u2028") for _ in range(rng.randint(0, 12)))


def _cases(n: int, seed: int = 11) -> list[tuple[list[str], list[str], str, str]]:
    """Every (command, option) with each odd value once, then random pairs up to ``n``."""
    rng = random.Random(seed)
    pool = NUMBERS + PATH_KINDS
    cases = [(w, b, o, rng.choice(pool)) for w, b, o in CASES]
    while len(cases) < n:
        words, base, option = rng.choice(CASES)
        cases.append((words, base, option, rng.choice(pool) if rng.random() < 0.8 else _random_text(rng)))
    return cases


@pytest.mark.parametrize(("words", "base", "option", "value"), _cases(320), ids=lambda v: repr(v)[:24])
def test_odd_option_values_are_refused_cleanly(
    root: Path, words: list[str], base: list[str], option: str, value: str
) -> None:
    paths = _paths(root)
    value = paths.get(value, value)
    (root / "EMPTY.json").write_text("{}")
    fixed = {
        "MISSING.toml": str(root / "missing.toml"),
        "MISSING.onnx": str(root / "missing.onnx"),
        "MISSING-tty": str(root / "ttyMISSING"),
        "FOLDER": str(root),
        "EMPTY.json": str(root / "EMPTY.json"),
        "OUT/r.html": str(root / "out" / "r.html"),
        "OUT/m.sqlite": str(root / "out" / "m.sqlite"),
    }
    argv = [*words, *(fixed.get(a, a) for a in base)]
    if option.startswith("@"):
        argv += ["--", value]  # after "--": a value such as "-1" is the positional, not an option
    else:
        argv.insert(len(words), f"{option}={value}")  # "=": "-nan" is the value, not an option
    code, err, out = _run(argv)
    _check(argv, option, code, err, out)
