"""Core ML: the compression toolkit's .mlpackage export and `edgerun info` for it, with real coremltools.

coremltools converts and reads packages on Linux; it cannot run them off Apple hardware. So
here: conversion (fp32, fp16, int8 weights), the package's own files read independently
(Manifest.json as JSON, weights counted against torch's parameters), sha256 verification, and
the one-line refusal to benchmark Core ML off macOS. The predict path (edgerun/engines/coreml.py)
runs only on macOS: its test is skipped elsewhere, and nothing here pretends to run it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("coremltools") is None or importlib.util.find_spec("torch") is None:
    reason = "coremltools and torch are not installed: pip install -e '.[coreml,compress]'"
    if os.environ.get("CI"):
        raise RuntimeError(reason)
    pytest.skip(reason, allow_module_level=True)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from edgerun.cli import main  # noqa: E402
from edgerun.compress.export_coreml import export_coreml  # noqa: E402
from edgerun.coreml import coreml_info, load_coreml_artifact  # noqa: E402
from edgerun.errors import CompressError, EngineUnavailable, IntegrityError  # noqa: E402

SHAPE = (1, 16, 16)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("coreml")
    model = _model()
    return {p: export_coreml(model, SHAPE, root / f"m-{p}.mlpackage", p) for p in ("fp32", "fp16", "int8")}


def test_exports_carry_the_precision_they_were_asked_for(packages: dict[str, Path]) -> None:
    n_params = sum(p.numel() for p in _model().parameters())  # 80 + 1168 + 170 = 1418
    for precision, pkg in packages.items():
        info = coreml_info(pkg)
        assert info["precision_detected"] == precision
        assert info["parameter_count"] == n_params
        assert [t.name for t in info["inputs"]] == ["input"] and info["inputs"][0].shape == (1, *SHAPE)
        assert info["inputs"][0].dtype == info["outputs"][0].dtype == "float32"  # float IO at every precision
    assert coreml_info(packages["int8"])["parameter_dtypes"]["int8"] == 8 * 9 + 16 * 8 * 9 + 16 * 10  # weights
    assert coreml_info(packages["fp16"])["parameter_dtypes"] == {"float16": n_params}


def test_the_package_layout_read_independently(packages: dict[str, Path]) -> None:
    pkg = packages["int8"]
    manifest = json.loads((pkg / "Manifest.json").read_text())  # Apple's package manifest, plain JSON
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    assert (pkg / "Data" / root["path"]).is_file() and root["path"].endswith("model.mlmodel")
    ours = json.loads(Path(f"{pkg}.edgerun.json").read_text())
    assert ours["format"] == "coreml" and ours["precision"] == "int8"
    assert ours["provenance"]["measured"] is False and "Apple hardware" in ours["provenance"]["not_measured_reason"]
    sizes = {p: sum(f.stat().st_size for f in packages[p].rglob("*") if f.is_file()) for p in packages}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def test_edgerun_info_reads_a_package_without_running_it(packages: dict[str, Path], capsys) -> None:  # noqa: ANN001
    assert main(["info", str(packages["fp16"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "coreml" and data["precision"] == "fp16" and data["sha256_verified"]
    assert data["versions"]["mil_opset"] == "CoreML6" and data["op_histogram"]["conv"] == 2
    assert main(["info", str(packages["int8"])]) == 0
    text = capsys.readouterr().out
    assert "constexpr_affine_dequantize" in text and "macOS only" in text


def test_a_changed_package_fails_its_sha256(packages: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    pkg = tmp_path / "m.mlpackage"
    shutil.copytree(packages["fp32"], pkg)
    shutil.copy(f"{packages['fp32']}.edgerun.json", f"{pkg}.edgerun.json")
    assert load_coreml_artifact(pkg).manifest is not None  # the copy verifies
    weights = next(p for p in pkg.rglob("weight.bin"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match"):
        load_coreml_artifact(pkg)


def test_export_refuses_an_existing_package_and_unknown_precisions(packages: dict[str, Path]) -> None:
    with pytest.raises(CompressError, match="does not write over"):
        export_coreml(_model(), SHAPE, packages["fp32"], "fp32")
    with pytest.raises(CompressError, match="expected one of"):
        export_coreml(_model(), SHAPE, packages["fp32"].with_name("x.mlpackage"), "int4")


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS Core ML runs: the refusal does not apply")
def test_benchmarking_core_ml_off_macos_is_one_clear_line(packages: dict[str, Path], tmp_path: Path) -> None:
    from edgerun.runtime import load

    with pytest.raises(EngineUnavailable, match="^edgerun benchmarks Core ML only on macOS") as err:
        load(packages["fp32"])
    assert "\n" not in str(err.value)
    out = tmp_path / "r.json"
    assert main(["bench", str(packages["fp32"]), "--runs", "5", "--json", str(out), "-q"]) != 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["status"] == "error" and "only on macOS" in result["error"]["message"]


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predicts only on macOS (Apple's framework)")
def test_predict_matches_torch_on_macos(packages: dict[str, Path]) -> None:  # pragma: no cover - macOS only
    import numpy as np

    from edgerun.runtime import load

    x = np.random.default_rng(0).random((1, *SHAPE), dtype=np.float32)
    want = _model().eval()(torch.from_numpy(x)).detach().numpy()
    got = load(packages["fp32"]).pipeline.session.run([x])[0]
    assert np.allclose(got, want, atol=1e-3)
