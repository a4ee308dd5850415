"""The on-device model store (edgerun.update.store, edgerun.update.accept): install -> acceptance ->
atomic switch -> rollback, on the bundled demo, with real onnxruntime sessions in real worker processes.

The budgets are made so that the outcome cannot turn on this machine's speed: the "roomy" profile
allows 1000 ms per inference (the demo takes ~0.3 ms; a pass needs no stall of a full second in
~700 runs), the "impossible" one 0.001 ms (1 us: the pre-processing alone, a resize of 8x8 to
64x64, takes longer on any CPU), so a refusal is certain and its cause is the hard budget.

Power cuts are SIGKILLs of a child process at each named step of an install
(edgerun.update.store.CRASH_ENV) and at seeded random moments; after each, ``name@current`` must
load and run, and a fresh install must recover.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

import edgerun
from edgerun.artifact import load_artifact
from edgerun.bench.config import BenchConfig
from edgerun.demo import DEMO_DIR
from edgerun.errors import ArtifactError, UpdateRefused, UsageError
from edgerun.profiles import profile_dir
from edgerun.update import store as st
from edgerun.update.accept import install
from edgerun.update.fetch import Release
from edgerun.update.reference import wilson_upper

# Enough steady-state runs for a valid p99 (LoadGen: 662), no time floor, nothing extra measured.
FAST = BenchConfig(
    min_runs=662,
    min_seconds=0.0,
    max_seconds=60,
    warmup_runs=5,
    warmup_seconds=0.0,
    memory=False,
    thermal=False,
    energy=False,
)
SAMPLES = np.load(DEMO_DIR / "digits-test.npz")


def _profile(tmp: Path, hard_ms: float) -> Path:
    text = (profile_dir() / "generic-x86_64-linux.toml").read_text()
    assert "hard_ms = 10\n" in text
    path = tmp / f"hard-{hard_ms:g}.toml"
    path.write_text(text.replace("hard_ms = 10\n", f"hard_ms = {hard_ms}\n"))
    return path


def release(model: str, version: str, folder: Path = DEMO_DIR) -> Release:
    """A staged release built by hand from an artifact folder (what fetch_release hands install)."""
    art = load_artifact(folder / model)
    assert art.manifest_path is not None
    return Release("digits", version, art.path, art.manifest_path, folder / "digits-test.npz", art.sha256)


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("profiles")
    return {"roomy": _profile(tmp, 1000), "impossible": _profile(tmp, 0.001)}


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory, profiles: dict[str, Path]) -> Path:
    """A store with digits 1 (the FP32 demo) accepted and current; tests copy it."""
    root = tmp_path_factory.mktemp("base") / "store"
    done = install(release("digits-fp32.onnx", "1"), root, profiles["roomy"], bench=FAST)
    assert done.status == "accepted" and done.previous is None
    return root


@pytest.fixture
def store(base_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(base_store, root, symlinks=True)
    return root


def serves(root: Path) -> str:
    """digits@current loads and classifies the first reference samples correctly; returns its version."""
    rt = edgerun.load("digits@current", store=root, threads=1)
    right = sum(rt.run(SAMPLES["x"][i]).top[0].index == SAMPLES["y"][i] for i in range(20))
    assert right >= 18, right  # the demo is 98.7% accurate on these samples
    return rt.load_info.model_version


def test_install_accept_switch_rollback(store: Path, profiles: dict[str, Path]) -> None:
    done = install(release("digits-int8.onnx", "2"), store, profiles["roomy"], bench=FAST)
    assert (done.status, done.previous) == ("accepted", "1")
    assert set(done.acceptance.verdicts) >= {"hard", "soft", "model_size", "reference_accuracy"}
    assert all(v["status"] == "pass" for v in done.acceptance.verdicts.values())
    assert (st.pointer(store, "digits", "current"), st.pointer(store, "digits", "previous")) == ("2", "1")
    assert serves(store) == "2"
    assert st.resolve("digits@previous", store).name == "digits-fp32.onnx"
    accepted = json.loads((store / "digits" / "versions" / "2" / "acceptance.json").read_text())
    assert accepted["sha256"] == load_artifact(DEMO_DIR / "digits-int8.onnx").sha256
    assert accepted["summary"]["runs"] >= 662

    assert st.rollback(store, "digits") == ("2", "1")
    assert serves(store) == "1"
    assert st.rollback(store, "digits") == ("1", "2")  # and forward again: previous is kept
    events = [e["event"] for e in st.read_history(store, "digits")]
    assert events == ["accepted", "accepted", "rollback", "rollback"]
    again = install(release("digits-int8.onnx", "2"), store, profiles["roomy"], bench=FAST)
    assert again.status == "already-current"
    # re-installing the previous version, refused now, leaves it the accepted rollback target it was
    with pytest.raises(UpdateRefused, match="digits 1 failed its on-device acceptance"):
        install(release("digits-fp32.onnx", "1"), store, profiles["impossible"], bench=FAST)
    assert st.resolve_ref("digits@previous", store).version == "1"
    assert st.rollback(store, "digits") == ("2", "1")


def test_an_update_over_the_hard_budget_is_refused_and_the_old_one_serves(
    store: Path, profiles: dict[str, Path]
) -> None:
    with pytest.raises(
        UpdateRefused,
        match=r"digits 2 failed its on-device acceptance, so digits@current stays 1: "
        r"hard: fail \(\d+ of \d+ samples at or over the 0.001 ms hard budget",
    ):
        install(release("digits-int8.onnx", "2"), store, profiles["impossible"], bench=FAST)
    assert serves(store) == "1"
    assert st.pointer(store, "digits", "previous") is None
    assert not (store / "digits" / "versions" / "2").exists()  # the refused copy is gone
    last = st.read_history(store, "digits")[-1]
    assert last["event"] == "refused" and last["failed"]["hard"] == "fail"
    with pytest.raises(ArtifactError, match="no version '2'"):
        edgerun.load("digits@2", store=store)


def test_reference_samples_that_miss_the_manifest_accuracy_refuse(
    store: Path, profiles: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "wrong-labels"
    folder.mkdir()
    for name in ("digits-int8.onnx", "digits-int8.onnx.edgerun.json"):
        shutil.copy(DEMO_DIR / name, folder / name)
    np.savez(folder / "digits-test.npz", x=SAMPLES["x"], y=(SAMPLES["y"] + 1) % 10)  # every label wrong
    with pytest.raises(UpdateRefused, match=r"reference_accuracy: fail \(top-1 \d+/450 = 0\.0"):
        install(release("digits-int8.onnx", "2", folder), store, profiles["roomy"], bench=FAST)
    assert serves(store) == "1"


def test_a_release_whose_files_do_not_match_is_refused_before_acceptance(store: Path, tmp_path: Path) -> None:
    rel = release("digits-int8.onnx", "2")
    bad = Release(rel.name, rel.version, rel.model_path, rel.manifest_path, rel.samples_path, "0" * 64)
    with pytest.raises(UpdateRefused, match="not the release's model digits-int8.onnx"):
        install(bad, store, "generic-x86_64-linux", bench=FAST)
    assert serves(store) == "1" and not list((store / "digits").glob(".staging-*"))


def test_references_and_their_errors(store: Path) -> None:
    assert st.parse_ref("digits@current") == ("digits", "current")
    assert st.resolve_ref("digits@1", store).version == "1"
    for bad in ("digits", "@current", "digits@", "../x@current", "a@b@c", "digits@../1"):
        with pytest.raises(UsageError, match="is not NAME@current"):
            st.parse_ref(bad)
    with pytest.raises(ArtifactError, match="has no previous version"):
        st.resolve("digits@previous", store)
    with pytest.raises(UsageError, match="no previous version in .* to roll back to"):
        st.rollback(store, "digits")
    with pytest.raises(UsageError, match="model name"):
        st.check_part(".hidden", "model name")
    # a version folder without acceptance.json (refused, or cut off) never resolves
    shutil.copytree(store / "digits" / "versions" / "1", store / "digits" / "versions" / "9")
    (store / "digits" / "versions" / "9" / "acceptance.json").unlink()
    with pytest.raises(ArtifactError, match="was not accepted on this device"):
        st.resolve("digits@9", store)
    listed = st.list_models(store)[0]["versions"]
    assert listed[0] == {"version": "1", "accepted": True}
    assert (listed[1]["version"], listed[1]["accepted"]) == ("9", False)
    assert "was not accepted on this device" in listed[1]["reason"]


def test_store_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGERUN_MODELS", str(tmp_path / "env"))
    assert st.store_root(tmp_path / "flag") == tmp_path / "flag"
    assert st.store_root() == tmp_path / "env"
    monkeypatch.delenv("EDGERUN_MODELS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert st.store_root() == tmp_path / "xdg" / "edgerun" / "models"


def test_wilson_upper_bound() -> None:
    # the textbook Wilson interval (z = 1.96) of 8/10 is [0.490, 0.943]
    assert wilson_upper(8, 10, 1.96) == pytest.approx(0.943, abs=5e-4)
    assert wilson_upper(60, 60) == 1.0
    assert wilson_upper(0, 450) < 0.03


# --- power cuts --------------------------------------------------------------------------------

CHILD = """
import json, sys
from edgerun.bench.config import BenchConfig
from edgerun.update.accept import install
from edgerun.update.fetch import Release
a = json.loads(sys.argv[1])
rel = Release(**a["release"])
print("installing", flush=True)
install(rel, a["store"], a["profile"], bench=BenchConfig(**a["bench"]))
"""
# Every crash point of an install, in the order it reaches them: copy, stage, accept, then the
# two pointer switches (each as a temporary link made, then renamed into place).
STEPS = ("copying", "staged", "accepted", "previous-link-made", "previous-set", "current-link-made", "current-set")


def _child(root: Path, profile: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    rel = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(release("digits-int8.onnx", "2")).items()}
    args = {"release": rel, "store": str(root), "profile": str(profile), "bench": FAST.to_dict()}
    args["bench"]["providers"] = []
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True
    )


def _after_cut(root: Path, may_be_new: bool) -> None:
    version = serves(root)
    assert version == "1" or (may_be_new and version == "2"), version
    assert st.pointer(root, "digits", "previous") in (None, "1")


# The default run cuts at three steps (one before acceptance, one after, one between the two
# pointer switches); `pytest -m slow` cuts at every one.
QUICK = ("copying", "accepted", "previous-set")


@pytest.mark.parametrize("step", [s if s in QUICK else pytest.param(s, marks=pytest.mark.slow) for s in STEPS])
def test_sigkill_at_each_step_of_an_install_leaves_current_loadable(
    store: Path, profiles: dict[str, Path], step: str
) -> None:
    proc = _child(store, profiles["roomy"], {st.CRASH_ENV: step})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, f"the child did not reach {step!r}"
    _after_cut(store, may_be_new=step == "current-set")
    assert serves(store) == ("2" if step == "current-set" else "1")
    if step == "current-set":  # the install had switched: a repeat finds it done
        done = install(release("digits-int8.onnx", "2"), store, profiles["roomy"], bench=FAST)
        assert done.status == "already-current"
    elif step == "copying":  # the next install cleans up and ends where an uncut one would
        install(release("digits-int8.onnx", "2"), store, profiles["roomy"], bench=FAST)
        assert serves(store) == "2" and not [p for p in (store / "digits").iterdir() if ".staging" in p.name]


def test_sigkill_during_a_rollback_leaves_current_loadable(store: Path, profiles: dict[str, Path]) -> None:
    install(release("digits-int8.onnx", "2"), store, profiles["roomy"], bench=FAST)
    code = f"from edgerun.update.store import rollback; rollback({str(store)!r}, 'digits')"
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, st.CRASH_ENV: "rollback-current-set"}, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL
    # current moved first, so the cut already left what the rollback was for; previous names 1 too
    assert serves(store) == "1"
    assert st.pointer(store, "digits", "previous") == "1"


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_sigkill_at_a_random_moment_leaves_current_loadable(store: Path, profiles: dict[str, Path], seed: int) -> None:
    proc = _child(store, profiles["roomy"], {})
    assert proc.stdout is not None and proc.stdout.readline() == "installing\n"
    # A seeded moment within the ~0.5-3 s an install takes here (it may also come after the end:
    # the invariant holds then too). The assertion is about every moment, so no moment can fail it
    # by chance; the seed only spreads the moments tried.
    try:
        proc.wait(timeout=random.Random(seed).uniform(0.0, 1.5))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    _after_cut(store, may_be_new=True)


def test_a_second_install_while_one_holds_the_lock_is_refused(store: Path, profiles: dict[str, Path]) -> None:
    with st.locked(store, "digits"):  # flock(2): a second open file description conflicts, in-process too
        with pytest.raises(UsageError, match="another `edgerun update` or `edgerun rollback` of 'digits'"):
            install(release("digits-int8.onnx", "2"), store, profiles["roomy"], bench=FAST)
        with pytest.raises(UsageError, match="is at work on"):
            st.rollback(store, "digits")
    assert serves(store) == "1"


def test_history_skips_a_torn_line_and_rotates(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = store / "digits" / "history.jsonl"
    with open(path, "a") as fh:
        fh.write('{"event": "acc')  # a line a power cut tore
    for i in range(3):
        st.append_history(store, "digits", {"event": "test", "i": i})
    assert [e.get("i") for e in st.read_history(store, "digits")] == [None, 0, 1, 2]  # the base store's, then ours
    monkeypatch.setattr(st, "HISTORY_MAX_BYTES", 300)
    for i in range(3, 8):
        st.append_history(store, "digits", {"event": "test", "i": i})
    assert (store / "digits" / "history.1.jsonl").exists() and path.stat().st_size < 300 + 200
    assert st.read_history(store, "digits")[-1]["i"] == 7


def test_loading_a_store_reference_imports_no_update_machinery(store: Path) -> None:
    """edgerun.load("name@current") resolves through edgerun.modelstore alone: no tuf, no bench."""
    code = (
        "import sys, edgerun\n"
        f"rt = edgerun.load('digits@current', store={str(store)!r})\n"
        "assert rt.load_info.model_version == '1'\n"
        "print(sorted(m for m in sys.modules if m.startswith(('tuf', 'securesystemslib', 'edgerun.update', "
        "'edgerun.bench'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_models_lists_versions_in_the_order_update_and_prune_use(tmp_path: Path) -> None:
    for version in ("10", "9", "1.10", "1.9"):
        (tmp_path / "digits" / "versions" / version).mkdir(parents=True)
    listed = [v["version"] for v in st.list_models(tmp_path)[0]["versions"]]
    assert listed == ["1.9", "1.10", "9", "10"]  # as text it was 1.10, 1.9, 10, 9
    assert listed == sorted(listed, key=st.version_key)
