"""ADB targets: the real ``adb`` client (Debian's package) against tools/adb_emulator.py on loopback.

The emulator speaks the ADB transport protocol (CNXN/OPEN/WRTE/OKAY/CLSE, shell v2 or
legacy shell, sync STAT/SEND/RECV) and runs commands in a sandbox copy of
tests/fixtures/targets/android (a fake /sys, getprop, dumpsys). The native benchmark
binaries are stand-ins that print the recorded output quoted in the peer-tools reference.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tool_modules import target_devices

from edgerun.cli import main
from edgerun.detection import detect
from edgerun.errors import TargetSetupError, TargetUnreachable
from edgerun.targets import command_runner, open_target, parse_target
from edgerun.targets.identity import identify

devices = target_devices()
HERE = Path(__file__).resolve().parent
DEMO = HERE.parent / "edgerun" / "demo"
BIN = HERE / "fixtures" / "targets" / "bin"
TFLITE_REMOTE = "/data/local/tmp/benchmark_model"
ORT_REMOTE = "/data/local/tmp/onnxruntime_perf_test"


pytestmark = pytest.mark.skipif(
    shutil.which("adb") is None, reason="the adb client is not installed (apt-get install adb; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def server_port():
    port = devices.free_port()
    yield port
    devices.stop_adb_server(port)


@pytest.fixture(scope="module")
def phone(tmp_path_factory: pytest.TempPathFactory, server_port: int):
    device = devices.start_adb_device(tmp_path_factory.mktemp("phone") / "sandbox", server_port)
    target = open_target(parse_target(device.url()))
    target.push(BIN / "benchmark_model", TFLITE_REMOTE)
    target.push(BIN / "onnxruntime_perf_test", ORT_REMOTE)
    yield device
    device.kill()


@pytest.fixture(scope="module")
def old_phone(tmp_path_factory: pytest.TempPathFactory, server_port: int):
    """An Android 6 style device: no shell protocol v2, so `adb shell` exit codes are always 0."""
    device = devices.start_adb_device(tmp_path_factory.mktemp("old-phone") / "sandbox", server_port, legacy=True)
    yield device
    device.kill()


def test_identity_and_profile_come_from_getprop(phone) -> None:
    target = open_target(parse_target(phone.url()))
    identity = identify(target)
    assert identity.model == "Google Pixel 8" and identity.os == "Android 14 (SDK 34)"
    assert identity.arch == "arm64-v8a" and identity.edgerun_version == ""
    found = detect(root=Path("/nonexistent"), run=command_runner(target))
    assert found.profile.name == "android-arm64-phone" and "Pixel 8" in found.reason


@pytest.mark.parametrize("which", ["phone", "old_phone"])
def test_exit_status_is_the_commands_even_where_adb_shell_lies(which: str, request: pytest.FixtureRequest) -> None:
    device = request.getfixturevalue(which)
    target = open_target(parse_target(device.url()))
    done = target.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 20)  # connects the device first
    raw = device.adb("-s", device.serial, "shell", "echo out; exit 3")
    assert done.returncode == 3
    if which == "old_phone":
        assert raw.returncode == 0, "a pre-v2 device's adb shell exits 0 whatever the command did"
        assert done.stdout == b"out\nerr\n"  # one stream, pty newlines undone
    else:
        assert raw.returncode == 3 and done.stdout == b"out\n" and done.stderr == b"err\n"


def test_push_and_pull_keep_binary_files_intact_on_an_old_device(old_phone, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 300 + b"\r\n\n\r"  # > one sync DATA chunk, every byte value, newlines
    (tmp_path / "blob").write_bytes(blob)
    target = open_target(parse_target(old_phone.url()))
    target.push(tmp_path / "blob", "blob.bin")
    assert (old_phone.sandbox / "data/local/tmp/edgerun/blob.bin").read_bytes() == blob
    assert target.read_file("blob.bin") == blob


def _validate(path: Path) -> None:
    """The native result validates against the bench result schema (its native variant)."""
    jsonschema = pytest.importorskip("jsonschema")
    from importlib import resources

    schema = json.loads(resources.files("edgerun.bench").joinpath("result.schema.json").read_text())
    jsonschema.validate(json.loads(path.read_text()), schema)


def _bench(url: str, artifact: Path, out: Path, *extra: str) -> dict:
    code = main(["bench", "--target", url, str(artifact), "--json", str(out), "-q", *extra])
    assert code in (0, 1, 3)
    (result,) = json.loads(out.read_text())["results"]
    return result


def test_benchmark_model_runs_pinned_and_its_output_becomes_a_result(phone, tmp_path: Path) -> None:
    url = phone.url(benchmark_model=TFLITE_REMOTE, taskset="f0")
    r = _bench(url, DEMO / "digits-int8.tflite", tmp_path / "r.json", "--runs", "50", "--threads", "4")
    assert r["status"] == "ok" and r["runner"]["kind"] == "native" and r["target"]["runner"] == "native"
    assert r["target"]["emulated"] is True
    _validate(tmp_path / "r.json")
    total = r["stats"]["total"]
    assert total["n"] == 50 and total["mean_ns"] == 266473000 and total["max_ns"] == 268116000
    assert r["cold_start"]["session_create_ns"] == 20283000 and r["memory"]["peak_rss_steady_bytes"] > 13e6
    assert "stage breakdown (pre/post: the binary times the model call only)" in r["runner"]["unavailable"]
    assert r["stats"]["pre"] is None and r["samples_ns"] is None
    assert r["verdicts"]["hard"]["status"] == "fail"  # 268 ms worst against 10 ms
    assert r["verdicts"]["soft"]["status"] == "not-valid" and "does not report p99" in r["verdicts"]["soft"]["reason"]
    args = (phone.sandbox / "data/local/tmp/benchmark_model.args").read_text().split()
    assert f"--graph=/data/local/tmp/edgerun/artifacts/{r['artifact']['sha256'][:16]}/digits-int8.tflite" in [
        a.replace(str(phone.sandbox), "") for a in args
    ]
    assert "--num_threads=4" in args and "--num_runs=50" in args
    assert (phone.sandbox / "data/local/tmp/taskset.log").read_text().startswith("f0 ")
    assert r["charging"]["sources"] == ["USB"] and any("charging" in w for w in r["warnings"])
    assert r["thermal"]["before"]["zones_c"] == {"cpu-little-therm": 41.25, "cpu-big-therm": 45.8}
    energy = r["energy"]
    assert energy["probe"] == "android-battery" and energy["source"] == "measured"
    assert energy["valid"], energy["reason"]  # the stand-in runs for 1 s: the 4 Hz gauge sees it
    # the fixture gauge: 1.469687 A x 3.873 V, constant, so the mean power is exactly that
    assert energy["mean_power_w"] == pytest.approx(1.469687 * 3.873) and energy["gross_mj_per_inference"] > 0


def test_onnxruntime_perf_test_percentiles_judge_the_budgets(phone, tmp_path: Path) -> None:
    url = phone.url(onnxruntime_perf_test=ORT_REMOTE, power="off")
    r = _bench(url, DEMO / "digits-int8.onnx", tmp_path / "r.json", "--runs", "700", "--no-thermal")
    pct = r["stats"]["total"]["percentiles"]
    assert pct["p50"]["value_ns"] == 1856740 and pct["p99"]["value_ns"] == 1903120 and pct["p99"]["valid"]
    assert r["verdicts"]["hard"]["status"] == "pass", "P999 is the maximum when N < 1000"
    assert r["verdicts"]["soft"]["status"] == "pass" and r["overall"] == "pass"
    args = (phone.sandbox / "data/local/tmp/onnxruntime_perf_test.args").read_text().split()
    assert args[:8] == ["-e", "cpu", "-m", "times", "-r", "700", "-I", args[7]] and args[7].endswith("digits-int8.onnx")
    assert r["energy"] is None and r["thermal"] is None


def test_edgerun_itself_on_a_device_with_python(phone, tmp_path: Path) -> None:
    url = phone.url(python=sys.executable, runner="edgerun")  # this machine's Python stands in for Termux's
    r = _bench(url, DEMO / "digits-int8.tflite", tmp_path / "r.json", "--runs", "100", "--min-seconds", "0.1",
               "--warmup-seconds", "0", "--no-energy")  # fmt: skip
    assert r["status"] == "ok" and r["target"]["runner"] == "edgerun" and r["steady"]["runs"] >= 100
    assert r["target"]["model"] == "Google Pixel 8" and len(r["samples_ns"]["infer"]) >= 100
    assert r["target"]["emulated"] is True  # tools/adb_emulator.py says ro.kernel.qemu=1: never read as a phone


def test_missing_or_unconfigured_binary_is_a_setup_error(phone) -> None:
    from edgerun.targets.bench import bench_on_target
    from edgerun.targets.options import BenchOptions

    for url, match in (
        (phone.url(), "no benchmark_model configured"),
        (phone.url(benchmark_model="/data/local/tmp/not-pushed"), "cannot run"),
    ):
        target = open_target(parse_target(url))
        with pytest.raises(TargetSetupError, match=match):
            bench_on_target(target, DEMO / "digits-int8.tflite", BenchOptions(runs=10), identify(target))


def test_a_device_unplugged_mid_command_fails_fast(tmp_path: Path, server_port: int) -> None:
    device = devices.start_adb_device(tmp_path / "sandbox", server_port)
    target = open_target(parse_target(device.url()))
    target.run(["true"], 10)
    threading.Timer(1.0, device.kill).start()
    start = time.monotonic()
    with pytest.raises(TargetUnreachable):
        target.run(["sleep", "30"], timeout_s=40)
    assert time.monotonic() - start < 10
    with pytest.raises(TargetUnreachable):  # and the next call says it is gone, at once
        target.run(["true"], 10)
    subprocess.run(["adb", "-P", str(server_port), "disconnect", device.serial], capture_output=True, timeout=10)
