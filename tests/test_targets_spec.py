"""Target addresses, bench options as flags, the remote command line (run by a real /bin/sh), the local target."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgerun.cli import build_parser
from edgerun.errors import TargetError, TargetTimeout
from edgerun.targets import open_target, parse_target
from edgerun.targets.base import shell_line, split_sentinel
from edgerun.targets.options import BenchOptions


def test_urls_parse_into_kinds_and_typed_options() -> None:
    ssh = parse_target("ssh://pi@pi5.local:2222?python=/opt/venv/bin/python&connect_timeout_s=3")
    assert (ssh.kind, ssh.user, ssh.host, ssh.port) == ("ssh", "pi", "pi5.local", 2222)
    assert ssh.options.python == "/opt/venv/bin/python" and ssh.options.connect_timeout_s == 3.0
    assert ssh.url == "ssh://pi@pi5.local:2222"
    adb = parse_target("adb://0A1B2c3d?taskset=f0&benchmark_model=/data/local/tmp/benchmark_model")
    assert adb.host == "0A1B2c3d", "adb serials are case-sensitive"
    assert adb.options.taskset == "f0" and adb.url == "adb://0A1B2c3d"
    assert parse_target("local").kind == parse_target("local://").kind == "local"
    merged = parse_target("ssh://h?workdir=a", name="box", extra={"workdir": "b"})
    assert merged.options.workdir == "b" and merged.label == "box"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://host", "expected local, ssh://"),
        ("ssh://", "the host is missing"),
        ("ssh://h:port", "must be a number"),
        ("ssh://h?bogus=1", "unknown target option 'bogus'"),
        ("ssh://h?taskset=f0", "applies to adb targets"),
        ("adb://x?ssh_config=c", "applies to ssh targets"),
        ("adb://x?taskset=zz", "hex CPU mask"),
        ("adb://x?runner=apk", "runner must be one of"),
        ("ssh://h?connect_timeout_s=0", "must be > 0"),
        ("ssh://h/home/pi", "no path expected"),
    ],
)
def test_bad_urls_say_what_was_expected(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_target(url)


def test_bench_options_survive_the_trip_through_edgerun_bench_flags() -> None:
    options = BenchOptions(
        runs=123, min_seconds=0.25, warmup=4, threads=2, providers="XNNPACK,CPU", engine="onnx",
        profile="raspberry-pi-5", soft_ms=50.0, hard_ms=5.0, percentile=95.0, no_energy=True, no_memory=True,
        timeout=30.0, sustained=0.5,
    )  # fmt: skip
    args = build_parser().parse_args(["bench", *options.argv()])
    assert BenchOptions.from_namespace(args) == options
    assert BenchOptions.from_namespace(build_parser().parse_args(["bench"])) == BenchOptions()
    with pytest.raises(ValueError, match="unknown bench option"):
        BenchOptions.from_mapping({"runz": 1}, "plan.toml: [bench]")


def _sh(line: str, timeout_s: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["/bin/sh", "-c", line], capture_output=True, timeout=timeout_s)


def test_the_remote_line_quotes_any_argument_and_reports_the_real_status() -> None:
    tricky = ["sh", "-c", 'printf "%s|" "$@"; exit 7', "-", "a b", "it's", "$HOME", '"q"', "x;y"]
    body, status = split_sentinel(_sh(shell_line(tricky, 10)).stdout)
    assert status == 7 and body == b'a b|it\'s|$HOME|"q"|x;y|'
    body, status = split_sentinel(_sh(shell_line(["printf", "no newline"], None)).stdout)
    assert (body, status) == (b"no newline", 0)


def test_the_device_side_timeout_stops_the_command() -> None:
    start = time.monotonic()
    _, status = split_sentinel(_sh(shell_line(["sleep", "20"], 1)).stdout)
    assert status == 124 and time.monotonic() - start < 5


def test_a_missing_sentinel_means_the_link_failed_and_a_pty_is_undone() -> None:
    assert split_sentinel(b"partial output") == (b"partial output", None)
    legacy = b"line 1\r\nline 2\r\n\r\n__EDGERUN_RC__:0\r\n"  # what a pre-v2 adb shell's pty makes of it
    assert split_sentinel(legacy) == (b"line 1\nline 2\n", 0)


def test_local_target_runs_copies_and_times_out(tmp_path: Path) -> None:
    target = open_target(parse_target(f"local://?workdir={tmp_path / 'work'}"))
    assert target.run([sys.executable, "-c", "import sys; sys.exit(5)"], 30).returncode == 5
    (tmp_path / "f").write_bytes(b"\x00\x01")
    target.push(tmp_path / "f", "a/b/f")
    assert (tmp_path / "work/a/b/f").read_bytes() == b"\x00\x01" == target.read_file("a/b/f")
    with pytest.raises(TargetError, match="cannot read"):
        target.read_file("missing")
    start = time.monotonic()
    with pytest.raises(TargetTimeout, match="no answer within 0.5 s"):
        target.run(["sleep", "10"], 0.5)
    assert time.monotonic() - start < 3
