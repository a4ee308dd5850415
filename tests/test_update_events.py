"""The update store's events (edgerun.telemetry.events) can never fail a finished switch, and the
model version reaches the result and the event log (issue 16: "the result and telemetry carry
the version").

The event log refuses a list or dict of more than MAX_ITEMS items with a UsageError; before this
was fixed, the update-accepted event passed every verdict as a dict and was logged after the
switch. Now each update event carries a bounded list of "name: status" strings, checked before the
switch. Real installs (real onnxruntime in the acceptance worker) with a real event log file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_update_store import FAST, SAMPLES, _profile, release

import edgerun
from edgerun.errors import UpdateRefused, UsageError
from edgerun.telemetry import events, instrument
from edgerun.update import store as st
from edgerun.update.accept import install


def _events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_verdict_summary_of_any_size_is_loggable(event_log: Path) -> None:
    # more verdicts than the log takes in one list: the summary stays within it, failed ones first
    many = {f"stage{i}.hard": {"status": "pass", "reason": "x" * 900} for i in range(3 * events.MAX_ITEMS)}
    many["hard"] = {"status": "fail", "reason": "slow"}
    with pytest.raises(UsageError, match="may not be logged"):  # what the old dict of statuses met
        events.check("update-accepted", verdicts={k: v["status"] for k, v in many.items()})
    summary = st.verdict_summary(many)
    assert len(summary) == st.EVENT_VERDICTS <= events.MAX_ITEMS
    assert summary[0] == "hard: fail" and summary[-1] == f"... {len(many) - st.EVENT_VERDICTS + 1} more"
    fields = st.check_event("update-accepted", name="digits", version="2", verdicts=summary)
    st.log_event("update-accepted", **fields)
    assert _events(event_log)[-1]["verdicts"] == summary
    assert st.verdict_summary({}) == []


def test_install_logs_accepted_and_refused_with_bounded_verdicts(
    tmp_path: Path, event_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roomy, impossible = _profile(tmp_path, 1000), _profile(tmp_path, 0.001)
    root = tmp_path / "store"
    install(release("digits-fp32.onnx", "1"), root, roomy, bench=FAST)
    # an event log that takes only a few items per list: the summary is cut to fit before the switch
    monkeypatch.setattr(st, "EVENT_VERDICTS", 3)
    done = install(release("digits-int8.onnx", "2"), root, roomy, bench=FAST)
    assert done.status == "accepted" and st.pointer(root, "digits", "current") == "2"
    with pytest.raises(UpdateRefused, match="failed its on-device acceptance"):
        install(release("digits-fp32.onnx", "3"), root, impossible, bench=FAST)
    accepted, refused = _events(event_log)[1:]
    assert (accepted["kind"], accepted["version"], accepted["previous"]) == ("update-accepted", "2", "1")
    assert all(v.endswith(": pass") for v in accepted["verdicts"][:-1])
    assert len(accepted["verdicts"]) == 3 and accepted["verdicts"][-1].endswith("more")
    assert refused["kind"] == "update-refused" and refused["verdicts"][0] == "hard: fail"


def test_a_store_model_loaded_event_carries_version_and_sha256(tmp_path: Path, event_log: Path) -> None:
    root = tmp_path / "store"
    install(release("digits-int8.onnx", "4"), root, _profile(tmp_path, 1000), bench=FAST)
    rt = edgerun.load("digits@current", store=root, threads=1)
    tele = instrument(rt)  # the event log is the one configured above
    try:
        rt.run(SAMPLES["x"][0])
    finally:
        tele.close()
    loaded = [e for e in _events(event_log) if e["kind"] == "model-loaded"]
    assert len(loaded) == 1
    assert (loaded[0]["version"], loaded[0]["sha256"]) == ("4", rt.artifact.sha256)
    assert (
        loaded[0]["sha256"]
        == json.loads((root / "digits" / "versions" / "4" / "acceptance.json").read_text())["sha256"]
    )


def test_instrument_with_an_event_log_file_logs_model_loaded(tmp_path: Path) -> None:
    root = tmp_path / "store"
    install(release("digits-fp32.onnx", "1.2"), root, _profile(tmp_path, 1000), bench=FAST)
    rt = edgerun.load("digits@1.2", store=root, threads=1)
    path = tmp_path / "own.jsonl"
    tele = instrument(rt, event_log=path)
    tele.close()
    (loaded,) = [e for e in _events(path) if e["kind"] == "model-loaded"]
    assert loaded["version"] == "1.2" and loaded["sha256"] == rt.artifact.sha256


def test_run_and_bench_results_of_a_store_reference_carry_the_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import resources

    import jsonschema

    from edgerun.cli import main

    root = tmp_path / "store"
    install(release("digits-int8.onnx", "3.1"), root, _profile(tmp_path, 1000), bench=FAST)
    monkeypatch.setenv("EDGERUN_MODELS", str(root))
    assert main(["run", "digits@current", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == "3.1"
    out = tmp_path / "bench.json"
    argv = ["bench", "digits@current", "digits@3.1", "--runs", "20", "--min-seconds", "0", "--warmup", "2"]
    main([*argv, "--no-energy", "--no-thermal", "--no-memory", "-q", "--json", str(out)])  # exit: the verdicts'
    doc = json.loads(out.read_text())
    schema = json.loads(resources.files("edgerun.bench").joinpath("result.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert [r["artifact"]["model_version"] for r in doc["results"]] == ["3.1", "3.1"]
    # a plain file has no store version, and says none
    main(
        [
            "bench",
            str(root / "digits" / "versions" / "3.1" / "digits-int8.onnx"),
            *argv[3:],
            "-q",
            "--no-energy",
            "--json",
            str(out),
            "--force",
        ]
    )
    assert "model_version" not in json.loads(out.read_text())["results"][0]["artifact"]
