"""``edgerun update`` on an SSH device: the real loopback sshd of tests/conftest.py (``ssh_device``:
OpenSSH, a fresh venv with this edgerun set up offline by ``edgerun target setup``) receives a TUF
repository made here with real keys, as a folder (how a USB stick or an rsync reaches a device), and
the device's own edgerun fetches, accepts with the profile's budgets, switches and rolls back.

The device's venv gets the ``update`` extra (tuf, cryptography) offline from wheels repacked from
this environment (tools/wheelhouse_from_env.py), as `edgerun target setup --wheelhouse` does for
edgerun itself. Slow (a venv install over ssh): CI runs it with ``pytest -m slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgerun.demo import DEMO_DIR
from edgerun.profiles import profile_dir

pytestmark = pytest.mark.slow

# 1000 ms: a ~0.3 ms model cannot miss it without a full-second stall (tests/test_update_store.py)
ROOMY = "hard_ms = 1000\n"


def _device_run(target, argv: list[str], timeout_s: float = 300):  # noqa: ANN001, ANN202
    done = target.run(argv, timeout_s=timeout_s)
    assert done.returncode == 0, (argv, done.stderr.decode()[-2000:])
    return done


def test_update_and_rollback_on_an_ssh_device(ssh_device, tmp_path: Path) -> None:  # noqa: ANN001
    from tool_modules import tool

    from edgerun.targets import open_target, parse_target
    from edgerun.update.repo import init_repo, publish

    wheelhouse = tool("wheelhouse_from_env")
    init_repo(tmp_path / "repo", tmp_path / "keys")
    publish(DEMO_DIR / "digits-fp32.onnx", tmp_path / "repo", tmp_path / "keys", "digits", version="1")
    publish(DEMO_DIR / "digits-int8.onnx", tmp_path / "repo", tmp_path / "keys", "digits", version="2")
    profile = tmp_path / "device.toml"
    text = (profile_dir() / "generic-x86_64-linux.toml").read_text()
    profile.write_text(text.replace("hard_ms = 10\n", ROOMY))

    target = open_target(parse_target(ssh_device.url()))
    python = ssh_device.setup_report.venv_python
    house = tmp_path / "wheels"
    house.mkdir()
    for name in {
        "tuf",
        "cryptography",
        *wheelhouse.requirement_closure("tuf"),
        *wheelhouse.requirement_closure("cryptography"),
    }:
        wheelhouse.repack(name, house)
    target.push_tree(house, "update-wheels")
    wheels = target.path("update-wheels")
    _device_run(
        target, [python, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels, "tuf", "cryptography"]
    )
    for path in sorted((tmp_path / "repo").rglob("*")):  # the repository as a folder, as from a USB stick
        if path.is_file():
            target.push(path, f"usb/{path.relative_to(tmp_path / 'repo')}")
    target.push(tmp_path / "repo" / "metadata" / "root.json", "trusted/root.json")
    target.push(profile, "device.toml")

    store = target.path("models")
    common = [
        "--trusted-root",
        target.path("trusted/root.json"),
        "--store",
        store,
        "--profile",
        target.path("device.toml"),
        "--json",
    ]
    for version in ("1", "2"):
        done = _device_run(
            target, [python, "-m", "edgerun.cli", "update", target.path("usb"), "digits", "--version", version, *common]
        )
        doc = json.loads(done.stdout)
        assert (doc["status"], doc["version"]) == ("accepted", version)
        assert {v["status"] for v in doc["verdicts"].values()} == {"pass"}
    loads = [
        python,
        "-c",
        f"import edgerun; print(edgerun.load('digits@current', store={store!r}).load_info.model_version)",
    ]
    assert _device_run(target, loads).stdout.decode().strip() == "2"
    rolled = _device_run(target, [python, "-m", "edgerun.cli", "rollback", "digits", "--store", store, "--json"])
    assert json.loads(rolled.stdout) == {"name": "digits", "from": "2", "to": "1"}
    assert _device_run(target, loads).stdout.decode().strip() == "1"
