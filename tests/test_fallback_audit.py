"""The audit trail comes before the network: a sink that cannot record stops the call before
any byte leaves, a record is written (and fsynced) for every attempt, and a sink that fails
mid-run turns the remote off. Real files, the reference server on loopback; no sleeps.
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from test_fallback_helpers import FP32, FP32_NAME, INT8, LONG_MS, deadline_in

import edgerun
from edgerun import cli
from edgerun.artifact import load_artifact
from edgerun.errors import RemoteUnavailable
from edgerun.fallback import FallbackPolicy, JsonLinesAudit
from edgerun.fallback.client import RemoteClient
from edgerun.serve.server import Faults

X = {"input": np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)}
DIGIT = np.load(FP32.parent / "digits-test.npz")["x"][0].astype(np.float32)


def make_policy(url: str, sink, mode: str = "remote-only") -> FallbackPolicy:
    return FallbackPolicy(
        mode=mode,
        endpoint=url,
        audit_sink=sink,
        model_name=FP32_NAME,
        deadline_ms=LONG_MS,
        connect_timeout_ms=LONG_MS,
    )


def make_client(url: str, sink) -> RemoteClient:
    art = load_artifact(INT8)
    return RemoteClient(make_policy(url, sink), art.inputs, art.outputs)


def test_a_sink_that_cannot_open_refuses_before_any_byte_leaves(fresh, tmp_path):
    missing = tmp_path / "missing" / "a.jsonl"
    sink = JsonLinesAudit(missing)  # opening is checked here, and does not raise: the client decides
    with make_client(fresh.url, sink) as c:
        why = c.unavailable()
        assert why is not None and str(missing) in why and "No such file or directory" in why
        with pytest.raises(RemoteUnavailable, match=r"not sent: .*audit sink JsonLinesAudit\(.*a\.jsonl'\)"):
            c.infer(X, deadline_in(LONG_MS), "test")
    assert fresh.stats.requests == 0  # not even discovery: nothing was sent
    assert not missing.parent.exists()


def test_every_attempt_is_one_fsynced_json_line_in_a_0600_file(fresh, tmp_path):
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(path)
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600  # created when the sink was built
    with make_client(fresh.url, sink) as c:
        c.infer(X, deadline_in(LONG_MS), "first")
        fresh.faults = Faults(status=503)
        with pytest.raises(Exception, match="503"):
            c.infer(X, deadline_in(LONG_MS), "second")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["reason"], r["attempt"], r["outcome"]) for r in records] == [
        ("first", 1, "ok"),
        ("second", 1, "http-503"),
        ("second", 2, "http-503"),  # the retry has its own record
    ]
    assert [r["payload_sha256"] for r in records if r["outcome"] == "ok"] == list(fresh.stats.body_sha256)[:1]


def test_a_sink_that_fails_mid_run_drops_the_answer_and_turns_the_remote_off(fresh, tmp_path):
    path = tmp_path / "audit.jsonl"
    sink = JsonLinesAudit(path)
    with make_client(fresh.url, sink) as c:
        c.infer(X, deadline_in(LONG_MS), "ok")
        os.unlink(path)
        path.mkdir()  # a real OS error on the next write: EISDIR (root ignores file modes)
        with pytest.raises(RemoteUnavailable, match=r"audit sink .* failed to record attempt 1 \(ok\).*IsADirectory"):
            c.infer(X, deadline_in(LONG_MS), "unrecorded")
        sent = fresh.stats.infer_requests
        with pytest.raises(RemoteUnavailable, match="not sent: remote off: audit sink"):
            c.infer(X, deadline_in(LONG_MS), "after")
        assert fresh.stats.infer_requests == sent == 2  # nothing more left once a record was lost


def test_prefer_remote_runs_here_when_the_sink_cannot_record(fresh, tmp_path):
    sink = JsonLinesAudit(tmp_path / "nope" / "a.jsonl")
    with edgerun.load(INT8, fallback=make_policy(fresh.url, sink, "prefer-remote")) as rt:
        res = rt.run(DIGIT)
    assert res.route == "local" and "audit sink JsonLinesAudit(" in res.reason and "No such file" in res.reason
    assert fresh.stats.requests == 0


def test_cli_with_an_audit_path_in_a_missing_folder(capsys, fresh, tmp_path):
    audit = str(tmp_path / "missing" / "a.jsonl")
    code = cli.main(["run", str(INT8), "--fallback-url", fresh.url, "--mode", "remote-only", "--audit", audit])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert f"edgerun: error: not sent: remote off: audit sink JsonLinesAudit('{audit}')" in err
    code = cli.main(["run", str(INT8), "--fallback-url", fresh.url, "--mode", "prefer-remote", "--audit", audit])
    out, err = capsys.readouterr()
    assert code == 0 and "route=local" in out and "reason: remote-failed: remote off: audit sink" in out
    assert fresh.stats.infer_requests == 0
