"""An independent TUF client reads what `edgerun publish` writes: tuf-js (the JavaScript implementation
of TUF that npm uses), run by node against a repository served on loopback.

edgerun's writer and its device-side reader both build on python-tuf; a second implementation
checks that the repository is TUF as the specification has it (canonical JSON, ed25519 signatures,
consistent-snapshot names, hashes), not only as python-tuf reads it, and that tuf-js refuses the
same tampering. tests/interop/tuf-js/ holds the client script and its locked dependency
(``npm ci --prefix tests/interop/tuf-js``, which .ci/run does). Without node or that install the
tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("tuf", reason="the update extra (pip install edgerun[update])")

from test_update_tuf import FP32, INT8, md_path, past, resign, serving, signers  # noqa: E402

from edgerun.update.repo import init_repo, publish  # noqa: E402

CLIENT = Path(__file__).resolve().parent / "interop" / "tuf-js"
NAME = "digits"


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (apt-get install nodejs npm)"
    if not (CLIENT / "node_modules" / "tuf-js").is_dir():
        return f"tuf-js is not installed: npm ci --prefix {CLIENT}"
    return None


@pytest.fixture(scope="module", autouse=True)
def _client() -> None:
    why = _missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)  # .ci/run installs both: missing there is a broken install, not a pass
        pytest.skip(why)


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """repo/ and keys/ with release 1.0.0 (int8) and 1.1.0 (fp32); targets threshold 2 (two keys)."""
    init_repo(tmp_path / "repo", tmp_path / "keys", thresholds={"targets": 2})
    publish(INT8, tmp_path / "repo", tmp_path / "keys", NAME, version="1.0.0")
    publish(FP32, tmp_path / "repo", tmp_path / "keys", NAME, version="1.1.0")
    return tmp_path


def tufjs(world: Path, url: str, target: str, out: str = "out") -> subprocess.CompletedProcess[str]:
    argv = [
        "node",
        str(CLIENT / "fetch.js"),
        url,
        str(world / "repo" / "metadata" / "1.root.json"),
        str(world / "tufjs-cache"),
        target,
        str(world / out / Path(target).name),
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_tufjs_verifies_and_fetches_a_published_model(world: Path) -> None:
    with serving(world / "repo") as (url, asked):
        done = tufjs(world, url, f"{NAME}/1.1.0/digits-fp32.onnx")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert info["custom"] == {"edgerun": {"name": NAME, "version": "1.1.0", "kind": "model"}}
    assert info["length"] == FP32.stat().st_size
    assert (world / "out" / "digits-fp32.onnx").read_bytes() == FP32.read_bytes()
    assert "/metadata/3.snapshot.json" in asked  # consistent snapshots, as tuf-js reads them


def test_tufjs_refuses_a_tampered_model(world: Path) -> None:
    targets = json.loads(md_path(world, "targets").read_text())["signed"]["targets"]
    digest = targets[f"{NAME}/1.1.0/digits-fp32.onnx"]["hashes"]["sha256"]
    blob = world / "repo" / "targets" / NAME / "1.1.0" / f"{digest}.digits-fp32.onnx"
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))
    with serving(world / "repo") as (url, _):
        done = tufjs(world, url, f"{NAME}/1.1.0/digits-fp32.onnx")
    assert done.returncode == 1 and done.stderr.startswith("LengthOrHashMismatchError"), done.stderr
    assert not (world / "out" / "digits-fp32.onnx").exists()


def test_tufjs_refuses_targets_below_threshold(world: Path) -> None:
    resign(world, "targets", lambda signed: None, keys=signers(world, "targets")[:1])
    with serving(world / "repo") as (url, _):
        done = tufjs(world, url, f"{NAME}/1.1.0/digits-fp32.onnx")
    assert done.returncode == 1 and "targets was signed by 1/2 keys" in done.stderr, done.stderr


def test_tufjs_refuses_an_expired_timestamp(world: Path) -> None:
    resign(world, "timestamp", past)
    with serving(world / "repo") as (url, _):
        done = tufjs(world, url, f"{NAME}/1.1.0/digits-fp32.onnx")
    assert done.returncode == 1 and done.stderr.startswith("ExpiredMetadataError"), done.stderr
