"""``edgerun update`` / ``rollback`` / ``models`` end to end: a real TUF repository made here with real
ed25519 keys (edgerun.update.repo), served by a stdlib HTTP server on loopback and read as a local
folder (a USB stick), releases accepted or refused by a real benchmark in a worker process, and the
telemetry event log (edgerun.telemetry.events) recording each outcome.

Budgets as in tests/test_update_store.py: 1000 ms ("roomy") cannot be missed by a ~0.3 ms model
without a full-second stall; 0.001 ms ("impossible") cannot be met by any CPU.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_update_events import _events

import edgerun
from edgerun.cli import main
from edgerun.demo import DEMO_DIR
from edgerun.profiles import profile_dir


def _profile(tmp: Path, hard_ms: float) -> Path:
    text = (profile_dir() / "generic-x86_64-linux.toml").read_text()
    path = tmp / f"hard-{hard_ms:g}.toml"
    path.write_text(text.replace("hard_ms = 10\n", f"hard_ms = {hard_ms}\n"))
    return path


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 1 (the FP32 demo) and 2 (INT8), published into a fresh repository."""
    from edgerun.update.repo import init_repo, publish

    tmp = tmp_path_factory.mktemp("tuf")
    init_repo(tmp / "repo", tmp / "keys")
    publish(DEMO_DIR / "digits-fp32.onnx", tmp / "repo", tmp / "keys", "digits", version="1")
    publish(DEMO_DIR / "digits-int8.onnx", tmp / "repo", tmp / "keys", "digits", version="2")
    return tmp / "repo"


