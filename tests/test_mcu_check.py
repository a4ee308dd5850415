"""`edgerun mcu check`: TFLite Micro's real kernels on the host judge a model for a microcontroller.

Needs the `mcu` extra (tflite-micro, Linux x86-64 wheels only). Without it the tests skip,
except under CI (``CI`` set), where they fail: a missing extra in CI is a broken install.

The model with ops TFLM lacks is the ECG demo with three operator codes rewritten in a copy of
its flatbuffer: TRANSPOSE -> TOPK_V2 and MEAN -> UNIQUE (builtins tflite-micro
0.dev20261023182759's resolver does not register: it says "Didn't find op for builtin opcode")
and PAD -> a custom op no resolver has.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgerun.cli import EXIT_FAIL, EXIT_PASS, main
from edgerun.errors import ProfileError
from edgerun.profiles import list_profiles, load_profile, profile_dir

ECG_INT8 = Path(__file__).resolve().parent.parent / "edgerun" / "demo" / "ecg" / "ecg-int8.tflite"
HAVE_TFLM = importlib.util.find_spec("tflite_micro") is not None
MCU_PROFILES = ("wearable-nrf52840", "wearable-stm32l476", "wearable-esp32s3")


@pytest.fixture(scope="module")
def tflm_installed() -> None:
    if HAVE_TFLM:
        return
    reason = "tflite-micro is not installed: pip install '.[mcu]'"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI installs the mcu extra: a missing one is a broken install)")
    pytest.skip(reason)


needs_tflm = pytest.mark.usefixtures("tflm_installed")


def _check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["mcu", "check", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def ecg_report(tflm_installed: None) -> dict[str, Any]:
    from edgerun.cli.mcu import check_model

    wearables = [p for p in list_profiles() if p.device_class == "wearable"]
    return check_model(ECG_INT8, wearables)


def _with_unsupported_ops(tmp_path: Path) -> Path:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(ECG_INT8.read_bytes(), 0))
    ops = schema.BuiltinOperator
    for code in model.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin in (ops.TRANSPOSE, ops.MEAN):
            new = ops.TOPK_V2 if builtin == ops.TRANSPOSE else ops.UNIQUE
            code.builtinCode, code.deprecatedBuiltinCode = new, min(new, 127)  # codes > 127 keep a placeholder
        elif builtin == ops.PAD:
            code.builtinCode = code.deprecatedBuiltinCode = ops.CUSTOM
            code.customCode = b"EdgerunNoSuchOp"
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path = tmp_path / "ecg-unsupported.tflite"
    path.write_bytes(bytes(builder.Output()))
    return path


# --------------------------------------------------------------------------- the ECG demo fits


@needs_tflm
def test_ecg_int8_passes_every_wearable_profile(ecg_report: dict[str, Any]) -> None:
    assert ecg_report["ops"]["unsupported"] == [] and ecg_report["problem"] is None
    assert ecg_report["arena"]["bytes"] > 0
    assert ecg_report["outputs"]["bit_exact"] and ecg_report["outputs"]["samples"] == 60
    assert all(o["max_abs_diff"] == 0 for o in ecg_report["outputs"]["per_output"])
    verdicts = {v["profile"]: v for v in ecg_report["verdicts"]}
    assert set(verdicts) >= {"wearable-band", "wearable-watch", *MCU_PROFILES}
    for name, verdict in verdicts.items():
        assert verdict["passed"], (name, verdict["reasons"])


@needs_tflm
def test_cli_json_for_wearable_band(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _check(capsys, str(ECG_INT8), "--profile", "wearable-band")
    assert code == EXIT_PASS
    assert [v["profile"] for v in report["verdicts"]] == ["wearable-band"]
    assert report["arena"]["bytes"] > 0 and report["outputs"]["bit_exact"]
    # flash = model bytes + the stated runtime allowance, with its source
    flash = report["flash"]
    assert flash["total_bytes"] == ECG_INT8.stat().st_size + flash["runtime_allowance_bytes"]
    assert "code_size.md" in flash["runtime_allowance_source"]
    # the band's profile states no flash: the verdict says what it compared with instead
    assert report["verdicts"][0]["flash_limit_source"] == "limits.model_size_mb"
    assert not any("latency" in key for key in report), "host-side TFLM timing must never be reported"


@needs_tflm
def test_arena_is_the_boundary_and_agrees_with_tflms_recording_allocator(ecg_report: dict[str, Any]) -> None:
    from edgerun.engines import tflm

    arena = ecg_report["arena"]
    step = arena["resolution_bytes"]
    assert arena["largest_failing_bytes"] >= arena["bytes"] - step
    assert tflm.probe(ECG_INT8, arena["bytes"]).status == "ok"
    too_small = tflm.probe(ECG_INT8, arena["bytes"] - step)
    assert too_small.status == "arena", too_small
    recorded = arena["recorded_total_bytes"]
    assert recorded and abs(arena["bytes"] - recorded) <= 0.1 * recorded


# --------------------------------------------------------------------------- what fails, and why


@needs_tflm
def test_ops_tflm_lacks_are_all_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _with_unsupported_ops(tmp_path)
    code, report = _check(capsys, str(model))
    assert code == EXIT_FAIL
    assert set(report["ops"]["unsupported"]) == {"TOPK_V2", "UNIQUE", "CUSTOM:EdgerunNoSuchOp"}
    assert report["arena"] is None and report["outputs"] is None
    reasons = " ".join(report["verdicts"][0]["reasons"])
    assert "TOPK_V2" in reasons and "UNIQUE" in reasons and "CUSTOM:EdgerunNoSuchOp" in reasons
    assert main(["mcu", "check", str(model)]) == EXIT_FAIL  # the text output names them too
    line = next(x for x in capsys.readouterr().out.splitlines() if x.strip().startswith("unsupported"))
    assert set(line.split(None, 1)[1].split(", ")) == {"TOPK_V2", "UNIQUE", "CUSTOM:EdgerunNoSuchOp"}


@needs_tflm
def test_too_little_ram_fails_naming_arena_and_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (profile_dir() / "wearable-band.toml").read_text()
    small = tmp_path / "tiny-band.toml"
    small.write_text(
        text.replace('name = "wearable-band"', 'name = "tiny-band"').replace("ram_mb = 0.375", "ram_mb = 0.008")
    )
    code, report = _check(capsys, str(ECG_INT8), "--profile", str(small))
    assert code == EXIT_FAIL
    verdict = report["verdicts"][0]
    arena, limit = report["arena"]["bytes"], verdict["ram_bytes"]
    assert limit == round(0.008 * 1024 * 1024) < arena
    assert not verdict["passed"]
    assert f"RAM: tensor arena {arena:,} B > {limit:,} B of RAM" in verdict["reasons"][0]


@needs_tflm
def test_flash_over_the_profile_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = _check(capsys, str(ECG_INT8), "--profile", "wearable-stm32l476", "--runtime-flash-kb", "1024")
    assert code == EXIT_FAIL
    assert any(
        r.startswith("flash:") and "> 1,048,576 B, flash (flash_kb)" in r for r in report["verdicts"][0]["reasons"]
    )


@needs_tflm
def test_onnx_is_refused_with_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mcu", "check", str(ECG_INT8.with_suffix(".onnx"))]) == EXIT_FAIL
    err = capsys.readouterr().err
    assert "takes a TFLite model, got onnx" in err and err.count("\n") == 1


def test_missing_tflm_names_the_extra() -> None:
    # tflite_micro made unimportable in a child (None in sys.modules): the package, not our code, is absent.
    code = (
        "import sys; sys.modules['tflite_micro'] = None\n"
        "from edgerun.cli import main\n"
        f"sys.exit(main(['mcu', 'check', {str(ECG_INT8)!r}]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_FAIL
    assert "pip install 'edgerun[mcu]'" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_command_imports_no_engine_until_it_runs() -> None:
    code = (
        "import sys, edgerun.cli; edgerun.cli.build_parser()\n"
        "print(sorted(m for m in ('tflite_micro', 'ai_edge_litert') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- MCU profiles


@pytest.mark.parametrize(
    ("name", "ram_kib", "flash_kib", "source"),
    [
        ("wearable-nrf52840", 256, 1024, "nRF52840 Product Specification"),
        ("wearable-stm32l476", 128, 1024, "DS10198"),
        ("wearable-esp32s3", 512, 8192, "ESP32-S3 Series Datasheet"),
    ],
)
def test_mcu_profiles_carry_datasheet_figures(name: str, ram_kib: int, flash_kib: int, source: str) -> None:
    profile = load_profile(name)
    assert profile.device_class == "wearable"
    assert (profile.ram_bytes, profile.flash_bytes) == (ram_kib * 1024, flash_kib * 1024)
    assert source in profile.source.read_text(), f"{name}: the data sheet the figures come from"
    assert load_profile("wearable-band").flash_bytes is None  # optional: profiles without it still load


@pytest.mark.parametrize("bad", ["0", '"1MB"', "1.5"])
def test_flash_kb_must_be_a_positive_integer(tmp_path: Path, bad: str) -> None:
    text = (profile_dir() / "wearable-nrf52840.toml").read_text().replace("flash_kb = 1024", f"flash_kb = {bad}")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match="'flash_kb': expected an integer >= 1"):
        load_profile(path)
