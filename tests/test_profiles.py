"""Tests for edgerun.profiles: the shipped TOML profiles, their validation, and detect()."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgerun.budget import Budget
from edgerun.detection import FALLBACK_MARK, detect
from edgerun.errors import ProfileError
from edgerun.profiles import (
    EXECUTORCH_PROVIDERS,
    GENERIC_PROFILE,
    ONNX_PROVIDERS,
    DeviceProfile,
    list_profiles,
    load_profile,
    profile_dir,
    profile_names,
)

FIXTURES = Path(__file__).parent / "fixtures" / "devices"
MIB = 1024 * 1024  # ram_mb is binary
MB = 1_000_000  # model_size_*_mb is decimal, as edgerun.budget.judge_size reports
REQUIRED = {
    "raspberry-pi-4",
    "raspberry-pi-5",
    "jetson-nano",
    "jetson-orin-nano",
    "android-arm64-phone",
    "wearable-watch",
    "wearable-band",
    "point-of-care-box",
    "generic-x86_64-linux",
}


# --------------------------------------------------------------------------- shipped profiles


def test_every_required_device_class_is_shipped() -> None:
    assert set(profile_names()) >= REQUIRED
    assert (profile_dir() / "raspberry-pi-5.toml").is_file()


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_shipped_profile_loads_and_is_consistent(name: str) -> None:
    profile = load_profile(name)
    assert profile.name == name == profile.source.stem
    assert profile.cores >= 1 and profile.engine.threads >= 1 and profile.batch_size == 1
    assert profile.engine.threads <= profile.cores
    assert profile.ram_bytes > 0
    assert 0 < profile.limits.model_size_ideal_bytes <= profile.limits.model_size_limit_bytes
    assert 0 <= profile.power_model.idle_w <= profile.power_model.busy_w
    assert profile.engine.providers[-1] == "CPU", "CPU must stay the last resort"


def test_list_profiles_returns_every_file_sorted() -> None:
    profiles = list_profiles()
    assert [p.name for p in profiles] == profile_names()
    assert all(isinstance(p, DeviceProfile) for p in profiles)


def test_budgets_default_to_100_ms_soft_and_10_ms_hard() -> None:
    for profile in list_profiles():
        if profile.device_class != "poc":
            assert profile.budget == Budget(soft_ms=100, hard_ms=10, percentile=99), profile.name


def test_point_of_care_budget_allows_seconds() -> None:
    budget = load_profile("point-of-care-box").budget
    assert budget.soft_ms == 5000
    assert budget.hard_ms >= budget.soft_ms


def test_wearable_model_limits_are_under_5_mb() -> None:
    wearables = [p for p in list_profiles() if p.device_class == "wearable"]
    assert {p.name for p in wearables} >= {"wearable-watch", "wearable-band"}
    for profile in wearables:
        assert profile.limits.model_size_limit_bytes <= 5 * MB
        assert profile.limits.model_size_ideal_bytes <= 1 * MB


def test_mobile_class_limits_are_50_and_20_mb() -> None:
    for name in ("android-arm64-phone", "raspberry-pi-4", "raspberry-pi-5", "jetson-nano"):
        limits = load_profile(name).limits
        assert limits.model_size_limit_bytes == 50 * MB
        assert limits.model_size_ideal_bytes == 20 * MB


def test_human_units_become_bytes() -> None:
    assert load_profile("raspberry-pi-5").ram_bytes == 8192 * MIB
    assert load_profile("wearable-band").ram_bytes == 384 * 1024
    assert load_profile("wearable-watch").ram_bytes == 1024 * MIB


def test_device_facts_that_are_easy_to_get_wrong() -> None:
    orin = load_profile("jetson-orin-nano")
    assert orin.cores == 6 and "dla" not in orin.accelerators  # Orin Nano has no NVDLA
    assert load_profile("jetson-nano").cpu.count("Cortex-A57") == 1
    assert load_profile("raspberry-pi-5").power.probes == ("rpi5-pmic",)
    assert load_profile(GENERIC_PROFILE).architecture == "x86_64"


def test_profiles_are_frozen() -> None:
    profile = load_profile("raspberry-pi-4")
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.cores = 8  # type: ignore[misc]


def test_load_by_path_equals_load_by_name(tmp_path: Path) -> None:
    copy = tmp_path / "my-pi.toml"
    shutil.copy(profile_dir() / "raspberry-pi-5.toml", copy)
    assert load_profile(copy) == load_profile("raspberry-pi-5")
    assert load_profile(str(copy)).source == copy


def test_import_stays_light() -> None:
    # numpy may come in through edgerun.budget; engines and their runtimes must not.
    heavy = "{'onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'torch', 'psutil', 'serial'}"
    code = (
        "import sys, edgerun.profiles; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy} "
        "or m.startswith(('edgerun.engines', 'edgerun.runtime', 'edgerun.artifact'))))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_onnx_provider_names_match_the_engine() -> None:
    onnx_engine = pytest.importorskip("edgerun.engines.onnx")
    assert {name.lower() for name in ONNX_PROVIDERS} == set(onnx_engine.PROVIDER_ALIASES)


def test_executorch_provider_names_match_the_engine() -> None:
    from edgerun.engines.executorch import BACKEND_ALIASES  # the module alone: no torch

    assert {name.lower() for name in EXECUTORCH_PROVIDERS} - {"cpu"} == set(BACKEND_ALIASES)


def test_a_profile_may_prefer_executorch_and_a_pte_runs_under_it(tmp_path: Path) -> None:
    path = _variant(tmp_path, 'preferred = "litert"', 'preferred = "executorch"')
    prof = load_profile(path)
    assert (prof.engine.preferred, prof.engine.providers) == ("executorch", ("XNNPACK", "CPU"))
    old, new = 'preferred = "litert"\nproviders = ["XNNPACK", "CPU"]', 'preferred = "executorch"\nproviders = ["'
    backend_ids = load_profile(_variant(tmp_path, old, new + 'XnnpackBackend", "CPU"]'))
    assert backend_ids.engine.providers == ("XnnpackBackend", "CPU")
    try:
        import executorch  # noqa: F401  (its __init__ alone: no torch)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("executorch is not installed; CI installs the compress extra: a broken install")
        pytest.skip("executorch is not installed (pip install '.[compress]')")
    import numpy as np

    import edgerun
    from edgerun.demo import DEMO_DIR

    rt = edgerun.load(DEMO_DIR / "digits-fp32.pte", profile=path)  # providers from the profile, checked
    assert rt.load_info.engine == "executorch" and "XnnpackBackend" in rt.load_info.providers
    assert len(rt.run(np.zeros((8, 8), np.float32)).top) == 3


# --------------------------------------------------------------------------- bad input


def _variant(tmp_path: Path, old: str, new: str, base: str = "raspberry-pi-5") -> Path:
    """A copy of a shipped profile with one edit; fails if the edit did not apply."""
    text = (profile_dir() / f"{base}.toml").read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} not in {base}.toml"
    path = tmp_path / "edited.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    path = _variant(tmp_path, "cores = 4", "cores = = 4")
    with pytest.raises(ProfileError, match="not valid TOML") as info:
        load_profile(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "key", "expected"),
    [
        ("cores = 4\n", "", "'cores'", "it is missing"),
        ("threads = 4", 'threads = "four"', "'engine.threads'", "an integer"),
        ("threads = 4", "threads = true", "'engine.threads'", "an integer"),
        ("ram_mb = 8192", 'ram_mb = "8 GB"', "'ram_mb'", "a number"),
        ("model_size_mb = 50", "model_size_mb = -1", "'limits.model_size_mb'", ">="),
        (
            "model_size_ideal_mb = 20",
            "model_size_ideal_mb = 80",
            "'limits.model_size_ideal_mb'",
            "at",
        ),
        ('preferred = "litert"', 'preferred = "tensorflow"', "'engine.preferred'", "onnx"),
        ('providers = ["XNNPACK", "CPU"]', 'providers = ["XNNPAK"]', "'engine.providers'", "CPU"),
        (
            'providers = ["XNNPACK", "CPU"]',
            'providers = ["GPU"]',
            "'engine.providers'",
            "delegate:",
        ),
        ('providers = ["XNNPACK", "CPU"]', "providers = []", "'engine.providers'", "non-empty"),
        (
            'preferred = "litert"\nproviders = ["XNNPACK", "CPU"]',
            'preferred = "executorch"\nproviders = ["delegate:/x.so"]',
            "'engine.providers'",
            "XnnpackBackend",
        ),
        ('class = "sbc"', 'class = "laptop"', "'class'", "one of"),
        ("schema_version = 1", "schema_version = 2", "'schema_version'", "1"),
        ('probes = ["rpi5-pmic"]', 'probes = "rpi5-pmic"', "'power.probes'", "a list"),
        ("percentile = 99", "percentile = 100", "'budget.percentile'", "(0, 100)"),
        ("busy_w = 7.0", "busy_w = 1.0", "'power_model.busy_w'", "idle_w"),
        ("[power_model]", "[power_modle]", "'power_model'", "a table"),
    ],
)
def test_bad_value_error_names_the_key(tmp_path: Path, old: str, new: str, key: str, expected: str) -> None:
    path = _variant(tmp_path, old, new)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message and key in message and expected in message


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = _variant(tmp_path, "threads = 4", "threads = 4\nthread_count = 4")
    with pytest.raises(ProfileError, match=r"unknown key 'engine\.thread_count'.*threads"):
        load_profile(path)


def test_missing_budget_table_gets_the_defaults(tmp_path: Path) -> None:
    path = _variant(tmp_path, "[budget]\nsoft_ms = 100\nhard_ms = 10\npercentile = 99\n", "")
    assert load_profile(path).budget == Budget()


def test_unknown_name_lists_the_known_names() -> None:
    with pytest.raises(ProfileError, match="unknown device profile 'raspberry-pi-6'") as info:
        load_profile("raspberry-pi-6")
    for name in REQUIRED:
        assert name in str(info.value)


def test_missing_file_is_a_profile_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(tmp_path / "nope.toml")


# --------------------------------------------------------------------------- detect()


@pytest.mark.parametrize(
    ("tree", "name", "evidence"),
    [
        ("rpi4", "raspberry-pi-4", "'Raspberry Pi 4 Model B Rev 1.4'"),
        ("rpi5", "raspberry-pi-5", "'Raspberry Pi 5 Model B Rev 1.0'"),
        ("jetson-nano", "jetson-nano", "L4T R32.5.0 (BOARD t210ref)"),
        ("jetson-orin", "jetson-orin-nano", "L4T R36.4.3 (BOARD generic)"),
    ],
)
def test_detect_fixture_trees(tree: str, name: str, evidence: str) -> None:
    detection = detect(root=FIXTURES / tree)
    assert detection.profile.name == name
    assert evidence in detection.reason
    assert "\0" not in detection.reason  # the device-tree NUL terminator is stripped


def test_detect_reason_names_the_file() -> None:
    reason = detect(root=FIXTURES / "rpi5").reason
    model_path = FIXTURES / "rpi5" / "proc" / "device-tree" / "model"
    assert reason == f"found 'Raspberry Pi 5 Model B Rev 1.0' in {model_path}"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("release", "name"),
    [
        ("# R32 (release), REVISION: 7.1, GCID: 1, BOARD: t210ref, EABI: aarch64", "jetson-nano"),
        ("# R35 (release), REVISION: 4.1, GCID: 1, BOARD: t186ref", "jetson-orin-nano"),
        ("# R36 (release), REVISION: 3.0", "jetson-orin-nano"),
    ],
)
def test_detect_jetson_from_the_release_file_alone(tmp_path: Path, release: str, name: str) -> None:
    root = _tree(tmp_path, {"etc/nv_tegra_release": release + "\n"})
    assert detect(root=root, machine="aarch64").profile.name == name


def test_orin_from_the_release_file_alone_says_the_module_is_unknown(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"etc/nv_tegra_release": "# R35 (release), REVISION: 4.1\n"})
    detection = detect(root=root)
    assert detection.profile.name == "jetson-orin-nano"
    assert "(no device-tree model)" in detection.reason
    assert "which Orin module is unknown" in detection.reason


def test_jetson_without_a_profile_falls_back_and_says_why(tmp_path: Path) -> None:
    # R32 with BOARD t186ref is a TX2 or a Xavier: JetPack 4, but not a Nano.
    release = "# R32 (release), REVISION: 6.1, GCID: 27863751, BOARD: t186ref, EABI: aarch64\n"
    root = _tree(tmp_path, {"etc/nv_tegra_release": release})
    detection = detect(root=root, machine="aarch64")
    assert detection.profile.name == "generic-aarch64-linux"  # not the x86-64 desktop's figures
    assert "no shipped profile" in detection.reason and FALLBACK_MARK in detection.reason


def test_orin_nx_uses_the_orin_nano_profile_and_says_so(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "proc/device-tree/model": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit\0",
            "proc/device-tree/compatible": "nvidia,p3768-0000+p3767-0000\0nvidia,p3767-0000\0nvidia,tegra234\0",
        },
    )
    detection = detect(root=root)
    assert detection.profile.name == "jetson-orin-nano"
    assert "other than the Orin Nano" in detection.reason


def test_unsupported_raspberry_pi_falls_back(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"proc/device-tree/model": "Raspberry Pi 3 Model B Plus Rev 1.3\0"})
    detection = detect(root=root, machine="aarch64")
    assert detection.profile.name == "generic-aarch64-linux"
    assert "'Raspberry Pi 3 Model B Plus Rev 1.3'" in detection.reason


def _getprop_runner(dump: str, calls: list[list[str]]):
    """Answer `getprop KEY` from an `adb shell getprop` dump, as a device would."""
    props = {}
    for line in dump.splitlines():
        key, _, value = line.partition("]: [")
        props[key.lstrip("[")] = value.rstrip("]")

    def run(argv: Sequence[str]) -> str | None:
        calls.append(list(argv))
        if len(argv) == 2 and argv[0] == "getprop":
            return props.get(argv[1], "") + "\n"  # getprop prints an empty line if unset
        return None

    return run


def test_detect_android_phone_via_injected_runner(tmp_path: Path) -> None:
    dump = (FIXTURES / "android-pixel8" / "getprop.txt").read_text(encoding="utf-8")
    calls: list[list[str]] = []
    detection = detect(root=tmp_path, run=_getprop_runner(dump, calls))
    assert detection.profile.name == "android-arm64-phone"
    assert detection.reason == "getprop reports Android SDK 34, ABI arm64-v8a, model 'Pixel 8'"
    assert ["getprop", "ro.build.version.sdk"] in calls


def test_detect_wear_os_watch(tmp_path: Path) -> None:
    dump = (
        "[ro.build.characteristics]: [nosdcard,watch]\n[ro.build.version.sdk]: [34]\n"
        "[ro.product.cpu.abi]: [armeabi-v7a]\n[ro.product.model]: [Watch]\n"
    )
    detection = detect(root=tmp_path, run=_getprop_runner(dump, []))
    assert detection.profile.name == "wearable-watch"
    assert "Wear OS" in detection.reason


def test_non_android_runner_is_not_android(tmp_path: Path) -> None:
    detection = detect(root=tmp_path, run=lambda argv: None, machine="x86_64")
    assert detection.profile.name == GENERIC_PROFILE


@pytest.mark.parametrize(
    ("machine", "name", "architecture"),
    [
        ("aarch64", "generic-aarch64-linux", "aarch64"),
        ("arm64", "generic-aarch64-linux", "aarch64"),  # macOS / BSD spelling
        ("armv7l", "generic-armv7-linux", "armv7l"),
        ("armv8l", "generic-armv7-linux", "armv7l"),  # a 32-bit userland on a 64-bit core
        ("x86_64", GENERIC_PROFILE, "x86_64"),
        ("AMD64", GENERIC_PROFILE, "x86_64"),
    ],
)
def test_unknown_machine_falls_back_to_its_architecture(tmp_path: Path, machine: str, name: str, architecture: str):
    # An arm64 board without Pi/Jetson/Android markers was judged with the x86-64 desktop's
    # 8 GB and 10/65 W power model (issue 13).
    detection = detect(root=tmp_path, run=lambda argv: None, machine=machine)
    assert detection.profile.name == name and detection.profile.architecture == architecture
    assert FALLBACK_MARK in detection.reason and name in detection.reason
    assert "no Raspberry Pi, Jetson or Android markers" in detection.reason


def test_unknown_architecture_falls_back_to_the_x86_profile_and_says_it_does_not_fit(tmp_path: Path) -> None:
    detection = detect(root=tmp_path, run=lambda argv: None, machine="riscv64")
    assert detection.profile.name == GENERIC_PROFILE
    assert "no shipped profile matches this riscv64 machine" in detection.reason
    assert FALLBACK_MARK in detection.reason


@pytest.mark.parametrize("name", ["generic-aarch64-linux", "generic-armv7-linux"])
def test_arm_fallbacks_are_conservative_and_not_the_x86_figures(name: str) -> None:
    arm, x86 = load_profile(name), load_profile(GENERIC_PROFILE)
    assert arm.ram_bytes < x86.ram_bytes and arm.power_model.busy_w < x86.power_model.busy_w
    assert arm.limits.model_size_limit_bytes <= 50 * MB


def test_a_fallback_profile_is_repeated_in_the_bench_warnings(tiny_onnx: Path) -> None:
    from edgerun.bench.result import build_result
    from edgerun.bench.runner import BenchConfig, measure

    detection = detect(root=tiny_onnx.parent, run=lambda argv: None, machine="aarch64")
    cfg = BenchConfig(min_runs=20, min_seconds=0, warmup_runs=0, warmup_seconds=0, energy=False)
    m = measure(tiny_onnx, cfg, detection.profile)
    warnings = build_result(m, cfg, detection.profile.budget, detection.profile, detection.reason)["warnings"]
    assert any(w.startswith(FALLBACK_MARK) for w in warnings)
    chosen = build_result(m, cfg, detection.profile.budget, detection.profile, "chosen with --profile x")["warnings"]
    assert not any(FALLBACK_MARK in w for w in chosen)


def _this_machine_is_an_edge_device() -> bool:
    markers = ("/proc/device-tree/model", "/etc/nv_tegra_release")
    return any(Path(m).exists() for m in markers) or shutil.which("getprop") is not None


@pytest.mark.skipif(_this_machine_is_an_edge_device(), reason="has edge-device markers")
def test_detect_on_this_machine_is_the_generic_host() -> None:
    detection = detect()
    assert detection.profile.name == GENERIC_PROFILE
    assert "/proc/device-tree/model" in detection.reason
    assert len(detection.reason) > 40
