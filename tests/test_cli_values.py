"""Odd option values and odd TOML files (issue 11, section 2): each is refused before any work,
as a usage error naming the option (exit 2) or one ``edgerun: error:`` line (exit 1)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from edgerun.bench.runner import BenchConfig, BenchConfigError
from edgerun.cli import main
from edgerun.cli import types as cli_types
from edgerun.demo import DEMO_DIR
from edgerun.errors import LabError, ProfileError, RecipeError
from edgerun.threads import usable_cpus

MODEL = str(DEMO_DIR / "digits-fp32.onnx")
USABLE = usable_cpus()  # the affinity mask and any cgroup CPU quota: the cap every command uses


def call(*argv: str) -> tuple[int, str, str]:
    """``edgerun ARGV`` in this process: (exit code, stdout, stderr); argparse's exit 2 included."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_usage(code: int, err: str, command: str, option: str, says: str = "") -> None:
    assert code == 2, err
    assert err.startswith(f"usage: edgerun {command} "), err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"edgerun {command}: error: argument {option}"), last
    assert says in last and "Traceback" not in err


def assert_one_line(code: int, err: str, says: str = "") -> None:
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("edgerun: error: ")]
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err and "this is a bug" not in err


# --- the type functions ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "NaN", "-1", "101", "100"])
def test_finite_float_refuses_non_finite_and_out_of_range(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="finite number > 0 and < 100"):
        cli_types.finite_float(0, 100, low_open=True, high_open=True)(text)


def test_whole_numbers_and_ports() -> None:
    assert cli_types.positive_int(" 7 ") == 7
    for bad in ("0", "-3", str(2**70)):
        with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
            cli_types.positive_int(bad)
    with pytest.raises(ValueError):  # argparse turns it into "invalid int value: '1.5'"
        cli_types.positive_int("1.5")
    assert cli_types.port("0") == 0 and cli_types.port("65535") == 65535
    for bad in ("70000", "-1", "http", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="TCP port 1-65535"):
            cli_types.port(bad)


def test_existing_file_refuses_folders_fifos_and_missing_paths(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (tmp_path / "f").write_text("x")
    assert cli_types.existing_file(str(tmp_path / "f")) == str(tmp_path / "f")
    cases = {str(tmp_path): "is a folder", str(fifo): "FIFO", str(tmp_path / "nope"): "no such file", "": "empty"}
    for path, says in cases.items():
        with pytest.raises(argparse.ArgumentTypeError, match=says):
            cli_types.existing_file(path)  # never opened: a FIFO would block here
    with pytest.raises(argparse.ArgumentTypeError, match="is not a regular file|a FIFO|is a file"):
        cli_types.existing_dir(str(tmp_path / "f"))


def test_cpu_threads_caps_at_the_usable_cpus_with_a_warning() -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert cli_types.cpu_threads("100000") == USABLE
    assert f"threads 100000 capped at {USABLE}" in err.getvalue()


# --- bench: each odd value of issue 11 ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--max-seconds", "inf", "finite"),
        ("--timeout", "-1", "> 0"),
        ("--sustained", "NaN", "finite"),
        ("--sustained", "0", "> 0"),
        ("--runs", "0", ">= 1"),
        ("--runs", "-5", ">= 1"),
        ("--warmup", "-1", ">= 0"),
        ("--percentile", "100", "< 100"),
        ("--percentile", "0", "> 0"),
        ("--percentile", "nan", "finite"),
        ("--soft-ms", "-1", "> 0"),
        ("--hard-ms", "inf", "finite"),
        ("--energy-windows", "0", ">= 1"),
        ("--energy-window-seconds", "0", "> 0"),
        ("--cooldown-c", "nan", "finite"),
        ("--cooldown-s", "-1", ">= 0"),
        ("--min-seconds", "1e308", "at most"),  # seconds * 1e9 would be an OverflowError mid-run
        ("--threads", "0", ">= 1"),
        ("--threads", "x", "invalid int value"),
    ],
)
def test_bench_refuses_odd_values_as_usage_errors(option: str, value: str, says: str, tmp_path: Path) -> None:
    # a --json path that would be checked next proves nothing ran before the refusal
    code, out, err = call("bench", MODEL, f"{option}={value}", "--json", str(tmp_path / "r.json"))
    assert_usage(code, err, "bench", option, says)
    assert out == "" and not (tmp_path / "r.json").exists()


def test_bench_config_is_the_rule_for_its_fields() -> None:
    bad: list[tuple[str, Any]] = [("max_seconds", float("inf")), ("min_runs", 0), ("energy_windows", 0), ("threads", 0)]
    for field, value in bad:
        with pytest.raises(BenchConfigError, match=field) as info:
            BenchConfig(**{field: value})
        assert info.value.field == field and isinstance(info.value, ValueError)
    config = BenchConfig(threads=100_000)
    assert config.threads == USABLE and config.warnings == (
        f"threads 100000 capped at {USABLE}, the CPUs this process may use",
    )
    # the worker rebuilds the config from its dict: the same config, no second warning
    again = BenchConfig(**{**config.to_dict(), "providers": ()})
    assert again.threads == USABLE and again.warnings == config.warnings


def test_bench_threads_above_the_cpus_are_capped_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = ["bench", MODEL, "--threads", "100000", "--runs", "3", "--min-seconds", "0", "--warmup", "0"]
    code, _, err = call(*argv, "--warmup-seconds", "0", "--no-energy", "--in-process", "-q", "--json", str(out))
    assert code in (0, 1, 3), err
    note = f"threads 100000 capped at {USABLE}, the CPUs this process may use"
    assert f"edgerun: warning: {note}" in err.splitlines()[0]  # said before the run, not only after it
    result = json.loads(out.read_text())["results"][0]
    assert note in result["warnings"] and result["engine"]["threads"] == USABLE