@pytest.fixture(scope="module")
def http_url(repo: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(repo))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_update_accepts_then_refuses_over_the_hard_budget(
    repo: Path, http_url: str, tmp_path: Path, event_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, root = tmp_path / "store", repo / "metadata" / "1.root.json"
    roomy, impossible = _profile(tmp_path, 1000), _profile(tmp_path, 0.001)
    common = ["--trusted-root", str(root), "--store", str(store), "--json"]

    abandoned = store / ".download-999999999-x"  # a download whose process is gone (above Linux's pid_max)
    abandoned.mkdir(parents=True)
    (abandoned / "digits-fp32.onnx").write_bytes(b"half")

    # over loopback HTTP (--allow-network: a URL is never read without it)
    assert main(["update", http_url, "digits", "--version", "1", *common, "--profile", str(roomy)]) == 2
    assert "--allow-network" in capsys.readouterr().err
    rc = main(["update", http_url, "digits", "--version", "1", "--allow-network", *common, "--profile", str(roomy)])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and (doc["status"], doc["version"], doc["previous"]) == ("accepted", "1", None)
    assert {v["status"] for v in doc["verdicts"].values()} == {"pass"}
    assert not abandoned.exists() and not list(store.glob(".download-*"))
    assert doc["summary"]["runs"] >= 662 and doc["summary"]["provenance"] == "measured on this device"

    # from the folder (a USB stick): the newest release, 2, fails the impossible hard budget
    rc = main(["update", str(repo), "digits", *common, "--profile", str(impossible)])
    captured = capsys.readouterr()
    assert rc == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgerun: error: digits 2 failed its on-device acceptance, so ")
    assert "digits@current stays 1: hard: fail" in err[0]
    assert json.loads(captured.out)["status"] == "refused"

    rt = edgerun.load("digits@current", store=store)
    assert rt.load_info.model_version == "1" and rt.artifact.path.name == "digits-fp32.onnx"
    assert main(["models", "digits", "--store", str(store), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["models"][0]
    assert (listed["current"], listed["previous"], listed["versions"]) == (
        "1",
        None,
        [{"version": "1", "accepted": True}],
    )
    assert [e["event"] for e in listed["history"]] == ["accepted", "refused"]

    assert main(["rollback", "digits", "--store", str(store)]) == 2
    assert "no previous version" in capsys.readouterr().err

    kinds = [(e["kind"], e["version"]) for e in _events(event_log)]
    assert kinds == [("update-accepted", "1"), ("update-refused", "2")]
    assert "hard: fail" in _events(event_log)[1]["verdicts"]  # a bounded list of "name: status" strings


@pytest.mark.slow
def test_update_to_a_new_version_then_rollback(
    repo: Path, tmp_path: Path, event_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, root = tmp_path / "store", repo / "metadata" / "1.root.json"
    common = ["--trusted-root", str(root), "--store", str(store), "--profile", str(_profile(tmp_path, 1000))]
    assert main(["update", str(repo), "digits", "--version", "1", *common]) == 0
    assert main(["update", str(repo), "digits", *common]) == 0
    assert "digits@current is now 2 (previous: 1)" in capsys.readouterr().out
    assert main(["update", str(repo), "digits", *common]) == 0
    assert "already current" in capsys.readouterr().out
    assert edgerun.load("digits@current", store=store).load_info.model_version == "2"
    assert main(["rollback", "digits", "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "digits", "from": "2", "to": "1"}
    assert edgerun.load("digits@current", store=store).load_info.model_version == "1"
    assert [e["kind"] for e in _events(event_log)] == ["update-accepted", "update-accepted", "rollback"]


def test_odd_inputs_get_one_line_errors(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each fails before any benchmark: exit 2 (usage) or 1, one ``edgerun: error:`` line or argparse's
    usage, never the "internal error" line."""
    root = str(repo / "metadata" / "root.json")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    cases = [
        (["update", str(repo), "../x", "--trusted-root", root], 2, "model name '../x' is not usable"),
        (["update", str(repo), "digits", "--trusted-root", root, "--store", str(a_file)], 2, "cannot make the model"),
        (["update", str(repo), "digits", "--trusted-root", str(tmp_path)], 2, "expected a file"),
        (["update", str(repo), "digits", "--trusted-root", root, "--profile", "nosuch"], 1, "unknown device profile"),
        (["update", str(repo), "digits", "--trusted-root", root, "--tolerance-points", "nan"], 2, "finite number"),
        (["update", str(repo), "nosuch", "--trusted-root", root, "--store", str(tmp_path / "s")], 1, "no release"),
        (["rollback", "digits", "--store", str(tmp_path / "none")], 1, "no model 'digits' in the model store"),
        (["models", "nosuch", "--store", str(tmp_path / "none")], 1, "no model 'nosuch'"),
        (["run", "digits@current", "--store-is-no-option"], 2, "unrecognized arguments"),
    ]
    for argv, code, text in cases:
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            rc = exc.code
        assert rc == code, argv
        err = capsys.readouterr().err
        assert text in err and "internal error" not in err, (argv, err)
        assert code == 2 or [line.startswith("edgerun: error:") for line in err.splitlines()].count(True) == 1, err


def test_run_a_store_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``edgerun run digits@current`` loads from $EDGERUN_MODELS and says the version (a store made by
    hand here: the layout of edgerun.update.store, acceptance.json included)."""
    import shutil

    version = tmp_path / "store" / "digits" / "versions" / "7"
    version.mkdir(parents=True)
    for name in ("digits-fp32.onnx", "digits-fp32.onnx.edgerun.json", "digits-test.npz"):
        shutil.copy(DEMO_DIR / name, version / name)
    sha = json.loads((version / "digits-fp32.onnx.edgerun.json").read_text())["sha256"]
    verdict = {"status": "pass", "reason": "made by hand for this test"}
    doc = {"schema": "edgerun.acceptance", "schema_version": 1, "name": "digits", "version": "7", "sha256": sha}
    (version / "acceptance.json").write_text(
        json.dumps({**doc, "passed": True, "summary": {}, "verdicts": {"hard": verdict}})
    )
    (version.parent.parent / "current").symlink_to("versions/7")
    monkeypatch.setenv("EDGERUN_MODELS", str(tmp_path / "store"))
    assert main(["run", "digits@current", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model_version"] == "7"
    assert main(["run", "digits@previous"]) == 1
    assert "has no previous version of 'digits'" in capsys.readouterr().err
