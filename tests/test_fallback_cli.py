"""`edgerun serve` and `edgerun run --fallback-url ...`: the README's commands, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from test_fallback_helpers import FP32, INT8

from edgerun import cli
from edgerun.serve.server import ReferenceServer, serve_in_thread


@pytest.fixture(scope="module")
def url():
    with serve_in_thread(ReferenceServer([FP32], threads=1)) as base:
        yield base


def run(capsys, *argv):
    code = cli.main(["run", str(INT8), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_without_fallback_prints_what_it_always_did(capsys):
    code, out, err = run(capsys)
    assert code == 0 and "route=local" in out and "reason" not in out and not err


def test_prefer_local_within_budget_stays_local_and_says_why(capsys, url):
    code, out, err = run(capsys, "--fallback-url", url, "--mode", "prefer-local")
    assert code == 0 and "route=local" in out
    assert "reason: local: preferred, and within the soft budget so far" in out
    assert "audit:" not in err  # nothing was sent, so nothing to audit


def test_forced_soft_budget_miss_goes_to_the_server_and_says_why(capsys, url, tmp_path):
    audit = tmp_path / "audit.jsonl"
    code, out, _ = run(
        capsys, "--fallback-url", url, "--mode", "prefer-local", "--soft-ms", "0.001", "--audit", str(audit), "--stats"
    )
    assert code == 0 and "route=remote" in out
    assert re.search(r"reason: soft-budget-miss: local p99 [\d.]+ ms > soft budget 0.001 ms", out)
    assert re.search(r"pre [\d.]+ ms  remote [\d.]+ ms  post", out)
    assert "remote:soft-budget-miss" in out and "fallback stats" in out
    (record,) = [json.loads(line) for line in audit.read_text().splitlines()]
    assert record["outcome"] == "ok" and record["reason"] == "soft-budget-miss" and "data" not in record


def test_json_output_and_stats_export(capsys, url, tmp_path):
    stats = tmp_path / "stats.json"
    code, out, err = run(
        capsys, "--fallback-url", url, "--mode", "remote-only", "--json", "--repeat", "3", "--stats-json", str(stats)
    )
    report = json.loads(out)
    assert code == 0 and report["route"] == "remote" and report["reason"].startswith("remote-only")
    assert json.loads(stats.read_text())["routes"] == {"remote": 3}
    assert err.count("audit: ") == 3


def test_usage_errors(capsys, url):
    code, _, err = run(capsys, "--fallback-url", url)
    assert code == 2 and "nothing would be sent" in err
    code, _, err = run(capsys, "--fallback-url", "http://fallback.example.invalid", "--mode", "prefer-local")
    assert code == 2 and "plain http" in err
    code, _, err = run(capsys, "--mode", "prefer-local", "--hard-ms", "5", "--fallback-url", url)
    assert code == 2 and "cannot be met over a network" in err


def test_hard_budget_from_the_cli_is_a_typed_error(capsys):
    code, _, err = run(capsys, "--hard-ms", "0.001")
    assert code == 1 and "hard budget missed" in err


def test_edgerun_serve_subprocess_answers_edgerun_run(capsys, tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgerun.cli", "serve", str(FP32), "--port", "0", "--token-file", str(token)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # "serving NAME at http://127.0.0.1:PORT/v2/models/NAME"
        base = re.search(r"at (http://127\.0\.0\.1:\d+)/v2/models/", line).group(1)
        os.environ["EDGERUN_TEST_TOKEN"] = "t0ken"
        deadline = time.monotonic() + 20
        while True:  # the port is bound before uvicorn accepts; give it a moment
            code, out, err = run(capsys, "--fallback-url", base, "--mode", "remote-only", "--token-env",
                                 "EDGERUN_TEST_TOKEN", "--deadline-ms", "2000")  # fmt: skip
            if code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert code == 0 and "route=remote" in out, err
        code, _, err = run(capsys, "--fallback-url", base, "--mode", "remote-only", "--deadline-ms", "2000")
        assert code == 1 and "401" in err  # no token, no answer
    finally:
        os.environ.pop("EDGERUN_TEST_TOKEN", None)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_url_from_the_toml_file_is_named_as_such(capsys, tmp_path):
    config = tmp_path / "fallback.toml"
    config.write_text('[fallback]\nendpoint = "http://127.0.0.1:9"\n')
    code, _, err = run(capsys, "--fallback-config", str(config))
    assert code == 2 and f"endpoint in {config} sets http://127.0.0.1:9" in err and "--fallback-url" not in err
    assert "nothing would be sent" in err


def test_connect_timeout_reaches_the_policy_and_is_checked(capsys, url):
    """--connect-timeout-ms (a cellular link needs more than the default 50 ms) sets the policy the
    client uses; a value that is no positive number of ms is a usage error."""
    from edgerun.cli import build_parser
    from edgerun.cli.run import _fallback_policy

    args = build_parser().parse_args(
        ["run", str(INT8), "--fallback-url", url, "--mode", "prefer-local", "--connect-timeout-ms", "400"]
    )
    assert _fallback_policy(args).connect_timeout_ms == 400.0
    code, out, _ = run(capsys, "--fallback-url", url, "--mode", "remote-only", "--connect-timeout-ms", "400")
    assert code == 0 and "route=remote" in out
    with pytest.raises(SystemExit) as usage:
        run(capsys, "--fallback-url", url, "--mode", "prefer-local", "--connect-timeout-ms", "0")
    assert usage.value.code == 2 and "--connect-timeout-ms" in capsys.readouterr().err