# --- run -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("--hard-ms", "inf"), ("--soft-ms", "nan"), ("--deadline-ms", "0"), ("--max-attempts", "0"), ("--repeat", "0")],
)
def test_run_refuses_odd_values(option: str, value: str) -> None:
    code, _, err = call("run", MODEL, f"{option}={value}")
    assert_usage(code, err, "run", option)


def test_run_token_file_must_be_a_readable_file(tmp_path: Path) -> None:
    code, _, err = call("run", MODEL, "--token-file", str(tmp_path))
    assert_usage(code, err, "run", "--token-file", "is a folder")


# --- serve ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (["--port", "70000"], "--port", "TCP port 1-65535"),
        (["--port", "-1"], "--port", "TCP port 1-65535"),
        (["--host", ""], "--host", "host name"),
        (["--token-file", "/nonexistent/token"], "--token-file", "no such file"),
        (["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/nonexistent/k.pem"], "--tls-cert", "no such file"),
        (["--log-level", "bogus"], "--log-level", "invalid choice"),
        (["--threads", "0"], "--threads", ">= 1"),
        (["--max-request-bytes", "0"], "--max-request-bytes", ">= 1"),
    ],
)
def test_serve_refuses_odd_values(args: list[str], option: str, says: str) -> None:
    code, _, err = call("serve", MODEL, *args)
    assert_usage(code, err, "serve", option, says)


def test_serve_binds_before_loading_models(tmp_path: Path) -> None:
    # the artifact does not exist: a bind failure reported first proves no model was loaded before it
    missing = str(tmp_path / "nope.onnx")
    code, _, err = call("serve", missing, "--host", "bogus.invalid", "--port", "0")
    assert_one_line(code, err, "cannot listen on bogus.invalid port 0")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = call("serve", missing, "--port", str(port))
    assert_one_line(code, err, f"cannot listen on 127.0.0.1 port {port}")
    code, _, err = call("serve", missing, "--port", "0")  # bind works: now the model is loaded, and missing
    assert_one_line(code, err, "nope.onnx")


# --- other commands ---------------------------------------------------------------------------


def test_lab_compare_and_serial_options(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    code, _, err = call("lab", "compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--alpha", "1")
    assert_usage(code, err, "lab compare", "--alpha", "< 1")
    code, _, err = call("lab", "compare", str(tmp_path), str(tmp_path / "a.json"))
    assert_usage(code, err, "lab compare", "BASELINE", "is a folder")
    code, _, err = call("serial", "host", "--port", str(tmp_path / "tty"), "--duration", "inf")
    assert_usage(code, err, "serial host", "--duration", "finite")
    code, _, err = call("serial", "tiny", "--port", str(tmp_path / "tty"), "--dataset", str(tmp_path / "nope"))
    assert_usage(code, err, "serial tiny", "--dataset", "no such folder")
    code, _, err = call("target", "setup", "ssh://h", "--wheelhouse", str(tmp_path / "a.json"))
    assert_usage(code, err, "target setup", "--wheelhouse", "expected a folder")


# --- TOML files --------------------------------------------------------------------------------

# tomllib raises RecursionError on this, or parses it when a library (torch's inductor) raised the recursion
# limit, and read_toml's own depth check refuses it: either way one line ending "expected at most 16 ...".
DEEP = "a = " + "[" * 3000 + "]" * 3000
ODD_TOML = {
    "deep": (DEEP, "expected at most 16"),
    "deep-tables": ("[" + ".".join(["t"] * 40) + "]\nx = 1\n", "nested 17 levels deep"),
    "huge-int": (f"seed = {2**70}\n", "key 'seed' is an integer of 71 bits"),
    "nan": ("[lab]\nx = nan\n", "key 'lab.x' is nan"),
    "inf": ("[[step]]\nlr = -inf\n", "key 'step[0].lr' is -inf"),
}


def _loaders() -> list[tuple[str, object, type[Exception]]]:
    from edgerun.compress.recipe import load_recipe
    from edgerun.lab.plan import load_plan
    from edgerun.profiles import load_profile

    return [
        ("recipe", load_recipe, RecipeError),
        ("plan", load_plan, LabError),
        ("profile", load_profile, ProfileError),
    ]


@pytest.mark.parametrize("case", sorted(ODD_TOML))
def test_toml_loaders_refuse_odd_files_with_their_own_error(tmp_path: Path, case: str) -> None:
    text, says = ODD_TOML[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    for _, load, error in _loaders():
        with pytest.raises(error) as info:
            load(path)  # type: ignore[operator]
        message = str(info.value)
        assert message.startswith(f"{path}: ") and says in message and "\n" not in message


def test_toml_loaders_refuse_fifos_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    for _, load, error in _loaders():
        with pytest.raises(error, match="FIFO"):
            load(fifo)  # type: ignore[operator]


def test_recipe_seed_past_64_bits_is_one_line_from_the_cli(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\nseed = {2**70}\n[[step]]\nkind = "train"\nname = "t"\n')
    code, _, err = call("compress", str(recipe), "--check")
    assert_one_line(code, err, "recipe key 'seed' is an integer of 71 bits")
    code, _, err = call("bench", MODEL, "--profile", str(tmp_path / "deep.toml"))
    assert_one_line(code, err, "deep.toml")  # missing: says so, one line
    (tmp_path / "deep.toml").write_text(DEEP)
    code, _, err = call("bench", MODEL, "--profile", str(tmp_path / "deep.toml"))
    assert_one_line(code, err, "expected at most 16")
    code, _, err = call("lab", "run", str(tmp_path / "deep.toml"))
    assert_one_line(code, err, "expected at most 16")
    assert "deep.toml: plan " in err
