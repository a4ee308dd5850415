"""``edgerun models --prune --keep N`` (edgerun.update.store.prune): old versions go, ``current``
and ``previous`` never do, and a SIGKILL mid-prune leaves ``current`` loadable.

The store holds two versions installed for real (acceptance in a worker: 1, then 2, so current 2
and previous 1); the extra versions are copies of version 2's folder with their acceptance record
renamed to the version (edgerun.schema.acceptance checks that it names its folder), plus one
folder never accepted (no acceptance.json).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_update_store import FAST, _profile, release, serves

from edgerun.cli import main
from edgerun.errors import UsageError
from edgerun.update import store as st
from edgerun.update.accept import install

EXTRA = ("3", "4", "10", "5")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("prune")
    root = tmp / "store"
    install(release("digits-fp32.onnx", "1"), root, _profile(tmp, 1000), bench=FAST)
    install(release("digits-int8.onnx", "2"), root, _profile(tmp, 1000), bench=FAST)
    versions = root / "digits" / "versions"
    for v in EXTRA:
        shutil.copytree(versions / "2", versions / v)
        doc = json.loads((versions / v / "acceptance.json").read_text())
        (versions / v / "acceptance.json").write_text(json.dumps({**doc, "version": v}))
    shutil.copytree(versions / "2", versions / "0.9")
    (versions / "0.9" / "acceptance.json").unlink()  # refused or cut off: never loadable
    return root


@pytest.fixture
def store(base: Path, tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(base, root, symlinks=True)
    return root


def _versions(root: Path) -> set[str]:
    return {p.name for p in (root / "digits" / "versions").iterdir()}


def test_prune_keeps_current_previous_and_the_n_highest(store: Path) -> None:
    assert st.prune(store, "digits", 1) == {"removed": ["5", "4", "3", "0.9"], "kept": ["10", "2", "1"]}
    assert _versions(store) == {"1", "2", "10"}
    assert st.resolve_ref("digits@10", store).version == "10"
    assert serves(store) == "2" and st.resolve_ref("digits@previous", store).version == "1"
    assert st.prune(store, "digits", 0)["removed"] == ["10"]
    assert st.prune(store, "digits", 0) == {"removed": [], "kept": ["2", "1"]}  # never current or previous
    assert [e["event"] for e in st.read_history(store, "digits")][-2:] == ["pruned", "pruned"]
    assert not [p for p in (store / "digits").iterdir() if p.name.startswith(".staging")]


def test_prune_from_the_cli(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "digits", "--store", str(store), "--prune"]) == 2
    assert "--prune and --keep N go together" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse's own refusal of the value
        main(["models", "--store", str(store), "--prune", "--keep", "-1"])
    assert exit_info.value.code == 2 and "argument --keep: expected a whole number >= 0" in capsys.readouterr().err
    assert main(["models", "--store", str(store), "--prune", "--keep", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pruned"] == [{"name": "digits", "removed": ["4", "3", "0.9"], "kept": ["10", "5", "2", "1"]}]
    assert [v["version"] for v in doc["models"][0]["versions"]] == ["1", "2", "5", "10"]  # version order
    assert main(["models", "digits", "--store", str(store), "--prune", "--keep", "0"]) == 0
    assert "digits: removed 10, 5; kept 2, 1" in capsys.readouterr().out


def test_prune_waits_for_no_one_holding_the_lock(store: Path) -> None:
    with st.locked(store, "digits"), pytest.raises(UsageError, match="is at work on"):
        st.prune(store, "digits", 0)
    assert _versions(store) >= set(EXTRA)


CHILD = (
    "import sys; from edgerun.update.store import prune; print('pruning', flush=True); prune(sys.argv[1], 'digits', 0)"
)


@pytest.mark.parametrize("step", ["prune-moved", "prune-removed"])
def test_sigkill_at_each_step_of_a_prune_leaves_current_loadable(store: Path, step: str) -> None:
    env = {**os.environ, st.CRASH_ENV: step}
    done = subprocess.run([sys.executable, "-c", CHILD, str(store)], env=env, timeout=60, capture_output=True)
    assert done.returncode == -signal.SIGKILL, f"the prune did not reach {step!r}: {done.stderr[-1000:]!r}"
    assert serves(store) == "2" and st.resolve_ref("digits@previous", store).version == "1"
    assert len(_versions(store)) == 2 + len(EXTRA)  # one version went (moved aside whole), the rest stay
    st.prune(store, "digits", 0)  # a second prune removes what the cut left and ends the job
    assert _versions(store) == {"1", "2"} and not [p for p in (store / "digits").iterdir() if ".staging" in p.name]
    assert serves(store) == "2"


def test_sigkill_at_a_seeded_moment_of_a_prune_leaves_current_loadable(store: Path) -> None:
    """The invariant holds at every moment, so no moment can fail it by chance; the seed picks one."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "pruning\n"
    try:
        proc.wait(timeout=random.Random(16).uniform(0.0, 0.05))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert serves(store) == "2" and st.resolve_ref("digits@previous", store).version == "1"
    st.prune(store, "digits", 0)
    assert _versions(store) == {"1", "2"}
