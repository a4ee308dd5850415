"""SSH targets against a real OpenSSH server on 127.0.0.1 (generated keys; the device is this machine).

edgerun is installed on the "device" into a fresh virtual environment by ``edgerun target
setup`` from an offline wheelhouse, once per session (tests/fixtures/targets/devices.py).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from tool_modules import target_devices

from edgerun.artifact import sha256_file
from edgerun.cli import main
from edgerun.errors import TargetAuthError, TargetSetupError, TargetTimeout, TargetUnreachable
from edgerun.targets import open_target, parse_target
from edgerun.targets.identity import identify, require_edgerun
from edgerun.targets.setup import setup_target

devices = target_devices()
HERE = Path(__file__).resolve().parent
SCHEMA = HERE.parent / "edgerun" / "bench" / "result.schema.json"


pytestmark = pytest.mark.skipif(devices.sshd_missing_reason() is not None, reason=str(devices.sshd_missing_reason()))


def test_setup_installed_this_edgerun_offline_into_a_venv(ssh_device) -> None:
    report = ssh_device.setup_report
    import edgerun

    assert report.offline and report.edgerun_version == edgerun.__version__
    assert report.venv_python.startswith(str(ssh_device.server.workdir))
    target = open_target(parse_target(ssh_device.url()))
    identity = identify(target)
    assert identity.edgerun_version == edgerun.__version__ and identity.kernel.startswith("Linux")
    # the device's interpreter is the venv's, not this test's
    done = target.run([target.python, "-c", "import sys; print(sys.prefix)"], 30)
    assert done.text.strip() == str(ssh_device.server.workdir / "venv")


def test_bench_end_to_end_reads_like_a_local_result_plus_the_target(ssh_device, tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    out = tmp_path / "remote.json"
    art = HERE.parent / "edgerun" / "demo" / "digits-int8.onnx"
    code = main(["bench", "--target", ssh_device.url(), str(art), "--runs", "100", "--min-seconds", "0.1",
                 "--warmup", "3", "--warmup-seconds", "0", "--no-energy", "--json", str(out), "-q"])  # fmt: skip
    assert code in (0, 1, 3)
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    (result,) = doc["results"]
    assert result["status"] == "ok" and result["steady"]["runs"] >= 100
    assert result["artifact"]["sha256"] == sha256_file(art)  # hashed there, of the pushed copy
    # pushed there, run there: the artifact path and the environment are the device's
    assert result["artifact"]["path"].startswith(str(ssh_device.server.workdir / "artifacts"))
    assert result["target"]["kind"] == "ssh" and result["target"]["runner"] == "edgerun"
    assert result["target"]["edgerun_version"] and result["target"]["os"]
    assert len(result["samples_ns"]["infer"]) == result["steady"]["runs"]


def test_wrong_key_is_an_auth_error(ssh_device, tmp_path: Path) -> None:
    devices.loopback_sshd.keygen(tmp_path / "stranger")  # a key the device does not know
    config = _client_config(ssh_device, ssh_device.server.port, tmp_path / "stranger")
    target = open_target(parse_target(f"ssh://127.0.0.1:{ssh_device.server.port}?ssh_config={config}"))
    with pytest.raises(TargetAuthError, match="refused"):
        target.run(["true"], 10)


def test_host_down_is_unreachable_at_once() -> None:
    port = devices.free_port()  # nothing listens there
    start = time.monotonic()
    with pytest.raises(TargetUnreachable, match="Connection refused"):
        open_target(parse_target(f"ssh://127.0.0.1:{port}?connect_timeout_s=3")).run(["true"], 10)
    assert time.monotonic() - start < 5


def test_a_host_that_never_answers_times_out_at_connect() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, then says nothing: a hung sshd
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    url = f"ssh://127.0.0.1:{listener.getsockname()[1]}?connect_timeout_s=2"
    start = time.monotonic()
    try:
        with pytest.raises(TargetUnreachable, match="timed out"):
            open_target(parse_target(url)).run(["true"], 60)
    finally:
        listener.close()
    assert time.monotonic() - start < 10


def test_a_command_past_its_timeout_is_stopped_on_the_device(ssh_device, tmp_path: Path) -> None:
    target = open_target(parse_target(ssh_device.url()))
    marker = tmp_path / "finished"
    start = time.monotonic()
    with pytest.raises(TargetTimeout, match="1 s timeout"):
        target.run(["sh", "-c", f"sleep 3; touch {marker}"], timeout_s=1)
    assert time.monotonic() - start < 3
    time.sleep(max(0.0, start + 3.5 - time.monotonic()))  # past the moment the command would have finished
    assert not marker.exists(), "the device-side timeout should have killed the command"


def test_a_link_that_goes_silent_mid_command_fails_the_call(ssh_device) -> None:
    proxy = devices.BlackholeProxy(ssh_device.server.port)
    config = _client_config(ssh_device, proxy.port, ssh_device.server.root / "user_key")
    target = open_target(parse_target(f"ssh://127.0.0.1:{proxy.port}?ssh_config={config}&alive_interval_s=1"))
    threading.Timer(1.5, proxy.silent.set).start()  # the command is running by then
    start = time.monotonic()
    try:
        with pytest.raises(TargetUnreachable):
            target.run(["sleep", "30"], timeout_s=40)
    finally:
        proxy.close()
    assert time.monotonic() - start < 15, "ServerAlive x3 should notice a silent link within seconds"


def _client_config(ssh_device, port: int, key: Path) -> Path:  # noqa: ANN001
    """An ssh_config for 127.0.0.1:``port`` (the sshd, or a relay to it) with one key, trusting its host key."""
    root = ssh_device.server.root
    host_key = (root / "host_key.pub").read_text().split()
    known = root / f"known_hosts_{port}"
    known.write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    path = root / f"ssh_config_{port}_{key.name}"
    path.write_text(
        f"Host *\n  User {ssh_device.server.user}\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
    )
    return path


def test_missing_python_on_the_device_is_a_setup_error(ssh_device, tmp_path: Path) -> None:
    url = ssh_device.url(workdir=str(tmp_path / "fresh-device"))
    with pytest.raises(TargetSetupError, match="no Python at '/nonexistent/python3'"):
        setup_target(open_target(parse_target(url)), base_python="/nonexistent/python3")
    # a device that was never set up: bench says how to fix it, before pushing anything
    target = open_target(parse_target(url))
    with pytest.raises(TargetSetupError, match="edgerun target setup"):
        require_edgerun(target, identify(target))
    code = main(["bench", "--target", url, "--runs", "10", "-q"])
    assert code == 1
